"""App lifecycle with real threads and processes: homing waits on explicit state, homing in the
separate control process survives a late chunk, and a killed control process ends the run as
fatal (the CLI exits non-zero). Behaviour only; no timing is asserted."""

import argparse
import os
import signal
import threading
import time

import numpy as np
import pytest

from runtime.app import App
from runtime.cameras.synthetic import make_synthetic_cameras
from runtime.clock import Clock
from runtime.config import config_from_dict
from runtime.config.components import BridgeHandle
from runtime.errors import StaleDataError
from runtime.execution.chunk import TimedChunk
from runtime.execution.fakes import FakeBridge, FakeChunkPolicy

BASE = {
    "control": {"rate_hz": 100, "realtime": {"sched_fifo_priority": None, "mlockall": False}},
    "tracker": {"kind": "none"},
    "planner": {"enabled": False, "autostart": False},
    "bridge": {"kind": "fake"},
    "policy": {"backend": "fake"},
}


def _cfg(**sections):
    raw = {k: dict(v) for k, v in BASE.items()}
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return config_from_dict(raw, "test")


def wait_for(pred, timeout_s=10.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def joint0(app) -> float:
    """The measured position of joint 0 as the parent sees it (nan before the first state)."""
    try:
        return float(app.bridge.latest_state(1.0).positions[0])
    except StaleDataError:
        return float("nan")


def _thread_app():
    cfg = _cfg()
    clock = Clock()
    bridge = FakeBridge(13, clock, lower=np.asarray(cfg.robot.lower), upper=np.asarray(cfg.robot.upper))
    _, head, wrist = make_synthetic_cameras(lambda: bridge.latest_state(None).positions, clock=clock, fps=15)
    app = App(cfg, clock=clock, bridge_handle=BridgeHandle(bridge, description="fake"), cameras=(head, wrist, None),
              policy=FakeChunkPolicy(latency_s=0.1), tracker=None)
    return app


def _process_app(policy, **sections):
    cfg = _cfg(control={"process": "separate"}, **sections)
    clock = Clock()
    app = App(cfg, clock=clock, tracker=None, policy=policy,
              cameras=make_synthetic_cameras(lambda: app._robot_positions(), clock=clock, fps=15)[1:] + (None,))
    return app


def test_go_home_sees_its_arrival_even_when_the_event_log_has_rolled_over():
    """The old wait counted "home reached" strings in a 200-entry deque: with the log full, the new
    arrival pushes the old one out, the count never grows, and the episode waited out the timeout."""
    app = _thread_app()
    app.start()
    try:
        first = threading.Event()
        assert app.go_home(on_done=first.set, timeout_s=5.0)
        assert first.wait(10.0)
        # a busy episode has filled the bounded log: the first arrival is its oldest entry
        events = app.loop.events
        events.clear()
        events.append((0.0, "home reached"))
        events.extend((0.0, f"filler {i}") for i in range(events.maxlen - 1))
        second = threading.Event()
        assert app.go_home(on_done=second.set, timeout_s=4.0)
        assert second.wait(10.0)
        assert app.loop.homes_completed == 2
        assert not [e for e in app.errors if "go_home" in e], app.errors
    finally:
        app.stop()


def test_go_home_reports_a_homing_that_was_refused_without_waiting_out_the_timeout():
    app = _thread_app()
    app.start()
    try:
        assert wait_for(lambda: app.loop.hold_reason != "starting")
        app.submit_command({"cmd": "stop"})
        assert wait_for(lambda: app.loop.hold_reason == "protective_stop")
        done = threading.Event()
        app.go_home(on_done=done.set, timeout_s=60.0)
        assert done.wait(10.0)  # not 60 s
        assert any("go_home: homing ignored" in e for e in app.errors), app.errors
    finally:
        app.stop()


def test_homing_in_the_separate_process_drops_a_late_older_generation_chunk():
    home = [0.0] * 13
    home[0] = 0.4
    app = _process_app(FakeChunkPolicy(latency_s=0.1, goal=np.full(13, -0.3), step=0.02),
                       robot={"home_positions": home}, safety={"max_action_age_s": 5.0})
    app.start()
    try:
        assert app.submit_command({"cmd": "manual_bbox", "bbox": [10, 10, 50, 60]})["ok"]
        assert wait_for(lambda: joint0(app) < 0.2, 30), app.loop.progress()
        t_before_home = app.clock.now()
        done = threading.Event()
        app.go_home(on_done=done.set, timeout_s=30.0)
        time.sleep(0.2)
        # an inference that was running when "home" was sent delivers its chunk now
        now = app.clock.now()
        app.chunks.put(TimedChunk(np.full((64, 13), -0.5), t_obs=t_before_home, t_start=now, dt_s=0.05, seq=10_000,
                                  t_ready=now), t_before_home)
        assert done.wait(30.0)
        assert wait_for(lambda: abs(joint0(app) - 0.4) < 1e-3, 5.0)
        assert app.loop.homes_completed >= 1 and app.loop.home_done[1] == "reached"
    finally:
        report = app.run(duration_s=0.0)
    c = report["control"]
    assert c["chunks_dropped_old_generation"] >= 1
    assert not [e for e in report["errors"] if "go_home" in e], report["errors"]
    assert report["fatal"] is None


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_killed_control_process_ends_the_run_as_fatal_and_the_cli_exits_non_zero(monkeypatch, capsys):
    import runtime.config
    from runtime.cli import run as run_cli

    app = _process_app(FakeChunkPolicy(latency_s=0.1))
    app.start()
    os.kill(app.loop._proc.pid, signal.SIGKILL)
    report = app.run(duration_s=30.0, progress_period_s=0.1)
    assert not app.loop.alive
    assert report["fatal"] and "control process ended unexpectedly (killed by SIGKILL)" in report["fatal"]
    assert report["duration_s"] < 30.0  # the run ended at once, not at the requested duration
    # `dexgrasp run` turns it into exit code 1 and one clear line
    monkeypatch.setattr(runtime.config, "load_config", lambda name, overrides=None: app.cfg)
    monkeypatch.setattr(run_cli, "run_app", lambda cfg, duration_s, quiet=False: report)
    args = argparse.Namespace(config="x", duration=None, report=None, model_dir=None, record=None, quiet=True)
    assert run_cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dexgrasp run: error: control process ended unexpectedly (killed by SIGKILL)")


def test_clear_lifts_a_stop_without_rearming_and_arm_rearms():
    app = _thread_app()  # safety.auto_rearm is off (the default)
    bridge = app._injected["bridge"].bridge
    app.start()
    try:
        assert wait_for(lambda: bridge.armed)
        assert app.submit_command({"cmd": "stop"})["ok"]
        assert wait_for(lambda: app.loop.hold_reason == "protective_stop")
        r = app.submit_command({"cmd": "clear"})
        assert r["ok"] and "explicit arm" in r["reason"]
        assert wait_for(lambda: app.loop.hold_reason == "needs_rearm")
        time.sleep(0.3)
        assert not bridge.armed and bridge.calls.count("arm") == 1
        assert app.submit_command({"cmd": "arm"})["ok"]
        assert wait_for(lambda: bridge.armed and app.loop.hold_reason != "needs_rearm")
    finally:
        app.stop()
    assert bridge.calls.count("arm") == 2


def test_insecure_dds_commands_on_real_hardware_are_reported_loudly():
    from runtime.cli.run import format_summary

    cfg = _cfg(bridge={"kind": "serial", "port": "/dev/does-not-exist"}, robot={"home_positions": [0.0] * 13},
               telemetry={"dds": {"enabled": True, "insecure_commands": True, "domain_id": 9}})
    app = App(cfg)
    app._check_command_trust()  # what start() does before any hardware is opened
    report = app.report()
    assert len(report["warnings"]) == 1 and "UNAUTHENTICATED" in report["warnings"][0]
    row = next(line for line in format_summary(report).splitlines() if line.strip().startswith("WARNINGS"))
    assert "domain 9" in row
