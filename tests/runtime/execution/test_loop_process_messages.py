"""The typed control-process boundary: messages round-trip, unknown ones are counted (never fatal),
and a chunk reaches the child loop within one control cycle, with no polling on the parent side."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from runtime.config import config_from_dict
from runtime.execution import loop_process
from runtime.execution.chunk import TimedChunk
from runtime.execution.messages import (
    PROTOCOL_VERSION,
    TO_CHILD,
    TO_PARENT,
    ChunkMsg,
    CommandMsg,
    ErrorMsg,
    EventMsg,
    FrameMsg,
    LinkAckMsg,
    LinkCommandMsg,
    LinkOp,
    MessageCheck,
    ReadyMsg,
    ReportMsg,
    RequestDoneMsg,
    RequestMsg,
    SentMsg,
    StateMsg,
    StatsMsg,
    StopMsg,
)
from runtime.execution.requests import ChunkRequests
from runtime.mailbox import Mailbox
from runtime.robot.link import JointState

CFG = {"bridge": {"kind": "fake"}, "tracker": {"kind": "none"}, "policy": {"backend": "fake"},
       "planner": {"enabled": False, "autostart": False}, "control": {"process": "separate"}}
NAMES = tuple(f"j{i}" for i in range(13))


def _chunk(t: float, seq: int = 1) -> TimedChunk:
    return TimedChunk(np.zeros((8, 13)), t, t, 0.05, seq=seq, t_ready=t)


ALL = [
    ChunkMsg(_chunk(1.5)), RequestDoneMsg(), FrameMsg(2.25), CommandMsg("home", {"target": [0.1] * 13, "request_id": 4}),
    StopMsg(), ReadyMsg({"mlockall": "off"}), ErrorMsg("DeviceNotConnectedError: no port"),
    StateMsg(JointState(NAMES, np.arange(13.0), np.full(13, np.nan), 3.5, "fake")),
    SentMsg(np.linspace(0, 1, 13), 4.0), RequestMsg(5.0), EventMsg("status", {"hold_reason": None}),
    StatsMsg({"homes_completed": 1}, {"tx": 3}, True, False, True, stopped=True, cause="link down"),
    ReportMsg({"errors": []}), LinkCommandMsg(LinkOp.PROTECTIVE_STOP, 3),
    LinkAckMsg(3, "protective stop latched (clear_stop() first)", "NotArmedError"),
]


def _same(a, b) -> bool:
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return a == b


@pytest.mark.parametrize("msg", ALL, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_a_pipe_and_passes_its_sides_check(msg):
    parent, child = mp.Pipe(duplex=True)
    parent.send(msg)
    got = child.recv()
    assert _same(got, msg) and got.version == PROTOCOL_VERSION
    to_child = isinstance(msg, TO_CHILD)
    assert to_child != isinstance(msg, TO_PARENT)  # each message has one direction
    right = MessageCheck("right", TO_CHILD if to_child else TO_PARENT)
    wrong = MessageCheck("wrong", TO_PARENT if to_child else TO_CHILD)
    assert right.accept(got) is got and right.unknown == 0
    assert wrong.accept(got) is None and wrong.unknown == 1 and "not expected here" in wrong.last_unknown


def test_messages_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALL[2].t_capture = 0.0


# ---- unknown messages are counted, never fatal ------------------------------------------------
def test_child_counts_unknown_messages_and_keeps_applying_known_ones():
    check = MessageCheck("child", TO_CHILD)
    chunks, requests, perception = Mailbox("chunks"), ChunkRequests(), [-np.inf]
    loop = None  # no CommandMsg below: the loop is not touched
    legacy = ("chunk", _chunk(1.0))  # the old string-tagged tuple
    stale = dataclasses.replace(ChunkMsg(_chunk(1.0)), version=PROTOCOL_VERSION + 1)
    for raw in (legacy, stale, ReadyMsg({}), object(), None):
        assert loop_process.apply_to_child(check, raw, loop, chunks, requests, perception) is True
    assert check.unknown == 5 and chunks.peek() is None
    assert loop_process.apply_to_child(check, FrameMsg(7.0), loop, chunks, requests, perception)
    assert loop_process.apply_to_child(check, ChunkMsg(_chunk(6.0)), loop, chunks, requests, perception)
    assert perception[0] == 7.0 and chunks.peek().value.t_obs == 6.0 and chunks.peek().t_capture == 6.0
    assert loop_process.apply_to_child(check, StopMsg(), loop, chunks, requests, perception) is False
    assert check.unknown == 5


def test_version_mismatch_is_named_in_the_drop_reason():
    check = MessageCheck("child", TO_CHILD)
    assert check.accept(dataclasses.replace(StopMsg(), version=99)) is None
    assert "version 99" in check.last_unknown and f"speaks {PROTOCOL_VERSION}" in check.last_unknown


def _proxy():
    cfg = config_from_dict(CFG, "test")
    requests, chunks, frames = ChunkRequests(), Mailbox("chunks"), Mailbox("head")
    proxy = loop_process.ControlLoopProcess(cfg, requests, chunks, frames)
    parent, child = mp.Pipe(duplex=True)
    proxy._conn = parent
    return proxy, child


def _start(proxy, *targets):
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    return threads


def _stop(proxy, threads):
    proxy._stop.set()
    for t in threads:
        t.join(5)
        assert not t.is_alive()


def test_parent_counts_unknown_and_undecodable_messages_and_keeps_going():
    proxy, child = _proxy()
    threads = _start(proxy, proxy._rx)
    child.send(("stats", {"progress": {}}))  # legacy tuple
    child.send(StopMsg())  # a parent->child message coming back
    child.send_bytes(b"\x80\x05not a pickle")  # does not even unpickle
    child.send(StatsMsg({"hold_reason": "waiting_for_chunk", "homes_completed": 2}, {"rx": 1}, True, True, False))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proxy.homes_completed != 2:
        time.sleep(0.01)
    _stop(proxy, threads)
    assert proxy.homes_completed == 2 and proxy.hold_reason == "waiting_for_chunk"
    assert proxy.bridge_view.counters() == {"rx": 1} and not proxy.bridge_view.armed  # no process: nothing armed
    proxy._proc = SimpleNamespace(is_alive=lambda: True, exitcode=None)  # as if the child were running
    proxy._ready.set()
    assert proxy.bridge_view.armed and proxy.bridge_view.link_up  # what the child reported
    assert proxy.check.unknown == 3 and "undecodable" in proxy.check.last_unknown
    assert proxy.report()["unknown_messages_in_parent"] == 3


def test_parent_view_holds_the_childs_joint_state():
    proxy, child = _proxy()
    threads = _start(proxy, proxy._rx)
    seen = []
    proxy.publish = lambda kind, *args: seen.append((kind, args))
    state = JointState(NAMES, np.arange(13.0), np.zeros(13), 12.5, "control process fake")
    child.send(StateMsg(state))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not seen:
        time.sleep(0.01)
    _stop(proxy, threads)
    got = proxy.bridge_view.latest_state()
    assert isinstance(got, JointState) and got.names == NAMES and got.t_host_receive == 12.5
    assert np.array_equal(got.positions, np.arange(13.0)) and seen[0][0] == "joint_state"


# ---- the hand-off: no polling in the parent, one control cycle in the child -------------------
def test_parent_forwards_each_chunk_and_done_on_arrival_without_polling():
    proxy, child = _proxy()
    threads = _start(proxy, proxy._forward_chunks, proxy._forward_frames, proxy._forward_done)
    t0 = time.monotonic()
    n = 5
    for i in range(n):  # no head frame ever arrives: chunks must not wait on frames
        proxy.chunks.put(_chunk(float(i), i + 1), float(i))
        assert child.poll(10)
        msg = child.recv()
        assert isinstance(msg, ChunkMsg) and msg.chunk.seq == i + 1
    proxy._apply(RequestMsg(1.0))  # the child asks; the policy worker finishes without a chunk
    assert proxy.requests.in_flight
    proxy.requests.done()
    assert child.poll(10) and isinstance(child.recv(), RequestDoneMsg)
    elapsed = time.monotonic() - t0
    _stop(proxy, threads)
    # Each forwarder wakes once per item plus once per FORWARD_WAIT_S of idling: a 20 ms poll
    # would wake the chunk forwarder ~elapsed/0.02 times.
    idle_wakeups = elapsed / loop_process.FORWARD_WAIT_S + 2
    assert proxy.forwarder_wakeups["chunks"] <= n + idle_wakeups
    assert proxy.forwarder_wakeups["frames"] <= idle_wakeups
    assert proxy.forwarder_wakeups["done"] == 1
    assert not child.poll(0)  # nothing else was sent (no frames, no second done)


def test_a_chunk_arriving_in_the_child_is_taken_by_the_loops_next_cycle(loop_sim):
    sim = loop_sim(overrides={"control": {"rate_hz": 200}})
    sim.run(0.1)  # armed and resynchronised, policy not enabled: no chunk of its own
    accepted = sim.loop.executor.counters.chunks_accepted
    check = MessageCheck("child", TO_CHILD)
    now = sim.clock.now()
    positions = np.tile(np.asarray(sim.bridge.latest_state().positions), (8, 1))
    msg = ChunkMsg(TimedChunk(positions, now, now, 0.05, seq=1, t_ready=now))
    assert loop_process.apply_to_child(check, msg, sim.loop, sim.chunks, sim.requests, [now])
    sim.cycle()  # one control cycle (5 ms at 200 Hz) later
    assert sim.loop.executor.counters.chunks_accepted == accepted + 1


# ---- the child side of the parent's RobotLink ------------------------------------------------
class _Running:
    """A LoopSim loop (stepped by the test, no thread) that reports itself running."""

    alive = True

    def __init__(self, loop):
        self._loop = loop

    def __getattr__(self, name):
        return getattr(self._loop, name)


def _child_link(sim, running=True):
    out = []
    cl = loop_process._ChildLink(sim.bridge, out.append, sim.bridge.names, sim.clock, 0.05)
    cl.loop = _Running(sim.loop) if running else sim.loop
    return cl, out


def test_child_runs_link_commands_through_the_loop_with_its_semantics(loop_sim):
    sim = loop_sim(latency_s=0.2)
    sim.run(0.2)
    cl, _ = _child_link(sim)
    assert sim.bridge.armed and cl.flags()[:4] == (True, True, False, False)
    assert cl.command(LinkCommandMsg(LinkOp.PROTECTIVE_STOP, 1)) == LinkAckMsg(1)
    sim.run(0.05)
    assert sim.bridge.stopped and sim.loop.hold_reason == "protective_stop" and cl.flags()[3]
    refused = cl.command(LinkCommandMsg(LinkOp.ARM, 2))
    assert refused.error_type == "NotArmedError" and "protective stop latched" in refused.error
    assert cl.command(LinkCommandMsg(LinkOp.CLEAR_STOP, 3)).error == ""
    sim.run(0.2)
    assert not sim.bridge.stopped and not sim.bridge.armed and sim.loop.hold_reason == "needs_rearm"
    assert not cl.flags()[3]
    assert cl.command(LinkCommandMsg(LinkOp.ARM, 4)).error == ""
    sim.run(0.1)
    assert sim.bridge.armed and sim.loop.hold_reason != "needs_rearm"
    assert cl.command(LinkCommandMsg(LinkOp.DISARM, 5)).error == ""
    sim.run(0.3)
    assert not sim.bridge.armed and sim.loop.hold_reason == "needs_rearm"
    unknown = cl.command(LinkCommandMsg("reboot", 6))
    assert unknown.error_type == "CommandError" and "reboot" in unknown.error


def test_child_without_a_running_loop_stops_the_bridge_itself_and_refuses_arm(loop_sim):
    sim = loop_sim()
    sim.run(0.1)
    cl, _ = _child_link(sim, running=False)
    assert cl.command(LinkCommandMsg(LinkOp.PROTECTIVE_STOP, 1)) == LinkAckMsg(1)
    assert sim.bridge.calls[-1] == "protective_stop" and sim.bridge.stopped
    refused = cl.command(LinkCommandMsg(LinkOp.ARM, 2))
    assert refused.error_type == "DeviceNotConnectedError" and "not running" in refused.error
    sim.bridge.set_link(False)
    cl.loop = _Running(sim.loop)
    sim.bridge.stopped = False
    sim.loop._stopped = False
    down = cl.command(LinkCommandMsg(LinkOp.ARM, 3))
    assert down.error_type == "DeviceNotConnectedError" and "link down" in down.error


def test_child_forwards_the_bridge_state_while_the_loop_publishes_none_and_drops_misnamed_ones(loop_sim):
    sim = loop_sim()
    sim.run(0.1)
    cl, out = _child_link(sim)
    cl.keepalive(sim.clock.now())
    assert len(out) == 1 and isinstance(out[0], StateMsg) and out[0].state.names == sim.bridge.names
    cl.keepalive(sim.clock.now())  # one per CHILD_CHECK_S, not one per call
    assert len(out) == 1
    sim.clock.advance(loop_process.CHILD_CHECK_S + 0.001)
    cl.keepalive(sim.clock.now())
    assert len(out) == 2
    cl.state_out(JointState(("x",) * 13, np.zeros(13), np.zeros(13), 1.0))  # names the config does not have
    cl.state_out(np.zeros(13))  # not a JointState at all
    assert len(out) == 2 and cl.unnamed == 2


def test_link_commands_are_refused_where_no_link_is_served():
    check = MessageCheck("child", TO_CHILD)
    assert loop_process.apply_to_child(check, LinkCommandMsg(LinkOp.ARM, 1), None, Mailbox("c"), ChunkRequests(), [0.0])
    assert check.unknown == 1 and "no robot link" in check.last_unknown
