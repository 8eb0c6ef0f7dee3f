"""Command validation and the bounded, rate-limited, age-checked command gate (no DDS, fake clock)."""

import json

import pytest

from runtime.clock import FakeClock
from runtime.errors import ConfigError
from runtime.telemetry.commands import CommandGate, CommandRejected, parse_command
from runtime.telemetry.config import DdsConfig, TelemetryConfig


def test_valid_commands_parse_to_submit_dicts():
    cmd = parse_command(json.dumps({"cmd": "start", "prompt": "  grasp the red cube ", "id": "a1"}), 1.5)
    assert cmd.as_submit_dict() == {"cmd": "start", "prompt": "grasp the red cube", "id": "a1", "source": "dds"}
    assert cmd.t_received == 1.5
    assert parse_command('{"cmd": "stop"}', 0).as_submit_dict()["cmd"] == "stop"
    assert parse_command(b'{"cmd": "clear"}', 0).name == "clear"
    bbox = parse_command('{"cmd": "manual_bbox", "bbox": [10, 20, 110.5, 220]}', 0)
    assert bbox.args == {"bbox": [10.0, 20.0, 110.5, 220.0]}


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"cmd": "fly"}', "unknown command 'fly'"),
    ('{"prompt": "x"}', "unknown command None"),
    ('{"cmd": "start"}', "needs a non-empty 'prompt'"),
    ('{"cmd": "start", "prompt": "   "}', "needs a non-empty 'prompt'"),
    ('{"cmd": "start", "prompt": "a\\u0007b"}', "control characters"),
    ('{"cmd": "start", "prompt": "x", "speed": 3}', "does not take field(s) ['speed']"),
    ('{"cmd": "stop", "id": 5}', "'id' must be a string"),
    ('{"cmd": "manual_bbox", "bbox": [1, 2, 3]}', "4 finite numbers"),
    ('{"cmd": "manual_bbox", "bbox": [1, 2, NaN, 4]}', "4 finite numbers"),
    ('{"cmd": "manual_bbox", "bbox": [1, 2, true, 4]}', "4 finite numbers"),
    ('{"cmd": "manual_bbox", "bbox": [50, 2, 10, 40]}', "is not a box"),
    ('{"cmd": "manual_bbox", "bbox": [-5, 2, 10, 40]}', "is not a box"),
    (json.dumps({"cmd": "start", "prompt": "x" * 1001}), "the limit is 1000"),
    (json.dumps({"cmd": "start", "prompt": "x" * 5000}), "bytes; the limit is 4096"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_invalid_commands_are_rejected_with_a_reason(text, reason):
    with pytest.raises(CommandRejected) as info:
        parse_command(text, 0.0)
    assert reason in info.value.reason


def test_rejection_keeps_the_id_so_the_sender_can_match_it():
    with pytest.raises(CommandRejected) as info:
        parse_command('{"cmd": "fly", "id": "xyz"}', 0.0)
    assert info.value.cmd_id == "xyz"


def _start(t, i=0):
    return parse_command(json.dumps({"cmd": "start", "prompt": f"p{i}", "id": f"c{i}"}), t)


def test_flood_is_bounded_by_the_token_bucket_and_counted():
    clock = FakeClock()
    gate = CommandGate(capacity=100, max_age_s=5.0, rate_hz=10.0, burst=5, clock=clock)
    results = [gate.offer(_start(0.0, i)) for i in range(50)]
    assert results.count(None) == 5
    assert all(r.startswith("flood") for r in results[5:])
    assert gate.counters.dropped_flood == 45 and len(gate) == 5
    clock.advance(0.3)  # 3 tokens refill at 10 Hz
    assert [gate.offer(_start(clock.now(), i)) is None for i in range(5)] == [True] * 3 + [False] * 2


def test_queue_bound_holds_even_with_tokens():
    gate = CommandGate(capacity=3, max_age_s=5.0, rate_hz=1000.0, burst=1000, clock=FakeClock())
    results = [gate.offer(_start(0.0, i)) for i in range(10)]
    assert results.count(None) == 3 and gate.counters.dropped_queue_full == 7 and len(gate) == 3


def test_stale_commands_are_dropped_on_arrival_and_in_the_queue():
    clock = FakeClock()
    gate = CommandGate(capacity=10, max_age_s=2.0, rate_hz=100.0, burst=10, clock=clock)
    assert gate.offer(_start(0.0, 1), age_s=2.5).startswith("stale")
    assert gate.offer(_start(0.0, 2), age_s=0.1) is None
    clock.advance(2.1)  # it waited too long in the queue (the runtime was busy)
    assert gate.pop() is None
    assert [c.cmd_id for c in gate.take_stale()] == ["c2"]
    assert gate.counters.dropped_stale == 2


def test_stop_bypasses_flood_limit_age_and_jumps_the_queue():
    clock = FakeClock()
    gate = CommandGate(capacity=4, max_age_s=1.0, rate_hz=1.0, burst=2, clock=clock)
    for i in range(10):
        gate.offer(_start(0.0, i))
    stop = parse_command('{"cmd": "stop", "id": "s"}', 0.0)
    assert gate.offer(stop, age_s=30.0) is None
    clock.advance(5.0)  # everything else is now stale; the stop is still applied
    assert gate.pop().cmd_id == "s"
    assert gate.pop() is None


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"telemetry.dds: unknown field\(s\) \['domian_id'\]"):
        TelemetryConfig.from_dict({"dds": {"domian_id": 3}})
    with pytest.raises(ConfigError, match="telemetry.dds.domain_id"):
        TelemetryConfig.from_dict({"dds": {"domain_id": 999}})
    with pytest.raises(ConfigError, match="status_rate_hz"):
        DdsConfig.from_dict({"status_rate_hz": 50})
    with pytest.raises(ConfigError, match="security.identity_ca: file not found: /nonexistent"):
        DdsConfig.from_dict({"security": {k: "/nonexistent" for k in (
            "identity_ca", "identity_certificate", "private_key", "permissions_ca", "governance", "permissions")}})
    cfg = TelemetryConfig.from_dict({"dds": {"enabled": True, "domain_id": 3, "peers": ["127.0.0.1"]}})
    assert cfg.dds.peers == ("127.0.0.1",) and cfg.dds.enabled


def test_domain_xml_restricts_to_the_configured_interface():
    from runtime.telemetry.qos import domain_xml

    assert domain_xml(DdsConfig()) is None  # CYCLONEDDS_URI / defaults, like ROS 2
    xml = domain_xml(DdsConfig(interface="lo", allow_multicast=False, peers=("127.0.0.1",)))
    assert '<NetworkInterface name="lo"/>' in xml and "<AllowMulticast>false</AllowMulticast>" in xml
    assert '<Peer address="127.0.0.1"/>' in xml


def test_security_files_become_cyclone_security_section(tmp_path):
    from runtime.telemetry.qos import domain_xml

    names = ("identity_ca", "identity_certificate", "private_key", "permissions_ca", "governance", "permissions")
    files = {}
    for name in names:
        (tmp_path / f"{name}.pem").write_text("x")
        files[name] = str(tmp_path / f"{name}.pem")
    cfg = DdsConfig.from_dict({"security": files})
    xml = domain_xml(cfg)
    for tag, name in (("IdentityCA", "identity_ca"), ("PrivateKey", "private_key"), ("Governance", "governance"),
                      ("Permissions", "permissions")):
        assert f"<{tag}>file:{tmp_path}/{name}.pem</{tag}>" in xml
    assert xml.index("<Authentication>") < xml.index("<AccessControl>")
