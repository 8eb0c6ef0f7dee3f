"""Nothing but the joint space sizes a joint vector (issue 12): a 6-arm + 6-hand robot runs the
sim preset end to end (separate control process and in-process) with a 12-joint model made by
`dexgrasp make-checkpoint --config` and `dexgrasp export`, records 12-column episodes and reports
and publishes its own 12 joint names; a model for another joint count is refused naming both
layouts before the robot is driven; the synthetic scene, the
MuJoCo shared memory, the recorder, telemetry and the bridge CLI follow the joint space; the serial
firmware's 13-joint wire format refuses another layout with one line."""

from __future__ import annotations

import time

import numpy as np
import pytest

from runtime.config import config_from_dict, load_config
from runtime.errors import ConfigError, ModelError, ObservationError

ARM6 = [f"ur_{i}" for i in range(6)]
HAND6 = [f"finger_{i}" for i in range(6)]
ROBOT12 = {"arm_joint_names": ARM6, "hand_joint_names": HAND6,
           "arm_lower_rad": [-3.0] * 6, "arm_upper_rad": [1.0] * 6}
NAMES12 = ARM6 + HAND6
WAIT_S = 60.0


def wait_for(pred, timeout_s=WAIT_S):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    return pred()


class Controller12:
    """An exported controller's surface (obs_specs from a manifest, predict) for a model that reads a
    12-joint state and writes 12 actions: each chunk drifts every joint from the state toward 0.3."""

    def __init__(self, n_joints: int, horizon: int = 32, image_size: int = 56) -> None:
        from runtime.controller.manifest import obs_specs

        self.obs_specs = obs_specs(image_size, n_joints)
        self.action_dim, self.horizon = n_joints, horizon
        self.states: list[np.ndarray] = []

    def predict(self, obs, seed=0):
        from runtime.controller.controller import validate_obs

        inputs = validate_obs(obs, self.obs_specs)  # what the real Controller checks first
        s = inputs["right_state"][0, 0].astype(np.float64)
        self.states.append(s)
        k = np.arange(1, self.horizon + 1)[:, None]
        return (s + np.clip(0.3 - s, -0.02 * k, 0.02 * k)).astype(np.float32)


# ---- the policy's state input comes from the model ----------------------------------------------

def test_the_policy_reads_the_models_state_width_and_refuses_another():
    from runtime.workers.policy import ControllerPolicy

    img, mask = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    ctrl = Controller12(12)
    chunk = ControllerPolicy(ctrl).predict_chunk(img, mask, img, np.linspace(-1, 1, 12))
    assert chunk.shape == (32, 12) and ctrl.states[0].shape == (12,)
    with pytest.raises(ObservationError, match=r"state: expected 12 values \(the model's right_state width\), "
                                               r"got shape \(13,\)"):
        ControllerPolicy(ctrl).predict_chunk(img, mask, img, np.zeros(13))


# ---- end to end on the sim preset ---------------------------------------------------------------

@pytest.fixture(scope="module")
def robot12_yaml(tmp_path_factory):
    """A robot team's config file naming its 6 arm and 6 hand joints."""
    import yaml

    path = tmp_path_factory.mktemp("robot12") / "robot12.yaml"
    path.write_text(yaml.safe_dump({"robot": ROBOT12}))
    return path


@pytest.fixture(scope="module")
def model12(robot12_yaml):
    """A random-weight 12-joint controller the way a robot team makes one: `dexgrasp make-checkpoint
    --config ROBOT.yaml`, then `dexgrasp export controller` (tiny architecture: seconds)."""
    pytest.importorskip("torch", reason="the export extra (torch) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    from runtime.cli.main import main

    root = robot12_yaml.parent
    assert main(["make-checkpoint", "--preset", "_test_tiny", "--config", str(robot12_yaml),
                 "--output", str(root / "t12.ckpt"), "--seed", "4"]) == 0
    assert main(["export", "controller", "--checkpoint", str(root / "t12.ckpt"), "--output", str(root / "model"),
                 "--no-progress"]) == 0
    return root / "model"


def test_make_checkpoint_config_exports_a_model_for_the_robots_joint_space(model12):
    from runtime.controller.manifest import Manifest
    from runtime.joint_space import JointSpace, check_model_dir

    manifest = Manifest.load(model12)
    assert manifest.action_dim == 12 and manifest.arch["state_dim"] == 12
    assert manifest.graph("encoder").input("right_state").shape == [1, 1, 12]
    check_model_dir(ROBOT12, model12)  # the robot it was made for: accepted
    with pytest.raises(ModelError, match=r"has action_dim 12 but robot config has 13 joints \(7 arm \+ 6 hand"):
        JointSpace.from_config({}).check_model(manifest)


def _sim_overrides(tmp_path, process, model_dir, dds=None):
    return {
        "robot": ROBOT12,
        "control": {"process": process, "rate_hz": 100,
                    "realtime": {"sched_fifo_priority": None, "cpu_affinity": None, "mlockall": False,
                                 "worker_sched_fifo_priority": None}},
        "bridge": {"kind": "fake"},  # the emulator-free path: the serial wire format is 13 joints
        "tracker": {"kind": "classical", "manual_box_xyxy": [270, 300, 330, 360]},  # autostarts an episode
        "planner": {"enabled": False, "autostart": False},
        "policy": {"model_dir": str(model_dir), "backend": "onnxruntime", "precision": "fp32", "threads": 1},
        "recording": {"dir": str(tmp_path / "rec"), "writer": "thread", "video": False, "chunk_frames": 4,
                      "min_free_mb": 0},
        "telemetry": {"dds": dds or {"enabled": False}},
    }


@pytest.mark.parametrize("process", ["separate", "thread"])
def test_a_6_plus_6_robot_runs_the_sim_preset_records_and_names_its_joints(tmp_path, process, model12, monkeypatch):
    pytest.importorskip("zarr", reason="the record extra (zarr) is not installed")
    from runtime.app import App
    from runtime.controller import Controller
    from runtime.recording import list_episodes, load_episode
    from runtime.telemetry.config import dds_unavailable

    # DDS on loopback, on this test session's domain (tests/runtime/conftest.py), when cyclonedds is here
    dds = None if dds_unavailable() else {"enabled": True, "interface": "loopback"}
    cfg = load_config("sim", _sim_overrides(tmp_path, process, model12, dds))
    states: list[np.ndarray] = []  # what the exported model was fed
    predict = Controller.predict

    def spy(self, obs, *args, **kwargs):
        states.append(np.array(obs["right_state"][0, 0], dtype=np.float64))
        return predict(self, obs, *args, **kwargs)

    monkeypatch.setattr(Controller, "predict", spy)
    app = App(cfg)  # the policy from the config: the exported 12-joint model; cameras: the synthetic scene
    app.start()
    client = None
    try:
        if dds is not None:
            from runtime.telemetry.client import DdsClient
            from runtime.telemetry.config import DdsConfig

            client = DdsClient(DdsConfig.from_dict(dds))
            joint_reader = client.joint_reader()
        assert wait_for(lambda: app.recorder.counters["frames_written"] >= 6), (app.recorder.status(),
                                                                              app.policy_worker.report())
        assert wait_for(lambda: len(states) >= 2), app.policy_worker.report()
        if client is not None:
            got = wait_for(lambda: joint_reader.take(N=20), 20.0)
            assert got, "no joint states on DDS"
            assert all(list(m.name) == NAMES12 and len(m.position) == 12 for m in got)
        assert app.scene is not None and app.scene.bad_states == 0  # the scene read every 12-joint state
    finally:
        if client is not None:
            client.close()
        report = app.run(duration_s=0.0)
    assert not report["errors"], report["errors"]
    assert report["policy"]["inferences"] >= 2
    assert (report["joints"], report["arm_joints"], report["hand_joints"]) == (12, 6, 6)
    assert report["joint_names"] == NAMES12
    assert "onnxruntime fp32" in app.policy_worker.policy.engine_choice
    for s in states:  # the model saw the robot's 12 joints, arm in upstream's [-1, 1]
        assert s.shape == (12,) and np.all(np.abs(s[:6]) <= 1.0 + 1e-6)
    episodes = [load_episode(p) for p in list_episodes(tmp_path / "rec")]
    assert episodes
    ep = max(episodes, key=lambda e: e.frames)
    n = ep.frames
    assert n >= 6
    assert ep.data["right_state"].shape == (n, 12) and ep.data["action"].shape == (n, 12)
    assert np.ptp(ep.data["action"][:, :6], axis=0).max() > 0  # the arm was commanded to move


@pytest.mark.parametrize("process", ["separate", "thread"])
def test_a_13_joint_model_on_the_6_plus_6_robot_is_refused_naming_both(tmp_path, process, tiny_model_dir):
    from runtime.app import App

    cfg = load_config("sim", _sim_overrides(tmp_path, process, tiny_model_dir))  # upstream's 13-joint model
    app = App(cfg)
    with pytest.raises(ModelError, match=rf"model {tiny_model_dir} has action_dim 13 but robot config has 12 joints "
                                         r"\(6 arm \+ 6 hand: ur_0, .*finger_5\)"):
        app.start()
    assert app.policy_worker is None  # refused before a policy thread existed (nothing commanded)



def test_the_sim_makes_its_random_model_for_the_robots_joint_space(tmp_path, monkeypatch):
    """policy.model_dir null on the 6+6 robot: the auto-made model reads and writes 12 joints (it used
    to be upstream's 13 and was refused), cached under a key naming the layout; upstream's 7 + 6 key
    is the one users' caches already have."""
    pytest.importorskip("torch", reason="the export extra (torch) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    from runtime.config import components, models
    from runtime.controller.manifest import Manifest

    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path / "cache"))
    overrides = _sim_overrides(tmp_path, "thread", None)
    overrides["policy"].update(model_dir=None, preset="_test_tiny", seed=4)  # tiny: the export takes seconds
    cfg = load_config("sim", overrides)
    policy = components.make_policy(cfg)
    made = models.cached_model_dir("_test_tiny", 4, cfg.robot)
    manifest = Manifest.load(made)
    assert manifest.action_dim == 12 and manifest.graph("encoder").input("right_state").shape == [1, 1, 12]
    img, mask = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    assert policy.predict_chunk(img, mask, img, np.zeros(12)).shape[-1] == 12
    fp = models.exporter_fingerprint()
    assert made.name == f"_test_tiny-seed4-6arm6hand-{fp}"
    upstream = models.cached_model_dir("_test_tiny", 4)
    assert upstream.name == f"_test_tiny-seed4-{fp}" and not upstream.exists()  # 13 joints: its own directory
    assert models.cached_model_dir("small", 0, load_config("sim").robot) == models.cached_model_dir("small", 0)
    seven_five = {"arm_joint_names": [f"a{i}" for i in range(7)], "hand_joint_names": [f"h{i}" for i in range(5)]}
    assert models.cached_model_dir("_test_tiny", 4, seven_five) != made  # 12 joints split otherwise: another model


# ---- the synthetic scene -------------------------------------------------------------------------

def test_the_synthetic_scene_reads_the_arm_and_hand_through_the_joint_space():
    from runtime.cameras.scene import TabletopScene, arm_points, default_state

    space = config_from_dict({"robot": ROBOT12}).robot.joint_space()
    q = default_state(space)
    assert q.shape == (12,) and np.all(q[6:] == 1.0)  # upstream's arm pose (first 6), open hand
    state = {"q": q.copy()}
    scene = TabletopScene(lambda: state["q"], joint_space=space)
    open_snap = scene.snapshot()
    assert open_snap.closure == 0.0 and scene.bad_states == 0
    state["q"] = q.copy()
    state["q"][6:] = 0.0  # the 6 hand joints closed
    assert scene.snapshot().closure == 1.0
    state["q"] = q.copy()
    state["q"][0] += 0.4  # base yaw: the wrist moves
    moved = scene.snapshot()
    assert not np.allclose(moved.arm[2], open_snap.arm[2])
    np.testing.assert_allclose(moved.arm, arm_points(state["q"][:6])[0])
    state["q"] = np.zeros(13)  # upstream's width on a 12-joint robot: ignored and counted
    scene.snapshot()
    assert scene.bad_states == 1


def test_a_scene_for_a_robot_it_cannot_draw_is_one_config_error_and_a_handless_one_stays_open():
    from runtime.cameras.scene import TabletopScene
    from runtime.joint_space import JointSpace

    three = config_from_dict({"robot": {"arm_joint_names": ["a", "b", "c"], "arm_lower_rad": [-1.0] * 3,
                                        "arm_upper_rad": [1.0] * 3}}).robot.joint_space()
    with pytest.raises(ConfigError, match=r"planar arm reads arm joints 1, 2 and 4; robot has 3 arm joints"):
        TabletopScene(joint_space=three)
    handless = JointSpace(tuple(ARM6), (), -np.ones(6), np.ones(6), np.zeros(6), np.zeros(6))
    snap = TabletopScene(lambda: np.zeros(6), joint_space=handless).snapshot()
    assert snap.closure == 0.0


# ---- MuJoCo shared memory -----------------------------------------------------------------------

def test_sim_shared_memory_is_sized_by_the_joint_count_and_refuses_another():
    from runtime.sim import shm

    mem = shm.SimMemory(shm.Layout((8, 6), (8, 6), 12), create=True)
    try:
        assert mem["state"].size == 1 + shm.STATE_HEAD + 24 and mem["cmd"].size == 1 + shm.CMD_HEAD + 12
        with pytest.raises(ConfigError, match=r"was made for 12 joints, this robot config has 13"):
            shm.SimMemory(shm.Layout((8, 6), (8, 6), 13), mem.name)
        again = shm.SimMemory(shm.Layout((8, 6), (8, 6), 12), mem.name)  # the same layout attaches
        again.close()
    finally:
        mem.close()


def test_sim_settings_size_the_layout_from_the_robot():
    from runtime.sim.process import settings_from_config

    cfg = config_from_dict({"robot": ROBOT12})
    assert settings_from_config(cfg).layout.n_joints == 12


# ---- recorder, telemetry, serial wire format, bridge CLI ----------------------------------------

def test_a_recording_state_dim_that_disagrees_with_the_robot_is_refused(tmp_path):
    from runtime.joint_space import JointSpace
    from runtime.recording import make_recorder
    from runtime.recording.config import RecordingConfig

    cfg = config_from_dict({"robot": ROBOT12})
    with pytest.raises(ConfigError, match=r"recording.state_dim: 13 but the robot has 12 joints \(6 arm \+ 6 hand\)"):
        make_recorder({"dir": str(tmp_path), "state_dim": 13, "writer": "thread"}, cfg)
    assert RecordingConfig(dir=str(tmp_path)).state_dim == JointSpace.from_config({}).n  # the default joint space


def test_telemetry_publishes_the_robots_joint_names_unless_the_section_names_them():
    from runtime.telemetry.config import DdsConfig

    assert DdsConfig().for_robot(NAMES12).joint_names == tuple(NAMES12)
    renamed = tuple(f"j{i}" for i in range(12))
    assert DdsConfig(joint_names=renamed).for_robot(NAMES12).joint_names == renamed
    with pytest.raises(ConfigError, match=r"telemetry.dds.joint_names: 13 names for a robot with 12 joints"):
        DdsConfig(joint_names=tuple(f"j{i}" for i in range(13))).for_robot(NAMES12)


def test_telemetry_names_a_sample_by_its_own_names_without_a_config():
    from runtime.robot.link import JointState
    from runtime.telemetry.joint import joint_sample

    js = joint_sample(JointState(tuple(NAMES12), np.zeros(12), np.zeros(12), 1.0))
    assert js.names == tuple(NAMES12)
    assert joint_sample(np.zeros(12)).names is None


@pytest.mark.parametrize("kind", ["emulator", "serial"])
def test_the_serial_wire_format_refuses_another_layout_before_opening_anything(kind, monkeypatch):
    from runtime.clock import Clock
    from runtime.config import components

    def no_emulator(*a, **k):
        raise AssertionError("the emulator must not start for a layout the wire format cannot carry")

    bridge = {"kind": kind, "port": "/dev/null"} if kind == "serial" else {"kind": kind}
    robot = dict(ROBOT12, home_positions=[0.0] * 12) if kind == "serial" else ROBOT12
    safety = {"auto_rearm": False} if kind == "serial" else {}
    cfg = config_from_dict({"robot": robot, "bridge": bridge, "safety": safety})
    monkeypatch.setattr("firmware_bridge.emulator.EmulatorProcess", no_emulator)
    monkeypatch.setattr("firmware_bridge.host.BridgeHost", no_emulator)
    with pytest.raises(ConfigError, match=rf"bridge.kind / bridge.ros2.hand '{kind}': the serial firmware protocol "
                                          r"carries 13 joints \(7 arm \+ 6 hand\), the robot config has 12 "
                                          r"\(6 arm \+ 6 hand\); drive this robot with bridge.kind ros2"):
        components.make_bridge(cfg, Clock())


class _Envelope:
    def __init__(self, n):
        self.lower, self.upper = -np.ones(n), np.ones(n)
        self.max_velocity, self.max_acceleration = np.full(n, 10.0), np.full(n, 100.0)

    def clip(self, q):
        return np.clip(q, self.lower, self.upper)


class _StreamBridge:
    """What `bridge stream` uses of a BridgeHost, for n joints."""

    def __init__(self, n):
        from runtime.clock import FakeClock

        self.clock, self.limits, self.n = FakeClock(1.0), _Envelope(n), n
        self.armed, self.commands = False, []

    def arm(self):
        self.armed = True

    def disarm(self):
        self.armed = False

    def latest_state(self, max_age_s=None):
        from types import SimpleNamespace

        return SimpleNamespace(positions=np.zeros(self.n))

    def send_targets(self, q):
        self.commands.append(np.asarray(q, dtype=np.float64))
        self.clock.advance(0.001)

    def counters(self):
        keys = ("states", "crc_errors", "resyncs", "timeouts", "reconnects", "commands_confirmed",
                "lost_rx_frames", "device_fault_codes")
        return {"commands_sent": len(self.commands), "rtt_ms": {}, **{k: 0 for k in keys}}


def test_bridge_stream_moves_the_joint_spaces_arm_only():
    from runtime.cli.bridge import stream_targets

    space = config_from_dict({"robot": ROBOT12}).robot.joint_space()
    bridge = _StreamBridge(12)
    stream_targets(bridge, duration_s=0.3, rate_hz=1000.0, amplitude=0.05, progress=False, joint_space=space)
    q = np.array(bridge.commands)
    assert q.shape[1] == 12 and np.abs(q[:, :6]).max() > 0 and np.all(q[:, 6:] == 0.0)
    with pytest.raises(ConfigError, match=r"the link reports 13 joints, the joint space has 12 \(6 arm \+ 6 hand\)"):
        stream_targets(_StreamBridge(13), duration_s=0.1, rate_hz=100.0, amplitude=0.05, progress=False,
                       joint_space=space)
