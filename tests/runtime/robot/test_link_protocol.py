"""Every robot link the runtime can be given satisfies the declared RobotLink interface."""

import numpy as np
import pytest

from firmware_bridge.host import BridgeHost
from runtime.clock import FakeClock
from runtime.execution.fakes import FakeBridge
from runtime.robot.composite import CompositeLink, Part
from runtime.robot.link import JointState, RobotLink, as_joint_state, check_link, link_health
from runtime.robot.ros2 import Ros2ArmLink


def links():
    fake = FakeBridge(3)
    return {
        "firmware BridgeHost": BridgeHost("/dev/null-not-opened"),  # __init__ opens nothing
        "FakeBridge": fake,
        "Ros2ArmLink": Ros2ArmLink(("a", "b"), ("j1", "j2")),  # unconnected: no DDS needed
        "CompositeLink": CompositeLink(("a", "b", "c"), [Part("arm", FakeBridge(2), ("a", "b"), ("a", "b")),
                                                         Part("hand", FakeBridge(1), ("c",), ("c",))]),
    }


@pytest.mark.parametrize("name", list(links()))
def test_satisfies_the_protocol(name):
    link = links()[name]
    assert isinstance(link, RobotLink)
    assert check_link(link) == []


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


def test_one_joint_state_from_any_link_state():
    clock = FakeClock(5.0)
    st = FakeBridge(2, clock).latest_state()
    js = as_joint_state(st, ("a", "b"), "fake")
    assert isinstance(js, JointState) and js.names == ("a", "b") and js.stamp == 5.0
    assert js.t_host_receive == js.stamp and js.age_s(5.5) == 0.5
    with pytest.raises(ValueError, match="2 positions for 3 joint names"):
        as_joint_state(st, ("a", "b", "c"))


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
