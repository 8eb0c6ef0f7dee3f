"""Three real processes on loopback DDS: a runtime stand-in, `dexgrasp ctl`, and this test reading
joint states. The subprocesses get CYCLONEDDS_URI (loopback, no multicast); ctl gets the same
settings through its --interface/--no-multicast/--peer flags."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")

from dds_env import LOOPBACK_ARGS, fresh_domain_id, loopback_cfg, subprocess_env  # noqa: E402

from runtime.telemetry.client import DdsClient  # noqa: E402

HERE = Path(__file__).parent
TIMEOUT_S = 30


@pytest.fixture()
def runtime_proc():
    domain_id = fresh_domain_id()
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_runtime_proc.py"), str(domain_id)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert proc.stdout.readline().strip() == "READY"
        yield domain_id
    finally:
        proc.stdin.close()
        try:
            proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the fake runtime did not exit when asked")


def ctl(domain_id, *args):
    cmd = [sys.executable, "-m", "runtime.cli.main", "ctl", *args, "--domain-id", str(domain_id),
           "--timeout-s", "10", *LOOPBACK_ARGS]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=subprocess_env())


def test_ctl_drives_a_runtime_in_another_process(runtime_proc):
    domain_id = runtime_proc
    out = ctl(domain_id, "start", "grasp", "the", "red", "cube")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "start accepted"

    again = ctl(domain_id, "start", "grasp the blue cube")
    assert again.returncode == 1 and "start rejected: cannot start while running" in again.stdout

    bad = ctl(domain_id, "bbox", "50", "5", "10", "40")
    assert bad.returncode == 1 and "is not a box" in bad.stdout

    status = ctl(domain_id, "status")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["runtime"] == {"phase": "running", "prompt": "grasp the red cube", "armed": False}

    assert ctl(domain_id, "stop").stdout.strip() == "stop accepted"
    assert json.loads(ctl(domain_id, "status").stdout)["runtime"]["phase"] == "stopped"
    assert ctl(domain_id, "clear").stdout.strip() == "clear accepted"
    armed = ctl(domain_id, "arm")
    assert armed.returncode == 0 and armed.stdout.strip() == "arm accepted", armed.stderr
    assert json.loads(ctl(domain_id, "status").stdout)["runtime"]["armed"] is True


def test_joint_states_cross_processes_with_values(runtime_proc):
    client = DdsClient(loopback_cfg(runtime_proc))
    try:
        reader = client.joint_reader()
        samples = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(samples) < 5 and time.monotonic() < deadline:
            samples += reader.take(N=20)
            time.sleep(0.02)
        assert len(samples) >= 5, "no joint states arrived from the other process"
        counters = [s.position[0] for s in samples]
        assert counters == sorted(counters) and len(set(counters)) == len(counters)  # in order, no repeats
        assert all(len(s.position) == 13 and len(s.name) == 13 and s.position[1:] == [0.0] * 12 for s in samples)
    finally:
        client.close()


def test_ctl_without_runtime_fails_clearly():
    out = subprocess.run([sys.executable, "-m", "runtime.cli.main", "ctl", "stop", "--domain-id",
                          str(fresh_domain_id()), "--timeout-s", "0.5", *LOOPBACK_ARGS],
                         capture_output=True, text=True, timeout=TIMEOUT_S, env=subprocess_env())
    assert out.returncode == 2
    assert "no runtime is reading rt/dexgrasp/command" in out.stderr
