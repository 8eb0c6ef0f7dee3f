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


def test_ctl_save_image_then_box_on_it_reaches_the_runtime(runtime_proc, tmp_path):
    """The operator flow of docs/operator.md: save the head image, pick a box on it, send it."""
    import cv2

    domain_id = runtime_proc
    out = tmp_path / "head.jpg"
    saved = ctl(domain_id, "save-image", "--out", str(out))
    assert saved.returncode == 0, saved.stderr
    img = cv2.imread(str(out))
    assert img.shape == (240, 320, 3)  # 640x480 downscaled to images.max_width (320)
    assert "320x240" in saved.stdout

    # picked on the 320-wide image: scaled x2 to head-camera pixels, then checked and accepted
    box = ctl(domain_id, "box", "20", "30", "60", "70", "--image", str(out))
    assert box.returncode == 0 and box.stdout.strip() == "manual_bbox accepted", (box.stdout, box.stderr)
    doc = json.loads(ctl(domain_id, "status").stdout)
    assert doc["runtime"]["bbox"] == [40.0, 60.0, 120.0, 140.0]
    assert doc["box"] == [40.0, 60.0, 120.0, 140.0] and doc["box_source"] == "operator"

    # the planner's rule: a box covering (almost) the whole frame is refused, with the reason
    whole = ctl(domain_id, "box", "0", "0", "320", "240", "--image", str(out))
    assert whole.returncode == 1 and "manual_bbox rejected: box refused" in whole.stdout, whole.stdout
    outside = ctl(domain_id, "box", "100", "100", "700", "300")  # camera pixels: beyond 640 wide
    assert outside.returncode == 1 and "outside the 640x480 image" in outside.stdout, outside.stdout
    assert json.loads(ctl(domain_id, "status").stdout)["runtime"]["bbox"] == [40.0, 60.0, 120.0, 140.0]


def test_ctl_save_image_needs_out():
    out = subprocess.run([sys.executable, "-m", "runtime.cli.main", "ctl", "save-image", "--domain-id",
                          str(fresh_domain_id()), "--timeout-s", "1", *LOOPBACK_ARGS],
                         capture_output=True, text=True, timeout=TIMEOUT_S, env=subprocess_env())
    assert out.returncode != 0 and "needs --out FILE" in out.stderr and "Traceback" not in out.stderr
