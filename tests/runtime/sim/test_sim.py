"""The MuJoCo tabletop: generated scene, joint checks, physics, the robot link, the expert, the judge."""

from __future__ import annotations

import numpy as np
import pytest

import runtime.sim  # noqa: E402,F401  (headless GL before mujoco is imported)

pytest.importorskip("mujoco")

from runtime.config.schema import RobotConfig  # noqa: E402
from runtime.errors import ConfigError, StaleDataError  # noqa: E402
from runtime.sim import shm  # noqa: E402
from runtime.sim.collect import judge  # noqa: E402
from runtime.sim.scene import MIN_SPACING_M, TABLE_Z, build_mjcf, load_model, random_scene  # noqa: E402

HOME = [0.0, 0.343, 0.0, 1.491, 0.0, 1.246, 0.0] + [0.0] * 6


def test_scene_is_seeded_spaced_and_uses_the_robots_joint_names():
    a, b, c = random_scene(3), random_scene(3), random_scene(4)
    assert a == b and a != c
    for spec in (a, c):
        assert len({o.colour for o in spec.objects}) == len(spec.objects)
        for i, o in enumerate(spec.objects):
            for p in spec.objects[i + 1:]:
                assert np.hypot(o.x - p.x, o.y - p.y) >= MIN_SPACING_M
    robot = RobotConfig(joint_names=[f"j{i}" for i in range(13)])
    model = load_model(robot, a)
    import mujoco

    for i in range(13):
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"j{i}") >= 0
    jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "j1")
    assert model.jnt_range[jid].tolist() == pytest.approx([-2.268, 2.268])


def test_a_scene_with_an_unknown_joint_is_refused_naming_it():
    robot = RobotConfig()
    xml = build_mjcf(robot, random_scene(0)).replace('name="hand_joint_6"', 'name="pinky_joint"')
    with pytest.raises(ConfigError, match="pinky_joint|hand_joint_6"):
        load_model(robot, xml=xml, where="my_scene.xml")
    # an extra, unactuated joint the robot does not have
    xml = build_mjcf(robot, random_scene(0)).replace(
        '<geom name="floor"', '<body name="door"><joint name="door_hinge" type="hinge"/><geom type="box" size=".1 .1 .1" pos="2 2 .1"/></body><geom name="floor"')
    with pytest.raises(ConfigError, match="unknown joint 'door_hinge'"):
        load_model(robot, xml=xml, where="my_scene.xml")


def test_position_servos_close_the_hand_in_a_handful_of_steps():
    import mujoco

    robot = RobotConfig(home_positions=HOME)
    model = load_model(robot, random_scene(0))
    d = mujoco.MjData(model)
    d.qpos[:7] = HOME[:7]
    d.ctrl[:] = HOME
    d.ctrl[7:] = 1.0  # close all six hand joints
    for _ in range(100):
        mujoco.mj_step(model, d)
    hand = [d.joint(f"hand_joint_{i + 1}").qpos[0] for i in range(6)]
    assert min(hand) > 0.15  # every finger joint moved toward closed within 0.2 s
    assert np.max(np.abs(d.qpos[:7] - HOME[:7])) < 0.02  # the arm (gravity compensated) holds its pose


def test_the_expert_plans_a_reachable_top_down_grasp_and_speaks_upstreams_action_space():
    from runtime.clock import FakeClock
    from runtime.config.loading import load_config
    from runtime.sim.expert import ScriptedExpert

    cfg = load_config("configs/mujoco.yaml")
    clock = FakeClock(10.0)
    expert = ScriptedExpert(cfg, 0, clock=clock)
    o = expert.spec.objects[0]
    expert.pose_source = lambda: (np.array([o.x, o.y, o.rest_z]), np.array([1.0, 0, 0, 0]))
    state = np.array(HOME)
    lo, hi = np.array(cfg.robot.arm_lower_rad), np.array(cfg.robot.arm_upper_rad)
    state13 = np.concatenate([(state[:7] - lo) * 2 / (hi - lo) - 1, state[7:]])
    chunk = expert.predict_chunk(None, None, None, state13)
    assert chunk.shape == (64, 13) and chunk.dtype == np.float32
    assert np.all(np.abs(chunk[:, :7]) <= 1.0)
    np.testing.assert_allclose(chunk[0], state13, atol=1e-4)  # starts where the robot is
    times, qs = expert._plan
    grasp_q = qs[int(np.argmax(qs[:, 7] > 0.5))]  # first waypoint with the hand closed
    pos, rot = expert.kin.fk(grasp_q[:7])
    assert np.linalg.norm(pos - [o.x, o.y, o.rest_z]) < 0.005  # the grasp site at the object's centre
    assert rot[:, 2] @ [0, 0, -1] > 0.99  # fingers pointing down
    lift_pos, _ = expert.kin.fk(qs[-1][:7])
    assert lift_pos[2] - o.rest_z == pytest.approx(expert.lift_h, abs=0.005)
    speeds = np.abs(np.diff(expert._sample(np.arange(times[0], times[-1], 0.005))[:, :7], axis=0)) / 0.005
    assert speeds.max() < cfg.safety.max_velocity_arm_rad_s  # the safety filter never reshapes it


def test_judge_needs_the_lift_held_for_the_whole_hold_time():
    samples = [(t / 10, 0.1 if 10 <= t < 18 or t >= 30 else 0.0) for t in range(50)]
    assert judge(samples[:30], 0.06, 1.0) is None      # 0.8 s lifted, then dropped: no success
    assert judge(samples, 0.06, 1.0) == pytest.approx(3.0)


class _Link:
    def __init__(self, mem):
        self.mem, self.alive, self.released = mem, True, 0

    def release(self):
        self.released += 1


def test_bridge_moves_nothing_until_armed_and_reports_stale_state():
    from runtime.clock import FakeClock
    from runtime.sim.bridge import MujocoBridge

    mem = shm.SimMemory(shm.Layout((8, 6), (8, 6), 13), create=True)
    try:
        clock = FakeClock(5.0)
        state = np.concatenate([[5.0, 0.0, 0, 0], HOME, np.zeros(13)])
        shm.write(mem["state"], state)
        b = MujocoBridge(_Link(mem), np.full(13, -3.0), np.full(13, 3.0), clock)
        target = np.array(HOME) + 0.1
        b.send_targets(target, 5.0)
        assert shm.read(mem["cmd"])[3] == 0  # unarmed: nothing reached the sim
        b.arm()
        b.send_targets(target, 5.0)
        cmd = shm.read(mem["cmd"])
        assert cmd[1] == 1.0 and cmd[3] == 1 and np.allclose(cmd[4:], target)
        b.protective_stop()
        b.send_targets(target + 0.1, 5.0)
        assert np.allclose(shm.read(mem["cmd"])[4:], target) and shm.read(mem["cmd"])[2] == 1.0
        np.testing.assert_allclose(b.latest_state(0.05).positions, HOME)
        clock.advance(0.2)
        with pytest.raises(StaleDataError, match="ms old"):
            b.latest_state(0.05)
        b.close()
        assert b.link.released == 1
    finally:
        mem.close()


def test_sim_process_steps_at_real_time_and_renders_timestamped_frames():
    """One real sim process (tiny cameras): state advances with the clock, frames are new and stamped."""
    import time

    from runtime.cameras.mujoco import MujocoCamera
    from runtime.config.loading import load_config
    from runtime.sim import link

    cfg = load_config("configs/mujoco.yaml", {"cameras": {"head": {"width": 64, "height": 48, "fps": 10},
                                                          "wrist": {"width": 64, "height": 48, "fps": 10}}})
    cam = MujocoCamera("third", "head", cfg, width=64, height=48, fps=10)
    cam.connect()
    try:
        f1 = cam.read(3000)
        f2 = cam.read(3000)
        assert f1.image.shape == (48, 64, 3) and f2.index > f1.index and f2.t_capture > f1.t_capture
        assert abs(time.monotonic() - f2.t_capture) < 1.0
        sim = link.current()
        s1 = shm.read(sim.mem["state"])
        time.sleep(0.3)
        s2 = shm.read(sim.mem["state"])
        sim_dt, wall_dt, dropped = s2[1] - s1[1], s2[0] - s1[0], (s2[3] - s1[3]) * 0.002
        assert sim_dt > 0.1  # it runs on its own
        # real time: simulated time + the time it counted as dropped (a starved process) = wall time
        assert sim_dt + dropped == pytest.approx(wall_dt, abs=0.01)
        obj = shm.read(sim.mem["obj"])
        assert obj[0] == 3 and obj[3] == pytest.approx(TABLE_Z + random_scene(0).objects[0].half_height_m, abs=0.01)
    finally:
        cam.disconnect()
    assert link.current() is None  # the last user released it: the process stopped


def test_collect_refuses_a_config_that_is_not_on_the_sim(tmp_path, capsys):
    from runtime.cli.main import main

    rc = main(["sim", "collect", "--episodes", "1", "--output", str(tmp_path / "demos"), "--config", "configs/sim.yaml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "needs bridge.kind and cameras.kind 'mujoco'" in err[0] and "'emulator'" in err[0]


def test_a_dead_sim_is_a_link_loss_not_a_silent_new_world():
    import os
    import signal

    from runtime.clock import Clock
    from runtime.config.loading import load_config
    from runtime.errors import DeviceNotConnectedError
    from runtime.sim import link
    from runtime.sim.bridge import make_mujoco_bridge

    tiny = {"width": 32, "height": 24, "fps": 5}
    cfg = load_config("configs/mujoco.yaml", {"cameras": {"head": tiny, "wrist": tiny}})
    bridge = make_mujoco_bridge(cfg, Clock())
    try:
        bridge.arm()
        assert bridge.link_up
        os.kill(link.current().proc.pid, signal.SIGKILL)
        link.current().proc.join(5)
        assert not bridge.link_up
        with pytest.raises(DeviceNotConnectedError, match="not running"):
            bridge.send_targets(np.array(HOME), 0.0)
        with pytest.raises(DeviceNotConnectedError, match="sim process ended"):
            link.acquire(cfg)
    finally:
        bridge.close()
    assert link.current() is None and link.ENV not in os.environ


def test_ground_truth_masks_label_each_object_where_it_is_rendered():
    from runtime.config.loading import load_config
    from runtime.sim.process import Simulator, settings_from_config

    cfg = load_config("configs/mujoco.yaml", {"cameras": {"head": {"width": 160, "height": 120},
                                                          "wrist": {"width": 32, "height": 24}}})
    sim = Simulator(settings_from_config(cfg, render_masks=True))
    mask = sim.render("head", (160, 120), masks=True)
    img = sim.render("head", (160, 120))
    assert mask.shape == (120, 160) and set(np.unique(mask)) == {0, 1, 2, 3}  # three objects, table = 0
    for i, o in enumerate(sim.spec.objects):
        import cv2

        from runtime.planner.local_backend import colour_mask

        hsv = cv2.cvtColor(img[:, :, ::-1].copy(), cv2.COLOR_BGR2HSV)
        seen = colour_mask(hsv, o.colour) > 0
        # the object's pixels are its colour as the planner sees it
        assert (seen & (mask == i + 1)).sum() >= 0.5 * (mask == i + 1).sum()


def test_a_runtime_that_fails_to_start_stops_its_sim(monkeypatch):
    import os

    from runtime.app import App
    from runtime.config.loading import load_config
    from runtime.execution.fakes import FakeChunkPolicy
    from runtime.sim import link

    tiny = {"width": 32, "height": 24, "fps": 5}
    cfg = load_config("configs/mujoco.yaml", {"cameras": {"head": tiny, "wrist": tiny},
                                              "control": {"process": "thread"}})

    def fail(self):
        raise RuntimeError("start-up failed")

    monkeypatch.setattr(App, "_start_threads", fail)
    app = App(cfg, policy=FakeChunkPolicy())
    with pytest.raises(RuntimeError, match="start-up failed"):
        app.start()
    assert link.current() is None and link.ENV not in os.environ  # nothing left running


def test_episode_config_sets_scene_prompt_and_recording_per_episode(tmp_path):
    from runtime.config.loading import load_config
    from runtime.sim.collect import episode_config, episode_target
    from runtime.sim.scene import random_scene

    base = load_config("configs/mujoco.yaml")
    assert episode_target(12) == episode_target(12)  # an evaluation of seed 12 asks for the same object
    assert 0 <= episode_target(12) < len(random_scene(12).objects)
    cfg = episode_config(base, 12, "grasp the red object", tmp_path)
    assert cfg.cameras.seed == 12 and cfg.planner.prompt == "grasp the red object" and cfg.planner.autostart
    assert cfg.recording["dir"] == str(tmp_path)
    assert episode_config(base, 12, "grasp the red object", None).recording is None
    assert base.cameras.seed == 0  # the base config is left as it was
