"""Loopback-only DDS settings for tests (no multicast, unicast discovery to 127.0.0.1), so the
tests run in CI sandboxes without a network and never talk to other hosts."""

from __future__ import annotations

import os
import random

from runtime.telemetry.config import DdsConfig

LOOPBACK_XML = (
    '<CycloneDDS><Domain id="any"><General><Interfaces><NetworkInterface name="lo"/></Interfaces>'
    "<AllowMulticast>false</AllowMulticast></General><Discovery><ParticipantIndex>auto</ParticipantIndex>"
    '<Peers><Peer address="127.0.0.1"/></Peers><MaxAutoParticipantIndex>30</MaxAutoParticipantIndex>'
    "</Discovery></Domain></CycloneDDS>"
)
LOOPBACK_ARGS = ["--interface", "lo", "--no-multicast", "--peer", "127.0.0.1"]


def fresh_domain_id() -> int:
    """A domain id unlikely to collide with a concurrent test run (each id = separate UDP ports)."""
    return random.Random(os.getpid() * 7919 + random.getrandbits(16)).randint(20, 200)


def loopback_cfg(domain_id: int, **overrides) -> DdsConfig:
    return DdsConfig(enabled=True, domain_id=domain_id, interface="lo", allow_multicast=False,
                     peers=("127.0.0.1",), **overrides)


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["CYCLONEDDS_URI"] = LOOPBACK_XML
    return env
