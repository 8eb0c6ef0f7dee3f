"""An in-process DDS participant that plays a ros2_control setup for the arm adapter's tests:
joint_state_broadcaster (publishes sensor_msgs/JointState on rt/joint_states) plus a
joint_trajectory_controller or forward position controller (subscribes to its command topic and
moves its joints to what it receives). Loopback only, on a domain id of the test's own."""

from __future__ import annotations

import os
import random
import threading
import time

import numpy as np

from runtime.robot import ros2_types as T
from runtime.robot.ros2 import _qos, command_topic, ros_topic
from runtime.telemetry import qos as tq
from runtime.telemetry.config import DdsConfig

_USED: set[int] = set()


def fresh_domain_id() -> int:
    """A domain id of this test's own (each id = separate UDP ports; other runs on the machine
    pick theirs at random too). Never reused within the process, so tests cannot hear each other."""
    rng = random.Random(os.getpid() * 7919 + time.monotonic_ns())
    while True:
        d = rng.randint(20, 220)
        if d not in _USED:
            _USED.add(d)
            return d


def loopback(domain_id: int) -> DdsConfig:
    return DdsConfig(enabled=True, domain_id=domain_id, interface="lo", allow_multicast=False,
                     peers=("127.0.0.1",))


class ControllerPeer:
    """Publishes JointState for `names` at `rate_hz` and records every command it receives.

    publishing = False stops the state stream (the driver hangs); close() deletes the participant
    (the controller process dies: its subscription disappears too). The simulated joints jump to
    each commanded position, like a controller that tracks perfectly.
    """

    def __init__(self, domain_id: int, names, positions=None, controller="joint_trajectory_controller",
                 command_type="joint_trajectory", rate_hz: float = 200.0, state_reliable: bool = True,
                 subscribe: bool = True) -> None:
        from cyclonedds.pub import DataWriter
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic

        self.names = list(names)
        self.q = np.zeros(len(self.names)) if positions is None else np.asarray(positions, dtype=np.float64)
        self.command_type = command_type
        self.received: list = []
        self.publishing = True
        self.period_s = 1.0 / rate_hz
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.dp = dp = tq.participant(loopback(domain_id))
        sq = _qos(state_reliable, 10)
        cq = _qos(True, 10)
        self._w = DataWriter(dp, Topic(dp, ros_topic("joint_states"), T.JointState_, qos=sq), qos=sq)
        self._r = None
        if subscribe:
            ctype = T.JointTrajectory_ if command_type == "joint_trajectory" else T.Float64MultiArray_
            self._r = DataReader(dp, Topic(dp, command_topic(controller, command_type), ctype, qos=cq), qos=cq)
        self._thread = threading.Thread(target=self._run, name="ros2-peer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._r is not None:
                for msg in self._r.take(N=64):
                    if getattr(msg, "sample_info", None) is not None and not msg.sample_info.valid_data:
                        continue
                    self._apply(msg)
            if self.publishing:
                with self._lock:
                    q = self.q.copy()
                self._w.write(T.JointState_(name=list(self.names), position=[float(x) for x in q],
                                            velocity=[0.0] * len(q), effort=[]))
            self._stop.wait(self.period_s)

    def _apply(self, msg) -> None:
        with self._lock:
            self.received.append(msg)
            if isinstance(msg, T.JointTrajectory_):
                if msg.points:
                    where = {n: i for i, n in enumerate(self.names)}
                    for n, x in zip(msg.joint_names, msg.points[-1].positions, strict=True):
                        self.q[where[n]] = x
            else:
                self.q[: len(msg.data)] = msg.data

    def commands(self) -> list:
        with self._lock:
            return list(self.received)

    def wait_commands(self, n: int, timeout_s: float = 5.0) -> list:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.commands()
            if len(got) >= n:
                return got
            time.sleep(0.005)
        return self.commands()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._r = self._w = None
        self.dp = None
