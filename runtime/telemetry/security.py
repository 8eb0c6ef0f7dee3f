"""Who may command the robot over DDS: the start-time trust check, failing closed.

Commands that move the robot or lift a stop (`start`, `arm`, `clear`) must come from an
authenticated sender on real hardware. That means DDS-Security (authentication + access control,
configured in `telemetry.dds.security` or in a <Security> section of `config_uri`), or an operator
who wrote `insecure_commands: true` and gets a loud warning in the log and the run summary.

Where security is configured but the Cyclone DDS build cannot do it (the PyPI wheel is built
without DDS-Security), starting is refused: running with the security silently off would be
worse than not running.
"""

from __future__ import annotations

import ctypes.util
import functools
import os
from pathlib import Path

from runtime.errors import ConfigError
from runtime.telemetry.config import DdsConfig

PLUGINS = ("dds_security_auth", "dds_security_ac", "dds_security_crypto")
BUILD_HINT = ("build Cyclone DDS with -DENABLE_SECURITY=ON (needs OpenSSL), set CYCLONEDDS_HOME to its install "
              "prefix and install the Python binding against it (pip install cyclonedds --no-binary cyclonedds)")


def config_has_security(cfg: DdsConfig) -> bool:
    """True when cfg configures DDS-Security: `security`, or a <Security> element in config_uri."""
    if cfg.security is not None:
        return True
    if not cfg.config_uri:
        return False
    for part in cfg.config_uri.split(","):
        part = part.strip()
        if part.startswith("<"):
            text = part
        else:
            path = Path(part.removeprefix("file://").removeprefix("file:"))
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue  # Cyclone reports an unreadable file itself when the domain is created
        if "<Security" in text:
            return True
    return False


@functools.cache
def security_support() -> str | None:
    """None if this Cyclone DDS build can do DDS-Security, else a sentence saying why not.

    Two things are needed: libddsc built with security (it then knows the <Security>
    configuration section) and the three security plugins it loads at run time."""
    try:
        from cyclonedds.internal import load_cyclonedds
    except ImportError:
        return "cyclonedds is not installed (pip install -e '.[dds]')"
    lib = load_cyclonedds()
    path = Path(getattr(lib, "_name", "") or "")
    problems = []
    try:
        if b"IdentityCertificate" not in path.read_bytes():
            problems.append(f"{path.name} was built without DDS-Security (it has no <Security> configuration section)")
    except OSError as exc:
        problems.append(f"cannot inspect the Cyclone DDS library {path}: {exc}")
    dirs = [path.parent]
    if os.environ.get("CYCLONEDDS_HOME"):
        dirs.append(Path(os.environ["CYCLONEDDS_HOME"]) / "lib")
    missing = [p for p in PLUGINS
               if ctypes.util.find_library(p) is None and not any(any(d.glob(f"*{p}*")) for d in dirs if d.is_dir())]
    if missing:
        problems.append(f"the security plugins {missing} are not installed")
    if not problems:
        return None
    return "this Cyclone DDS build lacks DDS-Security: " + "; ".join(problems) + f". To enable it, {BUILD_HINT}"


def require_security_support(cfg: DdsConfig, where: str = "telemetry.dds") -> None:
    """Fail closed: security configured but unavailable is an error, never a silent downgrade."""
    if not config_has_security(cfg):
        return
    reason = security_support()
    if reason is not None:
        raise ConfigError(f"{where}: DDS-Security is configured but {reason}; refusing to start "
                          "without it (commands would be unauthenticated)")


def command_trust_warnings(cfg: DdsConfig, real_hardware: bool, where: str = "telemetry.dds") -> list[str]:
    """Check who may command the robot before anything is opened. Raises ConfigError when
    commands would be unauthenticated on real hardware without an explicit opt-in, or when the
    configured security cannot be had; returns the warnings to repeat loudly (log + summary)."""
    if not (cfg.enabled and cfg.commands):
        return []
    if config_has_security(cfg):
        require_security_support(cfg, where)
        return []
    if not real_hardware:
        return []
    if not cfg.insecure_commands:
        raise ConfigError(
            f"{where}: DDS commands on real hardware (bridge.kind 'serial') need DDS-Security "
            f"({where}.security) or an explicit {where}.insecure_commands: true; "
            f"or set {where}.commands: false for telemetry only"
        )
    return [f"DDS commands are UNAUTHENTICATED on real hardware ({where}.insecure_commands: true): anyone on "
            f"DDS domain {cfg.domain_id} can start, arm or clear this robot"]
