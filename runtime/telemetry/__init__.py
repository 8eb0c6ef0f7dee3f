"""DDS telemetry and operator commands (ROS 2 compatible naming; Cyclone DDS).

`TelemetryNode` is a runtime observer: it publishes rt/dexgrasp/joint_states, joint_commands and
status, and feeds validated rt/dexgrasp/command messages to the runtime's submit callback.
`DdsClient` is the operator side (`dexgrasp ctl`). Importing this package does not import
cyclonedds; starting a node or client does (MissingExtraError names the `dds` extra if absent).
"""

from runtime.telemetry.commands import COMMANDS, Command, CommandGate, CommandRejected, parse_command
from runtime.telemetry.config import DdsConfig, SecurityConfig, TelemetryConfig

__all__ = [
    "COMMANDS", "Command", "CommandGate", "CommandRejected", "parse_command",
    "DdsConfig", "SecurityConfig", "TelemetryConfig", "make_telemetry",
]


def make_telemetry(section: dict | TelemetryConfig | None, submit=None, name: str = "dexgrasp"):
    """A started TelemetryNode from the `telemetry:` config section, or None if DDS is disabled.

    `submit` is the runtime's thread-safe submit_command(dict); it can also be set later with
    node.set_submit(). Blocks < ~100 ms (participant creation).
    """
    cfg = section if isinstance(section, TelemetryConfig) else TelemetryConfig.from_dict(section)
    if not cfg.dds.enabled:
        return None
    from runtime.telemetry.node import TelemetryNode

    return TelemetryNode(cfg.dds, submit=submit, name=name).start()
