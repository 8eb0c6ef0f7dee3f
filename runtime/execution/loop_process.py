"""The control loop (and the robot link) in a process of its own.

Why: in one Python process every thread shares the GIL. Measured here, the 200 Hz loop alone or
beside ONNX Runtime meets its target, but beside the synthetic cameras, the tracker, the policy's
pre-processing and the bridge reader its p99 lateness reached 4 ms with missed cycles: whichever
thread holds the GIL when the OS preempts it stalls the loop (priority inversion). In a child
process the loop shares its GIL only with the bridge's I/O threads.

Parent side: `ControlLoopProcess` has the surface the App uses (submit, start, stop, alive,
hold_reason, progress, report, errors) and `bridge_view`, a read-only bridge (latest_state,
link_up, counters) fed by the child. Messages over one duplex pipe are the typed dataclasses of
runtime.execution.messages (pickled, small), checked on receipt: an unknown one is counted and
logged, never fatal to either side.

No polling on the chunk path: each parent-side source has its own forwarder thread blocked on it
(the chunks mailbox, the head-frame mailbox, the request's completion), so a chunk goes out the
moment the policy worker puts it; the child's main thread blocks on the pipe and puts it into the
loop's mailbox on arrival, where the loop's next cycle takes it. The hand-off is bounded by one
control cycle plus the pipe, where a 20 ms poll used to add up to 20 ms more
(benchmarks/process_boundary.py measures it).
Timestamps cross the boundary unchanged: time.monotonic() is CLOCK_MONOTONIC, one clock per machine.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import threading
from collections import deque

import numpy as np

from runtime.clock import Clock
from runtime.execution.messages import (
    TO_CHILD,
    TO_PARENT,
    ChunkMsg,
    CommandMsg,
    ErrorMsg,
    EventMsg,
    FrameMsg,
    MessageCheck,
    ReadyMsg,
    ReportMsg,
    RequestDoneMsg,
    RequestMsg,
    SentMsg,
    StateMsg,
    StatsMsg,
    StopMsg,
)
from runtime.execution.requests import ChunkRequests
from runtime.mailbox import Mailbox
from runtime.robot.link import JointState, as_joint_state

log = logging.getLogger(__name__)

STATS_PERIOD_S = 0.5
# The child's main thread wakes at least this often (besides every message) to notice a finished
# homing, a dead loop thread or the stats deadline; the chunk path never waits for it.
CHILD_CHECK_S = 0.05
# How long a parent forwarder blocks on its source before re-checking for stop; never on the data path.
FORWARD_WAIT_S = 0.5


class BridgeView:
    """Read-only bridge in the parent process: what the child's bridge last reported."""

    def __init__(self, clock: Clock) -> None:
        self.state: Mailbox = Mailbox("bridge-view.state", clock)
        self._counters: dict = {}
        self.link_up = False
        self.needs_rearm = False
        self.armed = False

    def latest_state(self, max_age_s: float | None = None) -> JointState:
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
        self._forwarded_request = threading.Event()
        self.check = MessageCheck("control process link (parent)", TO_PARENT)
        # wake-ups of each forwarder (a message sent or a FORWARD_WAIT_S timeout): no polling shows as
        # about one per forwarded item, not one per 20 ms
        self.forwarder_wakeups = {"chunks": 0, "frames": 0, "done": 0}
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
            first = self.check.accept(parent.recv())
        except EOFError as exc:
            raise RuntimeError(f"control process exited during start-up (exit code {self._proc.exitcode})") from exc
        if isinstance(first, ErrorMsg):
            self._proc.join(5)
            from runtime.errors import DeviceNotConnectedError

            raise DeviceNotConnectedError(f"control process failed to start: {first.text}")
        if not isinstance(first, ReadyMsg):
            self._proc.terminate()
            raise RuntimeError(f"control process sent {self.check.last_unknown or type(first).__name__} "
                               "instead of ready/error as its first message")
        self.thread_setup = first.setup
        for target, name in ((self._rx, "loop-link-rx"), (self._forward_chunks, "loop-link-chunks"),
                             (self._forward_frames, "loop-link-frames"), (self._forward_done, "loop-link-done")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the child to hold, disarm and close the bridge; wait for its report (bounded)."""
        if self._proc is None:
            return
        self._stopping = True
        if self._proc.is_alive():  # a dead child (killed, crashed) cannot be asked; its end is reported
            self._send(StopMsg())
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
        return self._send(CommandMsg(command, dict(kwargs)))

    def progress(self) -> dict:
        return {**self._progress, "hold_reason": self.hold_reason}

    def report(self) -> dict:
        r = dict(self._report or {"rate_hz_target": self.cfg.control.rate_hz, "rate_hz_achieved": math.nan,
                                  "lateness_us": {}, "missed_cycles": None, "errors": ["no report from control process"]})
        r["process"] = "separate (dexgrasp-control)"
        r["events_dropped_in_parent"] = self.events_dropped
        r["unknown_messages_in_parent"] = self.check.unknown
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
        """Apply the child's messages; blocks on the pipe (wakes on arrival, or to check for stop)."""
        while not self._stop.is_set():
            try:
                if not self._conn.poll(FORWARD_WAIT_S):
                    continue
                raw = self._conn.recv()
            except (EOFError, OSError):
                return
            except Exception as exc:  # noqa: BLE001 - a message that does not unpickle is dropped, not fatal
                self.check.refuse(f"undecodable: {exc!r}")
                continue
            msg = self.check.accept(raw)
            if msg is not None:
                self._apply(msg)

    def _apply(self, msg) -> None:
        view = self.bridge_view
        if isinstance(msg, StateMsg):
            view.state.put(msg.state, msg.state.stamp)
            self.publish("joint_state", msg.state)
        elif isinstance(msg, SentMsg):
            self.publish("command", msg.positions, msg.t_target)
        elif isinstance(msg, RequestMsg):
            if self.requests.request(msg.t):
                self._forwarded_request.set()
        elif isinstance(msg, EventMsg):
            payload = msg.payload if isinstance(msg.payload, dict) else {}
            if msg.kind == "status":
                self.hold_reason = payload.get("hold_reason")
            elif msg.kind == "episode_event":
                if len(self.events) == self.events.maxlen:
                    self.events_dropped += 1
                self.events.append((payload.get("t"), payload.get("event")))
            self.publish(msg.kind, msg.payload)
        elif isinstance(msg, StatsMsg):
            self._progress = msg.progress
            self.hold_reason = self._progress.get("hold_reason")
            view._counters = msg.bridge
            view.link_up, view.armed, view.needs_rearm = msg.link_up, msg.armed, msg.needs_rearm
        elif isinstance(msg, ReportMsg):
            self._report = msg.report
            self.errors.extend(msg.report.get("errors", []))
            view._counters = msg.report.get("bridge_counters", view._counters)
            self._report_ready.set()
        else:  # ready/error after start-up: expected type, wrong moment
            self.check.refuse(f"{type(msg).__name__} after start-up")

    def _forward_chunks(self) -> None:
        """Send each new chunk the moment the policy worker puts it (blocks on the mailbox)."""
        seq = 0
        while not self._stop.is_set():
            item = self.chunks.wait_newer(seq, FORWARD_WAIT_S)
            self.forwarder_wakeups["chunks"] += 1
            if item is not None:
                seq = item.seq
                self._send(ChunkMsg(item.value))

    def _forward_frames(self) -> None:
        """Send each new head frame's capture time (the child loop's perception age)."""
        seq = 0
        while not self._stop.is_set():
            item = self.head_frames.wait_newer(seq, FORWARD_WAIT_S)
            self.forwarder_wakeups["frames"] += 1
            if item is not None:
                seq = item.seq
                self._send(FrameMsg(item.t_capture))

    def _forward_done(self) -> None:
        """Tell the child when the request it forwarded is finished (with or without a chunk)."""
        while not self._stop.is_set():
            if not self._forwarded_request.wait(FORWARD_WAIT_S):
                continue
            if not self.requests.wait_idle(FORWARD_WAIT_S):
                continue
            self.forwarder_wakeups["done"] += 1
            self._forwarded_request.clear()
            if self.requests.in_flight:  # a newer forwarded request began in between: wait for it
                self._forwarded_request.set()
                continue
            self._send(RequestDoneMsg())


class _ForwardingRequests(ChunkRequests):
    """Child side: a request made by the loop is forwarded to the parent's policy worker."""

    def __init__(self, send) -> None:
        super().__init__()
        self._forward = send

    def request(self, now: float) -> bool:
        if super().request(now):
            self._forward(RequestMsg(now))
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
    dropped = [0, 0]  # telemetry dropped for a full outbox, states that did not fit the joint names
    link_alive = threading.Event()
    link_alive.set()
    check = MessageCheck("control process link (child)", TO_CHILD)

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
        send(ErrorMsg(f"{type(exc).__name__}: {exc}"))
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
        from runtime.joint_space import JointSpace

        names = JointSpace.from_config(cfg.robot).names
        source = f"control process {cfg.bridge.kind}"

        def publish(kind, *args) -> None:
            if kind == "joint_state":
                try:
                    state = as_joint_state(args[0], names, source)
                except (ValueError, TypeError, AttributeError):  # a state this config cannot name
                    dropped[1] += 1
                    return
                send(StateMsg(state))
            elif kind == "command":
                send(SentMsg(np.asarray(args[0], dtype=np.float64), args[1]))
            else:
                send(EventMsg(kind, args[0] if args else None))

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

        def stats() -> StatsMsg:
            b = handle.bridge
            try:
                counters = b.counters()
            except Exception as exc:  # a bridge mid-reconnect may refuse; report it
                counters = {"error": repr(exc)}
            return StatsMsg(loop.progress(), counters, bool(getattr(b, "link_up", True)),
                            bool(getattr(b, "armed", True)), bool(getattr(b, "needs_rearm", False)))

        if rt.worker_sched_fifo_priority is not None:
            # this main thread unpickles the parent's messages: it holds the GIL in short bursts too
            threading.current_thread().name = "control-process-main"
            setup["worker_threads"] = apply_worker_priorities(
                threading.enumerate(), rt.worker_sched_fifo_priority, None,
                extra_prefixes=("control-process-main", "loop-link"))
        send(ReadyMsg(setup))  # first message: the parent reads it before any state
        loop.start()
        _serve(conn, loop, chunks, requests, perception_t, stats, send, clock, check)
        loop.stop()
        report = loop.report()
        report["bridge_counters"] = stats().bridge
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
        report["states_unnamed_in_control_process"] = dropped[1]
        report["unknown_messages_in_control_process"] = check.unknown
        try:  # the report must not be lost to a full outbox: wait (bounded) for room
            outbox.put(ReportMsg(report), timeout=2.0)
        except queue.Full:
            log.warning("control process: outbox full, report not sent")
        link_alive.clear()
        sender_thread.join(5.0)
        conn.close()


def _serve(conn, loop, chunks: Mailbox, requests: ChunkRequests, perception_t: list, stats, send, clock,
           check: MessageCheck) -> None:
    """The child's main thread: apply the parent's messages until StopMsg, the parent is gone, or the
    loop thread ends. It blocks on the pipe, so a chunk reaches the loop's mailbox on arrival (the
    loop takes it on its next cycle). Stats go out every STATS_PERIOD_S, and at once (within
    CHILD_CHECK_S) when a homing ends: a waiter in the parent counts on it."""
    t_stats = clock.now()
    home_done = loop.home_done
    while True:
        timeout = max(0.0, min(CHILD_CHECK_S, t_stats + STATS_PERIOD_S - clock.now()))
        try:
            if conn.poll(timeout):
                if not apply_to_child(check, conn.recv(), loop, chunks, requests, perception_t):
                    return
        except (EOFError, OSError):
            return  # parent died: stop safely
        except Exception as exc:  # noqa: BLE001 - a message that does not unpickle is dropped, not fatal
            check.refuse(f"undecodable: {exc!r}")
        if clock.now() - t_stats >= STATS_PERIOD_S or loop.home_done != home_done:
            t_stats = clock.now()
            home_done = loop.home_done
            send(stats())
        if not loop.alive:
            return


def apply_to_child(check: MessageCheck, raw, loop, chunks: Mailbox, requests: ChunkRequests,
                   perception_t: list) -> bool:
    """Apply one message from the parent; False when it says stop. Unknown ones are counted by `check`."""
    msg = check.accept(raw)
    if isinstance(msg, ChunkMsg):
        chunks.put(msg.chunk, msg.chunk.t_obs)
    elif isinstance(msg, RequestDoneMsg):
        requests.done()
    elif isinstance(msg, FrameMsg):
        perception_t[0] = msg.t_capture
    elif isinstance(msg, CommandMsg):
        loop.submit(msg.name, **msg.kwargs)
    elif isinstance(msg, StopMsg):
        return False
    return True
