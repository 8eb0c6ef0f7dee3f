"""Fakes beside the real things: a robot bridge, a policy and a camera that need no hardware.

They implement the same small interfaces as firmware_bridge.host.BridgeHost, the controller-backed
policy and the cameras, take an injected clock, and expose fault switches (link loss, NaN output,
slow inference, camera stall) so the control loop's fault handling is tested without a robot.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.clock import Clock
from runtime.errors import DeviceNotConnectedError, StaleDataError
from runtime.mailbox import Mailbox
from runtime.robot.link import JointState


def _default_names(n: int) -> tuple[str, ...]:
    """The default config's joint names when the count matches (13: upstream's 7 arm + 6 hand), so a
    FakeBridge(13) states what a default-config runtime expects; otherwise joint_1..joint_n."""
    from runtime.joint_space import DEFAULT_ARM_NAMES, DEFAULT_HAND_NAMES

    default = DEFAULT_ARM_NAMES + DEFAULT_HAND_NAMES
    return default if n == len(default) else tuple(f"joint_{i + 1}" for i in range(n))


class FakeBridge:
    """A robot that reaches each commanded position by the next state report.

    Faults: `link_up = False` makes latest_state stale and send_targets raise; restoring it latches
    `needs_rearm` like the real firmware (nothing moves until `arm()`). States are JointStates named
    `names` (the runtime's joint names; default: see _default_names).
    `n_joints` has no default: it is the robot's joint count (robot.n_joints, the config's joint
    space), so a fake of upstream's 13 joints never silently stands in for another robot.
    """

    def __init__(self, n_joints: int, clock: Clock | None = None, start: np.ndarray | None = None,
                 lower: np.ndarray | None = None, upper: np.ndarray | None = None,
                 names: Sequence[str] | None = None) -> None:
        self.clock = clock or Clock()
        self.n = n_joints
        self.names = _default_names(n_joints) if names is None else tuple(names)
        if len(self.names) != n_joints:
            raise ValueError(f"fake bridge: {len(self.names)} joint names for {n_joints} joints")
        self._q = np.zeros(n_joints) if start is None else np.asarray(start, dtype=np.float64).copy()
        self.lower, self.upper = lower, upper
        self._state = Mailbox("fake-bridge-state", self.clock)
        self._lock = threading.Lock()
        self._link_up = True
        self.armed = False
        self.needs_rearm = False
        self.stopped = False
        self.sent: list[tuple[float, np.ndarray]] = []
        self.targets_sent = 0
        self.keep_history = True
        self.calls: list[str] = []
        self._publish_state()

    @property
    def link_up(self) -> bool:
        return self._link_up

    def set_link(self, up: bool) -> None:
        with self._lock:
            if self._link_up and not up:
                self.armed = False
                self.needs_rearm = True
            self._link_up = up
        if up:
            self._publish_state()

    def _publish_state(self) -> None:
        self._state.put(JointState(self.names, self._q.copy(), np.zeros(self.n), self.clock.now(), "fake"))

    def connect(self) -> None:
        self.calls.append("connect")

    def latest_state(self, max_age_s: float | None = None) -> JointState:
        if not self._link_up:
            raise StaleDataError("fake bridge: link down")
        self._publish_state()  # the robot reports its state continuously while the link is up
        return self._state.latest(max_age_s).value

    def arm(self) -> None:
        if not self._link_up:
            raise DeviceNotConnectedError("fake bridge: cannot arm, link down")
        self.calls.append("arm")
        self.armed, self.needs_rearm = True, False

    def disarm(self) -> None:
        self.calls.append("disarm")
        self.armed = False

    def protective_stop(self) -> None:
        self.calls.append("protective_stop")
        self.stopped, self.armed = True, False

    def clear_stop(self) -> None:
        self.calls.append("clear_stop")
        self.stopped = False
        self.needs_rearm = True

    def send_targets(self, positions: np.ndarray, t_target: float) -> np.ndarray:
        if not self._link_up:
            raise DeviceNotConnectedError("fake bridge: link down")
        q = np.asarray(positions, dtype=np.float64)
        if q.shape != (self.n,) or not np.all(np.isfinite(q)):
            raise ValueError(f"fake bridge: bad target {q!r}")
        if not self.armed or self.stopped:
            return self._q.copy()  # firmware ignores targets until armed
        if self.lower is not None:
            q = np.clip(q, self.lower, self.upper)
        self._q = q.copy()
        self.targets_sent += 1
        if self.keep_history:
            self.sent.append((self.clock.now(), q.copy()))
        self._publish_state()
        return q.copy()

    def counters(self) -> dict:
        return {"targets_sent": self.targets_sent, "armed": self.armed}

    def close(self) -> None:
        self.calls.append("close")


class FakeChunkPolicy:
    """A policy whose chunk drifts every joint from the current state toward a goal.

    Output is in the model's action space: arm in [-1, 1], hand in [0, 1], (horizon, joints of the state).
    `latency_s` is simulated by waiting (the GIL is released, as with ONNX Runtime); faults:
    `latency_scale` (overrun) and `emit_nan`.
    """

    def __init__(self, horizon: int = 64, latency_s: float = 0.0, goal: np.ndarray | None = None,
                 step: float = 0.01) -> None:
        self.horizon = horizon
        self.latency_s = latency_s
        self.latency_scale = 1.0
        self.emit_nan = False
        # None: 0.3 for every joint of the state it is given (any joint space)
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float64)
        self.step = step
        self.calls = 0
        self._sleep = threading.Event()

    def predict_chunk(self, head_bgr, mask, wrist_bgr, state13: np.ndarray) -> np.ndarray:
        self.calls += 1
        wait_s = self.latency_s * self.latency_scale
        if wait_s > 0:
            self._sleep.wait(wait_s)
        s = np.asarray(state13, dtype=np.float64)
        k = np.arange(1, self.horizon + 1)[:, None]
        goal = np.full(s.shape, 0.3) if self.goal is None else self.goal
        out = s + np.clip(goal - s, -self.step * k, self.step * k)
        if self.emit_nan:
            out[self.horizon // 2:, 3] = np.nan
        return out.astype(np.float32)


@dataclass(frozen=True)
class FakeFrame:
    image: np.ndarray
    t_capture: float
    index: int


class FakeFramePair:
    """Puts a head and wrist frame into mailboxes on `capture()`; `stalled = True` stops frames."""

    def __init__(self, head: Mailbox, wrist: Mailbox, clock: Clock | None = None, shape=(48, 64, 3)) -> None:
        self.head, self.wrist = head, wrist
        self.clock = clock or Clock()
        self.shape = shape
        self.stalled = False
        self.index = 0

    def capture(self) -> bool:
        if self.stalled:
            return False
        t = self.clock.now()
        self.index += 1
        img = np.full(self.shape, self.index % 255, dtype=np.uint8)
        self.head.put(FakeFrame(img, t, self.index), t)
        self.wrist.put(FakeFrame(img.copy(), t, self.index), t)
        return True
