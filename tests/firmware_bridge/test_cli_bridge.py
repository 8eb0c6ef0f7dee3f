"""`dexgrasp bridge probe` / `stream` end to end against the emulator (real pty, real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from firmware_bridge import protocol as P


def _run(args, fw_build, timeout=120):
    env = dict(os.environ, DEXGRASP_FW_EMULATOR=str(fw_build / "dexgrasp-fw-emulator"))
    return subprocess.run([sys.executable, "-m", "runtime.cli.main", "bridge", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_probe_prints_one_json_line(fw_build):
    p = _run(["probe", "--emulator", "--pings", "5"], fw_build)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert d["protocol_version"] == P.PROTOCOL_VERSION and d["num_joints"] == 13 and len(d["joints"]) == 13
    assert d["session_id"].startswith("0x") and d["rtt_ms"]["count"] == 5 and d["rtt_ms"]["p50"] > 0


def test_stream_last_line_is_the_summary(fw_build):
    p = _run(["stream", "--emulator", "--duration", "1", "--rate", "200"], fw_build)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout.strip().splitlines()[-1])
    for key in ("sent", "states", "crc_errors", "resyncs", "timeouts", "reconnects", "rtt_ms"):
        assert key in d
    assert set(d["rtt_ms"]) == {"p50", "p99", "max"}
    assert d["sent"] == 200 and d["confirmed"] == 200 and d["states"] >= 200
    assert d["crc_errors"] == 0 and d["reconnects"] == 0


@pytest.mark.parametrize("args,msg", [
    (["probe"], "give --port"),
    (["probe", "--port", "/dev/definitely-not-a-port"], "cannot open serial port"),
    (["stream", "--emulator", "--rate", "0"], "argument --rate: must be > 0"),
])
def test_errors_are_one_line_without_traceback(fw_build, args, msg):
    p = _run(args, fw_build, timeout=60)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr
