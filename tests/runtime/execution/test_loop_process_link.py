"""The parent side of the control process is a RobotLink: with the real child process (fake bridge),
a protective stop from the parent holds the robot, clearing it does not re-arm, only arm() moves
again, disarm() likewise; send_targets is refused. Waits are bounded polls; nothing asserts time."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from firmware_bridge.errors import CommandError, NotArmedError
from runtime.config import config_from_dict
from runtime.errors import DeviceNotConnectedError
from runtime.execution.loop_process import ControlLoopProcess
from runtime.execution.requests import ChunkRequests
from runtime.mailbox import Mailbox
from runtime.robot.link import JointState, RobotLink, check_link

CFG = {
    "control": {"rate_hz": 100, "process": "separate", "realtime": {"sched_fifo_priority": None, "mlockall": False}},
    "bridge": {"kind": "fake"}, "tracker": {"kind": "none"}, "policy": {"backend": "fake"},
    "planner": {"enabled": False, "autostart": False},
}
WAIT_S = 20.0  # generous: the machine is shared; only ever reached on a failure


def _wait(pred, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


class _Recorder:
    """The parent's publish hook: every state and command the child sent, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.states: list[JointState] = []
        self.commands: list[np.ndarray] = []

    def __call__(self, kind, *args) -> None:
        with self.lock:
            if kind == "joint_state":
                self.states.append(args[0])
            elif kind == "command":
                self.commands.append(np.asarray(args[0]))

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.states), len(self.commands)


@pytest.fixture
def control_process():
    cfg = config_from_dict(CFG, "test")
    rec = _Recorder()
    proc = ControlLoopProcess(cfg, ChunkRequests(), Mailbox("chunks"), Mailbox("head"), publish=rec)
    proc.start()
    try:
        yield proc, rec, np.asarray(cfg.robot.home_positions, dtype=np.float64)
    finally:
        proc.stop()


def _moving_target(home: np.ndarray) -> list[float]:
    target = home.copy()
    target[0] += 1.0  # arm joint 1 by 1 rad: a homing of a few seconds at the default limits
    return list(target)


def _q(link) -> np.ndarray:
    return np.asarray(link.latest_state(None).positions, dtype=np.float64)


def test_protective_stop_from_the_parent_holds_the_robot_and_only_arm_after_clear_moves_it(control_process):
    proc, rec, home = control_process
    link = proc.link
    assert isinstance(link, RobotLink) and check_link(link) == []
    link.connect()
    _wait(lambda: link.armed and link.link_up, "the child's loop to arm at start-up")
    state = link.latest_state()
    assert isinstance(state, JointState) and state.names == tuple(proc.cfg.robot.joint_names)
    with pytest.raises(CommandError, match="send_targets refused"):
        link.send_targets(home, None)

    # moving: a homing toward a target 1 rad away
    assert proc.submit("home", target=_moving_target(home), request_id=1)
    _wait(lambda: _q(link)[0] > home[0] + 0.05, "the robot to move")

    link.protective_stop()  # returns once the child reports the stop latched
    assert link.stop_latched and not link.armed and link.needs_rearm and link.link_up
    n_states, n_commands = rec.counts()
    _wait(lambda: rec.counts()[0] >= n_states + 5, "states while stopped (the child keeps forwarding them)")
    time.sleep(0.3)
    with rec.lock:
        held = rec.states[n_states:]
        commands_after = rec.commands[n_commands:]
    assert len(held) >= 5 and not commands_after  # nothing commanded after the stop was confirmed
    q_held = np.stack([s.positions for s in held])
    assert np.all(q_held == q_held[0]), "position not held"
    assert q_held[0][0] < home[0] + 1.0 - 1e-3  # stopped short of the target
    v_measured = np.diff(q_held, axis=0) / np.diff([s.stamp for s in held])[:, None]
    assert np.all(v_measured == 0.0) and all(np.all(s.velocities == 0.0) for s in held)
    a_measured = np.diff(v_measured, axis=0) / np.diff([s.stamp for s in held])[1:, None]
    assert np.all(a_measured == 0.0), "acceleration while stopped"
    assert np.all(np.diff([s.stamp for s in held]) > 0)  # fresh states, not one repeated

    with pytest.raises(NotArmedError, match="protective stop latched"):
        link.arm()

    link.clear_stop()  # lifts the latch, never re-arms
    assert not link.stop_latched
    _wait(lambda: proc.hold_reason == "needs_rearm", "the loop to hold for a re-arm")
    assert not link.armed and link.needs_rearm
    q0 = _q(link)
    assert proc.submit("home", target=_moving_target(home), request_id=2)
    time.sleep(0.5)
    assert np.array_equal(_q(link), q0) and not link.armed  # no motion without arm()

    link.arm()  # returns once the child reports armed
    assert link.armed and not link.needs_rearm
    assert proc.submit("home", target=_moving_target(home), request_id=3)
    _wait(lambda: _q(link)[0] > q0[0] + 0.05, "the robot to move again after arm()")

    link.disarm()  # the same rule: only arm() moves again
    assert not link.armed
    q1 = _q(link)
    assert proc.submit("home", target=list(home), request_id=4)
    time.sleep(0.5)
    assert np.array_equal(_q(link), q1) and proc.hold_reason == "needs_rearm"
    link.arm()
    assert proc.submit("home", target=list(home), request_id=5)
    _wait(lambda: _q(link)[0] < q1[0] - 0.05, "the robot to move after arm() following disarm()")

    h = link.health()
    assert h.ok and h.armed and h.cause == "" and h.state_age_s < 1.0
    proc.stop()
    assert not link.link_up and "control process ended" in link.health().cause
    with pytest.raises(DeviceNotConnectedError, match="control process ended"):
        link.protective_stop()
    link.close()  # nothing to disarm any more: never raises
