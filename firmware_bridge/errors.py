"""Errors of the firmware bridge (all DexGraspError, so the CLI prints them without a traceback)."""

from runtime.errors import DeviceNotConnectedError, DexGraspError


class ProtocolMismatchError(DexGraspError, ConnectionError):
    """The handshake found another protocol version or joint schema; no motion is enabled."""


class NotArmedError(DexGraspError, RuntimeError):
    """A motion command while the current firmware session is not handshaken and armed."""


class CommandError(DexGraspError, ValueError):
    """A command was refused before it was sent (wrong shape, NaN / Inf, bad timing)."""


class DeviceRejectedError(DexGraspError, RuntimeError):
    """The firmware answered a request with an error code (named in the message)."""


__all__ = [
    "CommandError", "DeviceNotConnectedError", "DeviceRejectedError", "NotArmedError", "ProtocolMismatchError",
]
