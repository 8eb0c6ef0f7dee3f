"""Telemetry settings: the `telemetry: {dds: {...}}` section of a runtime config.

Plain dataclass plus a validating `from_dict`, so the onboard package needs no DDS import to read
a config, and a wrong field gets an error naming the field and the bad value.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from runtime.errors import ConfigError

# The domain id of a config (and of `dexgrasp ctl`) that names none: lets test runs and several
# people on one host keep their sim demos apart without editing configs/sim.yaml.
DOMAIN_ENV = "DEXGRASP_DDS_DOMAIN_ID"
DDS_INSTALL_HINT = "pip install 'dexgraspvla-runtime[dds]'"
LOOPBACK = "loopback"  # `interface: loopback`: this host only (lo, no multicast, peer 127.0.0.1)


def loopback_interface() -> str:
    """The loopback interface's name as Cyclone DDS knows it on this OS."""
    return "lo0" if sys.platform == "darwin" else "lo"


def default_domain_id(where: str = DOMAIN_ENV) -> int:
    """$DEXGRASP_DDS_DOMAIN_ID when set (checked like domain_id), else 0 (ROS 2's default)."""
    raw = os.environ.get(DOMAIN_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 232:
        raise ConfigError(f"{where}: ${DOMAIN_ENV} must be an integer in [0, 232], got {raw!r}")
    return value


def dds_unavailable() -> str | None:
    """Why Cyclone DDS cannot be used here (None: it can). `enabled: auto` is off when this says why."""
    try:
        import cyclonedds.domain  # noqa: F401  (the native library loads here)
    except (ImportError, OSError) as exc:
        return f"cyclonedds is not importable ({exc})"
    return None


@dataclass(frozen=True)
class SecurityConfig:
    """DDS-Security (authentication + access control) file locations; see docs/dds_recording.md.

    With these set, Cyclone DDS only lets participants with a certificate signed by the identity CA
    and a permissions document signed by the permissions CA publish on rt/dexgrasp/command.
    """

    identity_ca: str
    identity_certificate: str
    private_key: str
    permissions_ca: str
    governance: str
    permissions: str


@dataclass(frozen=True)
class ImagesConfig:
    """Operator images (`telemetry.dds.images`): head, wrist and mask as JPEG CompressedImage.

    Low rate and small by design: they are for a person watching (Foxglove), not for control.
    Frames are encoded on the telemetry node's own thread; frames that arrive while it is still
    busy are dropped and counted, so a slow encoder never holds up the runtime.
    """

    enabled: bool = True
    rate_hz: float = 2.0
    max_width: int = 320  # wider frames are downscaled (aspect kept); narrower ones are sent as they are
    jpeg_quality: int = 80

    @classmethod
    def from_dict(cls, raw, where: str) -> ImagesConfig:
        if isinstance(raw, ImagesConfig):
            return raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping like {{rate_hz: 2, max_width: 320}}, got {raw!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(known)}")
        cfg = cls(**raw)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "telemetry.dds.images") -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"{where}.enabled: expected true/false, got {self.enabled!r}")
        rate = self.rate_hz
        if isinstance(rate, bool) or not (isinstance(rate, (int, float)) and 0.1 <= rate <= 10.0):
            raise ConfigError(f"{where}.rate_hz: expected 0.1..10 Hz (images are for people, not control), got {rate!r}")
        w = self.max_width
        if isinstance(w, bool) or not (isinstance(w, int) and 16 <= w <= 4096):
            raise ConfigError(f"{where}.max_width: expected an integer number of pixels in 16..4096, got {w!r}")
        q = self.jpeg_quality
        if isinstance(q, bool) or not (isinstance(q, int) and 1 <= q <= 100):
            raise ConfigError(f"{where}.jpeg_quality: expected an integer in 1..100, got {q!r}")


@dataclass(frozen=True)
class DdsConfig:
    """One DDS participant's settings.

    interface / allow_multicast / peers build a Cyclone DDS XML config for this domain (use
    interface "lo" with allow_multicast False and peers ["127.0.0.1"] to stay on the host).
    When none of them is set, Cyclone reads CYCLONEDDS_URI (or its defaults), like ROS 2 does.
    config_uri (a Cyclone XML file or URI) is merged with them and with `security`: our fields come
    after it, so they win where both set the same element; nothing is dropped.

    interface "loopback" is that recipe in one word (allow_multicast and peers default to it).
    enabled "auto": on when cyclonedds is importable, off (and reported) when not: the sim's default.
    domain_id omitted: $DEXGRASP_DDS_DOMAIN_ID, else 0.

    commands: read operator commands on rt/dexgrasp/command (false: telemetry only). On real
    hardware (bridge.kind "serial" or "ros2") commands need DDS-Security (`security`, or a <Security>
    section in config_uri) or an explicit `insecure_commands: true`, reported loudly.
    """

    enabled: bool = False
    domain_id: int = 0
    interface: str | None = None
    allow_multicast: bool | None = None
    peers: tuple[str, ...] = ()
    config_uri: str | None = None  # a Cyclone XML file/URI, merged with the fields above and security
    # Names on rt/dexgrasp/joint_states and joint_commands. Empty (the default): the robot's, from the
    # config's joint space (make_telemetry fills them); a node without a runtime config names each
    # sample by the state's own names, else joint_0..joint_n-1.
    joint_names: tuple[str, ...] = ()
    frame_id: str = "dexgrasp"
    status_rate_hz: float = 2.0
    telemetry_queue: int = 256  # joint samples buffered between observer callback and publisher
    command_queue: int = 16  # validated commands waiting for the runtime's submit callback
    command_max_age_s: float = 2.0  # older commands (source timestamp or queue wait) are dropped
    command_rate_hz: float = 10.0  # token bucket for non-stop commands; floods beyond are dropped
    command_burst: int = 20
    security: SecurityConfig | None = None
    commands: bool = True  # read operator commands (false: telemetry only)
    insecure_commands: bool = False  # accept unauthenticated commands on real hardware (loud warning)
    images: ImagesConfig = field(default_factory=ImagesConfig)  # head/wrist/mask JPEGs for the operator
    stale_after_s: float = 2.0  # diagnostics report STALE for a source silent this long

    @classmethod
    def from_dict(cls, raw: dict | None, where: str = "telemetry.dds") -> DdsConfig:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(known)}")
        if raw.get("enabled") == "auto":
            raw["enabled"] = dds_unavailable() is None
        if "domain_id" not in raw:
            raw["domain_id"] = default_domain_id(f"{where}.domain_id")
        if "peers" in raw:
            raw["peers"] = tuple(_str_list(raw["peers"], f"{where}.peers"))
        if raw.get("interface") == LOOPBACK:
            raw["interface"] = loopback_interface()
            if raw.get("allow_multicast") is None:
                raw["allow_multicast"] = False
            if not raw.get("peers"):
                raw["peers"] = ("127.0.0.1",)
        if "joint_names" in raw:
            raw["joint_names"] = tuple(_str_list(raw["joint_names"], f"{where}.joint_names"))
        if "images" in raw:
            raw["images"] = ImagesConfig.from_dict(raw["images"], f"{where}.images")
        if raw.get("security") is not None:
            sec = raw["security"]
            if not isinstance(sec, dict):
                raise ConfigError(f"{where}.security: expected a mapping of file paths, got {sec!r}")
            try:
                raw["security"] = SecurityConfig(**{k: str(v) for k, v in sec.items()})
            except TypeError as exc:
                raise ConfigError(f"{where}.security: {exc}") from exc
            for name in ("identity_ca", "identity_certificate", "private_key", "permissions_ca",
                         "governance", "permissions"):
                path = Path(getattr(raw["security"], name).removeprefix("file:"))
                if not path.is_file():
                    raise ConfigError(f"{where}.security.{name}: file not found: {path}")
        cfg = cls(**raw)
        cfg.validate(where)
        return cfg

    def for_robot(self, robot_joint_names, where: str = "telemetry.dds") -> DdsConfig:
        """This config publishing the robot's joint names: they fill an empty `joint_names`; names
        given in the section must be one per robot joint (ConfigError naming both counts)."""
        robot = tuple(robot_joint_names)
        if not self.joint_names:
            return replace(self, joint_names=robot)
        if len(self.joint_names) != len(robot):
            raise ConfigError(f"{where}.joint_names: {len(self.joint_names)} names for a robot with {len(robot)} "
                              f"joints ({', '.join(robot)}); give one per joint or leave it out to publish the "
                              "robot's names")
        return self

    def validate(self, where: str = "telemetry.dds") -> None:
        for name in ("enabled", "commands", "insecure_commands"):
            if not isinstance(getattr(self, name), bool):
                hint = " or auto" if name == "enabled" else ""
                raise ConfigError(f"{where}.{name}: expected true/false{hint}, got {getattr(self, name)!r}")
        if self.config_uri is not None and not (isinstance(self.config_uri, str) and self.config_uri.strip()):
            raise ConfigError(f"{where}.config_uri: expected a file path, file:// URI or XML, got {self.config_uri!r}")
        if not isinstance(self.domain_id, int) or not 0 <= self.domain_id <= 232:
            raise ConfigError(f"{where}.domain_id: expected an integer in [0, 232], got {self.domain_id!r}")
        if not (isinstance(self.status_rate_hz, (int, float)) and 1.0 <= self.status_rate_hz <= 10.0):
            raise ConfigError(f"{where}.status_rate_hz: expected 1..10 Hz, got {self.status_rate_hz!r}")
        for name in ("telemetry_queue", "command_queue", "command_burst"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}.{name}: expected a positive integer, got {value!r}")
        self.images.validate(f"{where}.images")
        for name in ("command_max_age_s", "command_rate_hz", "stale_after_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{where}.{name}: expected a positive number, got {value!r}")
        if len(self.joint_names) != len(set(self.joint_names)):
            raise ConfigError(f"{where}.joint_names: names must be unique, got {list(self.joint_names)}")


@dataclass(frozen=True)
class TelemetryConfig:
    """The `telemetry:` section. Only DDS today; kept as a section so other sinks can join it."""

    dds: DdsConfig = field(default_factory=DdsConfig)

    @classmethod
    def from_dict(cls, raw: dict | None, where: str = "telemetry") -> TelemetryConfig:
        raw = dict(raw or {})
        unknown = sorted(set(raw) - {"dds"})
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields are ['dds']")
        return cls(dds=DdsConfig.from_dict(raw.get("dds"), f"{where}.dds"))


def watch_summary(section) -> str:
    """The run summary's telemetry line: how to watch this run, or why DDS is off and how to turn it on."""
    raw = section.model_dump(exclude_unset=True) if hasattr(section, "model_dump") else section
    dds_raw = (raw or {}).get("dds") if isinstance(raw, dict) else None
    cfg = TelemetryConfig.from_dict(raw).dds if isinstance(raw, dict) else DdsConfig()
    if not cfg.enabled:
        if isinstance(dds_raw, dict) and dds_raw.get("enabled") == "auto":
            return f"off ({DDS_INSTALL_HINT} to watch with dexgrasp ctl status)"
        return "off (telemetry.dds.enabled: false)"
    if cfg.interface in ("lo", "lo0") and cfg.allow_multicast is False:
        where = "loopback"
        # ctl's own default is loopback unless CYCLONEDDS_URI is set (then it follows that)
        ctl = "dexgrasp ctl status" + (" --interface loopback" if os.environ.get("CYCLONEDDS_URI") else "")
    else:
        where = f"interface {cfg.interface}" if cfg.interface else "CYCLONEDDS_URI / Cyclone defaults"
        ctl = "dexgrasp ctl status" + (f" --interface {cfg.interface}" if cfg.interface else "")
    if cfg.domain_id != default_domain_id():
        ctl += f" --domain-id {cfg.domain_id}"
    return f"watch: {ctl} (DDS domain {cfg.domain_id}, {where})"


def _str_list(value, where: str) -> list[str]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return list(value)
