"""Every robot link the runtime can be given satisfies the declared RobotLink interface, and every
link's latest_state() is the one JointState, named by the runtime's joint names."""

from types import SimpleNamespace

import numpy as np
import pytest

from firmware_bridge import protocol as P
from firmware_bridge.host import BridgeHost, State
from runtime.clock import FakeClock
from runtime.config import config_from_dict
from runtime.execution.fakes import FakeBridge
from runtime.execution.loop_process import ControlLoopProcess, ControlProcessLink
from runtime.execution.messages import StatsMsg
from runtime.execution.requests import ChunkRequests
from runtime.joint_space import DEFAULT_ARM_NAMES, DEFAULT_HAND_NAMES
from runtime.mailbox import Mailbox
from runtime.robot.composite import CompositeLink, Part
from runtime.robot.link import JointState, RobotLink, check_link, link_health
from runtime.robot.ros2 import Ros2ArmLink
from runtime.sim import shm
from runtime.sim.bridge import MujocoBridge

DEFAULT_NAMES = DEFAULT_ARM_NAMES + DEFAULT_HAND_NAMES


class _SimMemory(dict):
    """The regions MujocoBridge reads and writes (plain arrays: shm.read / shm.write work on any)."""

    layout = SimpleNamespace(n_joints=13)

    def __init__(self, t_state: float) -> None:
        super().__init__(state=np.zeros(1 + 4 + 2 * 13), cmd=np.zeros(1 + 4 + 13))
        shm.write(self["state"], np.concatenate([[t_state, 0.25, 3, 0], np.arange(13.0) / 10, np.zeros(13)]))


class _SimLink:
    """What MujocoBridge needs of runtime.sim.link.SimLink: the memory, alive, release()."""

    def __init__(self, mem):
        self.mem, self.alive = mem, True

    def release(self):
        pass


def _mujoco_bridge(clock, t_state=5.0) -> MujocoBridge:
    return MujocoBridge(_SimLink(_SimMemory(t_state)), np.full(13, -3.0), np.full(13, 3.0), clock)


def _process_link() -> ControlProcessLink:
    cfg = config_from_dict({"bridge": {"kind": "fake"}, "control": {"process": "separate"}}, "test")
    return ControlLoopProcess(cfg, ChunkRequests(), Mailbox("chunks"), Mailbox("head")).link  # not started


def links():
    fake = FakeBridge(3)
    return {
        "firmware BridgeHost": BridgeHost("/dev/null-not-opened"),  # __init__ opens nothing
        "FakeBridge": fake,
        "Ros2ArmLink": Ros2ArmLink(("a", "b"), ("j1", "j2")),  # unconnected: no DDS needed
        "CompositeLink": CompositeLink(("a", "b", "c"), [Part("arm", FakeBridge(2, names=("a", "b")), ("a", "b"), ("a", "b")),
                                                         Part("hand", FakeBridge(1, names=("c",)), ("c",), ("c",))]),
        "ControlProcessLink": _process_link(),
    }


@pytest.mark.parametrize("name", list(links()))
def test_satisfies_the_protocol(name):
    link = links()[name]
    assert isinstance(link, RobotLink)
    assert check_link(link) == []


def test_the_mujoco_link_satisfies_the_protocol():
    b = _mujoco_bridge(FakeClock(5.0))
    assert isinstance(b, RobotLink) and check_link(b) == []


def test_check_link_names_what_is_wrong():
    class NoTarget:
        link_up = armed = needs_rearm = True

        def connect(self): ...
        def latest_state(self, max_age_s=None): ...
        def send_targets(self, positions): ...  # the loop passes t_target too
        def arm(self): ...
        def disarm(self): ...
        def protective_stop(self): ...
        def clear_stop(self): ...
        def counters(self): return {}
        def close(self): ...

    problems = check_link(NoTarget())
    assert any("send_targets" in p for p in problems)
    assert check_link(object())[0].startswith("object is not a RobotLink (missing ['connect'")


# ---- one JointState from every link, natively -------------------------------------------------
def test_fake_bridge_states_are_joint_states_named_like_the_config():
    clock = FakeClock(5.0)
    js = FakeBridge(13, clock).latest_state()
    assert isinstance(js, JointState) and js.names == DEFAULT_NAMES  # a default config's joints
    assert js.stamp == js.t_host_receive == 5.0 and js.age_s(5.5) == 0.5
    named = FakeBridge(2, clock, names=("x", "y")).latest_state()
    assert named.names == ("x", "y") and np.array_equal(named.velocities, np.zeros(2))
    with pytest.raises(ValueError, match="2 joint names for 3 joints"):
        FakeBridge(3, clock, names=("x", "y"))


def test_firmware_bridge_state_is_a_joint_state_with_the_report_details_kept():
    clock = FakeClock(100.0)
    host = BridgeHost("/dev/null-not-opened", clock=clock)
    q, v, e = np.arange(13.0), np.full(13, 0.5), np.full(13, -1.0)
    raw = State(7, 1234, q, v, e, P.Mode.ARMED, 0, 0x10, 0, 0, 42, 0, 99.5)
    host.state.put(raw, t_capture=99.5)
    js = host.latest_state(1.0)
    assert isinstance(js, JointState) and js.names == host.limits.names and len(js.names) == 13
    assert np.array_equal(js.positions, q) and np.array_equal(js.velocities, v) and np.array_equal(js.efforts, e)
    assert js.stamp == js.t_host_receive == 99.5 and js.source == "serial /dev/null-not-opened"
    assert js.extra == {"mode": "ARMED", "fault_flags": 0x10}
    assert host.latest_state() is js  # converted once per report
    host.state.put(State(7, 1300, q + 1, v, e, P.Mode.HOLD, 0, 0, 0, 0, 43, 0, 99.9), t_capture=99.9)
    js2 = host.latest_state()
    assert js2 is not js and js2.extra["mode"] == "HOLD" and js2.positions[0] == 1.0
    assert host.state.latest().value.last_applied_seq == 43  # the raw report stays available


def test_mujoco_bridge_state_is_a_joint_state_with_sim_counters():
    clock = FakeClock(5.0)
    b = _mujoco_bridge(clock)
    js = b.latest_state(0.05)
    assert isinstance(js, JointState) and js.names == DEFAULT_NAMES and js.stamp == 5.0
    assert np.allclose(js.positions, np.arange(13.0) / 10) and js.extra["steps"] == 3
    assert b.counters()["sim_steps"] == 3


def test_composite_and_process_link_states_are_joint_states():
    comp = links()["CompositeLink"]
    js = comp.latest_state()
    assert isinstance(js, JointState) and js.names == ("a", "b", "c")
    link = _process_link()
    sent = JointState(DEFAULT_NAMES, np.zeros(13), np.zeros(13), 3.0, "control process fake")
    link._on_state(sent)
    assert link.latest_state() is sent


def test_link_health_of_a_link_without_health_method():
    fake = FakeBridge(2, FakeClock(1.0))
    h = link_health(fake)
    assert h.ok and h.state_age_s == 0.0
    fake.set_link(False)
    h = link_health(fake)
    assert not h.ok and h.cause == "link down" and h.needs_rearm


def test_unconnected_ros2_link_reports_why_and_refuses():
    link = Ros2ArmLink(("a",), ("j1",))
    assert not link.link_up and link.health().cause == "not connected"
    with pytest.raises(Exception, match="not arming: not connected"):
        link.arm()
    assert np.isinf(link.health().state_age_s)


def test_unstarted_process_link_reports_why_and_refuses():
    from firmware_bridge.errors import CommandError
    from runtime.errors import DeviceNotConnectedError, StaleDataError

    link = _process_link()
    h = link.health()
    assert not h.ok and h.cause == "control process not started" and np.isinf(h.state_age_s)
    for method in (link.arm, link.disarm, link.protective_stop, link.clear_stop, link.connect):
        with pytest.raises(DeviceNotConnectedError, match="control process not started"):
            method()
    with pytest.raises(StaleDataError):
        link.latest_state()
    with pytest.raises(CommandError, match="send_targets refused, nothing sent"):
        link.send_targets(np.zeros(13), 0.0)
    link._on_stats(StatsMsg({}, {"targets_sent": 4}, True, True, False))  # a report, but no process
    assert not link.link_up and not link.armed and link.counters() == {"targets_sent": 4}
    link.close()
    link.close()  # twice is fine
