"""bridge.kind ros2: validated at load, built by make_bridge (arm over real DDS + the fake hand)."""

import numpy as np
import pytest

from runtime.clock import Clock
from runtime.config import config_from_dict, load_config
from runtime.config.components import make_bridge
from runtime.errors import ConfigError

ARM = [f"arm_joint_{i + 1}" for i in range(7)]
CTRL = [f"panda_joint{i + 1}" for i in range(7)]
HOME = [0.0, -0.5, 0.0, -1.8, 0.0, 1.3, 0.0] + [0.0] * 6


def cfg_dict(**ros2):
    ros2.setdefault("joints", dict(zip(ARM, CTRL, strict=True)))
    ros2.setdefault("hand", "fake")
    return {"robot": {"home_positions": HOME}, "bridge": {"kind": "ros2", "ros2": ros2}}


def load(d):
    return config_from_dict(d, "<test>")


def test_shipped_example_loads():
    cfg = load_config("configs/ros2_arm_example.yaml")
    assert cfg.bridge.kind == "ros2" and cfg.bridge.ros2.hand == "serial"
    assert list(cfg.bridge.ros2.joints.values()) == CTRL


@pytest.mark.parametrize("change, message", [
    ({"joints": {"arm_joint_9": "panda_joint1"}}, "arm_joint_9"),
    ({"joints": {"arm_joint_1": "j", "arm_joint_2": "j"}}, "more than one runtime joint"),
    ({"hand": "none"}, "hand is 'none' but joints"),
    ({"command_type": "velocity"}, "command_type"),
    ({"state_max_age_s": 0}, "state_max_age_s"),
    ({"domain_id": 300}, "domain_id"),
    ({"hand": "serial"}, "needs bridge.port"),
    ({"contoller": "x"}, "contoller"),
])
def test_bad_ros2_options_are_one_clear_error(change, message):
    with pytest.raises(ConfigError, match=message):
        load(cfg_dict(**change))


def test_ros2_section_is_required_and_real_hardware_rules_apply():
    with pytest.raises(ConfigError, match="bridge.ros2"):
        load({"robot": {"home_positions": HOME}, "bridge": {"kind": "ros2"}})
    d = cfg_dict()
    d["safety"] = {"auto_rearm": True}
    with pytest.raises(ConfigError, match="auto_rearm"):
        load(d)
    d = cfg_dict()
    del d["robot"]
    with pytest.raises(ConfigError, match="home_positions"):
        load(d)


def test_make_bridge_builds_arm_over_dds_and_hand_by_name():
    pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")
    from robot_dds_peer import ControllerPeer, fresh_domain_id

    from runtime.robot.link import check_link

    domain = fresh_domain_id()
    peer = ControllerPeer(domain, list(reversed(CTRL)), positions=np.arange(7)[::-1] * 0.1)
    d = cfg_dict(domain_id=domain, interface="lo", allow_multicast=False, peers=["127.0.0.1"])
    handle = make_bridge(load(d), Clock())
    try:
        link = handle.bridge
        assert check_link(link) == [] and "ROS 2 arm" in handle.description
        st = link.latest_state()
        assert np.allclose(st.positions[:7], np.arange(7) * 0.1)  # arm joints by name
        link.arm()
        q = np.array(HOME)
        q[7:] = 0.5
        sent = link.send_targets(q, None)
        got = peer.wait_commands(1)
        assert list(got[0].joint_names) == CTRL and np.allclose(got[0].points[0].positions, HOME[:7])
        assert np.allclose(sent[7:], 0.5)  # the hand's part went to the fake hand link
    finally:
        assert handle.close() == []
        peer.close()


def test_control_loop_drives_the_ros2_arm_and_holds_when_state_stops():
    """The real ControlLoop.step() on the composite link: the arm is armed and streamed to, and a
    driver that stops publishing makes the loop hold with nothing more on the wire."""
    pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")
    import time

    from robot_dds_peer import ControllerPeer, fresh_domain_id

    from runtime.execution.executor import ChunkExecutor
    from runtime.execution.loop import ControlLoop
    from runtime.execution.requests import ChunkRequests
    from runtime.execution.safety import JointLimits, SafetyFilter
    from runtime.mailbox import Mailbox

    domain = fresh_domain_id()
    peer = ControllerPeer(domain, CTRL, positions=HOME[:7])
    cfg = load(cfg_dict(domain_id=domain, interface="lo", allow_multicast=False, peers=["127.0.0.1"],
                        state_max_age_s=0.1))
    clock = Clock()
    handle = make_bridge(cfg, clock)
    try:
        rate = cfg.control.rate_hz
        loop = ControlLoop(handle.bridge, ChunkExecutor.from_config(cfg),
                           SafetyFilter(JointLimits.from_config(cfg.robot, cfg.safety), 1 / rate),
                           Mailbox("chunks", clock), ChunkRequests(), rate, clock, max_state_age_s=0.1)
        for _ in range(5):
            loop.step(clock.now(), clock.now() + 1 / rate)
            time.sleep(1 / rate)
        assert handle.bridge.armed and loop.commands_sent >= 4
        got = peer.wait_commands(4)
        assert list(got[-1].joint_names) == CTRL and np.allclose(got[-1].points[0].positions, HOME[:7], atol=1e-6)
        peer.publishing = False
        deadline = time.monotonic() + 5
        while handle.bridge.armed and time.monotonic() < deadline:
            time.sleep(0.01)
        n_wire = len(peer.commands())
        for _ in range(5):
            loop.step(clock.now(), clock.now() + 1 / rate)
        assert loop.hold_reason in ("robot_state_stale", "link_down")
        assert not handle.bridge.armed and handle.bridge.needs_rearm
        time.sleep(0.1)
        assert len(peer.commands()) == n_wire  # held: nothing more reached the controller
    finally:
        handle.close()
        peer.close()
