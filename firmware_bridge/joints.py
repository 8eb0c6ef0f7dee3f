"""The joint space the bridge speaks: 13 joints (7 arm, radians; then 6 hand, normalised 0..1).

JointLimits is what both ends must agree on: the names (their hash is checked in the handshake),
position limits, velocity and acceleration limits. The firmware reports its own (compiled-in) limits
in the handshake and the host refuses to command a wider envelope (`wider_than`). The emulator
uses its compiled-in table unless started with `--limits` (a test standing in for another build).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_bridge.protocol import NUM_ARM_JOINTS, NUM_JOINTS, schema_hash
from runtime.errors import ConfigError

DEFAULT_JOINT_NAMES: tuple[str, ...] = tuple(f"arm_joint_{i}" for i in range(1, 8)) + tuple(
    f"hand_joint_{i}" for i in range(1, 7)
)
_ARM_UPPER = (3.1, 2.268, 3.1, 2.355, 3.1, 2.233, 6.28)


@dataclass(frozen=True)
class JointLimits:
    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray  # per second
    max_acceleration: np.ndarray  # per second^2

    def __post_init__(self) -> None:
        if len(self.names) != NUM_JOINTS:
            raise ConfigError(f"joint limits: expected {NUM_JOINTS} joint names, got {len(self.names)}")
        for field in ("lower", "upper", "max_velocity", "max_acceleration"):
            arr = np.asarray(getattr(self, field), dtype=np.float64).reshape(-1)
            if arr.size != NUM_JOINTS or not np.all(np.isfinite(arr)):
                raise ConfigError(f"joint limits: '{field}' must be {NUM_JOINTS} finite numbers, got {arr.tolist()}")
            object.__setattr__(self, field, arr)
        bad = np.nonzero(self.lower >= self.upper)[0]
        if bad.size:
            i = int(bad[0])
            raise ConfigError(f"joint limits: {self.names[i]} lower {self.lower[i]} >= upper {self.upper[i]}")
        for field in ("max_velocity", "max_acceleration"):
            if np.any(getattr(self, field) <= 0):
                raise ConfigError(f"joint limits: '{field}' must be positive, got {getattr(self, field).tolist()}")
        for n in self.names:
            if not n or any(c.isspace() for c in n) or len(n) > 63:
                raise ConfigError(f"joint limits: joint name {n!r} must be 1..63 characters without spaces")

    @property
    def schema_hash(self) -> int:
        return schema_hash(self.names)

    @classmethod
    def default(cls) -> JointLimits:
        upper = np.array(_ARM_UPPER + (1.0,) * (NUM_JOINTS - NUM_ARM_JOINTS))
        lower = np.concatenate([-np.array(_ARM_UPPER), np.zeros(NUM_JOINTS - NUM_ARM_JOINTS)])
        vel = np.array([1.5] * NUM_ARM_JOINTS + [2.0] * (NUM_JOINTS - NUM_ARM_JOINTS))
        acc = np.array([10.0] * NUM_ARM_JOINTS + [20.0] * (NUM_JOINTS - NUM_ARM_JOINTS))
        return cls(DEFAULT_JOINT_NAMES, lower, upper, vel, acc)

    @classmethod
    def from_dict(cls, d: dict, source: str = "limits") -> JointLimits:
        """Keys: names (or joint_names), lower, upper, velocity (or max_velocity), optional acceleration."""
        base = cls.default()
        try:
            names = tuple(d.get("names", d.get("joint_names", base.names)))
            return cls(
                names,
                np.asarray(d.get("lower", base.lower), dtype=float),
                np.asarray(d.get("upper", base.upper), dtype=float),
                np.asarray(d.get("velocity", d.get("max_velocity", base.max_velocity)), dtype=float),
                np.asarray(d.get("acceleration", d.get("max_acceleration", base.max_acceleration)), dtype=float),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise ConfigError(f"{source}: {exc}") from None
            raise ConfigError(f"{source}: invalid joint limits ({exc})") from None

    @classmethod
    def load_json(cls, path: str | Path) -> JointLimits:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"joint limits file {p}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"joint limits file {p}: expected a JSON object")
        return cls.from_dict(data, str(p))

    def to_emulator_table(self) -> str:
        """The text table `dexgrasp-fw-emulator --limits` reads."""
        lines = ["# name lower upper max_velocity max_acceleration"]
        for i, n in enumerate(self.names):
            lines.append(
                f"{n} {float(self.lower[i])!r} {float(self.upper[i])!r} {float(self.max_velocity[i])!r} {float(self.max_acceleration[i])!r}"
            )
        return "\n".join(lines) + "\n"

    def wider_than(self, fw: JointLimits) -> list[str]:
        """Where this envelope exceeds `fw` (the firmware's), one phrase per offending joint limit.

        Compared in float32, the wire's precision: a host limit of 2.268 equals a firmware 2.268f."""
        f32 = np.float32
        out = []
        for i, n in enumerate(self.names):
            if f32(self.lower[i]) < f32(fw.lower[i]):
                out.append(f"{n} lower {self.lower[i]:g} < firmware {fw.lower[i]:g}")
            if f32(self.upper[i]) > f32(fw.upper[i]):
                out.append(f"{n} upper {self.upper[i]:g} > firmware {fw.upper[i]:g}")
            if f32(self.max_velocity[i]) > f32(fw.max_velocity[i]):
                out.append(f"{n} max_velocity {self.max_velocity[i]:g} > firmware {fw.max_velocity[i]:g}")
            if f32(self.max_acceleration[i]) > f32(fw.max_acceleration[i]):
                out.append(f"{n} max_acceleration {self.max_acceleration[i]:g} > firmware {fw.max_acceleration[i]:g}")
        return out

    def clip(self, positions: np.ndarray) -> np.ndarray:
        return np.clip(positions, self.lower, self.upper)

    def center(self) -> np.ndarray:
        return 0.5 * (self.lower + self.upper)
