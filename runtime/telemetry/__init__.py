"""DDS telemetry and operator commands (ROS 2 compatible naming; Cyclone DDS).

`TelemetryNode` is a runtime observer: it publishes rt/dexgrasp/joint_states, joint_commands and
status, and feeds validated rt/dexgrasp/command messages to the runtime's submit callback.
`DdsClient` is the operator side (`dexgrasp ctl`). Importing this package does not import
cyclonedds; starting a node or client does (MissingExtraError names the `dds` extra if absent).
"""

from runtime.telemetry.commands import COMMANDS, Command, CommandGate, CommandRejected, parse_command
from runtime.telemetry.config import DdsConfig, SecurityConfig, TelemetryConfig
from runtime.telemetry.security import command_trust_warnings

__all__ = [
    "COMMANDS", "Command", "CommandGate", "CommandRejected", "parse_command",
    "DdsConfig", "SecurityConfig", "TelemetryConfig", "make_telemetry", "telemetry_config",
    "command_trust_warnings",
]


def telemetry_config(section) -> TelemetryConfig:
    """The `telemetry:` section as a TelemetryConfig (from a dict, a validated model or itself)."""
    if isinstance(section, TelemetryConfig):
        return section
    if hasattr(section, "model_dump"):  # a pydantic model from the config schema
        section = section.model_dump(exclude_unset=True)
    return TelemetryConfig.from_dict(section)


def make_telemetry(section: dict | TelemetryConfig | None, submit=None, name: str = "dexgrasp",
                   real_hardware: bool = False, joint_names=None):
    """A started TelemetryNode from the `telemetry:` config section, or None if DDS is disabled.

    `joint_names`: the robot's (robot.joint_names, the config's joint space); published unless the
    section names its own, one per joint (DdsConfig.for_robot).

    `submit` is the runtime's thread-safe submit_command(dict); it can also be set later with
    node.set_submit(). `real_hardware`: the bridge drives a real robot (bridge.kind "serial" or "ros2"):
    commands then need DDS-Security or insecure_commands (security.command_trust_warnings raises
    ConfigError otherwise). Blocks < ~100 ms (participant creation).
    """
    cfg = telemetry_config(section)
    if not cfg.dds.enabled:
        return None
    dds = cfg.dds if joint_names is None else cfg.dds.for_robot(joint_names)
    import logging

    for text in command_trust_warnings(dds, real_hardware):
        logging.getLogger(__name__).warning("%s", text)
    from runtime.telemetry.node import TelemetryNode

    return TelemetryNode(dds, submit=submit, name=name).start()
