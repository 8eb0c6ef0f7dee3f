"""The embedded default (configs/sim.yaml) publishes DDS telemetry on loopback when the dds extra is
installed, and `dexgrasp ctl status` finds it with no network flags; without cyclonedds the sim still
runs and its summary says telemetry is off and how to turn it on.

The sim's devices are swapped for fakes (bridge, policy; no planner) so the test needs no model;
the telemetry section is the shipped one, untouched. Every run gets its own domain through
$DEXGRASP_DDS_DOMAIN_ID (the sim config names none), so parallel test runs never cross-talk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runtime.config import load_config
from runtime.errors import ConfigError
from runtime.telemetry import telemetry_config
from runtime.telemetry.config import DOMAIN_ENV, DdsConfig, watch_summary

REPO = Path(__file__).resolve().parents[3]
FAKE_DEVICES = {
    "control": {"rate_hz": 100, "process": "thread", "realtime": {"sched_fifo_priority": None, "mlockall": False,
                                                                  "cpu_affinity": None}},
    "bridge": {"kind": "fake", "options": {}},
    "policy": {"backend": "fake"},
    "planner": {"enabled": False, "autostart": False},
    "tracker": {"manual_box_xyxy": [270, 300, 330, 360]},
    "cameras": {"head": {"fps": 10}, "wrist": {"fps": 10}},
}


def fresh_domain() -> int:
    import random

    return random.SystemRandom().randint(20, 200)


def sim_with_fakes(tmp_path: Path) -> Path:
    """configs/sim.yaml with fake devices; its telemetry section exactly as shipped."""
    doc = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    shipped_telemetry = doc["telemetry"]
    for section, values in FAKE_DEVICES.items():
        doc[section] = {**doc.get(section, {}), **values}
    assert doc["telemetry"] == shipped_telemetry
    path = tmp_path / "sim_fakes.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def clean_env(domain: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CYCLONEDDS_URI"}
    env[DOMAIN_ENV] = str(domain)
    env["PYTHONPATH"] = str(REPO)
    return env


def test_sim_publishes_and_ctl_status_finds_it_with_no_flags(tmp_path):
    pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")
    domain = fresh_domain()
    env = clean_env(domain)
    cmd = [sys.executable, "-m", "runtime.cli.main", "run", "--config", str(sim_with_fakes(tmp_path)),
           "--duration", "40", "--quiet"]
    runtime = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # no --interface / --peer / --domain-id: the defaults must meet the sim's
        ctl = subprocess.run([sys.executable, "-m", "runtime.cli.main", "ctl", "status", "--timeout-s", "30"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=90)
        assert ctl.returncode == 0, ctl.stderr
        import json

        status = json.loads(ctl.stdout)
        assert status["schema"] == "dexgrasp.status/1"
        stopped = subprocess.run([sys.executable, "-m", "runtime.cli.main", "ctl", "stop", "--timeout-s", "30"],
                                 cwd=REPO, env=env, capture_output=True, text=True, timeout=90)
        assert stopped.stdout.startswith("stop accepted"), stopped.stderr
    finally:
        runtime.terminate()
        out, err = runtime.communicate(timeout=90)
    assert f"telemetry watch: dexgrasp ctl status (DDS domain {domain}, loopback)" in err, err
    assert "telemetry" in out and "watch: dexgrasp ctl status (DDS domain" in out, out


def test_without_cyclonedds_the_sim_runs_and_says_how_to_turn_telemetry_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DOMAIN_ENV, str(fresh_domain()))
    monkeypatch.setitem(sys.modules, "cyclonedds", None)  # import cyclonedds -> ImportError
    monkeypatch.setitem(sys.modules, "cyclonedds.domain", None)
    from runtime.cli.main import main

    rc = main(["run", "--config", str(sim_with_fakes(tmp_path)), "--duration", "1.5", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    line = next(r for r in out.splitlines() if r.strip().startswith("telemetry"))
    assert "off (pip install 'dexgraspvla-runtime[dds]' to watch with dexgrasp ctl status)" in line
    assert "commands" in out and "errors" in out and "none" in out.split("errors", 1)[1].splitlines()[0]


def test_sim_telemetry_section_resolves_to_loopback_on_the_env_domain(monkeypatch):
    monkeypatch.setenv(DOMAIN_ENV, "77")
    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)
    cfg = load_config("sim")
    assert cfg.telemetry["dds"]["enabled"] == "auto"
    dds = telemetry_config(cfg.telemetry).dds
    assert (dds.interface, dds.allow_multicast, dds.peers, dds.domain_id) == ("lo", False, ("127.0.0.1",), 77)
    assert watch_summary(cfg.telemetry) in ("watch: dexgrasp ctl status (DDS domain 77, loopback)",
                                            "off (pip install 'dexgraspvla-runtime[dds]' to watch with "
                                            "dexgrasp ctl status)")
    # an explicit domain in the config wins over the environment, and the watch line names it
    other = {"dds": {"enabled": True, "interface": "loopback", "domain_id": 9}}
    assert watch_summary(other) == "watch: dexgrasp ctl status --domain-id 9 (DDS domain 9, loopback)"
    assert watch_summary({"dds": {"enabled": False}}) == "off (telemetry.dds.enabled: false)"


def test_ctl_defaults_to_loopback_unless_told_otherwise(monkeypatch):
    """ctl's network defaults are the sim's: loopback, $DEXGRASP_DDS_DOMAIN_ID; flags or
    CYCLONEDDS_URI take over. The client is stubbed: only the settings ctl builds are checked."""
    import runtime.telemetry.client as client_mod
    from runtime.cli.main import main

    seen: list[DdsConfig] = []

    class StubClient:
        def __init__(self, cfg):
            seen.append(cfg)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def latest_status(self, timeout_s):
            return {"schema": "stub"}

    monkeypatch.setattr(client_mod, "DdsClient", StubClient)
    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)
    monkeypatch.setenv(DOMAIN_ENV, "31")
    assert main(["ctl", "status"]) == 0
    assert (seen[-1].interface, seen[-1].allow_multicast, seen[-1].peers, seen[-1].domain_id) == (
        "lo", False, ("127.0.0.1",), 31)
    assert main(["ctl", "status", "--interface", "eth0", "--domain-id", "4"]) == 0
    assert (seen[-1].interface, seen[-1].allow_multicast, seen[-1].peers, seen[-1].domain_id) == ("eth0", None, (), 4)
    monkeypatch.setenv("CYCLONEDDS_URI", "file:///etc/cyclone.xml")
    monkeypatch.delenv(DOMAIN_ENV)
    assert main(["ctl", "status"]) == 0
    assert (seen[-1].interface, seen[-1].domain_id) == (None, 0)


def test_bad_enabled_and_bad_domain_env_are_one_line_errors(monkeypatch, capsys):
    with pytest.raises(ConfigError, match=r"telemetry\.dds\.enabled: expected true/false or auto, got 'yes please'"):
        DdsConfig.from_dict({"enabled": "yes please"})
    monkeypatch.setenv(DOMAIN_ENV, "lots")
    with pytest.raises(ConfigError, match=r"DEXGRASP_DDS_DOMAIN_ID must be an integer in \[0, 232\], got 'lots'"):
        DdsConfig.from_dict({"enabled": True})
    from runtime.cli.main import main

    assert main(["ctl", "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "DEXGRASP_DDS_DOMAIN_ID" in err
