"""The joint space (runtime/joint_space.py): layout from the config, the model's arm scaling, the
manifest check before anything loads, unit and home-pose errors, and safety.speed_scale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.clock import FakeClock
from runtime.config import config_from_dict
from runtime.config.components import make_policy
from runtime.controller.manifest import MANIFEST_NAME, SCHEMA_VERSION, Manifest
from runtime.errors import ConfigError, ModelError
from runtime.execution.executor import ChunkExecutor
from runtime.execution.fakes import FakeFramePair
from runtime.execution.requests import ChunkRequests
from runtime.execution.safety import JointLimits, SafetyFilter
from runtime.joint_space import JointSpace, scale_arm, unscale_arm
from runtime.mailbox import Mailbox
from runtime.workers.policy import PolicyWorker

ARM6 = [f"ur_{i}" for i in range(6)]  # a 6-dof arm with upstream's 6-joint hand: 12 joints
ROBOT12 = {"arm_joint_names": ARM6, "arm_lower_rad": [-3.0] * 6, "arm_upper_rad": [1.0] * 6}


def test_default_layout_is_upstreams_and_the_scaling_round_trips():
    space = config_from_dict({}).robot.joint_space()
    assert (space.n_arm, space.n_hand, space.n) == (7, 6, 13)
    assert space.names[0] == "arm_joint_1" and space.names[-1] == "hand_joint_6"
    q = np.linspace(-0.5, 0.9, 13)
    model = space.to_model(q)
    np.testing.assert_allclose(model[:7], unscale_arm(q[:7], space.arm_lower, space.arm_upper))
    np.testing.assert_array_equal(model[7:], q[7:])  # hand joints are the model's units already
    np.testing.assert_allclose(space.from_model(model), q)
    np.testing.assert_allclose(space.from_model(np.full((2, 13), -1.0))[:, :7], np.tile(space.arm_lower, (2, 1)))


def test_a_12_joint_robot_gets_12_joint_limits_executor_and_policy_scaling():
    cfg = config_from_dict({"robot": ROBOT12})
    assert cfg.robot.n_joints == 12 and cfg.robot.home_positions == [0.0] * 12
    assert cfg.robot.joint_names == ARM6 + [f"hand_joint_{i + 1}" for i in range(6)]
    limits = JointLimits.from_config(cfg.robot, cfg.safety)
    assert limits.n == 12
    np.testing.assert_array_equal(limits.max_velocity, [1.0] * 6 + [2.0] * 6)  # arm / hand defaults
    assert ChunkExecutor.from_config(cfg).n_joints == 12

    clock = FakeClock(10.0)
    head, wrist = Mailbox("head", clock), Mailbox("wrist", clock)
    FakeFramePair(head, wrist, clock).capture()
    seen = {}

    class Policy:
        def predict_chunk(self, head_bgr, mask, wrist_bgr, state):
            seen["state"] = np.asarray(state)
            return np.zeros((4, 12), dtype=np.float32)  # arm at the middle of [-1, 1], hand closed

    state = np.array([1.0] * 6 + [0.5] * 6)
    worker = PolicyWorker(Policy(), ChunkRequests(), head, wrist, state_fn=lambda: state,
                          chunks_out=Mailbox("out", clock), arm_lower=cfg.robot.arm_lower_rad,
                          arm_upper=cfg.robot.arm_upper_rad, action_dt_s=0.05, max_observation_age_s=1.0,
                          clock=clock, require_mask=False)
    chunk = worker.serve_once()
    np.testing.assert_allclose(seen["state"], [1.0] * 6 + [0.5] * 6)  # arm at its upper limit -> +1
    np.testing.assert_allclose(chunk.positions[0], [-1.0] * 6 + [0.0] * 6)  # middle of [-3, 1]; hand as is


def test_policy_worker_refuses_actions_of_another_layout():
    clock = FakeClock(10.0)
    head, wrist = Mailbox("head", clock), Mailbox("wrist", clock)
    FakeFramePair(head, wrist, clock).capture()

    class Policy13:
        def predict_chunk(self, *args):
            return np.zeros((4, 13), dtype=np.float32)

    worker = PolicyWorker(Policy13(), ChunkRequests(), head, wrist, state_fn=lambda: np.zeros(12),
                          chunks_out=Mailbox("out", clock), arm_lower=[-1.0] * 6, arm_upper=[1.0] * 6,
                          action_dt_s=0.05, max_observation_age_s=1.0, clock=clock, require_mask=False)
    with pytest.raises(ModelError, match=r"shape \(4, 13\), expected \(H, 12\)"):
        worker.serve_once()


def _manifest_dir(tmp_path, action_dim=13, state_dim=13):
    graph = {"file": "encoder.onnx", "sha256": "0" * 64, "outputs": [],
             "inputs": [{"name": "rgbm", "shape": [1, 1, 4, 56, 56], "dtype": "float32"},
                        {"name": "right_state", "shape": [1, 1, state_dim], "dtype": "float32"}]}
    data = {"schema_version": SCHEMA_VERSION, "arch": {"n_layer": 1}, "action_horizon": 64, "action_dim": action_dim,
            "num_obs_tokens": 1, "num_inference_steps": 2, "scheduler": {}, "timesteps": [1, 0],
            "normalizer": {"scale": [1.0] * action_dim, "offset": [0.0] * action_dim},
            "graphs": {"encoder": graph, "denoiser": dict(graph, file="denoiser.onnx", inputs=[])}}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    return tmp_path


def test_a_model_for_13_joints_is_refused_for_a_12_joint_robot_before_it_loads(tmp_path):
    model = _manifest_dir(tmp_path, action_dim=13)
    cfg = config_from_dict({"robot": ROBOT12, "policy": {"model_dir": str(model)}})
    # The graph files do not even exist: the joint-space check must come first.
    with pytest.raises(ModelError, match=r"action_dim 13 but robot config has 12 joints \(6 arm \+ 6 hand"):
        make_policy(cfg)


def test_state_input_of_another_size_is_refused(tmp_path):
    manifest = Manifest.load(_manifest_dir(tmp_path, action_dim=12, state_dim=13))
    space = config_from_dict({"robot": ROBOT12}).robot.joint_space()
    with pytest.raises(ModelError, match=r"reads a 13-value joint state \(right_state \[1, 1, 13\]\)"):
        space.check_model(manifest)
    space.check_model(Manifest.load(_manifest_dir(tmp_path, action_dim=12, state_dim=12)))  # matches: no error


@pytest.mark.parametrize("dim, scale", [(2, 0.2), (10, 0.1)])
def test_a_normalizer_far_outside_the_joint_ranges_is_refused(tmp_path, dim, scale):
    """The policy's [-1, 1] maps through the normalizer to [-1/scale, 1/scale]: for an arm joint (in
    upstream's normalized units, [-1, 1]) or a hand joint (0..1) that is not this robot's model."""
    path = _manifest_dir(tmp_path, action_dim=13, state_dim=13) / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["normalizer"]["scale"][dim] = scale
    path.write_text(json.dumps(data))
    space = JointSpace.from_config(config_from_dict({}).robot)
    with pytest.raises(ModelError, match=rf"action dim {dim} spans .* far outside the joint range"):
        space.check_model(Manifest.load(tmp_path))
    data["normalizer"]["scale"][dim] = 1.0
    path.write_text(json.dumps(data))
    space.check_model(Manifest.load(tmp_path))  # a normalizer fitted on this robot's ranges passes


@pytest.mark.parametrize(("robot", "message"), [
    ({"units": "deg"}, r"robot.units: the runtime's arm joints are in radians, got 'deg'.*deg \* pi / 180"),
    ({"arm_lower_rad": [-170.0] * 7, "arm_upper_rad": [170.0] * 7}, r"arm_lower_rad: .*these look like degrees"),
    ({"home_positions": [90.0] + [0.0] * 12}, r"home_positions: .*these look like degrees"),
    ({"arm_lower_rad": [0.5] + [-3.0] * 6}, r"home_positions: arm_joint_1 = 0 is outside its limits \[0.5, 3.1\]"),
    ({"place_positions": [0.0] * 12 + [2.0]}, r"hand_upper|place_positions"),
    ({"place_positions": [4.0] + [0.0] * 12}, r"place_positions: arm_joint_1 = 4 is outside its limits"),
    ({"arm_joint_names": ARM6}, r"arm_lower_rad needs 6 values, got 7 \(one per robot.arm_joint_names\)"),
    ({"hand_joint_names": ["a", "b"], "arm_joint_names": ["a"] + ARM6[1:] + ["x"]},
     r"joint names must be unique, \['a'\]"),
    ({"hand_lower": [0.0] * 5 + [-20.0]}, r"hand_lower: .*normalised"),
])
def test_bad_joint_space_is_one_clear_config_error(robot, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"robot": robot})


def test_legacy_joint_names_split_after_the_arm_and_dumps_load_back():
    names = [f"j{i}" for i in range(13)]
    cfg = config_from_dict({"robot": {"joint_names": names}})
    assert cfg.robot.arm_joint_names == names[:7] and cfg.robot.hand_joint_names == names[7:]
    again = config_from_dict(cfg.model_dump())  # the control process gets the config this way
    assert again.robot == cfg.robot
    with pytest.raises(ConfigError, match="disagrees with arm_joint_names"):
        config_from_dict({"robot": {"joint_names": names, "arm_joint_names": ARM6}})


def test_joint_space_without_a_config_checks_itself():
    with pytest.raises(ConfigError, match="home has 3 values for 2 joints"):
        JointSpace(("a",), ("h",), np.array([-1.0, 0.0]), np.array([1.0, 1.0]), np.zeros(3), np.zeros(2))
    np.testing.assert_allclose(scale_arm(np.array([-1.0, 1.0]), np.array([-2.0]), np.array([4.0])), [-2.0, 4.0])


# ---- safety.speed_scale -----------------------------------------------------------------------

def _run_filter(limits, target, cycles, dt=0.005):
    f = SafetyFilter(limits, dt)
    f.reset(np.zeros(limits.n))
    qs = [f.position]
    for _ in range(cycles):
        qs.append(f.apply(target)[0])
    q = np.array(qs)
    v = np.diff(q, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    return q, v, a


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_speed_scale_scales_velocity_and_acceleration_but_not_position_limits(scale):
    cfg = config_from_dict({"safety": {"speed_scale": scale}})
    limits = JointLimits.from_config(cfg.robot, cfg.safety)
    s = cfg.safety
    np.testing.assert_allclose(limits.max_velocity[:7], scale * s.max_velocity_arm_rad_s)
    np.testing.assert_allclose(limits.max_velocity[7:], scale * s.max_velocity_hand_per_s)
    np.testing.assert_allclose(limits.max_acceleration[:7], scale * s.max_acceleration_arm_rad_s2)
    np.testing.assert_allclose(limits.max_acceleration[7:], scale * s.max_acceleration_hand_per_s2)
    np.testing.assert_array_equal(limits.upper, cfg.robot.upper)  # positions are never scaled

    target = np.array(cfg.robot.upper) + 1.0  # beyond every limit: clamped, reached at the scaled speed
    q, v, a = _run_filter(limits, target, cycles=7000)  # 6.28 rad at 0.25 rad/s: 25 s
    np.testing.assert_allclose(q[-1], cfg.robot.upper, atol=1e-9)
    assert np.all(q <= np.array(cfg.robot.upper) + 1e-12)
    peak_v = np.max(np.abs(v), axis=0)
    np.testing.assert_allclose(peak_v, limits.max_velocity, rtol=1e-6)  # the scaled limit, and reached
    assert np.all(np.max(np.abs(a), axis=0) <= limits.max_acceleration * (1 + 1e-6))


def test_quarter_speed_takes_longer_to_reach_the_same_pose():
    cfg_full, cfg_slow = config_from_dict({}), config_from_dict({"safety": {"speed_scale": 0.25}})
    target = np.full(13, 0.8)
    steps = []
    for cfg in (cfg_full, cfg_slow):
        q, _, _ = _run_filter(JointLimits.from_config(cfg.robot, cfg.safety), target, cycles=2000)
        steps.append(int(np.argmax(np.all(np.abs(q - target) < 1e-9, axis=1))))
    assert steps[0] > 0 and steps[1] > 3 * steps[0]


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan")])
def test_speed_scale_out_of_range_is_refused(bad):
    with pytest.raises(ConfigError, match="safety.speed_scale"):
        config_from_dict({"safety": {"speed_scale": bad}})


def test_recorder_follows_the_joint_space(tmp_path):
    from types import SimpleNamespace

    from runtime.recording import make_recorder

    cfg = config_from_dict({"robot": ROBOT12})
    rec = make_recorder({"dir": str(tmp_path), "video": False, "writer": "thread"}, cfg)
    try:
        assert rec.cfg.state_dim == 12 and len(rec.cfg.arm_joint_limits["lower"]) == 6
        q = np.array([-3.0, -1.0, 1.0, -3.0, -1.0, 1.0] + [0.25] * 6)  # arm limits [-3, 1]
        stored = rec._joint_vector(SimpleNamespace(position=q, t=0.0), "state")
        np.testing.assert_allclose(stored, [-1.0, 0.0, 1.0, -1.0, 0.0, 1.0] + [0.25] * 6)  # upstream's [-1, 1]
        assert rec._joint_vector(SimpleNamespace(position=np.zeros(13), t=0.0), "state") is None  # other layout
    finally:
        rec.stop()


def test_a_12_joint_robot_runs_end_to_end_on_the_fake_link(tmp_path):
    """The whole thread-mode App on a 6-arm + 6-hand joint space: fake link from the config, fake
    policy, synthetic cameras on the robot's joint space (fed a fixed pose; test_joint_layout.py
    runs the scene from the robot's state)."""
    import time

    from runtime.app import App
    from runtime.cameras.synthetic import make_synthetic_cameras
    from runtime.clock import Clock
    from runtime.execution.fakes import FakeChunkPolicy

    cfg = config_from_dict({
        "robot": ROBOT12,
        "control": {"rate_hz": 100, "realtime": {"sched_fifo_priority": None, "mlockall": False}},
        "tracker": {"kind": "none"}, "planner": {"enabled": False, "autostart": False},
        "bridge": {"kind": "fake"}, "policy": {"backend": "fake"}, "safety": {"auto_rearm": True},
    }, "test")
    clock = Clock()
    _, head, wrist = make_synthetic_cameras(lambda: np.zeros(12), clock=clock, fps=15,
                                            joint_space=cfg.robot.joint_space())
    app = App(cfg, clock=clock, cameras=(head, wrist, None), policy=FakeChunkPolicy(latency_s=0.05), tracker=None)
    app.start()
    try:
        assert app.submit_command({"cmd": "manual_bbox", "bbox": [10, 10, 50, 60]})["ok"]
        end = time.monotonic() + 20.0
        while time.monotonic() < end and app.loop.executor.counters.chunks_accepted < 2:
            time.sleep(0.02)
        assert app.loop.executor.counters.chunks_accepted >= 2, app.policy_worker.report()
    finally:
        report = app.run(duration_s=0.0)
    assert not report["errors"], report["errors"]
    sent = np.array([q for _, q in app.bridge.sent])
    assert sent.shape[1] == 12
    assert np.all(sent >= np.array(cfg.robot.lower) - 1e-9) and np.all(sent <= np.array(cfg.robot.upper) + 1e-9)
    assert np.ptp(sent[:, :6], axis=0).max() > 0  # the arm moved
