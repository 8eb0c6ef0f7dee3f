"""make_episode's actuator against fakes of the app's parts: tracker readiness and loss, the grasp
signal that times verification, resets, and config errors that name the field."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from runtime.clock import FakeClock
from runtime.config.schema import RuntimeConfig
from runtime.episode.app_glue import AppActuator, episode_config_from, make_episode, make_planner
from runtime.episode.machine import GraspSignal, HomeReached, TrackerLost, TrackerReady
from runtime.errors import ConfigError
from runtime.mailbox import Mailbox


class FakeLoop:
    def __init__(self):
        self.commands = []

    def submit(self, command, **kw):
        self.commands.append(command)
        return True


class FakeTrackerWorker:
    def __init__(self):
        self.inits, self.resets = [], 0

    def request_init(self, box_xyxy=None, mask=None):
        self.inits.append(box_xyxy)

    def request_reset(self):
        self.resets += 1


class FakeBridge:
    def __init__(self):
        self.q = np.zeros(13)

    def latest_state(self, max_age_s):
        return SimpleNamespace(positions=self.q.copy())


def fake_app(scene=None):
    clock = FakeClock()
    return SimpleNamespace(clock=clock, tracked=Mailbox("tracked", clock), tracker_worker=FakeTrackerWorker(),
                           loop=FakeLoop(), bridge=FakeBridge(), scene=scene, events=[],
                           publish_event=lambda e: None, head_frames=Mailbox("head", clock),
                           wrist_frames=Mailbox("wrist", clock), cfg=RuntimeConfig())


def tracked(lost=False):
    return SimpleNamespace(lost=lost)


def test_tracker_ready_after_the_next_tracked_frame_and_lost_after_a_run_of_lost_frames():
    app = fake_app()
    act = AppActuator(app, lost_frames_limit=3)
    app.tracked.put(tracked())  # an old frame from before the init request
    act.init_tracker(None, (10, 20, 60, 80), "img-1")
    assert app.tracker_worker.inits[0].tolist() == [10, 20, 60, 80]
    assert [e for e in act.poll(0.0) if not isinstance(e, GraspSignal)] == []
    app.tracked.put(tracked())
    assert TrackerReady(True, "") in act.poll(0.1)
    act.enable_controller()
    assert app.loop.commands == ["enable"]
    for i in range(2):
        app.tracked.put(tracked(lost=True))
        assert not any(isinstance(e, TrackerLost) for e in act.poll(0.2 + i))
    app.tracked.put(tracked(lost=True))
    assert any(isinstance(e, TrackerLost) for e in act.poll(3.0))


def test_tracker_lost_on_first_frame_is_a_failed_init():
    app = fake_app()
    act = AppActuator(app)
    act.init_tracker(None, (10, 20, 60, 80), None)
    app.tracked.put(tracked(lost=True))
    (ready,) = [e for e in act.poll(0.0) if isinstance(e, TrackerReady)]
    assert not ready.ok and "lost" in ready.reason


def test_no_tracker_configured_fails_init_explicitly():
    app = fake_app()
    app.tracker_worker = None
    act = AppActuator(app)
    act.init_tracker(None, (10, 20, 60, 80), None)
    assert act.poll(0.0)[0] == TrackerReady(False, "the runtime has no tracker configured")


def signals(act, t):
    return [e for e in act.poll(t) if isinstance(e, GraspSignal)]


def test_grasp_signal_relative_to_the_hand_at_grasp_start_and_closed_wait_without_fk():
    app = fake_app()
    app.bridge.q[7:13] = 1.0  # open in upstream's convention
    act = AppActuator(app, hand_closed_delta=0.4, closed_wait_s=1.0)
    assert signals(act, 0.0) == []  # not grasping: no signal
    act.enable_controller()
    assert signals(act, 0.0) == [GraspSignal(False, False)]
    app.bridge.q[7:13] = 0.5
    assert signals(act, 1.0) == [GraspSignal(True, False)]
    assert signals(act, 1.9) == [GraspSignal(True, False)]
    assert signals(act, 2.0) == [GraspSignal(True, True)]
    app.bridge.q[7:13] = 0.9  # reopened: the signal drops
    assert signals(act, 2.1) == [GraspSignal(False, False)]


def test_grasp_signal_uses_sim_fk_for_the_lift(monkeypatch):
    import runtime.cameras.scene as scene_module

    z = {"value": 0.10}
    monkeypatch.setattr(scene_module, "arm_points", lambda q: (np.array([[0, 0, 0], [0, 0, 0], [0, 0, z["value"]]]), 0.0))
    app = fake_app(scene=object())
    act = AppActuator(app, hand_closed_delta=0.4, lift_height_m=0.05)
    act.enable_controller()
    signals(act, 0.0)
    app.bridge.q[7:13] = 0.8  # home hand 0 here: "closed" is relative, so moving to 0.8 counts
    z["value"] = 0.04
    assert signals(act, 1.0) == [GraspSignal(True, False)]
    z["value"] = 0.08
    assert signals(act, 2.0) == [GraspSignal(True, False)]
    z["value"] = 0.10
    assert signals(act, 3.0) == [GraspSignal(True, True)]


def test_reset_disables_resets_tracker_and_reports_home():
    app = fake_app()
    act = AppActuator(app)
    act.enable_controller()
    act.reset_arm(place=True)
    assert app.loop.commands == ["enable", "disable"] and app.tracker_worker.resets == 1
    assert HomeReached() in act.poll(0.0)


def test_reset_uses_app_go_home_when_available():
    app = fake_app()
    done = []
    app.go_home = lambda place, on_done: done.append((place, on_done))
    act = AppActuator(app)
    act.reset_arm(place=False)
    assert HomeReached() not in act.poll(0.0)
    done[0][1]()
    assert HomeReached() in act.poll(0.1) and done[0][0] is False


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown key"):
        episode_config_from({"episodes": {}}, (640, 480))
    with pytest.raises(ConfigError, match="planner_timeout"):
        episode_config_from({"episode": {"planner_timeout": 3}}, (640, 480))
    assert episode_config_from({"episode": {"planner_timeout_s": 3}}, (320, 240)).image_size == (320, 240)
    cfg = RuntimeConfig()
    remote = cfg.model_copy(update={"planner": cfg.planner.model_copy(update={"backend": "remote"})})
    with pytest.raises(ConfigError, match="planner.address"):
        make_planner(remote, FakeClock())


def test_make_episode_builds_a_local_runner():
    app = fake_app()
    runner = make_episode(app)
    assert runner.machine.config.image_size == (640, 480)
    assert type(runner.planner).__name__ == "InProcessPlanner"


def test_remote_planner_from_config_options(tmp_path):
    from runtime.planner.client import PlannerClient

    cfg = RuntimeConfig()
    options = {"client": {"heartbeat_period_s": 0.5, "liveness_s": 2.0, "max_side_px": 320},
               "curve": {"secret_key_file": "robot.key_secret", "server_public_key_file": "server.key"}}
    remote = cfg.model_copy(update={"planner": cfg.planner.model_copy(
        update={"backend": "remote", "address": "tcp://127.0.0.1:5557", "options": options})})
    planner = make_planner(remote, FakeClock())
    assert isinstance(planner, PlannerClient)
    assert (planner.endpoint, planner.heartbeat_period_s, planner.liveness_s, planner.max_side_px) == \
        ("tcp://127.0.0.1:5557", 0.5, 2.0, 320)
    assert planner.curve.server_public_key_file == "server.key"
    bad = remote.model_copy(update={"planner": remote.planner.model_copy(
        update={"options": {"client": {"heartbeat_s": 1}}})})
    with pytest.raises(ConfigError, match="heartbeat_s"):
        make_planner(bad, FakeClock())
