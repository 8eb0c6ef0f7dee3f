"""Reading joint vectors out of whatever the runtime hands its observers.

The control side passes either a plain array of positions or a state object; telemetry and the
recorder only need positions (and velocity/effort when present). One adapter keeps both
consumers agnostic of the runtime's state class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointSample:
    position: np.ndarray  # float64 (n,)
    velocity: np.ndarray | None
    effort: np.ndarray | None
    t: float | None  # the runtime's monotonic capture time, if the object carried one
    names: tuple[str, ...] | None = None  # the joints' names, if the object carried them (a JointState)


_POSITION_NAMES = ("position", "positions", "q", "qpos")
_VELOCITY_NAMES = ("velocity", "velocities", "qd", "dq", "qvel")
_EFFORT_NAMES = ("effort", "efforts", "torque", "current")
_TIME_NAMES = ("t", "t_capture", "t_host_receive", "stamp", "timestamp")
_JOINT_NAME_FIELDS = ("names", "joint_names")


def _field(obj, names):
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def joint_sample(obj, t: float | None = None) -> JointSample:
    """A JointSample from an array, a dict or an object with position/velocity/effort/t fields.

    Raises ValueError naming the problem when there is no 1-D finite position vector.
    """
    names = None
    if isinstance(obj, (np.ndarray, list, tuple)):
        position, velocity, effort, t_obj = obj, None, None, None
    else:
        position = _field(obj, _POSITION_NAMES)
        if position is None:
            raise ValueError(f"joint state {type(obj).__name__} has none of the fields {_POSITION_NAMES}")
        velocity, effort, t_obj = _field(obj, _VELOCITY_NAMES), _field(obj, _EFFORT_NAMES), _field(obj, _TIME_NAMES)
        names = _field(obj, _JOINT_NAME_FIELDS)
    pos = np.asarray(position, dtype=np.float64).reshape(-1)
    if pos.size == 0:
        raise ValueError("joint state has an empty position vector")
    vel = None if velocity is None else np.asarray(velocity, dtype=np.float64).reshape(-1)
    eff = None if effort is None else np.asarray(effort, dtype=np.float64).reshape(-1)
    t_out = t if t is not None else (float(t_obj) if isinstance(t_obj, (int, float, np.floating)) else None)
    if names is not None:
        names = tuple(str(n) for n in names)
        if len(names) != pos.size:
            names = None  # names that do not fit the vector name nothing
    return JointSample(pos, vel, eff, t_out, names)
