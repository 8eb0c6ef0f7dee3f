"""The runtime config schema: typed, validated on load, units in field names.

Every section forbids unknown keys (a typo must not silently fall back to a default); the loader
turns pydantic's errors into one line per problem naming the file, the field and the bad value, with
a did-you-mean for misspelt keys. Sections owned by other components (planner, telemetry,
recording) keep their own option dicts, passed unchanged to those components' factories, but are
validated at load against those components' own config models (runtime/config/keys.py): no key is
dropped silently anywhere.

The safety envelope is bounded: every limit is finite and within a sanity cap (SAFETY_CAPS,
JOINT_LIMIT_CAP_RAD, HAND_RANGE; table in docs/configuration.md). A value beyond a cap is a typo or
a unit mistake (1e9 rad/s commanded 0.45 rad in one 5 ms cycle), not a robot this runtime drives.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from runtime.joint_space import (
    DEFAULT_ARM_LOWER_RAD as _DEFAULT_ARM_LOWER_RAD,
)
from runtime.joint_space import (
    DEFAULT_ARM_NAMES,
    DEFAULT_HAND_NAMES,
    HAND_RANGE,  # noqa: F401  (re-exported: part of the documented caps)
    JOINT_LIMIT_CAP_RAD,  # noqa: F401
    UPSTREAM_ARM_JOINTS,
    UPSTREAM_HAND_JOINTS,
    JointSpace,
    check_arm_radians,
    check_hand_range,
    check_units,
)
from runtime.joint_space import (
    DEFAULT_ARM_UPPER_RAD as _DEFAULT_ARM_UPPER_RAD,
)
from runtime.robot.config import Ros2Options

# Upstream's layout (7 arm joints in radians, then 6 hand joints normalised to [0, 1]): the
# default of a config that names no joints. A config's own counts come from its joint names
# (RobotConfig.n_arm / n_hand / n_joints, runtime.joint_space.JointSpace); these constants are
# only the defaults.
ARM_JOINTS = UPSTREAM_ARM_JOINTS
HAND_JOINTS = UPSTREAM_HAND_JOINTS
N_JOINTS = ARM_JOINTS + HAND_JOINTS

DEFAULT_ARM_LOWER_RAD = list(_DEFAULT_ARM_LOWER_RAD)
DEFAULT_ARM_UPPER_RAD = list(_DEFAULT_ARM_UPPER_RAD)
DEFAULT_JOINT_NAMES = list(DEFAULT_ARM_NAMES) + list(DEFAULT_HAND_NAMES)


# Sanity caps of the safety envelope (inclusive). Documented in docs/configuration.md.
SAFETY_CAPS: dict[str, float] = {
    "max_velocity_arm_rad_s": 3.0,
    "max_velocity_hand_per_s": 5.0,
    "max_acceleration_arm_rad_s2": 50.0,
    "max_acceleration_hand_per_s2": 100.0,
    "max_observation_age_ms": 2000.0,
    "max_action_age_s": 60.0,  # the sim benchmarks run chunks from arrival with 60 s
    "max_state_age_ms": 1000.0,
    "max_perception_age_ms": 5000.0,
}


def _capped(name: str, default: float):
    """A positive, finite safety value no larger than its cap."""
    return Field(default=default, gt=0, le=SAFETY_CAPS[name], allow_inf_nan=False)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_len(name: str, values: list[float] | None, n: int, why: str = "") -> None:
    if values is not None and len(values) != n:
        raise ValueError(f"{name} needs {n} values, got {len(values)}{why}")


def _hand_count(data: dict) -> int:
    return len(data.get("hand_joint_names") or DEFAULT_HAND_NAMES)


def _joint_count(data: dict) -> int:
    return len(data.get("arm_joint_names") or DEFAULT_ARM_NAMES) + _hand_count(data)


class RobotConfig(Section):
    """The joint space (runtime/joint_space.py): arm joints (radians) then hand joints (normalised
    [0, 1]). Counts come from the names: `arm_joint_names` and `hand_joint_names` (default:
    upstream's 7 + 6); every list below has one value per joint of its group."""

    # The only arm unit driven; degrees are refused with a hint to convert (the model is in radians).
    units: str = "rad"
    arm_joint_names: list[str] = Field(default_factory=lambda: list(DEFAULT_ARM_NAMES))
    hand_joint_names: list[str] = Field(default_factory=lambda: list(DEFAULT_HAND_NAMES))
    arm_lower_rad: list[float] = Field(default_factory=lambda: list(DEFAULT_ARM_LOWER_RAD))
    arm_upper_rad: list[float] = Field(default_factory=lambda: list(DEFAULT_ARM_UPPER_RAD))
    hand_lower: list[float] = Field(default_factory=lambda data: [0.0] * _hand_count(data))
    hand_upper: list[float] = Field(default_factory=lambda data: [1.0] * _hand_count(data))
    # Where `home` drives the arm (and the emulator starts); on a real robot the measured state is used.
    home_positions: list[float] = Field(default_factory=lambda data: [0.0] * _joint_count(data))
    # Where the arm puts a grasped object down; null = the home pose.
    place_positions: list[float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_joint_names(cls, data: Any) -> Any:
        """`joint_names` (all joints, arm first) is accepted as before: split after the arm's
        limits; when the groups are given as well (a dumped config) they must agree."""
        if not isinstance(data, dict) or "joint_names" not in data:
            return data
        data = dict(data)
        names = list(data.pop("joint_names") or [])
        if "arm_joint_names" in data or "hand_joint_names" in data:
            groups = list(data.get("arm_joint_names") or DEFAULT_ARM_NAMES) + list(
                data.get("hand_joint_names") or DEFAULT_HAND_NAMES)
            if names != groups:
                raise ValueError(f"joint_names {names} disagrees with arm_joint_names + hand_joint_names {groups}")
            return data
        n_arm = len(data.get("arm_lower_rad") or DEFAULT_ARM_LOWER_RAD)
        data["arm_joint_names"], data["hand_joint_names"] = names[:n_arm], names[n_arm:]
        return data

    @model_validator(mode="after")
    def _shapes(self) -> RobotConfig:
        check_units(self.units)  # here, not a field validator: a failed field spoils the default factories
        n_arm, n_hand = self.n_arm, self.n_hand
        if n_arm == 0:
            raise ValueError("robot.arm_joint_names: at least one arm joint is needed")
        for name, n, what in (("arm_lower_rad", n_arm, "arm_joint_names"), ("arm_upper_rad", n_arm, "arm_joint_names"),
                              ("hand_lower", n_hand, "hand_joint_names"), ("hand_upper", n_hand, "hand_joint_names"),
                              ("home_positions", n_arm + n_hand, "arm + hand joint names"),
                              ("place_positions", n_arm + n_hand, "arm + hand joint names")):
            _check_len(name, getattr(self, name), n, f" (one per robot.{what})")
        for name in ("arm_lower_rad", "arm_upper_rad"):
            check_arm_radians(name, getattr(self, name))
        for name in ("hand_lower", "hand_upper"):
            check_hand_range(name, getattr(self, name))
        for pose in ("home_positions", "place_positions"):
            q = getattr(self, pose)
            if q is None:
                continue
            if not all(math.isfinite(v) for v in q):
                raise ValueError(f"robot.{pose}: every value must be finite, got {q}")
            check_arm_radians(pose, q[:n_arm])
        self.joint_space()  # names unique, lower < upper, poses inside the limits
        return self

    @computed_field  # in dumps (provenance, the control process's copy), read back by _legacy_joint_names
    @property
    def joint_names(self) -> list[str]:
        return list(self.arm_joint_names) + list(self.hand_joint_names)

    @property
    def n_arm(self) -> int:
        return len(self.arm_joint_names)

    @property
    def n_hand(self) -> int:
        return len(self.hand_joint_names)

    @property
    def n_joints(self) -> int:
        return self.n_arm + self.n_hand

    @property
    def lower(self) -> list[float]:
        return self.arm_lower_rad + self.hand_lower

    @property
    def upper(self) -> list[float]:
        return self.arm_upper_rad + self.hand_upper

    def joint_space(self) -> JointSpace:
        return JointSpace.from_config(self)


class RealtimeConfig(Section):
    """Optional real-time scheduling for the control loop thread (applied when permitted)."""

    sched_fifo_priority: int | None = Field(default=None, ge=1, le=99)
    cpu_affinity: list[int] | None = None
    mlockall: bool = False
    # Python's GIL hand-off interval while the runtime runs (default 5 ms is far too long for 200 Hz).
    switch_interval_ms: float = Field(default=0.5, gt=0, le=10)
    # Capture, tracker, telemetry-dispatch, episode and bridge I/O threads hold the GIL in short
    # bursts; if the OS preempts one mid-burst, the control loop waits for the GIL (priority
    # inversion). A low SCHED_FIFO priority (below the loop's) keeps those bursts short.
    worker_sched_fifo_priority: int | None = Field(default=None, ge=1, le=98)
    # Last stretch before each loop deadline spent busy-waiting *with* the GIL (0 = the shared
    # Clock's GIL-yielding spin): the loop wakes holding the GIL instead of queueing for it.
    loop_spin_us: float = Field(default=0.0, ge=0, le=2000)
    # Niceness of the policy worker (inference: the bulk of the CPU time; stays SCHED_OTHER).
    policy_nice: int | None = Field(default=None, ge=-20, le=19)


class ControlConfig(Section):
    rate_hz: float = Field(default=200.0, gt=0, le=2000)
    # Rate the policy's actions are spaced at (upstream data rate: 20 Hz).
    action_rate_hz: float = Field(default=20.0, gt=0, le=1000)
    interpolation: Literal["linear", "cubic", "hold"] = "linear"
    # "thread": the loop is a thread of the runtime process. "separate": the loop and the robot link
    # run in a child process, so no other Python thread can hold the loop's GIL (see docs/runtime.md).
    process: Literal["thread", "separate"] = "thread"
    realtime: RealtimeConfig = Field(default_factory=RealtimeConfig)

    @model_validator(mode="after")
    def _rates(self) -> ControlConfig:
        if self.action_rate_hz > self.rate_hz:
            raise ValueError(
                f"action_rate_hz ({self.action_rate_hz}) must not exceed rate_hz ({self.rate_hz})"
            )
        return self


class ExecutionConfig(Section):
    """How chunks become setpoints.

    mode "timed": actions are stamped t_obs + i*dt, actions already past are dropped, the next chunk
    is requested early (from measured latency) so the robot never waits, overlapping chunks blend.
    mode "upstream": like DexGraspVLA's inference.py: run the first `upstream_execute_n` actions
    from the moment the chunk arrives, then ask for the next one (the robot holds meanwhile).
    mode "auto": timed, except that a chunk whose every timestamp has passed when it arrives
    (inference slower than the chunk lasts, e.g. the sim on a busy CPU) runs its first
    `late_execute_n` actions from its arrival, as long as its observation is younger than
    safety.max_action_age_s. Counted in the report (chunks_from_arrival).
    """

    mode: Literal["timed", "upstream", "auto"] = "timed"
    upstream_execute_n: int = Field(default=6, ge=1)
    late_execute_n: int = Field(default=64, ge=1)
    blend: Literal["latest", "weighted", "crossfade"] = "crossfade"
    crossfade_steps: int = Field(default=4, ge=1)  # in action steps (4 x 50 ms = 200 ms at 20 Hz)
    weighted_decay_per_s: float = Field(default=2.0, ge=0)
    # Request the next chunk when the current one has (latency estimate + margin) left.
    request_margin_s: float = Field(default=0.3, ge=0)
    latency_percentile: float = Field(default=90.0, gt=0, le=100)
    initial_latency_estimate_s: float = Field(default=2.0, ge=0)


class SafetyConfig(Section):
    # One value for the arm and one for the hand; each finite, > 0 and <= its SAFETY_CAPS entry.
    max_velocity_arm_rad_s: float = _capped("max_velocity_arm_rad_s", 1.0)
    max_velocity_hand_per_s: float = _capped("max_velocity_hand_per_s", 2.0)
    max_acceleration_arm_rad_s2: float = _capped("max_acceleration_arm_rad_s2", 8.0)
    max_acceleration_hand_per_s2: float = _capped("max_acceleration_hand_per_s2", 20.0)
    # Never run the policy on a frame older than this.
    max_observation_age_ms: float = _capped("max_observation_age_ms", 250.0)
    # Never execute an action whose observation is older than this (default: one 64-step chunk).
    max_action_age_s: float = _capped("max_action_age_s", 3.3)
    # The loop holds when the robot state or the head camera is older than this.
    max_state_age_ms: float = _capped("max_state_age_ms", 50.0)
    max_perception_age_ms: float = _capped("max_perception_age_ms", 500.0)
    # First runs: every velocity and acceleration limit above is multiplied by this (0 < s <= 1).
    speed_scale: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
    # Re-arm on our own after a link loss clears. Sim only: refused with bridge.kind 'serial'
    # (real hardware), where an operator re-arms.
    auto_rearm: bool = False


class CameraConfig(Section):
    serial: str | None = None
    width: int = Field(default=640, gt=0)
    height: int = Field(default=480, gt=0)
    fps: float = Field(default=30.0, gt=0)
    bag_path: str | None = None


class CamerasConfig(Section):
    kind: Literal["synthetic", "realsense", "mujoco"] = "synthetic"
    head: CameraConfig = Field(default_factory=CameraConfig)
    wrist: CameraConfig = Field(default_factory=CameraConfig)
    frame_timeout_ms: float = Field(default=500.0, gt=0)
    seed: int = 0


class TrackerConfig(Section):
    # classical: weight-free CPU tracker (default). cutie: exported SAM + Cutie (`dexgrasp export tracker`);
    # options then take model_dir (required), backend, threads, min_area_px, precision (fp32 | bf16 =
    # the measured openvino recipe | {graph: precision}) and allow_unverified (a reduced precision
    # otherwise needs a passing `dexgrasp track --verify`).
    kind: Literal["classical", "cutie", "none"] = "classical"
    # Initialise the tracker from this head-image box [x1, y1, x2, y2] (pixels) without a planner.
    manual_box_xyxy: list[float] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("manual_box_xyxy")
    @classmethod
    def _box(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) != 4:
            raise ValueError(f"needs 4 values [x1, y1, x2, y2], got {len(v)}")
        if not (v[2] > v[0] and v[3] > v[1]):
            raise ValueError(f"box must have x2 > x1 and y2 > y1, got {v}")
        return v

    @model_validator(mode="after")
    def _options(self) -> TrackerConfig:
        """Option keys the chosen tracker does not take are errors (did-you-mean), never dropped."""
        if not self.options:
            return self
        from runtime.config.keys import check_dataclass_keys, check_keywords

        if self.kind == "classical":
            from runtime.tracking.classical import ClassicalTrackerConfig

            check_dataclass_keys(self.options, ClassicalTrackerConfig, "tracker.options")
        elif self.kind == "cutie":
            from runtime.tracking.cutie import CutieTracker

            check_keywords(CutieTracker.__init__, self.options, "tracker.options")
            _check_cutie_precision(self.options)
        else:
            raise ValueError(f"tracker.options: tracker.kind 'none' takes no options, got {sorted(self.options)}")
        return self


def _check_cutie_precision(options: dict) -> None:
    """tracker.options.precision / allow_unverified, checked when the config loads (graph names,
    what the backend can run); whether openvino and bf16 exist here is checked when the tracker starts."""
    from runtime.tracking.learned.precision import resolve

    precision = options.get("precision", "fp32")
    try:
        resolve(precision, options.get("backend", "onnxruntime"), check_installed=False)
    except ValueError as exc:  # "precision: ..." / "backend: ...", placed under tracker.options
        raise ValueError(f"tracker.options.{exc}") from None
    if not isinstance(options.get("allow_unverified", False), bool):
        raise ValueError(f"tracker.options.allow_unverified: must be true or false, got "
                         f"{options['allow_unverified']!r}")


class PolicyConfig(Section):
    # "auto": the fastest backend/precision verified on this machine (AMX CPU -> openvino bf16, else
    # onnxruntime fp32); the choice is reported in the run summary.
    backend: Literal["auto", "onnxruntime", "openvino", "tensorrt", "fake"] = "onnxruntime"
    # Compute precision of the graphs: fp32 (exact) or a reduced-precision recipe of the backend
    # (bf16: openvino on AMX/AVX512-BF16 CPUs; fp16: tensorrt). Reduced precision needs a passing
    # `dexgrasp engine verify` recorded in the manifest unless allow_unverified is set.
    precision: Literal["fp32", "bf16", "fp16", "int8"] = "fp32"
    allow_unverified: bool = False
    # Exported controller directory; null = make (once) and cache a small random-weight model.
    model_dir: str | None = None
    providers: list[str] | None = None
    threads: int | None = Field(default=None, ge=1)
    # For the auto-made model: `dexgrasp make-checkpoint --preset PRESET --seed SEED` (plus `--config` with
    # the robot section when its joint layout is not 7 arm + 6 hand; cached per layout).
    preset: str = "small"
    seed: int = 0
    # Fake policy only: simulated inference time.
    fake_latency_ms: float = Field(default=200.0, ge=0)


class BridgeOptions(Section):
    """`bridge.options`. The three dicts are keyword arguments of EmulatorProcess(), its start()
    and BridgeHost(); their keys are checked against those signatures at load."""

    emulator: dict[str, Any] = Field(default_factory=dict)
    emulator_start: dict[str, Any] = Field(default_factory=dict)
    emulator_sched_fifo_priority: int | None = Field(default=None, ge=1, le=99)
    host: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keywords(self) -> BridgeOptions:
        from firmware_bridge.emulator import EmulatorProcess
        from firmware_bridge.host import BridgeHost
        from runtime.config.keys import check_keywords

        check_keywords(EmulatorProcess.__init__, self.emulator, "bridge.options.emulator")
        check_keywords(EmulatorProcess.start, self.emulator_start, "bridge.options.emulator_start")
        check_keywords(BridgeHost.__init__, self.host, "bridge.options.host")
        return self


class BridgeConfig(Section):
    kind: Literal["emulator", "serial", "fake", "mujoco", "ros2"] = "emulator"
    port: str | None = None
    # The serial port's baud rate (a pseudo-terminal ignores it).
    baudrate: int = Field(default=1_000_000, gt=0, le=20_000_000)
    options: BridgeOptions = Field(default_factory=BridgeOptions)
    # bridge.kind ros2: the arm over ROS 2 (runtime/robot/config.py, docs/ros2.md).
    ros2: Ros2Options | None = None

    @model_validator(mode="after")
    def _port(self) -> BridgeConfig:
        if self.kind == "serial" and not self.port:
            raise ValueError("bridge.kind 'serial' needs bridge.port (e.g. /dev/ttyACM0)")
        if self.kind == "ros2" and self.ros2 is not None and self.ros2.hand == "serial" and not self.port:
            raise ValueError("bridge.ros2.hand 'serial' needs bridge.port (the hand's serial port, e.g. /dev/ttyACM0)")
        return self


class PlannerConfig(Section):
    enabled: bool = True
    backend: Literal["local", "remote"] = "local"
    address: str | None = None
    prompt: str = "grasp the red block"
    # Start an episode with `prompt` as soon as the runtime is up (sim/demo).
    autostart: bool = True
    # episode / grasp / local / client / curve: see runtime/episode/app_glue.py; keys checked at load.
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _options(self) -> PlannerConfig:
        if self.options:
            from runtime.config.planner_options import check_planner_options

            check_planner_options(self.options)
        return self


class RuntimeConfig(Section):
    name: str = "sim"
    robot: RobotConfig = Field(default_factory=RobotConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    cameras: CamerasConfig = Field(default_factory=CamerasConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    bridge: BridgeConfig = Field(default_factory=BridgeConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    # Passed unchanged to runtime.telemetry / runtime.recording factories; validated at load by their
    # own models (TelemetryConfig / RecordingConfig), unknown keys with a did-you-mean.
    telemetry: dict[str, Any] | None = None
    recording: dict[str, Any] | None = None

    @field_validator("telemetry")
    @classmethod
    def _telemetry(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            from runtime.config.keys import check_dataclass_keys
            from runtime.telemetry.config import TelemetryConfig

            check_dataclass_keys(v, TelemetryConfig, "telemetry")
            TelemetryConfig.from_dict(v)  # ConfigError is a ValueError: reported like any field error
        return v

    @field_validator("recording")
    @classmethod
    def _recording(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            from runtime.config.keys import check_dataclass_keys
            from runtime.recording.config import RecordingConfig

            check_dataclass_keys(v, RecordingConfig, "recording")
            RecordingConfig.from_dict(v)
        return v

    @model_validator(mode="after")
    def _real_hardware(self) -> RuntimeConfig:
        """A config that drives a real arm names its home pose and leaves re-arming to an operator."""
        if self.bridge.kind == "ros2":
            from runtime.robot.config import check_ros2_joints

            check_ros2_joints(self.bridge.ros2, list(self.robot.joint_names))
        from runtime.robot.link import is_real_hardware

        if not is_real_hardware(self.bridge.kind):
            return self
        if "home_positions" not in self.robot.model_fields_set:
            raise ValueError(
                f"robot.home_positions: bridge.kind '{self.bridge.kind}' drives real hardware, so the config must name "
                f"its home pose ({self.robot.n_joints} values: {self.robot.n_arm} arm rad, {self.robot.n_hand} hand); the default "
                "of all zeros may be a collision pose")
        if self.safety.auto_rearm:
            raise ValueError("safety.auto_rearm: re-arming without an operator is sim-only; bridge.kind "
                             f"'{self.bridge.kind}' (real hardware) needs auto_rearm: false (an operator re-arms)")
        return self
