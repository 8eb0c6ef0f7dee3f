"""The ROS 2 arm adapter against a real in-process DDS participant playing the ros2_control side.

Each test uses a DDS domain of its own (loopback only), so tests running at the same time on the
machine never hear each other. Waits poll with generous timeouts; nothing asserts a speed.
"""

import time

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed: no DDS participants")

from robot_dds_peer import ControllerPeer, fresh_domain_id, loopback  # noqa: E402

from firmware_bridge.errors import CommandError, NotArmedError  # noqa: E402
from runtime.errors import ConfigError, DeviceNotConnectedError, StaleDataError  # noqa: E402
from runtime.robot import ros2_types as T  # noqa: E402
from runtime.robot.ros2 import Ros2ArmLink  # noqa: E402

RUNTIME = ("arm_j1", "arm_j2", "arm_j3")
CONTROLLER = ("panda_joint1", "panda_joint2", "panda_joint3")


def wait_until(pred, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


@pytest.fixture
def domain():
    return fresh_domain_id()


@pytest.fixture
def peers():
    made = []
    yield made
    for p in made:
        p.close()


def make_link(domain, **kw):
    kw.setdefault("state_max_age_s", 0.15)
    kw.setdefault("connect_timeout_s", 5.0)
    return Ros2ArmLink(RUNTIME, CONTROLLER, domain_id=domain, dds=loopback(domain), **kw)


def test_commands_arrive_with_controller_names_and_values(domain, peers):
    # The driver publishes more joints than ours (a gripper finger), in its own order.
    peers.append(peer := ControllerPeer(domain, ["finger", "panda_joint3", "panda_joint1", "panda_joint2"],
                                        [0.9, 0.3, 0.1, 0.2]))
    with make_link(domain) as link:
        st = link.latest_state()
        assert st.names == RUNTIME and np.allclose(st.positions, [0.1, 0.2, 0.3])  # matched by name
        assert st.source == "ros2:rt/joint_states"
        link.arm()
        t_target = link.clock.now() + 0.2
        sent = link.send_targets(np.array([0.4, -0.5, 0.6]), t_target)
        got = peer.wait_commands(1)
    assert len(got) == 1 and isinstance(got[0], T.JointTrajectory_)
    msg = got[0]
    assert list(msg.joint_names) == list(CONTROLLER)
    assert len(msg.points) == 1 and np.allclose(msg.points[0].positions, [0.4, -0.5, 0.6])
    assert np.allclose(sent, [0.4, -0.5, 0.6])
    tfs = msg.points[0].time_from_start.sec + msg.points[0].time_from_start.nanosec * 1e-9
    assert 0.1 < tfs <= 0.2  # reach by t_target: relative to when it was written
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)  # "start on receipt"


def test_forward_position_controller_gets_values_in_controller_order(domain, peers):
    peers.append(peer := ControllerPeer(domain, list(CONTROLLER), controller="arm_fwd",
                                        command_type="forward_position"))
    with make_link(domain, controller="arm_fwd", command_type="forward_position",
                   lower=[-1, -1, -1], upper=[1, 1, 1]) as link:
        link.arm()
        sent = link.send_targets(np.array([0.1, 2.0, -0.3]))  # 2.0 is clamped to the upper limit
        got = peer.wait_commands(1)
    assert np.allclose(sent, [0.1, 1.0, -0.3])
    assert isinstance(got[0], T.Float64MultiArray_) and np.allclose(got[0].data, [0.1, 1.0, -0.3])


def test_stale_state_holds_the_arm_until_an_explicit_rearm(domain, peers):
    peers.append(peer := ControllerPeer(domain, list(CONTROLLER)))
    with make_link(domain) as link:
        link.arm()
        link.send_targets(np.zeros(3))
        assert len(peer.wait_commands(1)) == 1
        peer.publishing = False  # the driver hangs: no more joint_states
        assert wait_until(lambda: not link.armed)  # the watchdog disarmed by itself
        h = link.health()
        assert not h.ok and h.needs_rearm and "stale" in h.cause
        assert not link.link_up
        with pytest.raises(StaleDataError, match="stale"):
            link.send_targets(np.zeros(3))
        with pytest.raises(StaleDataError):
            link.latest_state(0.15)
        with pytest.raises(DeviceNotConnectedError, match="stale"):
            link.arm()
        peer.publishing = True
        assert wait_until(lambda: link.link_up)
        # Fresh again, but nothing moves until the operator re-arms.
        with pytest.raises(NotArmedError, match="re-arm"):
            link.send_targets(np.zeros(3))
        time.sleep(0.1)
        assert len(peer.commands()) == 1  # nothing reached the controller while holding
        link.arm()
        link.send_targets(np.ones(3) * 0.1)
        assert len(peer.wait_commands(2)) == 2
        assert link.counters()["watchdog_trips"] >= 1


def test_controller_that_disappears_holds_the_arm_and_says_why(domain, peers):
    peer = ControllerPeer(domain, list(CONTROLLER))
    # a long state age: what trips first is the controller's subscription going away
    with make_link(domain, state_max_age_s=2.0) as link:
        link.arm()
        link.send_targets(np.zeros(3))
        assert len(peer.wait_commands(1)) == 1
        peer.close()  # the controller's process is gone: participant, subscription and state
        assert wait_until(lambda: not link.armed)
        h = link.health()
        assert not h.ok and h.needs_rearm
        assert "controller gone" in h.cause and "rt/joint_trajectory_controller/joint_trajectory" in h.cause
        assert "controller gone" in link.counters()["last_trip_cause"]
        with pytest.raises(DeviceNotConnectedError, match="controller gone"):
            link.send_targets(np.zeros(3))


def test_no_command_is_sent_before_the_joint_names_match(domain, peers):
    # The controller knows joints 1 and 2 but not 3: connect refuses, naming the joint.
    peers.append(peer := ControllerPeer(domain, ["panda_joint1", "panda_joint2", "panda_joint9"]))
    link = make_link(domain)
    with pytest.raises(ConfigError, match=r"'panda_joint3' \(runtime 'arm_j3'\)"):
        link.connect()
    with pytest.raises(DeviceNotConnectedError):
        link.arm()
    with pytest.raises((NotArmedError, DeviceNotConnectedError, StaleDataError)):
        link.send_targets(np.zeros(3))
    time.sleep(0.1)
    assert peer.commands() == []
    link.close()


def test_controller_naming_none_of_our_joints_is_a_clear_error(domain, peers):
    peers.append(peer := ControllerPeer(domain, ["ur_shoulder", "ur_elbow"]))
    with pytest.raises(ConfigError, match="does not know any configured joint"):
        make_link(domain, connect_timeout_s=0.5).connect()
    assert peer.commands() == []


def test_no_controller_at_all(domain):
    link = make_link(domain, connect_timeout_s=0.3)
    with pytest.raises(DeviceNotConnectedError, match="no sensor_msgs/JointState on rt/joint_states"):
        link.connect()
    assert not link.link_up


def test_state_without_a_command_subscriber_is_refused_at_connect(domain, peers):
    peers.append(ControllerPeer(domain, list(CONTROLLER), subscribe=False))  # broadcaster only
    with pytest.raises(DeviceNotConnectedError, match="nothing subscribes to rt/joint_trajectory_controller"):
        make_link(domain, connect_timeout_s=0.5).connect()


def test_sensor_data_qos_reads_a_best_effort_publisher(domain, peers):
    peers.append(ControllerPeer(domain, list(CONTROLLER), [0.1, 0.2, 0.3], state_reliable=False))
    with make_link(domain, state_qos="sensor_data") as link:
        assert np.allclose(link.latest_state().positions, [0.1, 0.2, 0.3])


def test_protective_stop_holds_the_controller_and_latches(domain, peers):
    peers.append(peer := ControllerPeer(domain, list(CONTROLLER)))
    with make_link(domain) as link:
        link.arm()
        link.protective_stop()
        got = peer.wait_commands(1)
        assert isinstance(got[0], T.JointTrajectory_) and got[0].points == []  # JTC: stop and hold
        with pytest.raises(NotArmedError, match="protective stop"):
            link.arm()
        link.clear_stop()
        assert link.needs_rearm and not link.armed
        link.arm()
        link.send_targets(np.zeros(3))
        assert len(peer.wait_commands(2)) == 2


def test_bad_targets_are_refused_before_anything_is_written(domain, peers):
    peers.append(peer := ControllerPeer(domain, list(CONTROLLER)))
    with make_link(domain) as link:
        link.arm()
        with pytest.raises(CommandError, match="arm_j2"):
            link.send_targets(np.array([0.0, np.nan, 0.0]))
        with pytest.raises(CommandError, match="shape"):
            link.send_targets(np.zeros(4))
        time.sleep(0.1)
        assert peer.commands() == []


def test_mismatched_config_is_refused_at_construction():
    with pytest.raises(ConfigError, match="pair up"):
        Ros2ArmLink(RUNTIME, CONTROLLER[:2])
    with pytest.raises(ConfigError, match="repeat"):
        Ros2ArmLink(RUNTIME, ("a", "a", "b"))
