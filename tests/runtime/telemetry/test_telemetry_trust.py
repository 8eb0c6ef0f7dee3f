"""Who may command the robot over DDS, without DDS itself: replay protection (sender / seq /
session), age measured on arrival, `arm`, security never dropped, real hardware fails closed."""

import json

import pytest

from runtime.clock import FakeClock
from runtime.errors import ConfigError
from runtime.telemetry import command_trust_warnings
from runtime.telemetry import security as sec
from runtime.telemetry.commands import COMMANDS, CommandRejected, parse_command
from runtime.telemetry.config import DdsConfig
from runtime.telemetry.node import TelemetryNode
from runtime.telemetry.qos import domain_xml

SECURITY_NAMES = ("identity_ca", "identity_certificate", "private_key", "permissions_ca", "governance", "permissions")


class Runtime:
    def __init__(self):
        self.calls = []

    def submit(self, cmd):
        self.calls.append(cmd)
        return {"ok": True, "reason": "ok"}


def make_node(**cfg):
    clock = FakeClock(50.0)
    rt = Runtime()
    node = TelemetryNode(DdsConfig(enabled=True, **cfg), submit=rt.submit, clock=clock)  # not started: no DDS
    return node, rt, clock


def results(node):
    return {r["id"]: r for r in node.status_document()["command_results"]}


def cmd(node, name="clear", seq=1, sender="s1", session=None, **fields):
    doc = {"cmd": name, "id": f"{sender}-{seq}", "sender": sender, "seq": seq,
           "session": node.session if session is None else session, **fields}
    return json.dumps(doc)


def deliver(node):
    while (c := node.gate.pop()) is not None:
        node._dispatch(c)


# ---- replay protection ------------------------------------------------------------------------
def test_a_replayed_or_older_command_is_rejected_with_a_reason():
    node, rt, _ = make_node()
    node._handle_command_text(cmd(node, "arm", seq=1))
    node._handle_command_text(cmd(node, "arm", seq=1))  # the same message again
    node._handle_command_text(cmd(node, "clear", seq=2))
    node._handle_command_text(json.dumps({**json.loads(cmd(node, "arm", seq=1)), "id": "old"}))
    deliver(node)
    assert [c["cmd"] for c in rt.calls] == ["arm", "clear"]
    rejected = {r["id"]: r["reason"] for r in node.status_document()["command_results"] if r["result"] == "rejected"}
    assert "replay: seq 1 from sender 's1'" in rejected["s1-1"]
    assert "not newer than 2" in rejected["old"]
    assert node.gate.counters.rejected_replay == 2
    assert node.status_document()["commands"]["rejected_replay"] == 2


def test_commands_of_another_run_and_commands_without_sender_are_rejected():
    node, rt, _ = make_node()
    node._handle_command_text(cmd(node, "start", session="0123456789abcdef", prompt="grasp"))
    node._handle_command_text(json.dumps({"cmd": "clear", "id": "bare"}))
    deliver(node)
    assert rt.calls == []
    r = results(node)
    assert "is not this runtime's" in r["s1-1"]["reason"]
    assert "needs 'sender', 'seq' and 'session'" in r["bare"]["reason"]


def test_each_run_has_its_own_session_and_publishes_it():
    a, _, _ = make_node()
    b, _, _ = make_node()
    assert a.session != b.session and len(a.session) == 16
    assert a.status_document()["session"] == a.session


def test_stop_needs_no_replay_fields_and_is_never_refused_as_a_duplicate():
    node, rt, _ = make_node()
    for _ in range(3):
        node._handle_command_text('{"cmd": "stop", "id": "s"}')
    node._handle_command_text(cmd(node, "stop", seq=1))
    node._handle_command_text(cmd(node, "stop", seq=1))
    deliver(node)
    assert [c["cmd"] for c in rt.calls] == ["stop"] * 5


def test_senders_are_independent():
    node, rt, _ = make_node()
    node._handle_command_text(cmd(node, "arm", seq=5, sender="a"))
    node._handle_command_text(cmd(node, "arm", seq=1, sender="b"))
    deliver(node)
    assert len(rt.calls) == 2


@pytest.mark.parametrize("field, value, reason", [
    ("seq", -1, "'seq' must be an integer"),
    ("seq", 1.5, "'seq' must be an integer"),
    ("seq", True, "'seq' must be an integer"),
    ("sender", "", "'sender' must be a printable string"),
    ("sender", "x" * 65, "'sender' must be a printable string"),
    ("session", 7, "'session' must be a printable string"),
])
def test_bad_replay_fields_are_rejected(field, value, reason):
    with pytest.raises(CommandRejected, match=reason):
        parse_command(json.dumps({"cmd": "arm", "sender": "s", "seq": 1, "session": "x", field: value}), 0.0)


def test_arm_is_a_command():
    assert "arm" in COMMANDS
    c = parse_command('{"cmd": "arm", "sender": "s", "seq": 3, "session": "abc"}', 1.0)
    assert (c.name, c.sender, c.seq, c.session) == ("arm", "s", 3, "abc")
    with pytest.raises(CommandRejected, match="does not take field"):
        parse_command('{"cmd": "arm", "force": true}', 0.0)


# ---- age on arrival ---------------------------------------------------------------------------
def test_command_age_is_measured_from_arrival_on_the_monotonic_clock():
    node, rt, clock = make_node(command_max_age_s=2.0)
    node._handle_command_text(cmd(node, "arm", seq=1))  # arrives now; the sender's clock plays no part
    clock.advance(2.5)  # the runtime was busy: it waited in the queue past the limit
    node._handle_command_text(cmd(node, "clear", seq=2))
    deliver(node)
    for stale in node.gate.take_stale():
        node._result(stale.cmd_id, stale.name, "dropped", "stale")
    assert [c["cmd"] for c in rt.calls] == ["clear"]
    assert results(node)["s1-1"]["result"] == "dropped"


# ---- configuration: nothing dropped, real hardware fails closed --------------------------------
def _security_files(tmp_path):
    files = {}
    for name in SECURITY_NAMES:
        (tmp_path / f"{name}.pem").write_text("x")
        files[name] = str(tmp_path / f"{name}.pem")
    return files


def test_config_uri_keeps_the_security_section_and_the_network_fields(tmp_path):
    xml_file = tmp_path / "cyclone.xml"
    xml_file.write_text("<CycloneDDS><Domain id='any'><Tracing><Verbosity>config</Verbosity></Tracing></Domain></CycloneDDS>")
    cfg = DdsConfig.from_dict({"config_uri": f"file://{xml_file}", "interface": "lo",
                               "security": _security_files(tmp_path)})
    xml = domain_xml(cfg)
    assert xml.startswith(f"file://{xml_file},<CycloneDDS>")  # Cyclone merges the list in order
    assert "<Security><Authentication>" in xml and '<NetworkInterface name="lo"/>' in xml
    assert domain_xml(DdsConfig(config_uri="file:///x.xml")) == "file:///x.xml"


def test_new_keys_are_validated():
    assert DdsConfig.from_dict({"commands": False, "insecure_commands": True}).insecure_commands
    with pytest.raises(ConfigError, match="telemetry.dds.insecure_commands: expected true/false"):
        DdsConfig.from_dict({"insecure_commands": "yes"})
    with pytest.raises(ConfigError, match="telemetry.dds.commands: expected true/false"):
        DdsConfig.from_dict({"commands": 1})


def test_real_hardware_needs_security_or_an_explicit_insecure_opt_in():
    with pytest.raises(ConfigError, match="need DDS-Security .* or an explicit telemetry.dds.insecure_commands: true"):
        command_trust_warnings(DdsConfig(enabled=True), real_hardware=True)
    warnings = command_trust_warnings(DdsConfig(enabled=True, insecure_commands=True, domain_id=4), real_hardware=True)
    assert len(warnings) == 1 and "UNAUTHENTICATED" in warnings[0] and "domain 4" in warnings[0]
    assert command_trust_warnings(DdsConfig(enabled=True), real_hardware=False) == []  # the sim
    assert command_trust_warnings(DdsConfig(enabled=True, commands=False), real_hardware=True) == []  # telemetry only
    assert command_trust_warnings(DdsConfig(enabled=False), real_hardware=True) == []


def test_configured_security_that_the_build_cannot_do_fails_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(sec, "security_support", lambda: "this Cyclone DDS build lacks DDS-Security: test")
    cfg = DdsConfig.from_dict({"enabled": True, "security": _security_files(tmp_path)})
    for real in (True, False):
        with pytest.raises(ConfigError, match="DDS-Security is configured but this Cyclone DDS build lacks"):
            command_trust_warnings(cfg, real_hardware=real)
    # a <Security> section inside config_uri counts as configured security too
    xml_file = tmp_path / "secure.xml"
    xml_file.write_text("<CycloneDDS><Domain id='any'><Security/></Domain></CycloneDDS>")
    with pytest.raises(ConfigError, match="fail|refusing"):
        command_trust_warnings(DdsConfig(enabled=True, config_uri=str(xml_file)), real_hardware=True)
    monkeypatch.setattr(sec, "security_support", lambda: None)
    assert command_trust_warnings(cfg, real_hardware=True) == []


def test_the_app_refuses_unauthenticated_commands_before_opening_the_serial_port():
    from runtime.app import App
    from runtime.config import config_from_dict

    raw = {"bridge": {"kind": "serial", "port": "/dev/does-not-exist"},
           "robot": {"home_positions": [0.0] * 13},
           "control": {"realtime": {"sched_fifo_priority": None, "mlockall": False}},
           "telemetry": {"dds": {"enabled": True}}}
    try:
        cfg = config_from_dict(raw, "test")
    except ConfigError as exc:  # the schema may refuse something else about this config first
        pytest.skip(f"config refused before the app: {exc}")
    with pytest.raises(ConfigError, match="insecure_commands"):
        App(cfg).start()
