"""Wiring and lifecycle of the onboard runtime: config in, running threads out, safe stop on exit.

    app = App(load_config("sim"))
    app.start()                 # bridge, cameras, tracker, policy, control loop, observers
    report = app.run(duration_s=30)   # blocks; returns the report; always stops safely

Threads (all named, stopped by an Event, joined with a timeout): camera-third / camera-right_first
(capture), tracker-worker, policy-worker, control-loop (fixed rate, optionally SCHED_FIFO),
telemetry-dispatch (observers), plus the bridge's own I/O threads. Observers (DDS telemetry,
recorder) plug in with `add_observer` and are called from the dispatcher thread only; operator
commands come in through the thread-safe `submit_command`.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
from typing import Any

import numpy as np

from runtime.clock import Clock
from runtime.config.schema import RuntimeConfig
from runtime.errors import StaleDataError
from runtime.execution.executor import ChunkExecutor
from runtime.execution.loop import ControlLoop, effective_auto_rearm
from runtime.execution.requests import ChunkRequests
from runtime.execution.safety import JointLimits, SafetyFilter
from runtime.mailbox import Mailbox
from runtime.realtime import (
    GilHoldingClock,
    SwitchInterval,
    apply_thread_realtime,
    apply_worker_priorities,
    lock_memory,
    unlock_memory,
)
from runtime.robot.link import is_real_hardware
from runtime.workers.dispatcher import ObserverDispatcher
from runtime.workers.policy import PolicyWorker
from runtime.workers.tracker import TrackerWorker

log = logging.getLogger(__name__)

COMMANDS = ("start", "stop", "clear", "arm", "manual_bbox")


class App:
    """The runtime. Components may be injected (tests, benchmarks); otherwise built from `cfg`.

    bridge_handle: runtime.config.components.BridgeHandle; cameras: (head, wrist, scene);
    policy: a ChunkPolicy; tracker: a Tracker (or None for no tracker).
    """

    def __init__(self, cfg: RuntimeConfig, *, clock: Clock | None = None, bridge_handle=None, cameras=None,
                 policy=None, tracker: Any = "config", model_dir=None) -> None:
        self.cfg = cfg
        self.clock = clock or Clock()
        self._injected = {"bridge": bridge_handle, "cameras": cameras, "policy": policy, "tracker": tracker}
        self.model_dir = model_dir
        self.dispatcher = ObserverDispatcher()
        self.head_frames: Mailbox = Mailbox("head", self.clock)
        self.wrist_frames: Mailbox = Mailbox("wrist", self.clock)
        self.tracked: Mailbox = Mailbox("tracked", self.clock)
        self.chunks: Mailbox = Mailbox("chunks", self.clock)
        self.requests = ChunkRequests()
        self.errors: list[str] = []
        self.recorder = None  # the EpisodeRecorder observer, when recording is configured
        self.setup: dict = {}
        self.bridge_handle = None
        self.bridge = None
        self.camera_workers: list = []
        self.scene = None
        self.tracker_worker: TrackerWorker | None = None
        self.policy_worker: PolicyWorker | None = None
        self.loop: ControlLoop | None = None
        self.episode = None
        self._closers: list = []
        self._switch = SwitchInterval(cfg.control.realtime.switch_interval_ms)
        self._started = False
        self._stopped = threading.Event()
        self._t_start = math.nan
        self._t_run = math.nan
        self._t_stop = math.nan
        self._mlocked = False
        self._home_lock = threading.Lock()
        self._home_requests = 0
        self.fatal: str | None = None  # why the run ended abnormally (the CLI exits non-zero)
        self.warnings: list[str] = []  # loud, start-up-time warnings repeated in the run summary

    # ---- public API ------------------------------------------------------------------------------
    def add_observer(self, obj: Any) -> None:
        """Register an observer; its on_joint_state(state), on_command(q, t), on_status(dict),
        on_frames(head, wrist, mask, t), on_episode_event(dict) run on the dispatcher thread."""
        self.dispatcher.add(obj)

    def submit_command(self, cmd: dict) -> dict:
        """Thread-safe, never blocks: {"cmd": "start", "prompt"} | {"cmd": "stop"} (protective stop) |
        {"cmd": "clear"} (lifts a protective stop; does not re-arm) | {"cmd": "arm"} (the operator
        re-enables motion after a stop, safe-off or link loss) | {"cmd": "manual_bbox", "bbox":
        [x1, y1, x2, y2]}. Returns {"ok", "reason"}."""
        name = cmd.get("cmd") if isinstance(cmd, dict) else None
        if name not in COMMANDS:
            return {"ok": False, "reason": f"unknown command {name!r}; expected one of {list(COMMANDS)}"}
        if self.loop is None:
            return {"ok": False, "reason": "runtime not started"}
        self.publish_event({"source": "command", "event": f"command {name}", "command": dict(cmd)})
        if name == "stop":
            if self.episode is not None and hasattr(self.episode, "abort"):
                self.episode.abort("operator stop")
            return {"ok": self.loop.submit("stop"), "reason": "protective stop requested"}
        if name == "clear":
            return {"ok": self.loop.submit("clear"),
                    "reason": "clear requested (lifts the protective stop; motion needs an explicit arm)"}
        if name == "arm":
            return {"ok": self.loop.submit("arm"), "reason": "arm requested (re-enables motion from the measured position)"}
        if name == "manual_bbox":
            box = cmd.get("bbox")
            try:
                box = np.asarray(box, dtype=np.float64).reshape(4)
            except (TypeError, ValueError):
                return {"ok": False, "reason": f"bbox must be [x1, y1, x2, y2], got {box!r}"}
            if not (np.all(np.isfinite(box)) and box[2] > box[0] and box[3] > box[1] and np.all(box >= 0)):
                return {"ok": False, "reason": f"bbox must be finite with x2 > x1 >= 0 and y2 > y1 >= 0, got {box.tolist()}"}
            # In a manual episode the operator's box feeds the episode (it waits for it);
            # otherwise the box re-targets the tracker directly.
            if self.episode is not None and hasattr(self.episode, "operator_box"):
                if self.episode.operator_box(box):
                    return {"ok": True, "reason": f"operator box {np.round(box, 1).tolist()} given to the episode"}
            return self.set_target(box)
        prompt = cmd.get("prompt") or self.cfg.planner.prompt
        manual = bool(cmd.get("manual", False))
        if self.episode is not None and hasattr(self.episode, "start"):
            self.episode.start(prompt, manual=manual)
            mode = " (manual: send manual_bbox)" if manual else ""
            return {"ok": True, "reason": f"episode started: {prompt!r}{mode}"}
        box = self.cfg.tracker.manual_box_xyxy
        if box is not None:
            return self.set_target(np.asarray(box, dtype=np.float64))
        return {"ok": False, "reason": "no episode manager and no tracker.manual_box_xyxy: send manual_bbox"}

    def set_target(self, box_xyxy: np.ndarray) -> dict:
        """(Re-)initialise the tracker on `box_xyxy` and let the policy drive the robot."""
        if self.tracker_worker is not None:
            self.tracker_worker.request_init(box_xyxy=box_xyxy)
        self.loop.submit("enable")
        return {"ok": True, "reason": f"target box {np.round(box_xyxy, 1).tolist()}; policy enabled"}

    def go_home(self, place: bool = False, on_done=None, timeout_s: float = 60.0) -> bool:
        """Drive the arm to robot.home_positions (policy disabled) and call `on_done()` when there
        (or after `timeout_s`), from a short-lived thread. Never blocks. `place` is accepted for the
        episode interface; the sim hand simply opens on the way home."""
        with self._home_lock:
            self._home_requests += 1
            request_id = self._home_requests
        ok = self.loop.submit("home", target=list(self.cfg.robot.home_positions), request_id=request_id)

        def wait() -> None:
            # The loop reports (request id, outcome) of the last homing that ended: wait for ours
            # (an explicit state, not a scan of a bounded event log that can miss the arrival).
            end = self.clock.now() + timeout_s
            while self.clock.now() < end and not self._stopped.is_set():
                done_id, outcome = self.loop.home_done
                if done_id >= request_id:
                    if done_id == request_id and outcome != "reached":
                        self._error(f"go_home: homing {outcome} before reaching home")
                    break
                self._stopped.wait(0.02)
            else:
                if not self._stopped.is_set():
                    self._error(f"go_home: not home within {timeout_s:.0f} s")
            if on_done is not None:
                on_done()

        threading.Thread(target=wait, name="homing-wait", daemon=True).start()
        return ok

    def publish_event(self, event: dict) -> None:
        event.setdefault("t", self.clock.now() - (self._t_start if math.isfinite(self._t_start) else 0.0))
        self.dispatcher.publish("episode_event", event)

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Build and start everything. Blocks for model loading and device handshakes (seconds).
        On failure, whatever was started is stopped again before the error propagates."""
        if self._started:
            raise RuntimeError("App already started")
        self._started = True
        try:
            self._build()
            self._start_threads()
        except BaseException:
            self.stop()
            raise

    def _build(self) -> None:
        from runtime.config import components

        cfg, clock = self.cfg, self.clock
        self._t_start = clock.now()
        self._check_command_trust()  # before any hardware is opened
        self._check_model()  # likewise: a model that can never run opens no link, camera or process
        separate = cfg.control.process == "separate"
        if separate:
            from runtime.errors import ConfigError
            from runtime.execution.loop_process import ControlLoopProcess

            if self._injected["bridge"] is not None:
                raise ConfigError("control.process 'separate' opens the bridge in the control process; "
                                  "an injected bridge cannot be used")
            self.loop = ControlLoopProcess(cfg, self.requests, self.chunks, self.head_frames,
                                           publish=self.dispatcher.publish, clock=clock)
            self.bridge_handle = components.BridgeHandle(self.loop.bridge_view, description="control-process bridge view")
        else:
            self.bridge_handle = self._injected["bridge"] or components.make_bridge(cfg, clock)
        self.bridge = self.bridge_handle.bridge
        cams = self._injected["cameras"] or components.make_cameras(cfg, clock, self._robot_positions)
        head_cam, wrist_cam, self.scene = cams
        from runtime.cameras.worker import CameraWorker

        timeout_ms = cfg.cameras.frame_timeout_ms
        self.camera_workers = [CameraWorker(head_cam, self.head_frames, read_timeout_ms=timeout_ms),
                               CameraWorker(wrist_cam, self.wrist_frames, read_timeout_ms=timeout_ms)]
        tracker = self._injected["tracker"]
        if isinstance(tracker, str):
            tracker = components.make_tracker(cfg)
        if tracker is not None:
            self.tracker_worker = TrackerWorker(tracker, self.head_frames, self.tracked, clock)
            self.tracker_worker.on_tracked = self._on_tracked
        policy = self._injected["policy"] or components.make_policy(cfg, self.model_dir)
        robot = cfg.robot
        self.policy_worker = PolicyWorker(
            policy, self.requests, self.tracked if tracker is not None else self.head_frames, self.wrist_frames,
            state_fn=lambda: self.bridge.latest_state(cfg.safety.max_state_age_ms / 1e3).positions,
            chunks_out=self.chunks, arm_lower=np.asarray(robot.arm_lower_rad), arm_upper=np.asarray(robot.arm_upper_rad),
            action_dt_s=1.0 / cfg.control.action_rate_hz,
            max_observation_age_s=cfg.safety.max_observation_age_ms / 1e3, clock=clock,
            require_mask=tracker is not None,
        )
        limits = JointLimits.from_config(robot, cfg.safety)
        rt = cfg.control.realtime
        if not separate:
            loop_clock = clock
            if rt.loop_spin_us > 0 and type(clock) is Clock:
                loop_clock = GilHoldingClock(rt.loop_spin_us / 1e6)
            self.loop = ControlLoop(
                self.bridge, ChunkExecutor.from_config(cfg), SafetyFilter(limits, 1.0 / cfg.control.rate_hz),
                self.chunks, self.requests, cfg.control.rate_hz, loop_clock,
                max_state_age_s=cfg.safety.max_state_age_ms / 1e3,
                max_perception_age_s=cfg.safety.max_perception_age_ms / 1e3,
                perception_age_s=self._perception_age_s, auto_rearm=effective_auto_rearm(cfg),
                publish=self.dispatcher.publish,
                on_thread_start=lambda: apply_thread_realtime(rt.sched_fifo_priority, rt.cpu_affinity),
            )
        self._build_observers()
        self._build_episode()

    def _check_model(self) -> None:
        """Resolve the configured controller and check its manifest against the robot's joint space
        and control.action_rate_hz (ModelError), before the robot link, the cameras, the tracker or
        the control process exist. Why here and not only in make_policy: that runs after them, so a
        model that can never run used to open (and handshake) a real robot link first. Cheap: the
        manifest only; make_policy repeats the checks for its other callers."""
        if self._injected["policy"] is not None or self.cfg.policy.backend == "fake":
            return
        from runtime.config.components import check_action_rate
        from runtime.config.models import resolve_model_dir
        from runtime.joint_space import check_model_dir

        self.model_dir = self.model_dir or resolve_model_dir(self.cfg.policy, robot=self.cfg.robot)
        check_model_dir(self.cfg.robot, self.model_dir)
        check_action_rate(self.cfg.control.action_rate_hz, self.model_dir)

    def _check_command_trust(self) -> None:
        """Who may command this robot over DDS: refuse unauthenticated commands on real hardware
        unless the config says insecure_commands (then warn loudly: log and run summary)."""
        if self.cfg.telemetry is None:
            return
        from runtime.telemetry import command_trust_warnings, telemetry_config

        dds = telemetry_config(self.cfg.telemetry).dds
        self.warnings.extend(command_trust_warnings(dds, real_hardware=is_real_hardware(self.cfg.bridge.kind)))

    def _build_observers(self) -> None:
        if self.cfg.telemetry is not None:
            from runtime.telemetry import make_telemetry

            node = make_telemetry(self.cfg.telemetry, submit=self.submit_command, name=self.cfg.name,
                                  real_hardware=is_real_hardware(self.cfg.bridge.kind),
                                  joint_names=self.cfg.robot.joint_names)
            if node is not None:
                self.add_observer(node)
                self._closers.append(("telemetry", node.stop))
        if self.cfg.recording is not None:
            try:
                from runtime.recording import make_recorder
            except ImportError as exc:
                self._error(f"recording configured but runtime.recording.make_recorder is unavailable: {exc}")
                return
            rec = make_recorder(self.cfg.recording, self.cfg)
            if rec is not None:
                self.recorder = rec
                self.add_observer(rec)
                self._closers.append(("recorder", getattr(rec, "close", getattr(rec, "stop", lambda: None))))

    def _build_episode(self) -> None:
        """Episode state machine + planner when the planner is enabled and those modules exist."""
        if not self.cfg.planner.enabled:
            return
        try:
            from runtime.episode import make_episode
        except ImportError as exc:
            log.info("no episode manager (%s): targets come from tracker.manual_box_xyxy or manual_bbox", exc)
            return
        self.episode = make_episode(self)
        if hasattr(self.episode, "stop"):
            self._closers.insert(0, ("episode", self.episode.stop))

    def _start_threads(self) -> None:
        rt = self.cfg.control.realtime
        if rt.mlockall:
            self.setup["mlockall"] = lock_memory()
            self._mlocked = self.setup["mlockall"] == "applied"
        self._switch.__enter__()
        self.setup["switch_interval"] = self._switch.describe()
        # A full garbage collection holds the GIL for milliseconds; move everything allocated at
        # start-up (models, configs, modules) out of the collector's sight so the runs stay short.
        gc.collect()
        gc.freeze()
        self.setup["gc"] = f"frozen {gc.get_freeze_count()} start-up objects"
        self.dispatcher.start()
        for w in self.camera_workers:
            w.start()
        if self.tracker_worker is not None:
            self.tracker_worker.start()
        self.policy_worker.start()
        self.loop.start()
        if self.episode is not None and hasattr(self.episode, "start_threads"):
            self.episode.start_threads()
        if rt.worker_sched_fifo_priority is not None or rt.policy_nice is not None:
            # With the loop in its own process no thread here can hold its GIL: the priorities
            # are applied there (bridge I/O), and capture/tracking here stay ordinary threads.
            fifo = None if self.cfg.control.process == "separate" else rt.worker_sched_fifo_priority
            self.setup["worker_threads"] = apply_worker_priorities(threading.enumerate(), fifo, rt.policy_nice)
        if self.cfg.planner.autostart or self.cfg.tracker.manual_box_xyxy is not None:
            threading.Thread(target=self._autostart, name="autostart", daemon=True).start()

    def _autostart(self) -> None:
        """Start the first episode once the first head frame is in (bounded wait)."""
        if self.head_frames.wait_newer(0, 5.0) is None:
            self._error("autostart: no head frame within 5 s; episode not started")
            return
        if self._stopped.is_set():
            return
        result = self.submit_command({"cmd": "start", "prompt": self.cfg.planner.prompt})
        if not result["ok"]:
            self._error(f"autostart: {result['reason']}")

    def run(self, duration_s: float | None = None, stop_event: threading.Event | None = None,
            on_progress=None, progress_period_s: float = 1.0) -> dict:
        """Block until `duration_s` passes, `stop_event` is set, or the control loop dies; then stop
        safely and return the report. `on_progress(app)` is called every `progress_period_s`."""
        stop_event = stop_event or threading.Event()
        self._t_run = self.clock.now()
        t_end = self._t_run + duration_s if duration_s is not None else math.inf
        try:
            while not stop_event.is_set():
                remaining = t_end - self.clock.now()
                if remaining <= 0:
                    break
                if stop_event.wait(min(progress_period_s, remaining)):
                    break
                if not self.loop.alive:
                    self._loop_died()
                    break
                if on_progress is not None:
                    on_progress(self)
        finally:
            self.stop()
        return self.report()

    def _loop_died(self) -> None:
        """The control loop ended while the run was going on: the robot is no longer commanded
        (the firmware holds and safes off by itself). The run ends and the CLI exits non-zero."""
        code = getattr(self.loop, "exitcode", None)
        if code is None:
            why = "control loop thread ended unexpectedly"
        else:
            how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
            why = f"control process ended unexpectedly ({how}); the firmware holds and safes off"
        self.fatal = why
        self._error(why)

    def stop(self) -> None:
        """Safe stop, in order: control loop (hold, disarm), episode, workers, cameras, bridge and
        emulator, observers (flushed). Idempotent; every step runs even if an earlier one fails."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._t_stop = self.clock.now()
        if self.loop is not None:
            self.loop.stop()
        for name, fn in list(self._closers):
            if name == "episode":
                self._call(fn, name)
        for w in (self.policy_worker, self.tracker_worker):
            # An inference in progress cannot be interrupted (ONNX Runtime / TensorRT): wait for
            # it, bounded by the slowest inference seen, rather than tear the runtime down under it.
            timeout_s = 2.0
            if w is self.policy_worker and w is not None and w.latency.count:
                timeout_s = max(2.0, 2.0 * w.latency.summary()["max"])
            elif w is self.policy_worker:
                timeout_s = 30.0
            if w is not None and not w.stop(timeout_s):
                self._error(f"{w.name} did not stop within {timeout_s:.1f} s")
        for w in self.camera_workers:
            if not w.stop():
                self._error(f"{w.name} did not stop within its timeout")
        if self.bridge_handle is not None:
            for e in self.bridge_handle.close():
                self._error(e)
        self.dispatcher.drain(1.0)
        self.dispatcher.stop()
        for name, fn in self._closers:
            if name != "episode":
                self._call(fn, name)
        self._switch.__exit__(None, None, None)
        if self._mlocked:
            unlock_memory()

    # ---- data plumbing ---------------------------------------------------------------------------
    def _robot_positions(self) -> np.ndarray:
        """Latest measured joints for the synthetic scene (home pose until the bridge reports)."""
        if self.bridge is not None:
            try:
                return np.asarray(self.bridge.latest_state(None).positions, dtype=np.float64)
            except StaleDataError:
                pass
        return np.asarray(self.cfg.robot.home_positions, dtype=np.float64)

    def _perception_age_s(self, now: float) -> float:
        item = self.head_frames.peek()
        return math.inf if item is None else now - item.t_capture

    def _on_tracked(self, tracked) -> None:
        if not self.dispatcher.has_observers:
            return
        wrist = self.wrist_frames.peek()
        self.dispatcher.publish("frames", tracked.image, None if wrist is None else wrist.value.image,
                                tracked.mask, tracked.t_capture)

    def _episode_status(self) -> dict | None:
        if self.episode is None or not hasattr(self.episode, "status"):
            return None
        try:
            return self.episode.status()
        except Exception as exc:  # a report must not fail because one part cannot describe itself
            return {"error": repr(exc)}

    def _call(self, fn, name: str) -> None:
        try:
            fn()
        except Exception as exc:  # shutdown continues; the failure is reported
            self._error(f"stopping {name}: {exc!r}")

    def _recording_status(self) -> dict | None:
        if self.recorder is None:
            return None
        try:
            return self.recorder.status()
        except Exception as exc:  # a stopped writer may refuse; the report says so
            return {"error": repr(exc)}

    def _error(self, text: str) -> None:
        log.warning("%s", text)
        self.errors.append(text)

    # ---- report ----------------------------------------------------------------------------------
    def report(self) -> dict:
        loop = self.loop.report() if self.loop is not None else {}
        control = {k: loop.get(k) for k in ("rate_hz_target", "rate_hz_achieved", "lateness_us", "missed_cycles")}
        control.update({k: v for k, v in loop.items() if k not in control})
        cams = [w.stats() for w in self.camera_workers]
        bridge_counters: dict = {}
        if self.bridge is not None and hasattr(self.bridge, "counters"):
            try:
                bridge_counters = self.bridge.counters()
            except Exception as exc:  # a closed bridge may refuse; the report says so
                bridge_counters = {"error": repr(exc)}
        errors = list(self.errors) + (list(self.loop.errors) if self.loop is not None else [])
        for w in (self.policy_worker, self.tracker_worker):
            if w is not None and w.last_error:
                errors.append(f"{w.name}: {w.errors} error(s), last: {w.last_error}")
        for c in cams:
            if c.get("last_error"):
                errors.append(f"camera {c['camera']}: {c['last_error']}")
        return {
            "config": self.cfg.name,
            # running phase (start of run() to the stop request); start-up and shutdown apart
            "duration_s": _span(self._t_run, self._t_stop if math.isfinite(self._t_stop) else self.clock.now()),
            "startup_s": _span(self._t_start, self._t_run),
            "shutdown_s": _span(self._t_stop, self.clock.now()),
            "episode": self._episode_status(),
            "control": control,
            "policy": self.policy_worker.report() if self.policy_worker else {"inferences": 0},
            "tracker": self.tracker_worker.report() if self.tracker_worker else {"frames": 0, "latency_ms": {}},
            "camera": {
                "frames": sum(c["frames"] for c in cams),
                "dropped": sum(c["dropped"] for c in cams),
                "per_camera": cams,
            },
            "bridge": {"counters": bridge_counters},
            "telemetry": self.dispatcher.report(),
            "recording": self._recording_status(),
            "realtime": {**self.setup, "control_thread": loop.get("thread_setup")},
            # the config's joint space (runtime/joint_space.py), not upstream's 7 + 6
            "joints": self.cfg.robot.n_joints, "arm_joints": self.cfg.robot.n_arm,
            "hand_joints": self.cfg.robot.n_hand, "joint_names": list(self.cfg.robot.joint_names),
            "errors": errors,
            "warnings": list(self.warnings),
            "fatal": self.fatal,
        }


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _span(t0: float, t1: float) -> float | None:
    return t1 - t0 if math.isfinite(t0) and math.isfinite(t1) else None
