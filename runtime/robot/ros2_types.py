"""Python DDS types for the ROS 2 arm adapter, mirroring the checked-in IDL in `idl/`.

ROS 2 (rmw_cyclonedds / rmw_fastrtps) puts message `pkg/msg/Type` on the wire as
`pkg::msg::dds_::Type_`; using the same type names and the `rt/` topic prefix is what lets a plain
cyclonedds participant talk to a ros2_control controller without rclpy. Time_, Header_ and
JointState_ are the telemetry's classes (one Python class per wire type in the process); the
trajectory and multi-array types are declared here. `tests/runtime/robot/test_ros2_idl.py` parses
the `.idl` files and checks every class against them, so the two never drift.

Importing this module imports `cyclonedds`: import it through `runtime.robot.ros2`, which names the
extra to install when the package is missing.
"""

# No `from __future__ import annotations`: cyclonedds resolves these annotations at runtime.
from dataclasses import dataclass, field
from pathlib import Path

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import float64, int32, sequence, uint32

from runtime.telemetry.types import Header_, JointState_, Time_

IDL_DIR = Path(__file__).with_name("idl")

__all__ = ["Duration_", "Float64MultiArray_", "Header_", "JointState_", "JointTrajectoryPoint_",
           "JointTrajectory_", "MultiArrayDimension_", "MultiArrayLayout_", "Time_", "duration_from_seconds"]


@dataclass
class Duration_(IdlStruct, typename="builtin_interfaces::msg::dds_::Duration_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class JointTrajectoryPoint_(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectoryPoint_"):
    positions: sequence[float64] = field(default_factory=list)
    velocities: sequence[float64] = field(default_factory=list)
    accelerations: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)
    time_from_start: Duration_ = field(default_factory=Duration_)


@dataclass
class JointTrajectory_(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectory_"):
    header: Header_ = field(default_factory=Header_)
    joint_names: sequence[str] = field(default_factory=list)
    points: sequence[JointTrajectoryPoint_] = field(default_factory=list)


@dataclass
class MultiArrayDimension_(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayDimension_"):
    label: str = ""
    size: uint32 = 0
    stride: uint32 = 0


@dataclass
class MultiArrayLayout_(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayLayout_"):
    dim: sequence[MultiArrayDimension_] = field(default_factory=list)
    data_offset: uint32 = 0


@dataclass
class Float64MultiArray_(IdlStruct, typename="std_msgs::msg::dds_::Float64MultiArray_"):
    layout: MultiArrayLayout_ = field(default_factory=MultiArrayLayout_)
    data: sequence[float64] = field(default_factory=list)


# type -> the .idl file (relative to IDL_DIR) that declares it; used by the consistency test.
IDL_FILES = {
    Time_: "builtin_interfaces/Time.idl",
    Duration_: "builtin_interfaces/Duration.idl",
    Header_: "std_msgs/Header.idl",
    JointState_: "sensor_msgs/JointState.idl",
    JointTrajectoryPoint_: "trajectory_msgs/JointTrajectoryPoint.idl",
    JointTrajectory_: "trajectory_msgs/JointTrajectory.idl",
    MultiArrayDimension_: "std_msgs/MultiArrayDimension.idl",
    MultiArrayLayout_: "std_msgs/MultiArrayLayout.idl",
    Float64MultiArray_: "std_msgs/Float64MultiArray.idl",
}


def duration_from_seconds(seconds: float) -> Duration_:
    """A ROS 2 Duration from non-negative seconds (sec floors, nanosec in [0, 1e9))."""
    seconds = max(0.0, float(seconds))
    sec = int(seconds // 1)
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Duration_(sec=sec, nanosec=nanosec)
