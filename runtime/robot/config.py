"""`bridge.ros2`: the validated options of the ROS 2 arm link (bridge.kind ros2).

Kept beside the adapter (not in runtime/config/schema.py) so the schema only names it. The joint
map is the one place that says which runtime joint is which controller joint; its order is the
controller's joint order (it matters for a forward position controller, which reads bare values).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runtime.errors import ConfigError


class Ros2Options(BaseModel):
    """See docs/ros2.md for each field and how to point it at a ros2_control controller."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # ROS_DOMAIN_ID of the robot's ROS 2 graph (DDS domain; 0..232 on Linux).
    domain_id: int = Field(default=0, ge=0, le=232)
    # The controller's name in controller_manager (namespaces allowed: "/arm/joint_trajectory_controller").
    controller: str = "joint_trajectory_controller"
    command_type: Literal["joint_trajectory", "forward_position"] = "joint_trajectory"
    # runtime joint name -> controller joint name, in the controller's joint order.
    joints: dict[str, str] = Field(min_length=1)
    state_topic: str = "joint_states"
    # Older measured state holds the arm (refuses targets, disarms, latches needs_rearm).
    state_max_age_s: float = Field(default=0.1, gt=0.0, le=5.0)
    # "reliable" is ROS 2's default QoS; "sensor_data" (best effort) matches any publisher.
    state_qos: Literal["reliable", "sensor_data"] = "reliable"
    connect_timeout_s: float = Field(default=5.0, gt=0.0, le=120.0)
    # Floor of each trajectory point's time_from_start (a point "at 0 s" is a step command).
    min_time_from_start_s: float = Field(default=0.005, ge=0.0, le=1.0)
    # Refuse to connect / hold when nothing subscribes to the command topic (controller not active).
    require_subscriber: bool = True
    # Which link drives the joints not in `joints` (the hand): the serial firmware bridge
    # (bridge.port / baudrate / options as for bridge.kind serial), its emulator, the fake, or none.
    hand: Literal["serial", "emulator", "fake", "none"] = "serial"
    # DDS network (None / empty: Cyclone's defaults or CYCLONEDDS_URI, as ROS 2 does).
    interface: str | None = None
    allow_multicast: bool | None = None
    peers: list[str] = Field(default_factory=list)
    config_uri: str | None = None

    @field_validator("joints")
    @classmethod
    def _unique(cls, v: dict[str, str]) -> dict[str, str]:
        values = list(v.values())
        dup = sorted({c for c in values if values.count(c) > 1})
        if dup:
            raise ValueError(f"bridge.ros2.joints: controller joint(s) {dup} are mapped from more than one runtime joint")
        if any(not str(k).strip() or not str(c).strip() for k, c in v.items()):
            raise ValueError("bridge.ros2.joints: joint names must not be empty")
        return v

    @field_validator("controller", "state_topic")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip("/ ") or any(c.isspace() for c in v):
            raise ValueError(f"must be a ROS 2 name (no spaces, not empty), got {v!r}")
        return v

    def dds_config(self):
        """The DdsConfig (runtime.telemetry.config) for this link's participant."""
        from runtime.telemetry.config import DdsConfig

        return DdsConfig(enabled=True, domain_id=self.domain_id, interface=self.interface,
                         allow_multicast=self.allow_multicast, peers=tuple(self.peers), config_uri=self.config_uri)


def check_ros2_joints(opts: Ros2Options | None, joint_names: list[str]) -> None:
    """At load: every mapped runtime joint exists, and without a hand link the map covers all of them."""
    if opts is None:
        raise ConfigError("bridge.kind 'ros2' needs a bridge.ros2 section (at least `joints`: runtime name -> "
                          "controller joint name); see configs/ros2_arm_example.yaml")
    unknown = [n for n in opts.joints if n not in joint_names]
    if unknown:
        raise ConfigError(f"bridge.ros2.joints: {unknown} are not in robot.joint_names {list(joint_names)}")
    rest = [n for n in joint_names if n not in opts.joints]
    if opts.hand == "none" and rest:
        raise ConfigError(f"bridge.ros2.hand is 'none' but joints {rest} are not in bridge.ros2.joints: "
                          "map them to the controller or name the hand link (serial / emulator / fake)")
    if opts.hand != "none" and not rest:
        raise ConfigError(f"bridge.ros2.hand is '{opts.hand}' but bridge.ros2.joints already maps every joint: "
                          "set hand: none")
