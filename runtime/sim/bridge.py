"""`bridge.kind: mujoco`: the robot link the control loop drives, backed by the sim process.

The same surface as firmware_bridge.host.BridgeHost and the FakeBridge (latest_state, send_targets,
arm / disarm, protective_stop / clear_stop, link_up, needs_rearm, counters, close), with the
firmware's semantics where the loop relies on them: targets move nothing until armed, a protective
stop latches until cleared and re-armed, a dead simulator is a link loss (stale state, sends fail).
Position control: each target becomes the servos' set point at the simulator's next step; the
state is the simulator's (published every physics step, stamped with its monotonic time).
"""

from __future__ import annotations

import threading

import numpy as np

from runtime.clock import Clock
from runtime.errors import DeviceNotConnectedError, StaleDataError
from runtime.robot.link import JointState
from runtime.sim import shm


class MujocoBridge:
    """States are JointStates named `names` (the runtime's joint names; default: the default
    config's), with the sim's step counters in `extra`."""

    def __init__(self, link, lower: np.ndarray, upper: np.ndarray, clock: Clock | None = None,
                 names=None) -> None:
        from runtime.joint_space import DEFAULT_ARM_NAMES, DEFAULT_HAND_NAMES

        self.names = tuple(names) if names is not None else DEFAULT_ARM_NAMES + DEFAULT_HAND_NAMES
        if len(self.names) != link.mem.layout.n_joints:
            from runtime.errors import ConfigError

            raise ConfigError(f"mujoco bridge: robot has {len(self.names)} joints, the sim's robot "
                              f"{link.mem.layout.n_joints}")
        self.link = link
        self.mem = link.mem
        self.n = self.mem.layout.n_joints  # the robot's joint count: the shared memory is sized by it
        self.clock = clock or Clock()
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self._lock = threading.Lock()
        self.armed = False
        self.stopped = False
        self.needs_rearm = False
        self.targets_sent = 0
        self.refused = 0
        self._closed = False
        self._target = self.latest_state(None).positions.copy()

    @property
    def link_up(self) -> bool:
        return not self._closed and self.link.alive

    def connect(self) -> None:
        if not self.link_up:
            raise DeviceNotConnectedError("mujoco bridge: the sim process is not running")

    def latest_state(self, max_age_s: float | None = None) -> JointState:
        if self._closed:
            raise StaleDataError("mujoco bridge: closed")
        v = shm.read(self.mem["state"])
        t = float(v[0])
        if t <= 0:
            raise StaleDataError("mujoco bridge: no state from the sim yet")
        age = self.clock.now() - t
        if max_age_s is not None and age > max_age_s:
            raise StaleDataError(f"mujoco bridge: state is {age * 1e3:.1f} ms old (limit {max_age_s * 1e3:.1f} ms)")
        h, n = shm.STATE_HEAD, self.n
        q = v[h:h + n].copy()
        dq = v[h + n:h + 2 * n].copy()
        return JointState(self.names, q, dq, t, "mujoco sim",
                          {"sim_time_s": float(v[1]), "steps": int(v[2]), "lag_steps": int(v[3])})

    def _publish(self) -> None:
        vals = np.concatenate([[self.clock.now(), float(self.armed), float(self.stopped), float(self.targets_sent)],
                               self._target])
        shm.write(self.mem["cmd"], vals)

    def arm(self) -> None:
        if not self.link_up:
            raise DeviceNotConnectedError("mujoco bridge: cannot arm, the sim process is not running")
        with self._lock:
            # Arm from the measured position (no jump to an old target), as the firmware does.
            self._target = np.clip(self.latest_state(None).positions, self.lower, self.upper)
            self.armed, self.needs_rearm = True, False
            self._publish()

    def disarm(self) -> None:
        with self._lock:
            self.armed = False
            if not self._closed:
                self._publish()

    def protective_stop(self) -> None:
        with self._lock:
            self.stopped, self.armed = True, False
            if not self._closed:
                self._publish()

    def clear_stop(self) -> None:
        with self._lock:
            self.stopped = False
            self.needs_rearm = True
            self._publish()

    def send_targets(self, positions, t_target: float | None = None) -> np.ndarray:
        if not self.link_up:
            raise DeviceNotConnectedError("mujoco bridge: the sim process is not running")
        q = np.asarray(positions, dtype=np.float64)
        if q.shape != (self.n,) or not np.all(np.isfinite(q)):
            raise ValueError(f"mujoco bridge: bad target {q!r}")
        q = np.clip(q, self.lower, self.upper)
        with self._lock:
            if not self.armed or self.stopped:
                self.refused += 1
                return self._target.copy()
            self._target = q
            self.targets_sent += 1
            self._publish()
        return q.copy()

    def counters(self) -> dict:
        try:
            status = self.latest_state(None).extra
        except StaleDataError:
            status = {}
        return {"targets_sent": self.targets_sent, "refused_unarmed": self.refused, "armed": self.armed,
                "sim_steps": status.get("steps"), "sim_lag_steps": status.get("lag_steps"),
                "sim_time_s": status.get("sim_time_s")}

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            self.armed = False
            self._publish()
            self._closed = True
        self.link.release()


def make_mujoco_bridge(cfg, clock: Clock) -> MujocoBridge:
    """The `bridge.kind: mujoco` link for `cfg` (starts or attaches to the runtime's simulator)."""
    from runtime.sim.link import acquire

    link = acquire(cfg)
    try:
        return MujocoBridge(link, np.asarray(cfg.robot.lower), np.asarray(cfg.robot.upper), clock,
                            names=cfg.robot.joint_names)
    except BaseException:
        link.release()
        raise
