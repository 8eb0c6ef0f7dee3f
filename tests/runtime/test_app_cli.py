"""`dexgrasp run` as a user runs it: a subprocess, SIGTERM, the report file and the summary."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
name: cli-test
control: {rate_hz: 100, process: %s, realtime: {sched_fifo_priority: null, mlockall: false}}
tracker: {kind: none}
planner: {enabled: false, autostart: false}
bridge: {kind: fake}
policy: {backend: fake, fake_latency_ms: 100}
cameras: {head: {fps: 10}, wrist: {fps: 10}}
"""


def run_cli(tmp_path: Path, process: str, sig=None, duration=None):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG % process)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "runtime.cli.main", "run", "--config", str(cfg), "--report", str(report), "--quiet"]
    if duration:
        cmd += ["--duration", str(duration)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if sig is not None:
        time.sleep(5.0)  # start-up with fake devices takes ~1-2 s; a signal during start-up is safe too
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=90)
    return proc.returncode, out, err, report


def test_sigterm_stops_safely_and_writes_the_report(tmp_path):
    rc, out, err, report = run_cli(tmp_path, "thread", sig=signal.SIGTERM)
    assert rc == 0, err
    assert "SIGTERM: stopping safely" in err
    r = json.loads(report.read_text())
    c = r["control"]
    for key in ("rate_hz_target", "rate_hz_achieved", "lateness_us", "missed_cycles"):
        assert key in c
    assert set(c["lateness_us"]) == {"p50", "p99", "max"}
    assert c["rate_hz_target"] == 100 and c["commands_sent"] > 10
    assert "stopped: held and disarmed" in [e for _, e in c["events"]]
    for key in ("policy", "tracker", "camera", "bridge", "errors"):
        assert key in r
    assert {"inferences", "latency_ms"} <= set(r["policy"]) and {"frames", "dropped"} <= set(r["camera"])
    assert "control loop" in out and "lateness p50" in out  # the summary table
    assert set(c["obs_to_actuation_ms"]) == {"count", "p50", "p99", "max"}
    assert "observation -> actuation p50" in out


def test_duration_with_separate_control_process(tmp_path):
    rc, out, err, report = run_cli(tmp_path, "separate", duration=3)
    assert rc == 0, err
    r = json.loads(report.read_text())
    assert r["control"]["process"].startswith("separate")
    assert r["control"]["commands_sent"] > 100
    assert 2.5 < r["duration_s"] < 6


def test_bad_config_is_one_clear_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("control:\n  rate_hz: -5\n")
    proc = subprocess.run([sys.executable, "-m", "runtime.cli.main", "run", "--config", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"dexgrasp run: error: {cfg}: control.rate_hz: must be > 0, got -5"


def test_summary_shows_the_recorder_when_recording():
    """A person watching `dexgrasp run --record` sees at the end whether frames were lost, and why."""
    from runtime.cli.run import format_summary

    base = {"config": "sim", "control": {"rate_hz_target": 200, "rate_hz_achieved": 200.0}}
    assert "recording" not in format_summary(base)
    rec = {"dir": "/data/rec", "episodes_finished": 2, "frames_offered": 120, "frames_written": 111,
           "dropped_queue_full": 9, "dropped_no_state": 0, "write_errors": 0}
    row = next(line for line in format_summary({**base, "recording": rec}).splitlines()
               if line.strip().startswith("recording"))
    assert "2 episode(s) finished in /data/rec" in row and "frames written 111 of 120" in row
    assert "queue_full 9" in row and "no_state" not in row


def _children(pid: int) -> list[int]:
    out = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in path.read_text().split()]
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the control process through /proc (Linux)")
def test_sigkilled_control_process_makes_run_exit_non_zero(tmp_path):
    """A supervisor must be able to tell: the run ends at once with exit code 1 and one line."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG % "separate")
    cmd = [sys.executable, "-m", "runtime.cli.main", "run", "--config", str(cfg), "--duration", "60", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        child = None
        while child is None and time.monotonic() < deadline:
            for pid in _children(proc.pid):
                if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():
                    child = pid
            time.sleep(0.2)
        assert child is not None, "no control process appeared"
        time.sleep(3.0)  # let it start the loop (a kill during start-up fails start() instead)
        os.kill(child, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert err.strip().splitlines()[-1] == ("dexgrasp run: error: control process ended unexpectedly "
                                            "(killed by SIGKILL); the firmware holds and safes off")


def test_ctrl_c_to_the_process_group_stops_the_separate_control_process_in_order(tmp_path):
    """A terminal's Ctrl-C reaches every process of the group, the control process too: it must
    leave the stop to the parent (hold, disarm, report) instead of dying of KeyboardInterrupt."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG % "separate")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "runtime.cli.main", "run", "--config", str(cfg), "--report", str(report), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(6.0)  # start-up with fake devices takes ~2 s
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    c = json.loads(report.read_text())["control"]
    assert "stopped: held and disarmed" in [e for _, e in c["events"]], c.get("errors")
    assert "KeyboardInterrupt" not in err
