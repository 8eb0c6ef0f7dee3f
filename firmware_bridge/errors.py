"""Errors of the firmware bridge (all DexGraspError, so the CLI prints them without a traceback)."""

from runtime.errors import DeviceNotConnectedError, DexGraspError


class ProtocolMismatchError(DexGraspError, ConnectionError):
    """The handshake found another protocol version or joint schema; no motion is enabled."""


class EnvelopeError(ProtocolMismatchError):
    """The host's envelope (its position, velocity or acceleration limits) is wider than the one the
    firmware reported in the handshake; no motion is enabled."""


class SecondWriterError(DexGraspError, RuntimeError):
    """Another process wrote to the firmware in this host's session (unexplained ERR_REPLAY /
    ERR_SESSION, or a command applied that this host never sent): protective stop, re-arm refused
    until the operator clears it."""


class NotArmedError(DexGraspError, RuntimeError):
    """A motion command while the current firmware session is not handshaken and armed."""


class CommandError(DexGraspError, ValueError):
    """A command was refused before it was sent (wrong shape, NaN / Inf, bad timing)."""


class DeviceRejectedError(DexGraspError, RuntimeError):
    """The firmware answered a request with an error code (named in the message)."""


__all__ = [
    "CommandError", "DeviceNotConnectedError", "DeviceRejectedError", "EnvelopeError", "NotArmedError",
    "ProtocolMismatchError", "SecondWriterError",
]
