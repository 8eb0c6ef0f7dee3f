"""The control loop (and the robot link) in a process of its own.

Why: in one Python process every thread shares the GIL. Measured here, the 200 Hz loop alone or
beside ONNX Runtime meets its target, but beside the synthetic cameras, the tracker, the policy's
pre-processing and the bridge reader its p99 lateness reached 4 ms with missed cycles: whichever
thread holds the GIL when the OS preempts it stalls the loop (priority inversion). In a child
process the loop shares its GIL only with the bridge's I/O threads.

Parent side: `ControlLoopProcess` has the surface the App uses (submit, start, stop, alive,
hold_reason, progress, report, errors) and `bridge_view` (also `link`), a ControlProcessLink: the
parent's RobotLink for the robot link that lives in the child (state, flags and health fed by the
child; arm / disarm / protective_stop / clear_stop forwarded as typed messages and executed by the
child's loop; send_targets refused, see ControlProcessLink). Messages over one duplex pipe are the
typed dataclasses of runtime.execution.messages (pickled, small), checked on receipt: an unknown
one is counted and logged, never fatal to either side.

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
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from firmware_bridge.errors import CommandError, NotArmedError
from runtime.clock import Clock
from runtime.errors import DeviceNotConnectedError
from runtime.execution.messages import (
    TO_CHILD,
    TO_PARENT,
    ChunkMsg,
    CommandMsg,
    ErrorMsg,
    EventMsg,
    FrameMsg,
    LinkAckMsg,
    LinkCommandMsg,
    LinkOp,
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
from runtime.robot.link import JointState, LinkHealth

log = logging.getLogger(__name__)

STATS_PERIOD_S = 0.5
# The child's main thread wakes at least this often (besides every message) to notice a finished
# homing, a dead loop thread or the stats deadline; the chunk path never waits for it.
CHILD_CHECK_S = 0.05
# How long a parent forwarder blocks on its source before re-checking for stop; never on the data path.
FORWARD_WAIT_S = 0.5
# The parent treats the child's link flags as lost (link down) when no stats came for this long.
FLAGS_MAX_AGE_S = 4 * STATS_PERIOD_S
# After a link command the child's main thread checks its flags every control period for this long,
# so the parent sees the effect (e.g. the stop latched) within a cycle or two, not CHILD_CHECK_S.
FAST_FLAGS_S = 0.25


@dataclass(frozen=True)
class _Flags:
    """The child's link flags as last reported (replaced whole, so a reader sees one report)."""

    link_up: bool = False
    armed: bool = False
    needs_rearm: bool = False
    stopped: bool = False
    cause: str = "no report from the control process yet"
    t: float = -math.inf  # parent clock time of the report


# The error classes a LinkAckMsg may name (anything else is raised as DeviceNotConnectedError).
_REFUSALS = {"NotArmedError": NotArmedError, "CommandError": CommandError,
             "DeviceNotConnectedError": DeviceNotConnectedError}


def _refusal(error_type: str, text: str) -> Exception:
    return _REFUSALS.get(error_type, DeviceNotConnectedError)(text)


class ControlProcessLink:
    """The parent's RobotLink for the robot link that lives in the control process.

    What it is: the same interface as every other link (runtime.robot.link.RobotLink), so the App,
    telemetry or a tool can treat "the robot, across the process boundary" like any link.

    - latest_state(): the newest JointState the child sent (every cycle the loop reads one; while
      the loop holds without reading, e.g. in a protective stop, the child's main thread forwards
      the bridge's state every CHILD_CHECK_S). Never blocks; StaleDataError when none or too old.
    - link_up / armed / needs_rearm / health(): what the child last reported (stats every
      STATS_PERIOD_S, and at once when a flag changes). The link is down when the process is not
      running or no stats came for FLAGS_MAX_AGE_S.
    - arm / disarm / protective_stop / clear_stop: a LinkCommandMsg to the child, whose control
      loop executes it on its next cycle with the loop's own semantics: a stop latches until
      clear_stop(), clear_stop() never re-arms (after it only arm() moves again, or auto_rearm in
      the sim), after disarm() only arm() moves again, auto_rearm or not. Executing them in the
      loop, not beside it, is what keeps the loop's stop latch and resynchronisation in step with
      the bridge. Each call blocks until the child acknowledges and then reports the effect (stop
      latched, disarmed, armed), typically one control cycle plus the pipe, at most
      `command_timeout_s` in all: DeviceNotConnectedError when
      the child is gone or does not confirm in time, NotArmedError when it refuses an arm (stop
      latched). If the child's loop is no longer running, stop / disarm / clear go straight to its
      bridge.
    - send_targets(): refused (CommandError, nothing sent). The child's loop writes a target every
      cycle through its safety filter, whose velocity and acceleration limits hold only for the
      stream it produces itself; a second writer from the parent would interleave with that stream
      (two set points per cycle, jumps between them) and bypass the chunk generations that keep a
      stale chunk from overriding a stop or a homing. Motion goes in as chunks (the policy worker),
      `home` or the operator commands (ControlLoopProcess.submit).
    - connect(): the child opens and handshakes the real link when ControlLoopProcess.start()
      spawns it; connect() only waits (bounded) for its first state. close(): best-effort disarm;
      the child closes the real link when the process stops.
    """

    def __init__(self, owner: ControlLoopProcess, clock: Clock, command_timeout_s: float = 1.0) -> None:
        self._owner = owner
        self.clock = clock
        self.command_timeout_s = command_timeout_s
        self.state: Mailbox = Mailbox("control-process-link.state", clock)
        self._counters: dict = {}
        self._flags = _Flags()
        self._cond = threading.Condition()
        self._seq = 0
        self._acks: dict[int, LinkAckMsg | None] = {}
        self._closed = False

    # ---- fed by the parent's rx thread --------------------------------------------------------
    def _on_state(self, state: JointState) -> None:
        self.state.put(state, state.stamp)

    def _on_stats(self, msg: StatsMsg) -> None:
        with self._cond:
            self._counters = msg.bridge
            self._flags = _Flags(bool(msg.link_up), bool(msg.armed), bool(msg.needs_rearm), bool(msg.stopped),
                                 str(msg.cause), self.clock.now())
            self._cond.notify_all()

    def _on_ack(self, msg: LinkAckMsg) -> None:
        with self._cond:
            if msg.seq in self._acks:
                self._acks[msg.seq] = msg
                self._cond.notify_all()

    def _on_counters(self, counters: dict) -> None:
        self._counters = counters

    # ---- RobotLink: state and flags -----------------------------------------------------------
    def _down_cause(self) -> str:
        """Why the link is down, or "" when it is up."""
        owner = self._owner
        if self._closed:
            return "closed"
        if not owner.started:
            return "control process not started"
        if not owner.alive:
            return f"control process ended (exit code {owner.exitcode})"
        f = self._flags
        age = self.clock.now() - f.t
        if age > FLAGS_MAX_AGE_S:
            return f"no report from the control process for {age:.1f} s"
        if not f.link_up:
            return f.cause or "link down in the control process"
        return ""

    @property
    def link_up(self) -> bool:
        return not self._down_cause()

    @property
    def armed(self) -> bool:
        return self._flags.armed and self._owner.alive

    @property
    def needs_rearm(self) -> bool:
        """The child's bridge says so, its loop holds a stop latch, or the process has ended."""
        f = self._flags
        return f.needs_rearm or f.stopped or (self._owner.started and not self._owner.alive)

    @property
    def stop_latched(self) -> bool:
        """The child's loop holds a protective stop (cleared only by clear_stop())."""
        return self._flags.stopped

    def latest_state(self, max_age_s: float | None = None) -> JointState:
        return self.state.latest(max_age_s).value

    def counters(self) -> dict:
        return dict(self._counters)

    def health(self) -> LinkHealth:
        cause = self._down_cause()
        item = self.state.peek()
        age = math.inf if item is None else self.clock.now() - item.t_capture
        return LinkHealth(not cause, self.armed, self.needs_rearm, age, cause, self.counters())

    # ---- RobotLink: commands ------------------------------------------------------------------
    def connect(self, timeout_s: float = 2.0) -> None:
        """Wait (at most `timeout_s`) for the child's first state; the child opened the real link."""
        owner = self._owner
        if self._closed or not owner.started or not owner.alive:
            raise DeviceNotConnectedError(f"control process link: {self._down_cause() or 'not running'} "
                                          "(ControlLoopProcess.start() opens the robot link in the control process)")
        if self.state.wait_newer(0, timeout_s) is None:
            raise DeviceNotConnectedError(f"control process link: no robot state from the control process "
                                          f"within {timeout_s:.1f} s")

    def send_targets(self, positions: np.ndarray, t_target: float | None = None) -> np.ndarray:
        raise CommandError("control process link: send_targets refused, nothing sent: the control loop in the "
                           "control process is the robot's only writer (its safety filter shapes every target); "
                           "give it chunks, 'home' or operator commands instead")

    def arm(self) -> None:
        self._command(LinkOp.ARM, lambda f: f.armed and not f.needs_rearm)

    def disarm(self) -> None:
        self._command(LinkOp.DISARM, lambda f: not f.armed)

    def protective_stop(self) -> None:
        self._command(LinkOp.PROTECTIVE_STOP, lambda f: f.stopped and not f.armed)

    def clear_stop(self) -> None:
        self._command(LinkOp.CLEAR_STOP, lambda f: not f.stopped)

    def close(self) -> None:
        """Best-effort disarm (only while the process runs and reports armed); never raises. The child
        process owns the real link and closes it when ControlLoopProcess.stop() ends it."""
        if self._closed:
            return
        if self._owner.alive and self.armed:
            try:
                self.disarm()
            except Exception as exc:  # noqa: BLE001 - closing goes on; the child disarms at exit anyway
                log.warning("control process link: disarm on close failed: %s", exc)
        self._closed = True

    def _command(self, op: LinkOp, done) -> None:
        """Send `op`, wait for the child's ack, then for its reported flags to satisfy `done`."""
        what = op.value
        if self._closed:
            raise DeviceNotConnectedError(f"control process link: cannot {what}: closed")
        if not (self._owner.started and self._owner.alive):
            raise DeviceNotConnectedError(f"control process link: cannot {what}: {self._down_cause()}")
        with self._cond:
            self._seq += 1
            seq = self._seq
            self._acks[seq] = None
        try:
            if not self._owner._send(LinkCommandMsg(op, seq)):
                raise DeviceNotConnectedError(f"control process link: cannot {what}: the pipe to the control "
                                              "process is closed")
            deadline = time.monotonic() + self.command_timeout_s  # the Condition waits in real time
            with self._cond:
                if not self._cond.wait_for(lambda: self._acks[seq] is not None,
                                           max(0.0, deadline - time.monotonic())):
                    raise DeviceNotConnectedError(f"control process link: {what} not acknowledged by the control "
                                                  f"process within {self.command_timeout_s:.1f} s")
                ack = self._acks[seq]
                if ack.error:
                    raise _refusal(ack.error_type, f"control process link: {what} refused: {ack.error}")
                if not self._cond.wait_for(lambda: done(self._flags), max(0.0, deadline - time.monotonic())):
                    f = self._flags
                    text = (f"control process link: {what} sent but its effect not reported within "
                            f"{self.command_timeout_s:.1f} s (armed={f.armed}, needs_rearm={f.needs_rearm}, "
                            f"stop latched={f.stopped}, hold: {self._owner.hold_reason})")
                    if op is LinkOp.ARM:
                        raise NotArmedError(text)
                    raise DeviceNotConnectedError(text)
        finally:
            with self._cond:
                self._acks.pop(seq, None)


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
        self.bridge_view = ControlProcessLink(self, self.clock)
        self._ready = threading.Event()  # the child's ReadyMsg came: its robot link is open
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
        self._ready.set()
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
    def started(self) -> bool:
        """start() succeeded: the child reported its robot link open (it may have ended since)."""
        return self._ready.is_set()

    @property
    def link(self) -> ControlProcessLink:
        """The parent's RobotLink for the child's robot link (the same object as bridge_view)."""
        return self.bridge_view

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
            view._on_state(msg.state)
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
            view._on_stats(msg)
        elif isinstance(msg, LinkAckMsg):
            view._on_ack(msg)
        elif isinstance(msg, ReportMsg):
            self._report = msg.report
            self.errors.extend(msg.report.get("errors", []))
            view._on_counters(msg.report.get("bridge_counters", view.counters()))
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
    dropped = [0]  # telemetry dropped for a full outbox
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
    child_link = None
    switch = None
    setup: dict = {}
    report: dict = {"errors": []}
    try:
        perception_t = [-math.inf]
        chunks: Mailbox = Mailbox("chunks", clock)
        requests = _ForwardingRequests(send)
        from runtime.joint_space import JointSpace

        child_link = _ChildLink(handle.bridge, send, JointSpace.from_config(cfg.robot).names, clock,
                                cfg.safety.max_state_age_ms / 1e3)

        def publish(kind, *args) -> None:
            if kind == "joint_state":
                child_link.state_out(args[0])
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
        child_link.loop = loop
        gc.collect()
        gc.freeze()

        if rt.worker_sched_fifo_priority is not None:
            # this main thread unpickles the parent's messages: it holds the GIL in short bursts too
            threading.current_thread().name = "control-process-main"
            setup["worker_threads"] = apply_worker_priorities(
                threading.enumerate(), rt.worker_sched_fifo_priority, None,
                extra_prefixes=("control-process-main", "loop-link"))
        send(ReadyMsg(setup))  # first message: the parent reads it before any state
        loop.start()
        _serve(conn, loop, chunks, requests, perception_t, child_link, send, clock, check)
        loop.stop()
        report = loop.report()
        report["bridge_counters"] = child_link.stats().bridge
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
        report["states_unnamed_in_control_process"] = child_link.unnamed if child_link is not None else 0
        report["unknown_messages_in_control_process"] = check.unknown
        try:  # the report must not be lost to a full outbox: wait (bounded) for room
            outbox.put(ReportMsg(report), timeout=2.0)
        except queue.Full:
            log.warning("control process: outbox full, report not sent")
        link_alive.clear()
        sender_thread.join(5.0)
        conn.close()


class _ChildLink:
    """Child side of ControlProcessLink: states out, the parent's link commands in, flags watched.

    The loop's own states go out as it reads them (every cycle); while it holds without publishing
    (a protective stop) `keepalive` forwards the bridge's newest fresh state every CHILD_CHECK_S, so
    the parent still sees the robot held. A state that is not a JointState with the config's joint
    names is dropped and counted (`states_unnamed_in_control_process`): the parent must never label
    joints wrongly.
    """

    def __init__(self, bridge, send, names: tuple[str, ...], clock: Clock, max_state_age_s: float) -> None:
        self.bridge = bridge
        self.loop = None  # set once the loop exists
        self.send = send
        self.names = tuple(names)
        self.clock = clock
        self.max_state_age_s = max_state_age_s
        self.t_state = -math.inf  # when a StateMsg last went out
        self.unnamed = 0
        self.fast_until = -math.inf
        self._sent_flags: tuple | None = None

    def state_out(self, state) -> None:
        if not isinstance(state, JointState) or state.names != self.names:
            self.unnamed += 1
            return
        self.t_state = self.clock.now()
        self.send(StateMsg(state))

    def keepalive(self, now: float) -> None:
        if now - self.t_state < CHILD_CHECK_S:
            return
        try:
            state = self.bridge.latest_state(self.max_state_age_s)
        except Exception:  # noqa: BLE001 - stale or link down: nothing to forward, the parent's state ages
            return
        self.state_out(state)

    def flags(self) -> tuple:
        """(link_up, armed, needs_rearm, stop latched, cause) as StatsMsg carries them."""
        b = self.bridge
        link_up = bool(getattr(b, "link_up", True))
        cause = ""
        if not link_up:
            own = getattr(b, "health", None)
            try:
                cause = own().cause if callable(own) else ""
            except Exception as exc:  # noqa: BLE001 - a cause is a detail; the flag is what counts
                cause = f"health: {exc!r}"
            cause = cause or "link down"
        stopped = bool(self.loop.status()["protective_stop"]) if self.loop is not None else False
        return (link_up, bool(getattr(b, "armed", True)), bool(getattr(b, "needs_rearm", False)), stopped, cause)

    def flags_changed(self) -> bool:
        return self.flags() != self._sent_flags

    def stats(self) -> StatsMsg:
        try:
            counters = self.bridge.counters()
        except Exception as exc:  # a bridge mid-reconnect may refuse; report it
            counters = {"error": repr(exc)}
        progress = self.loop.progress()
        self._sent_flags = flags = self.flags()
        return StatsMsg(progress, counters, *flags)

    def command(self, msg: LinkCommandMsg) -> LinkAckMsg:
        """Hand one parent link command to the loop (it owns the bridge: a stop or disarm from this
        thread would race its sends and leave its stop latch behind). Arm is checked here first so
        the parent gets the refusal; with no loop running, stop / disarm / clear go to the bridge."""
        try:
            op = LinkOp(msg.op)
        except ValueError:
            return LinkAckMsg(msg.seq, f"unknown link command {msg.op!r}", "CommandError")
        loop, b = self.loop, self.bridge
        loop_alive = loop is not None and loop.alive
        if op is LinkOp.ARM:
            if not loop_alive:
                return LinkAckMsg(msg.seq, "the control loop is not running", "DeviceNotConnectedError")
            if loop.status()["protective_stop"]:
                return LinkAckMsg(msg.seq, "protective stop latched (clear_stop() first)", "NotArmedError")
            link_up, *_, cause = self.flags()
            if not link_up:
                return LinkAckMsg(msg.seq, f"robot link down ({cause})", "DeviceNotConnectedError")
        name = {LinkOp.ARM: "arm", LinkOp.DISARM: "disarm", LinkOp.PROTECTIVE_STOP: "stop",
                LinkOp.CLEAR_STOP: "clear"}[op]
        if loop_alive and loop.submit(name):
            return LinkAckMsg(msg.seq)
        if op is LinkOp.ARM:
            return LinkAckMsg(msg.seq, "the control loop's command queue is full", "DeviceNotConnectedError")
        log.warning("control process: control loop not taking commands; %s sent to the bridge directly", op.value)
        try:
            getattr(b, op.value)()
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            return LinkAckMsg(msg.seq, f"{op.value} on the robot link failed: {exc}", "DeviceNotConnectedError")
        return LinkAckMsg(msg.seq)

    def command_and_ack(self, msg: LinkCommandMsg) -> None:
        self.send(self.command(msg))
        self.fast_until = self.clock.now() + FAST_FLAGS_S


def _serve(conn, loop, chunks: Mailbox, requests: ChunkRequests, perception_t: list, child_link: _ChildLink, send,
           clock, check: MessageCheck) -> None:
    """The child's main thread: apply the parent's messages until StopMsg, the parent is gone, or the
    loop thread ends. It blocks on the pipe, so a chunk reaches the loop's mailbox on arrival (the
    loop takes it on its next cycle). Stats go out every STATS_PERIOD_S, and at once (within
    CHILD_CHECK_S, or a control period just after a link command) when a homing ends or a link flag
    changes: waiters in the parent count on it."""
    t_stats = clock.now()
    home_done = loop.home_done
    while True:
        now = clock.now()
        check_s = loop.period_s if now < child_link.fast_until else CHILD_CHECK_S
        timeout = max(0.0, min(check_s, t_stats + STATS_PERIOD_S - now))
        try:
            if conn.poll(timeout):
                if not apply_to_child(check, conn.recv(), loop, chunks, requests, perception_t,
                                      child_link.command_and_ack):
                    return
        except (EOFError, OSError):
            return  # parent died: stop safely
        except Exception as exc:  # noqa: BLE001 - a message that does not unpickle is dropped, not fatal
            check.refuse(f"undecodable: {exc!r}")
        now = clock.now()
        if now - t_stats >= STATS_PERIOD_S or loop.home_done != home_done or child_link.flags_changed():
            t_stats = now
            home_done = loop.home_done
            send(child_link.stats())
        child_link.keepalive(now)
        if not loop.alive:
            return


def apply_to_child(check: MessageCheck, raw, loop, chunks: Mailbox, requests: ChunkRequests,
                   perception_t: list, link_command=None) -> bool:
    """Apply one message from the parent; False when it says stop. Unknown ones are counted by `check`.
    `link_command(msg)` handles LinkCommandMsg (and answers it); without one it is refused."""
    msg = check.accept(raw)
    if isinstance(msg, ChunkMsg):
        chunks.put(msg.chunk, msg.chunk.t_obs)
    elif isinstance(msg, RequestDoneMsg):
        requests.done()
    elif isinstance(msg, FrameMsg):
        perception_t[0] = msg.t_capture
    elif isinstance(msg, CommandMsg):
        loop.submit(msg.name, **msg.kwargs)
    elif isinstance(msg, LinkCommandMsg):
        if link_command is None:
            check.refuse("LinkCommandMsg where no robot link is served")
        else:
            link_command(msg)
    elif isinstance(msg, StopMsg):
        return False
    return True
