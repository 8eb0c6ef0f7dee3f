"""The control loop (and the robot link) in a process of its own.

Why: in one Python process every thread shares the GIL. Measured here, the 200 Hz loop alone or
beside ONNX Runtime meets its target, but beside the synthetic cameras, the tracker, the policy's
pre-processing and the bridge reader its p99 lateness reached 4 ms with missed cycles: whichever
thread holds the GIL when the OS preempts it stalls the loop (priority inversion). In a child
process the loop shares its GIL only with the bridge's I/O threads.

Parent side: `ControlLoopProcess` has the surface the App uses (submit, start, stop, alive,
hold_reason, progress, report, errors) and `bridge_view`, a read-only bridge (latest_state,
link_up, counters) fed by the child. Messages over one duplex pipe (pickled, small):
  parent -> child: ("chunk", TimedChunk), ("done",), ("frame", t_capture), ("cmd", name), ("stop",)
  child -> parent: ("ready", info) | ("error", text), ("state", State), ("command", q, t_target),
                   ("request", t), ("event", kind, payload), ("stats", dict), ("report", dict)
Timestamps cross the boundary unchanged: time.monotonic() is CLOCK_MONOTONIC, one clock per machine.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from runtime.clock import Clock
from runtime.execution.requests import ChunkRequests
from runtime.mailbox import Mailbox

log = logging.getLogger(__name__)

STATS_PERIOD_S = 0.5


@dataclass(frozen=True)
class StateView:
    """The fields of the bridge's State the parent uses (positions, velocities, receive time)."""

    positions: np.ndarray
    velocities: np.ndarray
    t_host_receive: float


class BridgeView:
    """Read-only bridge in the parent process: what the child's bridge last reported."""

    def __init__(self, clock: Clock) -> None:
        self.state: Mailbox = Mailbox("bridge-view.state", clock)
        self._counters: dict = {}
        self.link_up = False
        self.needs_rearm = False
        self.armed = False

    def latest_state(self, max_age_s: float | None = None) -> StateView:
        return self.state.latest(max_age_s).value

    def counters(self) -> dict:
        return dict(self._counters)

    def close(self) -> None:
        """The child process owns and closes the real bridge."""


class ControlLoopProcess:
    """Parent-side proxy of the control loop running in a spawned child process."""

    EVENT_LOG_SIZE = 200

    def __init__(self, cfg, requests: ChunkRequests, chunks: Mailbox, head_frames: Mailbox,
                 publish=None, clock: Clock | None = None, start_timeout_s: float = 180.0) -> None:
        self.cfg = cfg
        self.requests = requests
        self.chunks = chunks
        self.head_frames = head_frames
        self.publish = publish or (lambda kind, *args: None)
        self.clock = clock or Clock()
        self.start_timeout_s = start_timeout_s
        self.bridge_view = BridgeView(self.clock)
        self.hold_reason: str | None = "starting"
        self.errors: list[str] = []
        # The child runs for days: keep its recent events only, and say how many fell off.
        self.events: deque = deque(maxlen=self.EVENT_LOG_SIZE)
        self.events_dropped = 0
        self._progress: dict = {"achieved_hz": math.nan, "missed_cycles": 0, "chunks_accepted": 0,
                                "homes_completed": 0, "home_done": (0, "none")}
        self._report: dict | None = None
        self._report_ready = threading.Event()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._proc = None
        self._conn = None
        self._threads: list[threading.Thread] = []
        self._forwarded_request = False
        self.thread_setup: dict | None = None
        self._stopping = False

    # ---- lifecycle ----
    def start(self) -> None:
        """Spawn the child, wait until its bridge is connected (bounded), start the link threads."""
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        self._conn = parent
        self._proc = ctx.Process(target=child_main, args=(self.cfg.model_dump(), child),
                                 name="dexgrasp-control", daemon=True)
        self._proc.start()
        child.close()
        if not parent.poll(self.start_timeout_s):
            self._proc.terminate()
            raise TimeoutError(f"control process did not start within {self.start_timeout_s:.0f} s")
        try:
            kind, payload = parent.recv()
        except EOFError as exc:
            raise RuntimeError(f"control process exited during start-up (exit code {self._proc.exitcode})") from exc
        if kind == "error":
            self._proc.join(5)
            from runtime.errors import DeviceNotConnectedError

            raise DeviceNotConnectedError(f"control process failed to start: {payload}")
        self.thread_setup = payload
        for target, name in ((self._rx, "loop-link-rx"), (self._tx, "loop-link-tx")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the child to hold, disarm and close the bridge; wait for its report (bounded)."""
        if self._proc is None:
            return
        self._stopping = True
        if self._proc.is_alive():  # a dead child (killed, crashed) cannot be asked; its end is reported
            self._send(("stop",))
        self._report_ready.wait(timeout_s)
        self._proc.join(timeout_s)
        if self._proc.is_alive():
            log.warning("control process still alive %.1f s after stop: terminating it", timeout_s)
            self.errors.append("control process did not stop in time and was terminated")
            self._proc.terminate()
            self._proc.join(2.0)
        self._stop.set()
        for t in self._threads:
            t.join(2.0)
            if t.is_alive():
                log.warning("thread %s still alive after stop", t.name)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def exitcode(self) -> int | None:
        """The child's exit code once it has ended (negative: killed by that signal), else None."""
        return None if self._proc is None else self._proc.exitcode

    @property
    def homes_completed(self) -> int:
        return int(self._progress.get("homes_completed", 0))

    @property
    def home_done(self) -> tuple[int, str]:
        """(request id, outcome) of the child's last finished homing (see ControlLoop.home_done)."""
        rid, outcome = self._progress.get("home_done", (0, "none"))
        return int(rid), str(outcome)

    def submit(self, command: str, **kwargs) -> bool:
        return self._send(("cmd", command, kwargs))

    def progress(self) -> dict:
        return {**self._progress, "hold_reason": self.hold_reason}

    def report(self) -> dict:
        r = dict(self._report or {"rate_hz_target": self.cfg.control.rate_hz, "rate_hz_achieved": math.nan,
                                  "lateness_us": {}, "missed_cycles": None, "errors": ["no report from control process"]})
        r["process"] = "separate (dexgrasp-control)"
        r["events_dropped_in_parent"] = self.events_dropped
        return r

    # ---- link threads ----
    def _send(self, msg) -> bool:
        try:
            with self._send_lock:
                self._conn.send(msg)
            return True
        except (OSError, EOFError, ValueError, AttributeError) as exc:
            if not (self._stop.is_set() or self._stopping):
                self.errors.append(f"control process link: send failed: {exc!r}")
            return False

    def _rx(self) -> None:
        view = self.bridge_view
        while not self._stop.is_set():
            try:
                if not self._conn.poll(0.1):
                    continue
                msg = self._conn.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "state":
                state = msg[1]
                view.state.put(state, state.t_host_receive)
                self.publish("joint_state", state)
            elif kind == "command":
                self.publish("command", msg[1], msg[2])
            elif kind == "request":
                if self.requests.request(msg[1]):
                    self._forwarded_request = True
            elif kind == "event":
                if msg[1] == "status":
                    self.hold_reason = msg[2].get("hold_reason")
                elif msg[1] == "episode_event":
                    if len(self.events) == self.events.maxlen:
                        self.events_dropped += 1
                    self.events.append((msg[2].get("t"), msg[2].get("event")))
                self.publish(msg[1], msg[2])
            elif kind == "stats":
                self._progress = msg[1]["progress"]
                self.hold_reason = self._progress.get("hold_reason")
                view._counters = msg[1]["bridge"]
                view.link_up, view.armed, view.needs_rearm = msg[1]["link"]
            elif kind == "report":
                self._report = msg[1]
                self.errors.extend(msg[1].get("errors", []))
                view._counters = msg[1].get("bridge_counters", view._counters)
                self._report_ready.set()

    def _tx(self) -> None:
        """Forward new chunks, request completions and head-frame capture times to the child."""
        chunk_seq, frame_seq = 0, 0
        while not self._stop.is_set():
            item = self.head_frames.wait_newer(frame_seq, 0.02)
            if item is not None:
                frame_seq = item.seq
                self._send(("frame", item.t_capture))
            c = self.chunks.peek()
            if c is not None and c.seq != chunk_seq:
                chunk_seq = c.seq
                self._send(("chunk", c.value))
            if self._forwarded_request and not self.requests.in_flight:
                self._forwarded_request = False
                self._send(("done",))


class _ForwardingRequests(ChunkRequests):
    """Child side: a request made by the loop is forwarded to the parent's policy worker."""

    def __init__(self, send) -> None:
        super().__init__()
        self._forward = send

    def request(self, now: float) -> bool:
        if super().request(now):
            self._forward(("request", now))
            return True
        return False


def child_main(cfg_dict: dict, conn) -> None:
    """Entry point of the control process: bridge + ControlLoop; exits when told or orphaned."""
    import gc
    import queue

    from runtime.config import config_from_dict
    from runtime.config.components import make_bridge
    from runtime.execution.executor import ChunkExecutor
    from runtime.execution.loop import ControlLoop, effective_auto_rearm
    from runtime.execution.safety import JointLimits, SafetyFilter
    from runtime.realtime import (
        GilHoldingClock,
        SwitchInterval,
        apply_thread_realtime,
        apply_worker_priorities,
        lock_memory,
    )

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s control-process %(name)s: %(message)s")
    if threading.current_thread() is threading.main_thread():
        import signal

        # Ctrl-C reaches the whole process group: the parent turns it into an orderly stop (hold,
        # disarm, report); the child must not die of it half-way. A dead parent ends us via EOF.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The loop must never block on the parent (a busy parent stops draining the pipe, the pipe
    # buffer fills, conn.send blocks): messages go through a bounded queue to a sender thread;
    # when it is full, telemetry (states, commands) is dropped and counted, never the loop's time.
    outbox: queue.Queue = queue.Queue(maxsize=2048)
    dropped = [0]
    link_alive = threading.Event()
    link_alive.set()

    def send(msg) -> None:
        try:
            outbox.put_nowait(msg)
        except queue.Full:
            dropped[0] += 1

    def sender() -> None:
        while link_alive.is_set() or not outbox.empty():
            try:
                msg = outbox.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                conn.send(msg)
            except (OSError, EOFError, ValueError):
                link_alive.clear()  # parent gone: the stop path below handles it
                return

    sender_thread = threading.Thread(target=sender, name="loop-link-tx", daemon=True)
    sender_thread.start()

    try:
        cfg = config_from_dict(cfg_dict, "control process")
        rt = cfg.control.realtime
        clock = GilHoldingClock(rt.loop_spin_us / 1e6) if rt.loop_spin_us > 0 else Clock()
        handle = make_bridge(cfg, clock)
    except Exception as exc:  # reported to the parent, which raises it with the reason
        send(("error", f"{type(exc).__name__}: {exc}"))
        link_alive.clear()
        sender_thread.join(5.0)
        return
    # From here on the bridge is open: every exit path (stop, parent gone, loop crash, a failing
    # report or stats) goes through the finally below, which disarms and closes it.
    loop = None
    switch = None
    setup: dict = {}
    report: dict = {"errors": []}
    try:
        perception_t = [-math.inf]
        chunks: Mailbox = Mailbox("chunks", clock)
        requests = _ForwardingRequests(send)

        def publish(kind, *args) -> None:
            if kind == "joint_state":
                s = args[0]
                send(("state", StateView(np.asarray(s.positions, dtype=np.float64),
                                         np.asarray(s.velocities, dtype=np.float64), float(s.t_host_receive))))
            elif kind == "command":
                send(("command", args[0], args[1]))
            else:
                send(("event", kind, args[0]))

        loop = ControlLoop(
            handle.bridge, ChunkExecutor.from_config(cfg),
            SafetyFilter(JointLimits.from_config(cfg.robot, cfg.safety), 1.0 / cfg.control.rate_hz),
            chunks, requests, cfg.control.rate_hz, clock,
            max_state_age_s=cfg.safety.max_state_age_ms / 1e3,
            max_perception_age_s=cfg.safety.max_perception_age_ms / 1e3,
            perception_age_s=lambda now: now - perception_t[0], auto_rearm=effective_auto_rearm(cfg),
            publish=publish, on_thread_start=lambda: apply_thread_realtime(rt.sched_fifo_priority, rt.cpu_affinity),
        )
        setup["mlockall"] = lock_memory() if rt.mlockall else "off"
        switch = SwitchInterval(rt.switch_interval_ms)
        switch.__enter__()
        setup["switch_interval"] = switch.describe()
        gc.collect()
        gc.freeze()

        def stats() -> dict:
            b = handle.bridge
            try:
                counters = b.counters()
            except Exception as exc:  # a bridge mid-reconnect may refuse; report it
                counters = {"error": repr(exc)}
            return {"progress": loop.progress(), "bridge": counters,
                    "link": (bool(getattr(b, "link_up", True)), bool(getattr(b, "armed", True)),
                             bool(getattr(b, "needs_rearm", False)))}

        if rt.worker_sched_fifo_priority is not None:
            # this main thread unpickles the parent's messages: it holds the GIL in short bursts too
            threading.current_thread().name = "control-process-main"
            setup["worker_threads"] = apply_worker_priorities(
                threading.enumerate(), rt.worker_sched_fifo_priority, None,
                extra_prefixes=("control-process-main", "loop-link"))
        send(("ready", setup))  # first message: the parent reads it before any state
        loop.start()
        _serve(conn, loop, chunks, requests, perception_t, stats, send, clock)
        loop.stop()
        report = loop.report()
        report["bridge_counters"] = stats()["bridge"]
    except Exception as exc:  # the parent gets a report saying why, and the bridge still closes
        log.exception("control process failed")
        report = {**report, "errors": [*report.get("errors", []), f"control process failed: {exc!r}"]}
    finally:
        report.setdefault("errors", [])
        if loop is not None:
            report["errors"] = list(loop.errors) + report["errors"]
            try:
                loop.stop()
            except Exception as exc:  # stopping must go on to the disarm and close
                report["errors"].append(f"stopping the control loop: {exc!r}")
        try:
            handle.bridge.disarm()  # the loop's safe stop disarms too; this covers every other path
        except Exception as exc:  # a bridge whose link is gone cannot disarm: the firmware safes off
            report["errors"].append(f"disarm at exit: {exc!r}")
        report["errors"].extend(handle.close())
        if switch is not None:
            switch.__exit__(None, None, None)
        report["thread_setup"] = {**((loop.thread_setup if loop is not None else None) or {}), **setup}
        report["telemetry_dropped_in_control_process"] = dropped[0]
        try:  # the report must not be lost to a full outbox: wait (bounded) for room
            outbox.put(("report", report), timeout=2.0)
        except queue.Full:
            log.warning("control process: outbox full, report not sent")
        link_alive.clear()
        sender_thread.join(5.0)
        conn.close()


def _serve(conn, loop, chunks: Mailbox, requests: ChunkRequests, perception_t: list, stats, send, clock) -> None:
    """The child's main thread: apply the parent's messages until "stop", the parent is gone, or the
    loop thread ends. Stats go out every STATS_PERIOD_S, and at once when a homing ends (a waiter
    in the parent counts on it)."""
    t_stats = clock.now()
    home_done = loop.home_done
    while True:
        try:
            if conn.poll(0.1):
                msg = conn.recv()
                kind = msg[0]
                if kind == "chunk":
                    chunks.put(msg[1], msg[1].t_obs)
                elif kind == "done":
                    requests.done()
                elif kind == "frame":
                    perception_t[0] = msg[1]
                elif kind == "cmd":
                    loop.submit(msg[1], **msg[2])
                elif kind == "stop":
                    return
        except (EOFError, OSError):
            return  # parent died: stop safely
        if clock.now() - t_stats >= STATS_PERIOD_S or loop.home_done != home_done:
            t_stats = clock.now()
            home_done = loop.home_done
            send(("stats", stats()))
        if not loop.alive:
            return
