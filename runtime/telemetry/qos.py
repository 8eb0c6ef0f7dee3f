"""Topic names, explicit QoS profiles and the per-domain Cyclone DDS configuration.

QoS is spelled out rather than left to defaults because matching is QoS-dependent: a reliable
reader never matches a best-effort writer, and a late `dexgrasp ctl status` only sees the last
status if both sides use transient-local durability.
"""

from __future__ import annotations

import threading
from xml.sax.saxutils import escape

from runtime.errors import ConfigError, require
from runtime.telemetry.config import DdsConfig

TOPIC_JOINT_STATES = "rt/dexgrasp/joint_states"
TOPIC_JOINT_COMMANDS = "rt/dexgrasp/joint_commands"
TOPIC_STATUS = "rt/dexgrasp/status"
TOPIC_COMMAND = "rt/dexgrasp/command"
TOPIC_DIAGNOSTICS = "rt/diagnostics"  # ROS 2's /diagnostics: rqt_runtime_monitor and Foxglove read it
TOPIC_PLANNER_BOX = "rt/dexgrasp/planner/box"  # std_msgs/Float64MultiArray [x1, y1, x2, y2]; [] = none


def image_topic(camera: str) -> str:
    """rt/dexgrasp/<camera>/image/compressed (head, wrist or mask), image_transport naming."""
    return f"rt/dexgrasp/{camera}/image/compressed"

STATUS_HISTORY = 8  # late joiners get the last few statuses (and so the last command results)
COMMAND_HISTORY = 32  # DDS-level bound on unread commands; our own queue bounds the rest


def _dds():
    require("cyclonedds", "dds", "DDS telemetry")
    from cyclonedds.core import Policy, Qos
    from cyclonedds.util import duration

    return Qos, Policy, duration


def telemetry_qos():
    """Joint states/commands: best-effort, keep-last 1, volatile (a lost sample is replaced by the
    next one a few ms later; retransmitting old states would only add latency)."""
    Qos, Policy, _ = _dds()
    return Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(1), Policy.Durability.Volatile)


def status_qos():
    """Status: reliable, keep-last STATUS_HISTORY, transient-local (late joiners get the latest)."""
    Qos, Policy, duration = _dds()
    return Qos(
        Policy.Reliability.Reliable(duration(seconds=1)),
        Policy.History.KeepLast(STATUS_HISTORY),
        Policy.Durability.TransientLocal,
    )


def command_qos():
    """Commands: reliable, keep-last COMMAND_HISTORY, volatile (a command sent before the runtime
    started must not fire later; the runtime also drops commands older than command_max_age_s)."""
    Qos, Policy, duration = _dds()
    return Qos(
        Policy.Reliability.Reliable(duration(seconds=1)),
        Policy.History.KeepLast(COMMAND_HISTORY),
        Policy.Durability.Volatile,
    )


def image_qos():
    """Operator images: best-effort, keep-last 1, volatile (a stale picture is worth nothing)."""
    return telemetry_qos()


def diagnostics_qos():
    """rt/diagnostics and the planner box: reliable, keep-last 1, transient-local (a late Foxglove
    or `ctl` sees the current state at once)."""
    Qos, Policy, duration = _dds()
    return Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(1),
               Policy.Durability.TransientLocal)


def domain_xml(cfg: DdsConfig) -> str | None:
    """The Cyclone config for cfg, or None to use CYCLONEDDS_URI / defaults.

    With config_uri set, the result is Cyclone's comma-separated list "config_uri,<our XML>":
    Cyclone merges the pieces in order, so the security section and the network fields are
    applied on top of the file instead of being dropped (they used to be, silently).
    """
    ours = _fields_xml(cfg)
    if cfg.config_uri:
        return cfg.config_uri if ours is None else f"{cfg.config_uri},{ours}"
    return ours


def _fields_xml(cfg: DdsConfig) -> str | None:
    general, discovery, security = [], [], ""
    if cfg.interface:
        general.append(f'<Interfaces><NetworkInterface name="{escape(cfg.interface)}"/></Interfaces>')
    if cfg.allow_multicast is not None:
        general.append(f"<AllowMulticast>{'true' if cfg.allow_multicast else 'false'}</AllowMulticast>")
    if cfg.peers:
        peers = "".join(f'<Peer address="{escape(p)}"/>' for p in cfg.peers)
        discovery.append(f"<ParticipantIndex>auto</ParticipantIndex><Peers>{peers}</Peers>")
        discovery.append("<MaxAutoParticipantIndex>30</MaxAutoParticipantIndex>")
    if cfg.security is not None:
        s = cfg.security

        def uri(p: str) -> str:
            return escape(p if p.startswith("file:") else f"file:{p}")

        security = (
            "<Security><Authentication>"
            f"<IdentityCA>{uri(s.identity_ca)}</IdentityCA>"
            f"<IdentityCertificate>{uri(s.identity_certificate)}</IdentityCertificate>"
            f"<PrivateKey>{uri(s.private_key)}</PrivateKey>"
            "</Authentication><AccessControl>"
            f"<PermissionsCA>{uri(s.permissions_ca)}</PermissionsCA>"
            f"<Governance>{uri(s.governance)}</Governance>"
            f"<Permissions>{uri(s.permissions)}</Permissions>"
            "</AccessControl></Security>"
        )
    if not (general or discovery or security):
        return None
    return (
        '<CycloneDDS><Domain id="any">'
        f"<General>{''.join(general)}</General>"
        f"<Discovery>{''.join(discovery)}</Discovery>{security}"
        "</Domain></CycloneDDS>"
    )


# Cyclone allows one configuration per domain id per process; the Domain entity must stay alive
# while participants use it, so it is created once and kept for the life of the process.
_DOMAINS: dict[int, tuple[str | None, object]] = {}
_DOMAINS_LOCK = threading.Lock()


def participant(cfg: DdsConfig):
    """A DomainParticipant on cfg.domain_id with cfg's network settings (blocks < ~50 ms)."""
    require("cyclonedds", "dds", "DDS telemetry")
    from cyclonedds.domain import Domain, DomainParticipant

    from runtime.telemetry.security import require_security_support

    require_security_support(cfg)  # fail closed: configured security is never silently absent
    xml = domain_xml(cfg)
    with _DOMAINS_LOCK:
        known = _DOMAINS.get(cfg.domain_id)
        if known is None:
            if xml is not None:
                try:
                    _DOMAINS[cfg.domain_id] = (xml, Domain(cfg.domain_id, xml))
                except Exception as exc:  # cyclonedds raises DDSException for a bad XML config
                    raise ConfigError(
                        f"telemetry.dds: Cyclone DDS rejected the configuration for domain "
                        f"{cfg.domain_id}: {exc}"
                    ) from exc
            else:
                _DOMAINS[cfg.domain_id] = (None, None)
        elif xml is not None and known[0] != xml:
            raise ConfigError(
                f"telemetry.dds: domain {cfg.domain_id} is already configured differently in this "
                "process (Cyclone allows one configuration per domain id per process)"
            )
    return DomainParticipant(cfg.domain_id)
