"""The project's error classes.

A few classes that subclass builtins, so callers can catch either the precise class or the builtin
one. Every message names the thing that was wrong (file, field, device, measured value).
"""


class DexGraspError(Exception):
    """Base of every error this project raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(DexGraspError, ValueError):
    """A config file, field or value is invalid."""


class CheckpointError(DexGraspError, ValueError):
    """A checkpoint is corrupt, truncated, of another architecture or missing keys."""


class ModelError(DexGraspError, ValueError):
    """An exported model directory or manifest is invalid or does not match what is asked of it."""


class ObservationError(DexGraspError, ValueError):
    """An observation has the wrong shape, dtype or non-finite values."""


class StaleDataError(DexGraspError, TimeoutError):
    """A latest value is older than the consumer's max age (or was never set)."""


class DeviceNotConnectedError(DexGraspError, ConnectionError):
    """A device (camera, serial port, planner server) is not connected or stopped answering."""


class MissingExtraError(DexGraspError, ImportError):
    """An optional dependency is not installed; the message names the pip extra to install."""


def require(module: str, extra: str, purpose: str):
    """Import an optional module lazily, or raise MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:  # pragma: no cover - depends on the environment
        if "cannot open shared object" in str(exc) or isinstance(exc, OSError):
            # the Python package is installed but a system library it links is not: pip cannot fix that
            apt = " Install it with: sudo apt-get install libusb-1.0-0" if "libusb" in str(exc) else ""
            raise MissingExtraError(
                f"{purpose}: the module '{module}' is installed but a system library it needs is missing "
                f"({str(exc).splitlines()[0] if str(exc) else exc!r}).{apt}"
            ) from exc
        raise MissingExtraError(
            f"{purpose} needs the Python module '{module}', which is not importable ({exc}). "
            f"Install it with: pip install 'dexgraspvla-runtime[{extra}]'"
        ) from exc
