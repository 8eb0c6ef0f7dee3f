"""Control-loop lifecycle: future-stamped chunks, clear vs arm, the control child's exit paths and
its bounded event log (fake clock / in-process child; no wall-clock timing asserted)."""

import multiprocessing as mp
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from runtime.config import config_from_dict
from runtime.config.components import BridgeHandle
from runtime.execution.chunk import TimedChunk
from runtime.execution.executor import ChunkExecutor
from runtime.execution.fakes import FakeBridge
from runtime.execution.messages import EventMsg, ReadyMsg, ReportMsg, StatsMsg, StopMsg


# ---- chunks stamped in the future -------------------------------------------------------------
def _chunk(t_obs, value=0.1, seq=1):
    return TimedChunk(np.full((64, 13), value), t_obs=t_obs, t_start=t_obs, dt_s=0.05, seq=seq, t_ready=t_obs)


def test_executor_refuses_a_chunk_observed_in_the_future_and_counts_it():
    ex = ChunkExecutor(13, 0.05, max_future_s=0.02)
    now = 100.0
    assert not ex.offer(_chunk(now + 5.0), now)
    assert ex.counters.chunks_rejected_future == 1
    assert "in the future" in ex.last_reject_reason and "5.000 s" in ex.last_reject_reason
    assert ex.setpoint(now) is None and ex.setpoint(now + 5.0) is None  # nothing was taken
    # within the tolerance (same monotonic clock, a few ms of rounding) it is accepted
    assert ex.offer(_chunk(now + 0.01), now)
    assert ex.counters.chunks_rejected_future == 1


def test_loop_never_executes_a_future_stamped_chunk(loop_sim):
    sim = loop_sim(latency_s=0.3)
    sim.run(0.1)
    now = sim.clock.now()
    sim.chunks.put(_chunk(now + 10.0, value=0.5, seq=99), now + 10.0)
    sim.run(1.0)
    assert sim.loop.executor.counters.chunks_rejected_future == 1
    assert sim.loop.report()["executor"]["chunks_rejected_future"] == 1
    assert not np.any(np.isclose(sim.commands()[:, 0], 0.5))


# ---- clear lifts a stop, only arm re-arms ------------------------------------------------------
def test_clear_does_not_rearm_and_arm_does(loop_sim):
    sim = loop_sim(latency_s=0.2)
    sim.run(0.2)
    assert sim.bridge.calls.count("arm") == 1  # at start-up
    sim.loop.submit("stop")
    sim.run(0.2)
    assert sim.loop.hold_reason == "protective_stop"
    sim.loop.submit("clear")
    sim.run(0.5)
    assert "clear_stop" in sim.bridge.calls
    assert sim.bridge.calls.count("arm") == 1  # clear did not re-arm
    assert sim.loop.hold_reason == "needs_rearm" and not sim.bridge.armed
    n = sum(c is not None for _, c in sim.sent)
    sim.run(0.3)
    assert sum(c is not None for _, c in sim.sent) == n  # nothing sent while waiting for arm
    sim.loop.submit("arm")
    sim.run(0.3)
    assert sim.bridge.calls.count("arm") == 2 and sim.bridge.armed
    assert sim.loop.hold_reason != "needs_rearm"


def test_disarm_holds_until_an_explicit_arm_even_with_auto_rearm(loop_sim):
    sim = loop_sim(latency_s=0.2, overrides={"bridge": {"kind": "fake"}, "safety": {"auto_rearm": True}})
    assert sim.loop.auto_rearm
    sim.run(0.2)
    sim.loop.submit("disarm")
    sim.run(0.5)
    assert sim.bridge.calls.count("disarm") == 1 and not sim.bridge.armed
    assert sim.loop.hold_reason == "needs_rearm" and sim.bridge.calls.count("arm") == 1  # auto_rearm did not undo it
    n = sum(c is not None for _, c in sim.sent)
    sim.run(0.3)
    assert sum(c is not None for _, c in sim.sent) == n  # nothing sent while disarmed
    sim.loop.submit("arm")
    sim.run(0.2)
    assert sim.bridge.armed and sim.bridge.calls.count("arm") == 2
    sim.bridge.set_link(False)  # after that arm, auto_rearm works as before
    sim.run(0.1)
    sim.bridge.set_link(True)
    sim.run(0.2)
    assert sim.bridge.armed and sim.bridge.calls.count("arm") == 3


def test_arm_is_refused_during_a_protective_stop(loop_sim):
    sim = loop_sim(latency_s=0.2)
    sim.run(0.2)
    sim.loop.submit("stop")
    sim.run(0.1)
    sim.loop.submit("arm")
    sim.run(0.3)
    assert sim.bridge.calls.count("arm") == 1
    assert sim.loop.hold_reason == "protective_stop"
    assert any("arm refused" in e for _, e in sim.loop.events)


def test_auto_rearm_is_never_effective_on_a_serial_bridge():
    from runtime.execution.loop import effective_auto_rearm

    def cfg(kind, auto):
        return SimpleNamespace(bridge=SimpleNamespace(kind=kind), safety=SimpleNamespace(auto_rearm=auto))

    assert effective_auto_rearm(cfg("emulator", True)) is True
    assert effective_auto_rearm(cfg("fake", True)) is True
    assert effective_auto_rearm(cfg("serial", True)) is False
    assert effective_auto_rearm(cfg("ros2", True)) is False  # a ROS 2 arm is real hardware too
    assert effective_auto_rearm(cfg("emulator", False)) is False


# ---- the control child: every exit path disarms and closes -------------------------------------
CHILD_CFG = {
    "control": {"rate_hz": 100, "process": "separate", "realtime": {"sched_fifo_priority": None, "mlockall": False}},
    "bridge": {"kind": "fake"}, "tracker": {"kind": "none"}, "policy": {"backend": "fake"},
    "planner": {"enabled": False, "autostart": False},
}


def _run_child(monkeypatch, fault):
    from runtime.config import components
    from runtime.execution import loop as loop_mod
    from runtime.execution import loop_process

    bridges = []

    def fake_make_bridge(cfg, clock):
        b = FakeBridge(13, clock)
        bridges.append(b)
        return BridgeHandle(b, description="fake")

    def boom(self):
        raise RuntimeError("injected report fault")

    monkeypatch.setattr(components, "make_bridge", fake_make_bridge)
    if fault == "report":
        monkeypatch.setattr(loop_mod.ControlLoop, "report", boom)
    elif fault == "stats":
        monkeypatch.setattr(loop_mod.ControlLoop, "progress", boom)
    parent, child = mp.Pipe(duplex=True)
    cfg = config_from_dict(CHILD_CFG, "test")
    th = threading.Thread(target=loop_process.child_main, args=(cfg.model_dump(), child), daemon=True)
    th.start()
    assert parent.poll(30) and isinstance(parent.recv(), ReadyMsg)
    time.sleep(0.7 if fault == "stats" else 0.3)
    try:
        parent.send(StopMsg())
    except OSError:  # the stats fault ends the child by itself (its end of the pipe is closed)
        assert fault == "stats"
    msgs = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if parent.poll(0.1):
                msgs.append(parent.recv())
        except (EOFError, OSError):
            break
        if msgs and isinstance(msgs[-1], ReportMsg):
            break
    th.join(10)
    assert not th.is_alive()
    return bridges[0], msgs


@pytest.mark.parametrize("fault", ["none", "report", "stats"])
def test_control_child_disarms_and_closes_on_every_exit_path(monkeypatch, fault):
    bridge, msgs = _run_child(monkeypatch, fault)
    assert "disarm" in bridge.calls and bridge.calls[-1] == "close", bridge.calls
    reports = [m.report for m in msgs if isinstance(m, ReportMsg)]
    assert reports, [type(m).__name__ for m in msgs]  # the parent always gets a report, even a short one
    if fault == "report":
        assert any("injected report fault" in e for e in reports[-1]["errors"])


# ---- the parent side keeps a bounded event log -------------------------------------------------
def test_parent_event_log_is_bounded_and_counts_what_it_dropped():
    from runtime.execution.loop_process import ControlLoopProcess
    from runtime.execution.requests import ChunkRequests
    from runtime.mailbox import Mailbox

    cfg = config_from_dict(CHILD_CFG, "test")
    proxy = ControlLoopProcess(cfg, ChunkRequests(), Mailbox("c"), Mailbox("h"))
    parent, child = mp.Pipe(duplex=True)
    proxy._conn = parent
    rx = threading.Thread(target=proxy._rx, daemon=True)
    rx.start()
    for i in range(1000):
        child.send(EventMsg("episode_event", {"t": float(i), "event": f"e{i}"}))
    child.send(StatsMsg({"hold_reason": None, "homes_completed": 3, "home_done": [2, "reached"]}, {}, True, True, False))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proxy.homes_completed != 3:
        time.sleep(0.02)
    proxy._stop.set()
    rx.join(2)
    assert len(proxy.events) == proxy.EVENT_LOG_SIZE < 1000
    assert proxy.events_dropped == 1000 - proxy.EVENT_LOG_SIZE
    assert proxy.events[-1] == (999.0, "e999")
    assert proxy.homes_completed == 3 and proxy.home_done == (2, "reached")
    assert proxy.report()["events_dropped_in_parent"] == 1000 - proxy.EVENT_LOG_SIZE



def test_homing_outcome_is_reported_per_request(loop_sim):
    sim = loop_sim(latency_s=0.3)
    sim.run(0.1)
    home = [0.0] * 13
    home[0] = 0.3
    sim.loop.submit("home", target=home, request_id=1)
    sim.run(0.2)
    sim.loop.submit("home", target=home, request_id=2)  # supersedes the first
    sim.run(5.0)
    assert sim.loop.home_done == (2, "reached") and sim.loop.homes_completed == 1
    sim.loop.submit("home", target=home, request_id=3)
    sim.loop.submit("stop")
    sim.run(0.2)
    assert sim.loop.home_done == (3, "aborted")
    sim.loop.submit("home", target=home, request_id=4)  # refused during a protective stop
    sim.run(0.1)
    r = sim.loop.report()
    assert r["home_done"] == [4, "ignored"] and r["homes_completed"] == 1
    assert r["events_dropped"] == 0
