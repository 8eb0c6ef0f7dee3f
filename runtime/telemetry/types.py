"""Python DDS types mirroring the checked-in IDL in `idl/` (ROS 2 wire naming).

ROS 2 (rmw_cyclonedds) puts message `pkg/msg/Type` on the wire as `pkg::msg::dds_::Type_` and topic
`/name` as `rt/name`; using the same names lets `ros2 topic echo /dexgrasp/joint_states` see our
samples. These dataclasses are what cyclonedds serialises; `tests/runtime/telemetry` parses the
`.idl` files and checks that the member names and types agree, so the two never drift.

Importing this module imports `cyclonedds`: import it through `runtime.telemetry.dds_types()`,
which names the extra to install when the package is missing.
"""

# No `from __future__ import annotations`: cyclonedds resolves these annotations at runtime.
from dataclasses import dataclass, field
from pathlib import Path

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import byte, float64, int32, sequence, uint8, uint32

IDL_DIR = Path(__file__).with_name("idl")


@dataclass
class Time_(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header_(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time_ = field(default_factory=Time_)
    frame_id: str = ""


@dataclass
class String_(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str = ""


@dataclass
class JointState_(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    header: Header_ = field(default_factory=Header_)
    name: sequence[str] = field(default_factory=list)
    position: sequence[float64] = field(default_factory=list)
    velocity: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)


@dataclass
class CompressedImage_(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header_ = field(default_factory=Header_)
    format: str = ""  # "jpeg" (ROS 2 image_transport convention; Foxglove reads it)
    data: sequence[uint8] = field(default_factory=list)  # bytes on the way out, a list of ints on the way in


# diagnostic_msgs/DiagnosticStatus levels
DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3


@dataclass
class KeyValue_(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str = ""
    value: str = ""


@dataclass
class DiagnosticStatus_(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    level: byte = DIAG_OK
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: sequence[KeyValue_] = field(default_factory=list)


@dataclass
class DiagnosticArray_(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    header: Header_ = field(default_factory=Header_)
    status: sequence[DiagnosticStatus_] = field(default_factory=list)


# type -> the .idl file (relative to IDL_DIR) that declares it; used by the consistency test.
IDL_FILES = {
    Time_: "builtin_interfaces/Time.idl",
    Header_: "std_msgs/Header.idl",
    String_: "std_msgs/String.idl",
    JointState_: "sensor_msgs/JointState.idl",
    CompressedImage_: "sensor_msgs/CompressedImage.idl",
    KeyValue_: "diagnostic_msgs/KeyValue.idl",
    DiagnosticStatus_: "diagnostic_msgs/DiagnosticStatus.idl",
    DiagnosticArray_: "diagnostic_msgs/DiagnosticArray.idl",
}


def stamp_from_seconds(t_wall_s: float) -> Time_:
    """A ROS 2 Time from seconds since the Unix epoch (sec floors, nanosec in [0, 1e9))."""
    sec = int(t_wall_s // 1)
    nanosec = int(round((t_wall_s - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time_(sec=sec, nanosec=nanosec)
