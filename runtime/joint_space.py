"""The robot's joint space, in one place: names, order, units, limits, home and place poses, and the
model's [-1, 1] arm scaling.

Why one module: the layout (upstream DexGraspVLA's 7 arm joints in radians, then 6 hand joints
normalised to [0, 1]) used to be repeated as literal 7 / 6 / 13 in about ten places, so a robot
with another arm or hand silently mixed arm and hand values. Everything now asks a JointSpace built
from the config's `robot` section, and `check_model` refuses an exported controller whose action or
state size does not match that layout before the first command is sent.

Units: arm joints in radians (`robot.units: rad`, the only unit the policy was trained in), hand
joints normalised to [0, 1]. Limits that look like degrees are refused with a hint to convert.
Torch-free and pydantic-free (the config schema validates through these functions).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.errors import ConfigError, ModelError

# Upstream DexGraspVLA's layout: the defaults of a config that names no joints.
UPSTREAM_ARM_JOINTS = 7
UPSTREAM_HAND_JOINTS = 6
DEFAULT_ARM_NAMES = tuple(f"arm_joint_{i + 1}" for i in range(UPSTREAM_ARM_JOINTS))
DEFAULT_HAND_NAMES = tuple(f"hand_joint_{i + 1}" for i in range(UPSTREAM_HAND_JOINTS))
# Upstream's arm limits (radians).
DEFAULT_ARM_LOWER_RAD = (-3.1, -2.268, -3.1, -2.355, -3.1, -2.233, -6.28)
DEFAULT_ARM_UPPER_RAD = (3.1, 2.268, 3.1, 2.355, 3.1, 2.233, 6.28)

UNITS = ("rad",)  # arm units the runtime drives; hand joints are always normalised
JOINT_LIMIT_CAP_RAD = 2 * math.pi  # arm limits and poses within +-2 pi
HAND_RANGE = (0.0, 1.0)
MODEL_STATE_INPUT = "right_state"  # the encoder input holding the joint state (B, T, J)


def scale_arm(normalized: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Upstream's `scale`: [-1, 1] -> [lower, upper] (arm actions come out of the policy normalised)."""
    return 0.5 * (normalized + 1.0) * (upper - lower) + lower


def unscale_arm(positions: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Upstream's `unscale`: [lower, upper] -> [-1, 1] (the arm part of the state fed to the policy)."""
    return (positions - lower) * 2.0 / (upper - lower) - 1.0


def check_units(units: str) -> str:
    """The arm unit the config declares; only radians are driven (the model was trained on them)."""
    if units not in UNITS:
        hint = " (convert limits and poses: rad = deg * pi / 180)" if units.lower().startswith("deg") else ""
        raise ValueError(f"robot.units: the runtime's arm joints are in radians, got {units!r}; "
                         f"use one of {list(UNITS)}{hint}")
    return units


def check_arm_radians(name: str, values: Sequence[float]) -> None:
    """Arm values must be finite and within +-2 pi; beyond that they are almost surely degrees."""
    cap = JOINT_LIMIT_CAP_RAD
    bad = [v for v in values if not (math.isfinite(v) and -cap <= v <= cap)]
    if not bad:
        return
    hint = ""
    if all(math.isfinite(v) for v in bad) and max(abs(v) for v in values) <= 720.0:
        hint = "; these look like degrees: robot.units is rad (deg * pi / 180)"
    raise ValueError(f"robot.{name}: every value must be finite and within [{-cap:.6g}, {cap:.6g}] rad, "
                     f"got {list(values)}{hint}")


def check_hand_range(name: str, values: Sequence[float]) -> None:
    lo, hi = HAND_RANGE
    if not all(math.isfinite(v) and lo <= v <= hi for v in values):
        raise ValueError(f"robot.{name}: every value must be finite and within [{lo:g}, {hi:g}] "
                         f"(hand joints are normalised: 0 and 1 are the ends of travel), got {list(values)}")


@dataclass(frozen=True)
class JointSpace:
    """Joint order is arm joints, then hand joints; arrays are float64 over all joints."""

    arm_names: tuple[str, ...]
    hand_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    home: np.ndarray
    place: np.ndarray
    units: str = "rad"

    def __post_init__(self) -> None:
        n = len(self.arm_names) + len(self.hand_names)
        if not self.arm_names:
            raise ConfigError("robot.arm_joint_names: at least one arm joint is needed")
        names = self.names
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ConfigError(f"robot: joint names must be unique, {dup} appear more than once")
        for what in ("lower", "upper", "home", "place"):
            arr = np.asarray(getattr(self, what), dtype=np.float64)
            if arr.shape != (n,):
                raise ConfigError(f"robot: {what} has {arr.size} values for {n} joints "
                                  f"({len(self.arm_names)} arm + {len(self.hand_names)} hand)")
            object.__setattr__(self, what, arr)
        for i, (lo, hi) in enumerate(zip(self.lower, self.upper, strict=True)):
            if not lo < hi:
                raise ConfigError(f"joint {names[i]}: lower limit {lo:g} must be < upper limit {hi:g}")
        for pose in ("home", "place"):
            q = getattr(self, pose)
            for name, v, lo, hi in zip(names, q, self.lower, self.upper, strict=True):
                if not (math.isfinite(v) and lo <= v <= hi):
                    raise ConfigError(f"robot.{pose}_positions: {name} = {v:g} is outside its limits [{lo:g}, {hi:g}]")

    # ---- layout --------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self.arm_names + self.hand_names

    @property
    def n_arm(self) -> int:
        return len(self.arm_names)

    @property
    def n_hand(self) -> int:
        return len(self.hand_names)

    @property
    def n(self) -> int:
        return self.n_arm + self.n_hand

    @property
    def arm_lower(self) -> np.ndarray:
        return self.lower[: self.n_arm]

    @property
    def arm_upper(self) -> np.ndarray:
        return self.upper[: self.n_arm]

    def per_joint(self, arm: float, hand: float) -> np.ndarray:
        """One value for every arm joint and one for every hand joint (e.g. a velocity limit)."""
        return np.array([arm] * self.n_arm + [hand] * self.n_hand, dtype=np.float64)

    def arm(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q)[..., : self.n_arm]

    def hand(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q)[..., self.n_arm : self.n]

    # ---- the model's space ---------------------------------------------------------------------
    def to_model(self, q: np.ndarray) -> np.ndarray:
        """Robot positions (..., n) -> the model's space: arm in [-1, 1], hand unchanged."""
        q = np.asarray(q, dtype=np.float64)
        self._require_width(q, "state")
        return np.concatenate([unscale_arm(q[..., : self.n_arm], self.arm_lower, self.arm_upper),
                               q[..., self.n_arm :]], axis=-1)

    def from_model(self, actions: np.ndarray) -> np.ndarray:
        """The model's actions (..., n), arm in [-1, 1] -> robot positions (arm in rad)."""
        a = np.asarray(actions, dtype=np.float64)
        self._require_width(a, "action")
        return np.concatenate([scale_arm(a[..., : self.n_arm], self.arm_lower, self.arm_upper),
                               a[..., self.n_arm :]], axis=-1)

    def _require_width(self, x: np.ndarray, what: str) -> None:
        if x.ndim == 0 or x.shape[-1] != self.n:
            raise ModelError(f"{what} has {x.shape[-1] if x.ndim else 0} values per step, the robot has {self.n} "
                             f"joints ({self.n_arm} arm + {self.n_hand} hand)")

    def model_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint limits in the model's space (arm -1 / 1, hand as configured)."""
        lo, hi = self.lower.copy(), self.upper.copy()
        lo[: self.n_arm], hi[: self.n_arm] = -1.0, 1.0
        return lo, hi

    def check_model(self, manifest, where: str = "the model") -> None:
        """Refuse an exported controller whose action or state size differs from this joint space
        (ModelError naming both sides), before anything moves."""
        layout = f"{self.n} joints ({self.n_arm} arm + {self.n_hand} hand: {', '.join(self.names)})"
        if int(manifest.action_dim) != self.n:
            raise ModelError(f"{where} has action_dim {manifest.action_dim} but robot config has {layout}; "
                             "export a model trained on this robot or fix robot.arm_joint_names/hand_joint_names")
        encoder = manifest.graphs.get("encoder")
        if encoder is not None:
            shape = next((s.shape for s in encoder.inputs if s.name == MODEL_STATE_INPUT), None)
            if shape is None:
                raise ModelError(f"{where}: the encoder has no '{MODEL_STATE_INPUT}' input (not a DexGraspVLA controller)")
            if int(shape[-1]) != self.n:
                raise ModelError(f"{where} reads a {shape[-1]}-value joint state ({MODEL_STATE_INPUT} {list(shape)}) "
                                 f"but robot config has {layout}")
        if manifest.normalizer:
            # In the action's own units: the arm in upstream's normalized [-1, 1], the hand in its limits.
            from runtime.controller.integrity import check_normalizer_against_limits

            lower = np.concatenate([-np.ones(self.n_arm), self.lower[self.n_arm:]])
            upper = np.concatenate([np.ones(self.n_arm), self.upper[self.n_arm:]])
            check_normalizer_against_limits(manifest, lower, upper)

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, robot) -> JointSpace:
        """From the config's `robot` section (runtime.config.schema.RobotConfig or a plain dict)."""
        get = robot.get if isinstance(robot, dict) else (lambda k, d=None: getattr(robot, k, d))
        arm_names = tuple(get("arm_joint_names") or DEFAULT_ARM_NAMES)
        hand_names = tuple(get("hand_joint_names") or DEFAULT_HAND_NAMES)
        lower = list(get("arm_lower_rad") or DEFAULT_ARM_LOWER_RAD) + list(get("hand_lower") or [0.0] * len(hand_names))
        upper = list(get("arm_upper_rad") or DEFAULT_ARM_UPPER_RAD) + list(get("hand_upper") or [1.0] * len(hand_names))
        home = get("home_positions") or [0.0] * (len(arm_names) + len(hand_names))
        place = get("place_positions") or home
        return cls(arm_names, hand_names, np.asarray(lower), np.asarray(upper), np.asarray(home),
                   np.asarray(place), units=check_units(get("units") or "rad"))


def check_model_dir(robot, model_dir: str | pathlib.Path) -> None:
    """Load `model_dir`'s manifest and check it against the config's joint space (ModelError)."""
    from runtime.controller.manifest import Manifest

    JointSpace.from_config(robot).check_model(Manifest.load(model_dir), where=f"model {model_dir}")
