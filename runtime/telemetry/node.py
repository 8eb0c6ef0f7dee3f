"""TelemetryNode: the runtime's DDS participant (telemetry out, operator commands in).

It is an observer of the runtime: the app calls on_joint_state / on_command / on_status /
on_episode_event from its own (non-control) threads. Those calls only append to bounded deques
and set an Event, so they never block on the network; three named threads do the DDS work:

- dds-publish: drains the joint deques onto rt/dexgrasp/joint_states and joint_commands
  (best-effort) and publishes rt/dexgrasp/status (reliable, transient-local) at status_rate_hz
  and right after a command result (at most every MIN_STATUS_GAP_S, so floods stay bounded);
- dds-command-read: takes rt/dexgrasp/command samples, stamps them with the monotonic receive
  time, validates them (commands.parse_command), refuses replays (replay.ReplayGuard against this
  run's session nonce, published in the status) and offers them to the CommandGate (rate limit,
  bound, age measured from arrival; the sender's clock is never used);
- dds-command-dispatch: pops the gate and calls the runtime's submit callback, so a slow runtime
  never stalls the DDS reader;
- dds-images (telemetry.dds.images.enabled): takes the frames `on_frames` left in a one-slot box at
  images.rate_hz, encodes head / wrist / mask as JPEG and publishes sensor_msgs/CompressedImage on
  rt/dexgrasp/<camera>/image/compressed (images.py). No pixel work happens on the caller's thread.

With each status the publisher also writes diagnostic_msgs/DiagnosticArray on rt/diagnostics
(diagnostics.py) and the current target box on rt/dexgrasp/planner/box. A `manual_bbox` command is
checked against the latest head image with the planner's own rule (planner.replies.validate_box).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from runtime.clock import Clock
from runtime.errors import require
from runtime.telemetry import qos
from runtime.telemetry.commands import Command, CommandGate, CommandRejected, parse_command
from runtime.telemetry.config import DdsConfig
from runtime.telemetry.diagnostics import Seen, build_statuses
from runtime.telemetry.images import CAMERAS, FrameSlot, encode_jpeg
from runtime.telemetry.joint import joint_sample
from runtime.telemetry.replay import ReplayGuard, new_session

log = logging.getLogger(__name__)

STATUS_SCHEMA = "dexgrasp.status/1"
MIN_STATUS_GAP_S = 0.05
READ_BATCH = 64
THREAD_JOIN_TIMEOUT_S = 2.0

SubmitFn = Callable[[dict], object]


def jsonable(value):
    """`value` made JSON-serialisable (numpy scalars/arrays, tuples, sets, non-finite floats)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class TelemetryNode:
    """Publishes joint states/commands and status; validates operator commands and submits them.

    Lifecycle: `start()` creates the participant and threads (blocks < ~100 ms); `stop()` signals
    the threads, joins each with a timeout and deletes the DDS entities. Also a context manager.
    Observer methods never block (bounded deques; the oldest sample is dropped and counted).
    """

    def __init__(self, cfg: DdsConfig, submit: SubmitFn | None = None, clock: Clock | None = None,
                 name: str = "dexgrasp") -> None:
        cfg.validate()
        self.cfg = cfg
        self.name = name
        self.clock = clock or Clock()
        self._submit = submit
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._joint_q: deque = deque()
        self._runtime_status: dict = {}
        self._last_event: dict | None = None
        self._results: deque[dict] = deque(maxlen=10)
        self._status_dirty = False
        self._seq = 0
        self.gate = CommandGate(cfg.command_queue, cfg.command_max_age_s, cfg.command_rate_hz,
                                cfg.command_burst, self.clock)
        self.session = new_session()  # fresh per run: commands of another run are refused
        self.replay = ReplayGuard(self.session)
        self._gate_ready = threading.Event()
        self.counters = {
            "joint_states_published": 0, "joint_commands_published": 0, "joint_samples_dropped": 0,
            "bad_joint_samples": 0, "status_published": 0, "undecodable_commands": 0,
            "publish_errors": 0, "submit_errors": 0, "diagnostics_published": 0,
            "images_published": 0, "images_skipped_rate": 0, "images_dropped_busy": 0, "image_errors": 0,
        }
        self.frames = FrameSlot(cfg.images, self.clock, self.counters)
        self.image_threads: set[str] = set()  # names of the threads that encoded (tests: never the caller's)
        self._t_joint: deque[float] = deque(maxlen=64)  # monotonic arrival of recent joint states
        self._planner: dict = {}
        self._box: list[float] | None = None
        self._box_source: str | None = None
        self._threads: list[threading.Thread] = []
        self._dp = None
        self._w_diag = self._w_box = None
        self._w_images: dict = {}
        # wall clock = monotonic + offset, fixed at construction: stamps stay monotonic even if NTP steps
        self._wall_offset_s = time.time() - time.monotonic()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> TelemetryNode:
        require("cyclonedds", "dds", "DDS telemetry")
        from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
        from cyclonedds.pub import DataWriter
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic

        from runtime.robot.ros2_types import Float64MultiArray_
        from runtime.telemetry.types import CompressedImage_, DiagnosticArray_, JointState_, String_

        self._dp = dp = qos.participant(self.cfg)
        t_diag = Topic(dp, qos.TOPIC_DIAGNOSTICS, DiagnosticArray_, qos=qos.diagnostics_qos())
        t_box = Topic(dp, qos.TOPIC_PLANNER_BOX, Float64MultiArray_, qos=qos.diagnostics_qos())
        self._w_diag = DataWriter(dp, t_diag, qos=qos.diagnostics_qos())
        self._w_box = DataWriter(dp, t_box, qos=qos.diagnostics_qos())
        self._box_type = Float64MultiArray_
        self._w_images = {}
        if self.cfg.images.enabled:
            self._image_type = CompressedImage_
            for cam in CAMERAS:
                t_img = Topic(dp, qos.image_topic(cam), CompressedImage_, qos=qos.image_qos())
                self._w_images[cam] = DataWriter(dp, t_img, qos=qos.image_qos())
        t_js = Topic(dp, qos.TOPIC_JOINT_STATES, JointState_, qos=qos.telemetry_qos())
        t_jc = Topic(dp, qos.TOPIC_JOINT_COMMANDS, JointState_, qos=qos.telemetry_qos())
        t_st = Topic(dp, qos.TOPIC_STATUS, String_, qos=qos.status_qos())
        t_cmd = Topic(dp, qos.TOPIC_COMMAND, String_, qos=qos.command_qos())
        self._w_states = DataWriter(dp, t_js, qos=qos.telemetry_qos())
        self._w_commands = DataWriter(dp, t_jc, qos=qos.telemetry_qos())
        self._w_status = DataWriter(dp, t_st, qos=qos.status_qos())
        self._types = (JointState_, String_)
        loops = [(self._publish_loop, "dds-publish")]
        if self._w_images:
            loops.append((self._image_loop, "dds-images"))
        if self.cfg.commands:  # telemetry-only nodes have no command reader at all
            self._r_command = DataReader(dp, t_cmd, qos=qos.command_qos())
            self._waitset = WaitSet(dp)
            self._read_cond = ReadCondition(self._r_command, SampleState.Any | ViewState.Any | InstanceState.Any)
            self._waitset.attach(self._read_cond)
            loops += [(self._read_loop, "dds-command-read"), (self._dispatch_loop, "dds-command-dispatch")]
        for target, tname in loops:
            th = threading.Thread(target=self._guard(target, tname), name=tname, daemon=True)
            th.start()
            self._threads.append(th)
        self._publish_status()
        log.info("DDS telemetry on domain %d (%s)", self.cfg.domain_id, qos.domain_xml(self.cfg) or "CYCLONEDDS_URI/defaults")
        return self

    def stop(self, timeout_s: float = THREAD_JOIN_TIMEOUT_S) -> None:
        """Stop the threads (each joined with timeout_s) and delete the participant."""
        self._stop.set()
        self._wake.set()
        self._gate_ready.set()
        self.frames.ready.set()
        for th in self._threads:
            th.join(timeout_s)
            if th.is_alive():
                log.warning("telemetry thread %s still alive after %.1f s", th.name, timeout_s)
        self._threads.clear()
        self._w_images = {}
        self._w_diag = self._w_box = None
        # cyclonedds deletes a C entity when its Python object goes; the participant owns the rest
        self._waitset = self._read_cond = self._r_command = self._w_status = self._w_commands = self._w_states = None
        self._dp = None

    def __enter__(self) -> TelemetryNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_submit(self, submit: SubmitFn | None) -> None:
        """Where validated commands go (the app's submit_command). Thread-safe."""
        with self._lock:
            self._submit = submit

    # ---------------------------------------------------------------- observer interface
    def on_joint_state(self, state) -> None:
        self._t_joint.append(self.clock.now())
        self._enqueue_joint("state", state, None)

    def on_frames(self, head, wrist, mask, t=None) -> None:
        """Dispatcher thread: hand the frames to the image thread if one is due (no pixel work here)."""
        self.frames.offer(head, wrist, mask, t)

    def on_command(self, sent_positions, t: float | None = None) -> None:
        self._enqueue_joint("command", sent_positions, t)

    def on_status(self, status: dict) -> None:
        with self._lock:
            self._runtime_status = dict(status)

    def on_episode_event(self, event: dict) -> None:
        with self._lock:
            self._last_event = dict(event)
            self._note_box(event)
            self._status_dirty = True
        self._wake.set()

    def _note_box(self, event: dict) -> None:
        """Follow the target box and the planner's health from episode events (lock held)."""
        if event.get("source") == "planner" and event.get("event") == "planner reply":
            self._planner = {"ok": event.get("ok"), "task": event.get("task"), "t": self.clock.now(),
                             "error": event.get("error_message") or event.get("error_code")}
            result = event.get("result") or {}
            if event.get("ok") and event.get("task") == "bbox" and _is_box(result.get("bbox")):
                self._box, self._box_source = [float(v) for v in result["bbox"]], "planner"
        elif "box" in event and event.get("source") == "episode":
            box = event.get("box")
            if box is None or _is_box(box):
                self._box = None if box is None else [float(v) for v in box]
                self._box_source = None if box is None else (self._box_source or "episode")

    def _enqueue_joint(self, kind: str, obj, t: float | None) -> None:
        t_wall = time.time()
        with self._lock:
            if len(self._joint_q) >= self.cfg.telemetry_queue:
                self._joint_q.popleft()
                self.counters["joint_samples_dropped"] += 1
            self._joint_q.append((kind, obj, t, t_wall))
        self._wake.set()

    # ---------------------------------------------------------------- threads
    def _guard(self, fn, tname):
        def run():
            try:
                fn()
            except Exception:  # a dead telemetry thread must be loud, but must not take the runtime down
                log.exception("telemetry thread %s died", tname)
        return run

    def _publish_loop(self) -> None:
        period_s = 1.0 / self.cfg.status_rate_hz
        t0 = self.clock.now()
        k = 1
        last_status = -math.inf
        while not self._stop.is_set():
            # Rate.sleep() cannot be woken early, and joint samples must go out as they come:
            # wait on the wake Event until the next absolute status deadline instead (or until an
            # event-driven status is due, at most every MIN_STATUS_GAP_S so floods stay bounded).
            deadline = t0 + k * period_s
            now = self.clock.now()
            due = min(deadline, last_status + MIN_STATUS_GAP_S) if self._status_dirty else deadline
            self._wake.wait(max(0.0, due - now))
            self._wake.clear()
            self._drain_joints()
            now = self.clock.now()
            if now >= deadline:
                k = int((now - t0) // period_s) + 1  # skip missed deadlines, never burst
                self._publish_status()
                last_status = now
            elif self._status_dirty and now - last_status >= MIN_STATUS_GAP_S:
                self._publish_status()
                last_status = now

    def _drain_joints(self) -> None:
        JointState_, _ = self._types
        from runtime.telemetry.types import Header_, stamp_from_seconds

        while True:
            with self._lock:
                if not self._joint_q:
                    return
                kind, obj, t, t_wall = self._joint_q.popleft()
            try:
                js = joint_sample(obj, t)
            except ValueError as exc:
                self.counters["bad_joint_samples"] += 1
                log.debug("telemetry: skipping joint %s sample: %s", kind, exc)
                continue
            stamp_s = js.t + self._wall_offset_s if js.t is not None else t_wall
            # the config's (the robot's joint space, via make_telemetry), else the state's own
            names = list((self.cfg.joint_names or js.names or ())[: js.position.size])
            names += [f"joint_{i}" for i in range(len(names), js.position.size)]
            msg = JointState_(
                header=Header_(stamp=stamp_from_seconds(stamp_s), frame_id=self.cfg.frame_id),
                name=names,
                position=js.position.tolist(),
                velocity=[] if js.velocity is None else js.velocity.tolist(),
                effort=[] if js.effort is None else js.effort.tolist(),
            )
            writer = self._w_states if kind == "state" else self._w_commands
            try:
                writer.write(msg)
            except Exception as exc:  # DDSException: count and keep publishing the next sample
                self.counters["publish_errors"] += 1
                log.warning("telemetry: write on %s failed: %s", kind, exc)
                continue
            self.counters["joint_states_published" if kind == "state" else "joint_commands_published"] += 1

    def status_document(self) -> dict:
        """The JSON document published on rt/dexgrasp/status (also useful for logs and tests)."""
        with self._lock:
            self._seq += 1
            doc = {
                "schema": STATUS_SCHEMA,
                "node": self.name,
                "seq": self._seq,
                "t_wall": time.time(),
                "runtime": jsonable(self._runtime_status),
                "last_event": jsonable(self._last_event),
                "command_results": list(self._results),
                "commands": self.gate.counters.as_dict(),
                "telemetry": dict(self.counters),
                "submit_attached": self._submit is not None,
                # commands must carry this run's session (replay protection, see replay.py)
                "session": self.session,
                "commands_enabled": self.cfg.commands,
                "head_image_size": list(self.frames.head_size) if self.frames.head_size else None,
                "box": self._box, "box_source": self._box_source,
            }
            self._status_dirty = False
        return doc

    def _publish_status(self) -> None:
        _, String_ = self._types
        doc = self.status_document()
        try:
            self._w_status.write(String_(data=json.dumps(doc, allow_nan=False)))
            self.counters["status_published"] += 1
        except Exception as exc:
            self.counters["publish_errors"] += 1
            log.warning("telemetry: status write failed: %s", exc)
        self._publish_diagnostics()

    def seen(self) -> Seen:
        """A snapshot of what this node has observed, for the diagnostics."""
        now = self.clock.now()
        with self._lock:
            ts = list(self._t_joint)
            planner = dict(self._planner)
            box, box_source, runtime = self._box, self._box_source, dict(self._runtime_status)
        if planner:
            planner["age_s"] = now - planner.pop("t")
        hz = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) >= 2 and ts[-1] > ts[0] else None
        t_frame = self.frames.t_last_frame
        return Seen(now=now, stale_after_s=self.cfg.stale_after_s, runtime=runtime,
                    joint_state_age_s=now - ts[-1] if ts else None, joint_state_hz=hz,
                    frame_age_s=None if t_frame is None else now - t_frame, head_size=self.frames.head_size,
                    planner=planner, box=box, box_source=box_source)

    def _publish_diagnostics(self) -> None:
        from runtime.telemetry.types import (
            DiagnosticArray_,
            DiagnosticStatus_,
            Header_,
            KeyValue_,
            stamp_from_seconds,
        )

        if self._w_diag is None:
            return
        seen = self.seen()
        header = Header_(stamp=stamp_from_seconds(seen.now + self._wall_offset_s), frame_id=self.cfg.frame_id)
        statuses = [DiagnosticStatus_(level=level, name=name, message=message, hardware_id=self.name,
                                      values=[KeyValue_(key=k, value=v) for k, v in values.items()])
                    for level, name, message, values in build_statuses(seen)]
        try:
            self._w_diag.write(DiagnosticArray_(header=header, status=statuses))
            self._w_box.write(self._box_type(data=list(seen.box or [])))
            self.counters["diagnostics_published"] += 1
        except Exception as exc:
            self.counters["publish_errors"] += 1
            log.warning("telemetry: diagnostics write failed: %s", exc)

    def _image_loop(self) -> None:
        from runtime.telemetry.types import Header_, stamp_from_seconds

        images = self.cfg.images
        while not self._stop.is_set():
            if not self.frames.ready.wait(0.2):
                continue
            item = self.frames.take()
            if item is None:
                continue
            self.image_threads.add(threading.current_thread().name)
            head, wrist, mask, t = item
            t_wall = (t + self._wall_offset_s) if isinstance(t, (int, float)) and math.isfinite(t) else time.time()
            for cam, img in zip(CAMERAS, (head, wrist, mask), strict=True):
                if img is None:
                    continue
                try:
                    data, _, _ = encode_jpeg(img, images.max_width, images.jpeg_quality, is_mask=cam == "mask")
                    msg = self._image_type(header=Header_(stamp=stamp_from_seconds(t_wall),
                                                          frame_id=f"{self.cfg.frame_id}/{cam}_camera"),
                                           format="jpeg", data=data)
                    self._w_images[cam].write(msg)
                    self.counters["images_published"] += 1
                except Exception as exc:  # a bad frame costs that image only
                    self.counters["image_errors"] += 1
                    log.debug("telemetry: %s image not published: %s", cam, exc)

    def _result(self, cmd_id, name, result: str, reason: str | None = None) -> None:
        entry = {"id": cmd_id, "cmd": name, "result": result, "reason": reason, "t_wall": time.time()}
        with self._lock:
            self._results.append(entry)
            self._status_dirty = True
        if result != "accepted":
            log.info("telemetry: command %s (%s) %s: %s", name, cmd_id, result, reason)
        self._wake.set()

    def _read_loop(self) -> None:
        from cyclonedds.util import duration

        while not self._stop.is_set():
            self._waitset.wait(duration(milliseconds=100))
            try:
                samples = self._r_command.take(N=READ_BATCH)
            except Exception as exc:  # undecodable sample: count it, keep reading
                self.counters["undecodable_commands"] += 1
                log.warning("telemetry: could not decode a command sample: %s", exc)
                continue
            # Age is measured from here, on our monotonic clock. The sample's source timestamp is the
            # sender's wall clock: another host's, possibly wrong or forged, so it is not used.
            t_received = self.clock.now()
            for sample in samples:
                if not sample.sample_info.valid_data:
                    continue
                self._handle_command_text(sample.data, t_received)

    def _handle_command_text(self, text: str, t_received: float | None = None) -> None:
        """Validate one command, refuse replays and offer it to the gate (also the entry point for
        tests and other links). `t_received`: monotonic arrival time (default: now)."""
        t_received = self.clock.now() if t_received is None else t_received
        try:
            cmd = parse_command(text, t_received)
        except CommandRejected as exc:
            self.gate.reject()
            self._result(exc.cmd_id, exc.name, "rejected", exc.reason)
            return
        replay = self.replay.check(cmd.name, cmd.sender, cmd.seq, cmd.session)
        if replay is not None:
            self.gate.reject(replay=True)
            self._result(cmd.cmd_id, cmd.name, "rejected", replay)
            return
        if cmd.name == "manual_bbox":
            problem = self._check_manual_box(cmd)
            if problem is not None:
                self.gate.reject()
                self._result(cmd.cmd_id, cmd.name, "rejected", problem)
                return
        drop = self.gate.offer(cmd)
        if drop is not None:
            self._result(cmd.cmd_id, cmd.name, "dropped", drop)
        else:
            self._gate_ready.set()

    def _check_manual_box(self, cmd: Command) -> str | None:
        """Why an operator box is refused (None: fine, and cmd.args["bbox"] clipped to the image).
        The same rule as a planner's box: inside the latest head image, not tiny, not the whole frame."""
        from runtime.planner.replies import ReplyError, validate_box

        size = self.frames.head_size
        if size is None:
            return "no head image seen yet: a box is checked against the head image size"
        try:
            cmd.args["bbox"] = list(validate_box(cmd.args["bbox"], size[0], size[1]))
        except ReplyError as exc:
            return f"box refused: {exc}"
        return None

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            self._gate_ready.wait(0.2)
            self._gate_ready.clear()
            while not self._stop.is_set():
                cmd = self.gate.pop()
                for stale in self.gate.take_stale():
                    self._result(stale.cmd_id, stale.name, "dropped", "stale: waited too long in the queue")
                if cmd is None:
                    break
                self._dispatch(cmd)

    def _dispatch(self, cmd: Command) -> None:
        with self._lock:
            submit = self._submit
        if submit is None:
            self._result(cmd.cmd_id, cmd.name, "rejected", "no runtime attached to this telemetry node")
            return
        try:
            answer = submit(cmd.as_submit_dict())
        except (ValueError, RuntimeError, TimeoutError) as exc:  # the runtime refused it, with a reason
            self._result(cmd.cmd_id, cmd.name, "rejected", str(exc))
            return
        except Exception as exc:
            self.counters["submit_errors"] += 1
            log.exception("telemetry: submit_command raised")
            self._result(cmd.cmd_id, cmd.name, "rejected", f"runtime error: {type(exc).__name__}: {exc}")
            return
        # app.submit_command answers {"ok": bool, "reason": str}; False / {"accepted": False} also refuse
        refused = answer is False or (isinstance(answer, dict) and (answer.get("ok") is False
                                                                      or answer.get("accepted") is False))
        reason = answer.get("reason") if isinstance(answer, dict) else None
        if refused:
            self._result(cmd.cmd_id, cmd.name, "rejected", reason or "refused by the runtime")
            return
        self.gate.accepted()
        if cmd.name == "manual_bbox":
            with self._lock:
                self._box, self._box_source = list(cmd.args["bbox"]), "operator"
        self._result(cmd.cmd_id, cmd.name, "accepted", reason)


def _is_box(box) -> bool:
    return (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box))
