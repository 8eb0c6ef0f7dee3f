"""In-process runs of the whole runtime (real threads, real clock) with fake robot and policy.

Timing is never asserted here (the machine is shared); behaviour is: commands flow, stay within
limits, faults lead to a hold with the cause reported, and the stop is safe."""

import threading
import time

import numpy as np
import pytest

from runtime.app import App
from runtime.cameras.synthetic import make_synthetic_cameras
from runtime.clock import Clock
from runtime.config import config_from_dict
from runtime.config.components import BridgeHandle
from runtime.execution.fakes import FakeBridge, FakeChunkPolicy
from runtime.execution.safety import JointLimits


class Recorder:
    def __init__(self):
        self.kinds = {}
        self.lock = threading.Lock()
        self.thread_names = set()

    def _add(self, kind):
        with self.lock:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            self.thread_names.add(threading.current_thread().name)

    def on_joint_state(self, state):
        self._add("joint_state")

    def on_command(self, q, t):
        self._add("command")

    def on_status(self, status):
        self._add("status")

    def on_episode_event(self, event):
        self._add("episode_event")


def make_app(overrides=None, latency_s=0.15):
    base = {
        "control": {"rate_hz": 100, "realtime": {"sched_fifo_priority": None, "mlockall": False}},
        "tracker": {"kind": "none"},
        "planner": {"enabled": False, "autostart": False},
        "bridge": {"kind": "fake"},
        "policy": {"backend": "fake"},
        "safety": {"auto_rearm": True},
    }
    for k, v in (overrides or {}).items():
        base.setdefault(k, {}).update(v)
    cfg = config_from_dict(base, "test")
    clock = Clock()
    bridge = FakeBridge(13, clock, lower=np.asarray(cfg.robot.lower), upper=np.asarray(cfg.robot.upper))
    bridge.keep_history = True
    _, head, wrist = make_synthetic_cameras(lambda: bridge.latest_state(None).positions, clock=clock, fps=15)
    policy = FakeChunkPolicy(latency_s=latency_s)
    app = App(cfg, clock=clock, bridge_handle=BridgeHandle(bridge, description="fake"), cameras=(head, wrist, None),
              policy=policy, tracker=None)
    return app, bridge, policy, head


def wait_for(pred, timeout_s=10.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def check_limits(app, bridge):
    sent = np.array([q for _, q in bridge.sent])
    lim = JointLimits.from_config(app.cfg.robot, app.cfg.safety)
    assert np.all(np.isfinite(sent))
    assert np.all(sent >= lim.lower) and np.all(sent <= lim.upper)
    step = np.abs(np.diff(sent, axis=0)).max(axis=0)
    assert np.all(step <= lim.max_velocity / app.cfg.control.rate_hz + 1e-9)
    return sent


def test_end_to_end_commands_flow_within_limits_and_stop_safely():
    app, bridge, policy, _ = make_app()
    obs = Recorder()
    app.add_observer(obs)
    app.start()
    try:
        assert app.submit_command({"cmd": "start"})["ok"] is False  # no target source configured
        assert app.submit_command({"cmd": "manual_bbox", "bbox": [10, 10, 50, 60]})["ok"]
        assert wait_for(lambda: app.loop.executor.counters.chunks_accepted >= 2 and app.loop.hold_reason is None)
    finally:
        report = app.run(duration_s=0.0)
    sent = check_limits(app, bridge)
    assert len(sent) > 20
    assert sent[-1, 7] > 0.0  # the hand moved toward the fake policy's goal
    assert bridge.calls[0] == "arm" and "disarm" in bridge.calls and bridge.calls[-1] == "close"
    assert not app.loop.alive and not app.policy_worker.alive
    for key in ("control", "policy", "tracker", "camera", "bridge", "errors"):
        assert key in report
    c = report["control"]
    assert c["rate_hz_target"] == 100 and c["rate_hz_achieved"] > 0
    assert set(c["lateness_us"]) == {"p50", "p99", "max"}
    assert report["policy"]["inferences"] >= 2 and report["policy"]["latency_ms"]["p50"] > 0
    assert report["camera"]["frames"] > 0
    # observers were called, and only from the dispatcher thread
    assert obs.kinds.get("command", 0) > 0 and obs.kinds.get("joint_state", 0) > 0
    assert obs.thread_names == {"telemetry-dispatch"}


def test_bad_commands_rejected_with_reason():
    app, *_ = make_app()
    assert app.submit_command({"cmd": "fly"})["ok"] is False
    app.start()
    try:
        r = app.submit_command({"cmd": "manual_bbox", "bbox": [50, 10, 10, 60]})
        assert not r["ok"] and "x2 > x1" in r["reason"]
        r = app.submit_command({"cmd": "manual_bbox", "bbox": "abc"})
        assert not r["ok"]
        r = app.submit_command({"cmd": "manual_bbox", "bbox": [0, 0, float("nan"), 5]})
        assert not r["ok"]
    finally:
        app.stop()


@pytest.mark.parametrize("fault", ["camera_stall", "camera_unplug", "nan", "overrun", "link_loss"])
def test_faults_hold_report_and_recover(fault):
    app, bridge, policy, head = make_app(
        {"safety": {"max_perception_age_ms": 300, "max_action_age_s": 1.0}}, latency_s=0.15)
    app.start()
    try:
        app.submit_command({"cmd": "manual_bbox", "bbox": [10, 10, 50, 60]})
        assert wait_for(lambda: app.loop.hold_reason is None and app.loop.executor.counters.chunks_accepted >= 2)
        expected = {"camera_stall": "perception_stale", "camera_unplug": "perception_stale", "nan": "waiting_for_chunk",
                    "overrun": "waiting_for_chunk", "link_loss": "link_down"}[fault]
        if fault == "camera_stall":
            head.stall(2.0)
        elif fault == "camera_unplug":
            head.unplug()
        elif fault == "nan":
            policy.emit_nan = True
        elif fault == "overrun":
            policy.latency_scale = 10.0  # 1.5 s > max_action_age 1.0 s
        else:
            bridge.set_link(False)
        assert wait_for(lambda: app.loop.hold_reason == expected), app.loop.hold_reason
        time.sleep(0.3)
        assert app.loop.hold_reason == expected
        assert any(expected in e for _, e in app.loop.events)
        policy.emit_nan = False
        policy.latency_scale = 1.0
        bridge.set_link(True)
        if fault == "camera_unplug":
            head.replug()  # the capture worker reconnects with backoff
        assert wait_for(lambda: app.loop.hold_reason is None, 15.0), app.loop.hold_reason
    finally:
        report = app.run(duration_s=0.0)
    check_limits(app, bridge)
    if fault == "nan":
        assert report["control"]["executor"]["chunks_rejected_nonfinite"] >= 1
    if fault == "overrun":
        assert report["control"]["executor"]["chunks_rejected_stale"] >= 1
    assert report["control"]["hold_cycles"].get(expected, 0) > 0


def test_protective_stop_command_and_clear():
    app, bridge, policy, _ = make_app()
    app.start()
    try:
        app.submit_command({"cmd": "manual_bbox", "bbox": [10, 10, 50, 60]})
        assert wait_for(lambda: app.loop.hold_reason is None)
        assert app.submit_command({"cmd": "stop"})["ok"]
        assert wait_for(lambda: app.loop.hold_reason == "protective_stop")
        n = len(bridge.sent)
        time.sleep(0.2)
        assert len(bridge.sent) == n
        app.submit_command({"cmd": "clear"})
        app.submit_command({"cmd": "manual_bbox", "bbox": [10, 10, 50, 60]})
        assert wait_for(lambda: app.loop.hold_reason is None)
    finally:
        app.stop()
    assert bridge.calls.count("arm") == 2


def test_separate_control_process_runs_commands_and_stops_safely():
    cfg = config_from_dict({
        "control": {"rate_hz": 100, "process": "separate",
                    "realtime": {"sched_fifo_priority": None, "mlockall": False}},
        "tracker": {"kind": "none"}, "planner": {"enabled": False, "autostart": False},
        "bridge": {"kind": "fake"}, "policy": {"backend": "fake", "fake_latency_ms": 150},
    }, "test")
    clock = Clock()
    app = App(cfg, clock=clock, tracker=None, policy=FakeChunkPolicy(latency_s=0.15),
              cameras=make_synthetic_cameras(lambda: app._robot_positions(), clock=clock, fps=15)[1:] + (None,))
    obs = Recorder()
    app.add_observer(obs)
    app.start()
    try:
        assert app.loop.alive
        assert app.submit_command({"cmd": "manual_bbox", "bbox": [10, 10, 50, 60]})["ok"]
        assert wait_for(lambda: app.loop.progress()["chunks_accepted"] >= 2 and app.loop.hold_reason is None, 20)
        # the parent sees the child's robot state (for the policy, the scene and the episode)
        state = app.bridge.latest_state(0.5)
        assert state.positions.shape == (13,) and state.positions[7] > 0.0
        assert app.submit_command({"cmd": "stop"})["ok"]
        assert wait_for(lambda: app.loop.hold_reason == "protective_stop")
    finally:
        report = app.run(duration_s=0.0)
    assert not app.loop.alive
    c = report["control"]
    assert c["process"].startswith("separate")
    assert c["commands_sent"] > 20 and c["executor"]["chunks_accepted"] >= 2
    # measured in the control process, reported through the parent: frame age + 150 ms inference
    assert c["obs_to_actuation_ms"]["count"] >= 2 and 150.0 <= c["obs_to_actuation_ms"]["p50"] < 2000.0
    assert c["hold_cycles"]["protective_stop"] > 0
    assert report["bridge"]["counters"]["targets_sent"] > 20
    assert obs.kinds.get("command", 0) > 0 and obs.kinds.get("joint_state", 0) > 0
    assert not [e for e in report["errors"] if "link" in e]


def test_end_to_end_with_exported_model_emulator_and_tracker(tmp_path):
    """The real pipeline in one test: synthetic cameras -> classical tracker -> the small exported
    controller (ONNX Runtime) -> control loop in its own process -> firmware emulator over a pty."""
    from runtime.config import load_config
    from runtime.config.models import ensure_model

    model_dir = ensure_model("small", 0, progress=False)  # cached; made once (needs torch)
    cfg = load_config("sim", overrides={
        "control": {"realtime": {"mlockall": False}},
        "planner": {"enabled": False, "autostart": False},
        "tracker": {"manual_box_xyxy": [219, 205, 251, 237]},  # the red cube of the synthetic scene
        "cameras": {"head": {"fps": 15}, "wrist": {"fps": 15}},
        "safety": {"max_action_age_s": 60.0},
    })
    app = App(cfg, model_dir=model_dir)
    app.start()
    try:
        assert app.submit_command({"cmd": "start"})["ok"]
        assert wait_for(lambda: app.loop.progress()["chunks_accepted"] >= 1, 120.0), app.policy_worker.report()
        assert wait_for(lambda: app.loop.hold_reason is None, 10.0), app.loop.hold_reason
        time.sleep(1.0)
        moving = app.bridge.latest_state(0.5).positions.copy()
    finally:
        report = app.run(duration_s=0.0)
    c = report["control"]
    assert report["policy"]["inferences"] >= 1 and report["tracker"]["frames"] > 0
    assert c["executor"]["chunks_accepted"] >= 1 and c["commands_sent"] > 100
    counters = report["bridge"]["counters"]
    assert counters["commands_sent"] > 100 and counters["crc_errors"] == 0
    lim = JointLimits.from_config(cfg.robot, cfg.safety)
    assert np.all(moving >= lim.lower - 1e-3) and np.all(moving <= lim.upper + 1e-3)
    assert c["safety"]["rejected_nonfinite"] == 0
    assert max(c["safety"]["largest_step"]) <= max(lim.max_velocity) / cfg.control.rate_hz + 1e-9
    assert "stopped: held and disarmed" in [e for _, e in c["events"]]
    # On this shared CPU the link may time out under load; then the loop must have held and
    # resynchronised (sim auto-rearms), never crashed.
    assert not [e for e in report["errors"] if "crashed" in e]
    if any("failed" in e for e in report["errors"]):
        assert c["hold_cycles"].get("link_down", 0) + c["hold_cycles"].get("robot_state_stale", 0) > 0


@pytest.mark.parametrize("process", ["thread", "separate"])
@pytest.mark.parametrize("wrong", ["joint layout", "action grid"])
def test_a_model_that_can_never_run_is_refused_before_any_link_camera_or_process_opens(
        process, wrong, tiny_model_copy, monkeypatch):
    """The model checks read the manifest only, so they run first: a wrong joint layout or action
    grid is one ModelError and no robot link, camera, tracker or control process is ever opened."""
    import json

    from runtime.config import components
    from runtime.errors import ModelError
    from runtime.execution.loop_process import ControlLoopProcess

    opened: list[str] = []

    def opener(name):
        def fn(*args, **kwargs):
            opened.append(name)
            raise AssertionError(f"{name} opened for a model that can never run")
        return fn

    for name in ("make_bridge", "make_cameras", "make_tracker"):
        monkeypatch.setattr(components, name, opener(name))
    monkeypatch.setattr(ControlLoopProcess, "start", opener("control process"))
    overrides = {
        "control": {"rate_hz": 100, "process": process, "realtime": {"sched_fifo_priority": None, "mlockall": False}},
        "tracker": {"kind": "classical"}, "planner": {"enabled": False, "autostart": False},
        "bridge": {"kind": "fake"},
        "policy": {"model_dir": str(tiny_model_copy), "backend": "onnxruntime", "precision": "fp32", "threads": 1},
    }
    if wrong == "joint layout":  # the tiny model is upstream's 13 joints; this robot has 6 + 6
        overrides["robot"] = {"arm_joint_names": [f"a{i}" for i in range(6)],
                              "hand_joint_names": [f"h{i}" for i in range(6)],
                              "arm_lower_rad": [-3.0] * 6, "arm_upper_rad": [1.0] * 6}
        match = r"has action_dim 13 but robot config has 12 joints"
    else:  # trained on a 10 Hz grid, played at the config's 20 Hz
        manifest = tiny_model_copy / "manifest.json"
        data = json.loads(manifest.read_text())
        data.setdefault("source_checkpoint", {}).setdefault("training", {})["action_rate_hz"] = 10.0
        manifest.write_text(json.dumps(data))
        match = r"trained on a 10 Hz action grid but control.action_rate_hz is 20"
    app = App(config_from_dict(overrides, "test"))
    with pytest.raises(ModelError, match=match):
        app.start()
    assert opened == []
    assert app.bridge is None and app.camera_workers == [] and app.policy_worker is None
    app.stop()  # nothing to close: still a safe call
