"""`dexgrasp check`: the preflight checklist (runtime/cli/check.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from runtime.cli import check as chk
from runtime.cli.main import main
from runtime.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def small_model():
    from runtime.config.models import ensure_model

    return ensure_model("small", 0, progress=False)  # cached; made once (needs torch)


def run_check(capsys, *argv) -> tuple[int, list[str], dict]:
    rc = main(["check", *argv])
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])  # the last line is one JSON object
    assert set(report) == {"ok", "checks"} and report["ok"] == (rc == 0)
    for c in report["checks"]:
        assert set(c) == {"name", "status", "detail"} and c["status"] in ("pass", "fail", "skipped")
    return rc, lines[:-1], report


def by_name(report) -> dict:
    return {c["name"]: c for c in report["checks"]}


def write_cfg(tmp_path, data: dict, name="robot.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_sim_passes_every_check_and_exits_0(capsys, small_model):
    rc, lines, report = run_check(capsys, "--config", "sim", "--model-dir", str(small_model))
    assert rc == 0, lines
    checks = by_name(report)
    for name in ("config", "joint space", "model", "model joint space", "graph hashes", "precision", "backend",
                 "cameras", "robot link", "clocks", "planner"):
        assert checks[name]["status"] == "pass", checks[name]
    assert "handshake ok" in checks["robot link"]["detail"]  # the emulator was started and answered
    assert len(lines) == len(report["checks"])  # one printed line per check, then the JSON


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_passes_up_to_the_hardware_it_lacks(capsys, small_model, config):
    rc, lines, report = run_check(capsys, "--config", str(config), "--model-dir", str(small_model))
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert not failed, failed
    missing = [c for c in report["checks"] if c["status"] == "skipped" and c["detail"].startswith("no device")]
    assert rc == (1 if missing else 0)
    rc2, _, report2 = run_check(capsys, "--config", str(config), "--model-dir", str(small_model),
                                "--allow-missing-hardware")
    assert rc2 == 0 and report2["ok"]


def test_robot_example_says_which_devices_are_missing(capsys, small_model):
    if os.path.exists("/dev/ttyACM0"):
        pytest.skip("a serial device is connected here")
    rc, _, report = run_check(capsys, "--config", "robot_example", "--model-dir", str(small_model))
    assert rc == 1 and not report["ok"]
    assert by_name(report)["robot link"] == {
        "name": "robot link", "status": "skipped", "detail": "no device: serial port /dev/ttyACM0 not present"}


def test_a_broken_config_fails_on_its_first_line(capsys, tmp_path):
    rc, lines, report = run_check(capsys, "--config", write_cfg(tmp_path, {"control": {"rate_hz": -5}}))
    assert rc == 1 and len(report["checks"]) == 1
    assert report["checks"][0]["name"] == "config" and report["checks"][0]["status"] == "fail"
    assert "control.rate_hz" in report["checks"][0]["detail"]
    assert lines[0].startswith("fail") and "control.rate_hz" in lines[0]
    rc, _, report = run_check(capsys, "--config", str(tmp_path / "missing.yaml"))
    assert rc == 1 and report["checks"][0]["status"] == "fail" and "missing.yaml" in report["checks"][0]["detail"]


def test_a_model_for_another_joint_layout_fails_before_loading(capsys, tmp_path, small_model):
    robot = {"arm_joint_names": [f"j{i}" for i in range(6)], "arm_lower_rad": [-3.0] * 6, "arm_upper_rad": [3.0] * 6}
    cfg = write_cfg(tmp_path, {"robot": robot, "bridge": {"kind": "fake"}, "planner": {"enabled": False}})
    rc, _, report = run_check(capsys, "--config", cfg, "--model-dir", str(small_model))
    checks = by_name(report)
    assert rc == 1 and checks["model"]["status"] == "pass"
    assert checks["model joint space"]["status"] == "fail"
    assert "action_dim 13 but robot config has 12 joints (6 arm + 6 hand" in checks["model joint space"]["detail"]
    assert "backend" not in checks  # nothing loaded for a model that cannot drive this robot


def test_a_tampered_graph_fails_the_hash_check(capsys, tmp_path, small_model):
    model = tmp_path / "model"
    model.mkdir()
    for f in Path(small_model).iterdir():
        if f.name == "denoiser.onnx":
            shutil.copyfile(f, model / f.name)
            with open(model / f.name, "ab") as fh:
                fh.write(b"\0")
        else:
            (model / f.name).symlink_to(f)
    rc, _, report = run_check(capsys, "--config", "sim", "--model-dir", str(model))
    hashes = by_name(report)["graph hashes"]
    assert rc == 1 and hashes["status"] == "fail" and "denoiser.onnx: sha256" in hashes["detail"]


def test_missing_model_directory_fails(capsys, tmp_path):
    rc, _, report = run_check(capsys, "--config", "sim", "--model-dir", str(tmp_path / "nothing"))
    assert rc == 1 and by_name(report)["model"]["status"] == "fail"
    assert "no exported controller there" in by_name(report)["model"]["detail"]


def test_unverified_reduced_precision_fails_and_the_backend_is_not_loaded(small_model):
    from runtime.controller.manifest import Manifest

    manifest = Manifest.load(small_model)
    # The shared cached model may carry the verification `backend: auto` records on it: start without.
    manifest.verifications = []
    c = chk._precision_check(manifest, "openvino", "bf16", allow_unverified=False)
    assert c.status == "fail" and "dexgrasp engine verify --backend openvino --precision bf16" in c.detail
    assert chk._precision_check(manifest, "openvino", "bf16", allow_unverified=True).status == "skipped"
    record = {"backend": "openvino", "precision": "bf16", "passed": True, "max_error_of_range": 0.004,
              "gate": 0.01, "graph_sha256": manifest.graph_hashes()}
    manifest.record_verification(record)
    c = chk._precision_check(manifest, "openvino", "bf16", allow_unverified=False)
    assert c.status == "pass" and "max error 0.004" in c.detail


def test_gpu_providers_absent_is_no_device_not_a_failure(monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    why = chk.missing_accelerator("onnxruntime", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert why and "CUDAExecutionProvider" in why
    assert chk.missing_accelerator("onnxruntime", ["CPUExecutionProvider"]) is None
    assert chk.missing_accelerator("onnxruntime", None) is None


def test_serial_port_present_but_silent_fails_the_handshake(tmp_path):
    master, slave = os.openpty()
    try:
        cfg = load_config(write_cfg(tmp_path, {
            "bridge": {"kind": "serial", "port": os.ttyname(slave)}, "safety": {"auto_rearm": False},
            "robot": {"home_positions": [0.0] * 13}}))
        (c,) = chk.check_link(cfg, timeout_s=0.5)
    finally:
        os.close(master)
        os.close(slave)
    # A port that exists but does not answer is a fault to fix, not an absent device.
    assert c.status == "fail" and c.detail.startswith("serial /dev/") and not c.detail.startswith("no device")


def test_missing_serial_port_is_skipped_no_device_and_blocks(tmp_path):
    cfg = load_config(write_cfg(tmp_path, {"bridge": {"kind": "serial", "port": str(tmp_path / "ttyACM9")},
                                           "safety": {"auto_rearm": False}, "robot": {"home_positions": [0.0] * 13}}))
    (c,) = chk.check_link(cfg, 0.5)
    assert c.status == "skipped" and c.detail.startswith("no device: serial port") and c.needed
    assert not chk.is_ok([c]) and chk.is_ok([c], allow_missing_hardware=True)


class FakeCamera:
    def __init__(self, fps, shape):
        self.t, self.dt, self.shape = 0.0, 1.0 / fps, shape

    def read(self, timeout_ms):
        from types import SimpleNamespace

        self.t += self.dt
        return SimpleNamespace(t_capture=self.t, image=np.zeros(self.shape, np.uint8))


def test_camera_stream_must_match_size_and_rate():
    fps, shape = chk.measure_stream(FakeCamera(30.0, (480, 640, 3)), seconds=1.0, timeout_ms=100)
    assert fps == pytest.approx(30.0) and shape == (480, 640, 3)
    ok = chk.stream_verdict("camera head", "640x480@30", 640, 480, 30.0, fps, shape, "123")
    assert ok.status == "pass" and "streaming 640x480@30.0" in ok.detail
    slow = chk.stream_verdict("camera head", "640x480@30", 640, 480, 30.0, 15.0, shape, "123")
    assert slow.status == "fail" and "15.0 fps" in slow.detail
    small = chk.stream_verdict("camera head", "640x480@30", 640, 480, 30.0, 30.0, (240, 320, 3), "123")
    assert small.status == "fail" and "320x240" in small.detail


def test_realsense_without_a_device_is_skipped_no_device(tmp_path):
    cfg = load_config("robot_example")
    try:
        from runtime.cameras.realsense import find_cameras

        if find_cameras():
            pytest.skip("a RealSense is connected here")
    except (ImportError, RuntimeError):
        pass
    checks = chk.check_cameras(cfg, 0.5)
    assert [c.name for c in checks] == ["camera head", "camera wrist"]
    assert all(c.status == "skipped" and c.detail.startswith("no device") and c.needed for c in checks)


def test_realtime_reports_what_will_not_apply_without_failing(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    cfg = load_config(write_cfg(tmp_path, {"control": {"realtime": {"cpu_affinity": [max(cpus) + 64]}}}))
    (c,) = chk.check_realtime(cfg, 0.5)
    assert c.status == "skipped" and f"CPU(s) [{max(cpus) + 64}] not available here" in c.detail
    assert chk.is_ok([c])  # the run still starts (it reports what it could not apply)
    none = load_config(write_cfg(tmp_path, {"control": {"realtime": {"sched_fifo_priority": None, "mlockall": False}}},
                                 "plain.yaml"))
    (c,) = chk.check_realtime(none, 0.5)
    assert c.status == "pass" and "none requested" in c.detail


def test_remote_planner_reachable_with_its_model_name(tmp_path):
    from runtime.planner.local_backend import LocalBackend
    from runtime.planner.server import PlannerServer

    with PlannerServer(LocalBackend(), "tcp://127.0.0.1:*") as server:
        cfg = load_config(write_cfg(tmp_path, {"planner": {"backend": "remote", "address": server.endpoint}}))
        (c,) = chk.check_planner(cfg, 5.0)
    assert c.status == "pass" and "model local" in c.detail and server.endpoint in c.detail
    from runtime.planner.vlm_backend import VLMBackend
    from runtime.planner.vlm_http import OpenAIChatClient

    vlm = VLMBackend(OpenAIChatClient("http://127.0.0.1:9/v1/chat/completions", model="qwen2.5-vl-72b"))
    with PlannerServer(vlm, "tcp://127.0.0.1:*") as server:  # the handshake needs no VLM call
        cfg = load_config(write_cfg(tmp_path, {"planner": {"backend": "remote", "address": server.endpoint}}, "v.yaml"))
        (c,) = chk.check_planner(cfg, 5.0)
    assert c.status == "pass" and "backend vlm, model qwen2.5-vl-72b" in c.detail
    cfg = load_config(write_cfg(tmp_path, {"planner": {"backend": "remote", "address": "tcp://127.0.0.1:1"}}, "x.yaml"))
    (c,) = chk.check_planner(cfg, 0.3)
    assert c.status == "skipped" and "not reachable" in c.detail and not c.needed


def test_disk_space_for_recording(tmp_path, monkeypatch):
    cfg = load_config("sim", {"recording": {"dir": str(tmp_path / "rec")}})
    (c,) = chk.check_disk(cfg, 0.5)
    assert c.status == "pass" and "GiB free" in c.detail
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 99, 1 << 20))
    (c,) = chk.check_disk(cfg, 0.5)
    assert c.status == "fail" and "need >= 1 GiB" in c.detail
