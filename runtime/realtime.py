"""Optional real-time scheduling for the calling thread, applied when permitted, reported when not.

A Python control loop at 200 Hz beside inference on 2 cores misses deadlines under the default
scheduler (measured: p99 3.8 ms, max 132 ms). SCHED_FIFO for the loop thread fixes the OS side;
the GIL side needs a short switch interval (`sys.setswitchinterval`) so a thread running Python
bytecode hands the GIL over within ~0.5 ms. Nothing here raises on a machine that does not allow
it: every step is attempted and its outcome written into the returned report.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time

from runtime.clock import Clock

log = logging.getLogger(__name__)

MCL_CURRENT, MCL_FUTURE = 1, 2


def apply_thread_realtime(sched_fifo_priority: int | None = None, cpu_affinity: list[int] | None = None) -> dict:
    """Apply SCHED_FIFO and CPU affinity to the *calling thread*. Returns what was applied.

    Call it from inside the thread to be scheduled (Linux applies both per thread when given
    pid 0). Non-blocking."""
    report: dict = {"sched_fifo": None, "cpu_affinity": None}
    if sched_fifo_priority is not None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(sched_fifo_priority)))
            report["sched_fifo"] = f"applied (priority {sched_fifo_priority})"
        except (PermissionError, OSError, AttributeError) as exc:
            report["sched_fifo"] = f"not applied: {exc} (needs root or CAP_SYS_NICE / rtprio limit)"
            log.warning("SCHED_FIFO not applied to the control thread: %s", exc)
    if cpu_affinity:
        try:
            os.sched_setaffinity(0, set(cpu_affinity))
            report["cpu_affinity"] = f"applied {sorted(cpu_affinity)}"
        except (OSError, ValueError, AttributeError) as exc:
            report["cpu_affinity"] = f"not applied: {exc}"
            log.warning("CPU affinity %s not applied: %s", cpu_affinity, exc)
    return report


WORKER_THREAD_PREFIXES = ("camera-", "tracker-worker", "telemetry-dispatch", "bridge", "episode")


def apply_worker_priorities(threads, fifo_priority: int | None, policy_nice: int | None,
                            policy_thread: str = "policy-worker", extra_prefixes: tuple[str, ...] = ()) -> dict:
    """Raise the scheduling of the runtime's GIL-bursty worker threads (by native thread id) so a
    preempted worker cannot hold the GIL the control loop is waiting for. Returns what was applied."""
    report: dict = {}
    for t in threads:
        tid = getattr(t, "native_id", None)
        if tid is None or not t.is_alive():
            continue
        try:
            if t.name == policy_thread and policy_nice is not None:
                os.setpriority(os.PRIO_PROCESS, tid, int(policy_nice))
                report[t.name] = f"nice {policy_nice}"
            elif fifo_priority is not None and t.name.startswith(WORKER_THREAD_PREFIXES + tuple(extra_prefixes)):
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(int(fifo_priority)))
                report[t.name] = f"SCHED_FIFO {fifo_priority}"
        except (PermissionError, OSError) as exc:
            report[t.name] = f"not applied: {exc}"
    return report


def lock_memory() -> str:
    """mlockall(MCL_CURRENT | MCL_FUTURE): no page faults in the loop after start-up."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            err = ctypes.get_errno()
            return f"not applied: {os.strerror(err)} (errno {err}; raise RLIMIT_MEMLOCK or run as root)"
        return "applied"
    except (OSError, AttributeError) as exc:
        return f"not applied: {exc}"


def unlock_memory() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.munlockall()
    except (OSError, AttributeError) as exc:
        log.debug("munlockall failed: %s", exc)


class GilHoldingClock(Clock):
    """The monotonic clock, but the last `spin_s` before a deadline is a busy-wait that keeps the
    GIL (Clock.sleep_until yields it with sleep(0) while spinning, so another thread may hold it
    when the deadline comes and the loop then waits a switch interval for it). For the control
    loop thread only; costs `spin_s` of one core per cycle."""

    def __init__(self, spin_s: float = 0.0002) -> None:
        self.spin_s = spin_s

    def sleep_until(self, deadline: float, spin_s: float | None = None) -> None:
        spin = self.spin_s if spin_s is None else spin_s
        remaining = deadline - time.monotonic()
        if remaining > spin:
            time.sleep(remaining - spin)
        while time.monotonic() < deadline:
            pass


class SwitchInterval:
    """Context manager: set `sys.setswitchinterval` for the run, restore the previous value after."""

    def __init__(self, interval_ms: float | None) -> None:
        self.interval_ms = interval_ms
        self._previous: float | None = None

    def __enter__(self) -> SwitchInterval:
        if self.interval_ms is not None:
            self._previous = sys.getswitchinterval()
            sys.setswitchinterval(self.interval_ms / 1e3)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            sys.setswitchinterval(self._previous)

    def describe(self) -> str:
        if self.interval_ms is None:
            return f"unchanged ({sys.getswitchinterval() * 1e3:.2f} ms)"
        return f"{self.interval_ms:.2f} ms (was {(self._previous or 0) * 1e3:.2f} ms)"
