"""Arm and hand on different links, one joint vector by name (fakes stand in for both links)."""

import numpy as np
import pytest

from runtime.clock import FakeClock
from runtime.errors import ConfigError, DeviceNotConnectedError, StaleDataError
from runtime.execution.fakes import FakeBridge
from runtime.robot.composite import CompositeLink, Part

NAMES = ("a1", "a2", "h1", "h2")


def make(clock=None):
    clock = clock or FakeClock(0.0)
    # the arm link's own order differs from the runtime's; the hand link carries all 4 (like the
    # 13-joint firmware) but owns only h1, h2
    arm = FakeBridge(2, clock, start=np.array([0.2, 0.1]))
    hand = FakeBridge(4, clock, start=np.array([9.0, 8.0, 0.5, 0.6]))
    comp = CompositeLink(NAMES, [Part("arm", arm, ("a2", "a1"), ("a2", "a1")),
                                 Part("hand", hand, NAMES, ("h1", "h2"))], clock)
    return comp, arm, hand


def test_state_is_merged_by_name():
    comp, _, _ = make()
    st = comp.latest_state()
    assert st.names == NAMES and np.allclose(st.positions, [0.1, 0.2, 0.5, 0.6]) and st.source == "arm+hand"


def test_targets_are_split_by_name_and_unowned_joints_hold():
    comp, arm, hand = make()
    comp.arm()
    sent = comp.send_targets(np.array([1.0, 2.0, 0.3, 0.4]), 0.0)
    assert np.allclose(sent, [1.0, 2.0, 0.3, 0.4])
    assert np.allclose(arm.sent[-1][1], [2.0, 1.0])  # arm link's order (a2, a1)
    assert np.allclose(hand.sent[-1][1], [9.0, 8.0, 0.3, 0.4])  # a1/a2 on the hand link: held


def test_arm_is_all_or_nothing_and_stop_reaches_every_part():
    comp, arm, hand = make()
    hand.set_link(False)
    with pytest.raises(DeviceNotConnectedError):
        comp.arm()
    assert not arm.armed  # undone
    with pytest.raises(StaleDataError, match="hand"):
        comp.latest_state()
    assert not comp.link_up and comp.needs_rearm
    comp.protective_stop()
    assert arm.stopped and hand.stopped
    h = comp.health()
    assert not h.ok and "hand" in h.cause


def test_joint_assignment_is_checked():
    clock = FakeClock()
    with pytest.raises(ConfigError, match="have no link"):
        CompositeLink(NAMES, [Part("arm", FakeBridge(2, clock), ("a1", "a2"), ("a1", "a2"))])
    with pytest.raises(ConfigError, match="both"):
        CompositeLink(("a1",), [Part("x", FakeBridge(1, clock), ("a1",), ("a1",)),
                                Part("y", FakeBridge(1, clock), ("a1",), ("a1",))])
