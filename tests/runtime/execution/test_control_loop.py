import numpy as np
import pytest

from runtime.execution.safety import JointLimits

RATE = 200


def check_within_limits(sim, cmds):
    lim = sim.limits
    assert np.all(np.isfinite(cmds))
    assert np.all(cmds >= lim.lower - 1e-12) and np.all(cmds <= lim.upper + 1e-12)
    v = np.diff(cmds, axis=0) * RATE
    assert np.all(np.abs(v) <= lim.max_velocity + 1e-9)


def test_commands_flow_every_cycle_within_limits_toward_the_goal(loop_sim):
    sim = loop_sim(latency_s=0.8)
    sim.loop.submit("enable")
    sim.run(10.0)
    cmds = sim.commands()
    assert len(cmds) == 10 * RATE  # one command per cycle, none missed
    check_within_limits(sim, cmds)
    ex = sim.loop.executor.counters
    assert ex.chunks_accepted >= 3
    # after the first chunk arrives the robot never waits for the next one
    first_exec = sim.states.index(None)
    assert all(s is None for s in sim.states[first_exec:])
    # the fake policy drives every joint toward 0.3 (hand) / scaled 0.3 (arm): it moved
    assert cmds[-1, 7] > 0.25
    assert sim.bridge.calls[:1] == ["arm"]


def test_first_cycles_hold_until_a_chunk_arrives(loop_sim):
    sim = loop_sim(latency_s=0.5)
    sim.loop.submit("enable")
    sim.run(0.4)
    assert set(sim.states) == {"waiting_for_chunk"}
    assert sim.loop.executor.counters.requests == 1
    np.testing.assert_allclose(sim.commands()[-1], np.zeros(13))


def test_camera_stall_holds_within_max_age_keeps_rate_and_recovers(loop_sim):
    sim = loop_sim(latency_s=0.3)
    sim.loop.submit("enable")
    sim.run(3.0)
    assert sim.loop.hold_reason is None
    sim.frames.stalled = True
    t_stall = sim.clock.now()
    sim.run(2.0)
    reasons = sim.states[-400:]
    i = reasons.index("perception_stale")
    # marked stale within its max age (0.5 s) of the last frame + one cycle
    assert i / RATE <= 0.5 + 1 / 30 + 1 / RATE
    assert all(r == "perception_stale" for r in reasons[i:])
    cmds = sim.commands()
    assert len(cmds) == 5 * RATE  # the loop kept commanding (holding) every cycle
    tail = cmds[-100:]
    assert np.ptp(tail, axis=0).max() < 1e-12  # at rest
    check_within_limits(sim, cmds)
    assert any("perception_stale" in e and "ms old" in e for _, e in sim.loop.events)
    sim.frames.stalled = False
    sim.run(2.0)
    assert sim.loop.hold_reason is None
    assert sim.clock.now() - t_stall == pytest.approx(4.0)


def test_inference_overrun_5x_holds_and_never_executes_stale_actions(loop_sim):
    sim = loop_sim(latency_s=0.8)
    sim.loop.submit("enable")
    sim.run(4.0)
    assert sim.loop.hold_reason is None
    sim.policy.latency_scale = 5.0  # 4 s > max_action_age 3.3 s
    sim.run(12.0)
    ex = sim.loop.executor.counters
    assert ex.chunks_rejected_stale >= 1
    assert sim.loop.hold_reason == "waiting_for_chunk"
    assert any("arrived" in e and "after its observation" in e for _, e in sim.loop.events)
    check_within_limits(sim, sim.commands())
    assert len(sim.commands()) == 16 * RATE
    sim.policy.latency_scale = 1.0
    sim.run(6.0)
    assert sim.loop.hold_reason is None


def test_nan_in_policy_output_is_never_sent(loop_sim):
    sim = loop_sim(latency_s=0.5)
    sim.loop.submit("enable")
    sim.run(2.0)
    sim.policy.emit_nan = True
    sim.run(6.0)
    ex = sim.loop.executor.counters
    assert ex.chunks_rejected_nonfinite >= 1
    assert sim.loop.hold_reason == "waiting_for_chunk"
    sent = np.array([q for _, q in sim.bridge.sent])
    assert np.all(np.isfinite(sent))
    check_within_limits(sim, sim.commands())
    sim.policy.emit_nan = False
    sim.run(4.0)
    assert sim.loop.hold_reason is None


def test_bridge_link_loss_holds_reports_and_recovers_with_auto_rearm(loop_sim):
    sim = loop_sim(latency_s=0.5, overrides={"safety": {"auto_rearm": True}})
    sim.loop.submit("enable")
    sim.run(2.0)
    sim.bridge.set_link(False)
    sim.run(1.0)
    assert sim.loop.hold_reason == "link_down"
    assert all(c is None for _, c in sim.sent[-199:])  # nothing sent into a dead link
    assert sim.loop.rate.missed_cycles == 0
    sim.bridge.set_link(True)
    sim.run(3.0)
    assert sim.bridge.calls.count("arm") == 2
    assert sim.loop.hold_reason is None
    assert any("link_down" in e for _, e in sim.loop.events)


def test_link_recovery_without_auto_rearm_waits_for_operator(loop_sim):
    sim = loop_sim(latency_s=0.5)
    sim.loop.submit("enable")
    sim.run(1.0)
    sim.bridge.set_link(False)
    sim.run(0.5)
    sim.bridge.set_link(True)
    sim.run(1.0)
    assert sim.loop.hold_reason == "needs_rearm"
    assert sim.bridge.calls.count("arm") == 1


def test_protective_stop_and_clear(loop_sim):
    sim = loop_sim(latency_s=0.3)
    sim.loop.submit("enable")
    sim.run(2.0)
    n_sent = len(sim.bridge.sent)
    sim.loop.submit("stop")
    sim.run(1.0)
    assert "protective_stop" in sim.bridge.calls
    assert sim.loop.hold_reason == "protective_stop"
    assert len(sim.bridge.sent) == n_sent
    sim.loop.submit("clear")
    sim.loop.submit("enable")
    sim.run(1.0)
    assert sim.loop.hold_reason == "needs_rearm"  # clear lifts the latch; it does not re-arm
    assert "arm" not in sim.bridge.calls[sim.bridge.calls.index("clear_stop"):]
    sim.loop.submit("arm")
    sim.run(2.0)
    assert "arm" in sim.bridge.calls[sim.bridge.calls.index("clear_stop"):]
    assert sim.loop.hold_reason is None


def test_safe_stop_decelerates_then_disarms(loop_sim):
    sim = loop_sim(latency_s=0.3)
    sim.loop.submit("enable")
    sim.run(1.0)  # mid-motion
    v_before = np.abs(sim.loop.safety.velocity).max()
    assert v_before > 0
    sim.loop._safe_stop()
    assert np.abs(sim.loop.safety.velocity).max() < 1e-9
    assert sim.bridge.calls[-1] == "disarm"
    cmds = np.array([q for _, q in sim.bridge.sent])
    acc = np.diff(cmds, n=2, axis=0) * RATE * RATE
    assert np.all(np.abs(acc) <= JointLimits.from_config(sim.cfg.robot, sim.cfg.safety).max_acceleration + 1e-6)


@pytest.mark.parametrize("blend", ["latest", "weighted", "crossfade"])
def test_every_blend_mode_runs_within_limits(loop_sim, blend):
    sim = loop_sim(latency_s=0.6, overrides={"execution": {"blend": blend}})
    sim.loop.submit("enable")
    sim.run(6.0)
    check_within_limits(sim, sim.commands())
    assert sim.loop.executor.counters.chunks_accepted >= 3


def test_upstream_mode_executes_six_then_waits(loop_sim):
    sim = loop_sim(latency_s=0.5, overrides={"execution": {"mode": "upstream"}})
    sim.loop.submit("enable")
    sim.run(6.0)
    ex = sim.loop.executor.counters
    # each round: 0.5 s inference + 0.25 s of actions (6 at 20 Hz)
    assert 6 <= ex.chunks_accepted <= 9
    assert sim.loop.hold_cycles["waiting_for_chunk"] > 0.5 * 6 * RATE


def test_auto_mode_moves_the_robot_when_inference_outlasts_the_chunk(loop_sim):
    sim = loop_sim(latency_s=4.0, overrides={"execution": {"mode": "auto"}, "safety": {"max_action_age_s": 10.0}})
    sim.loop.submit("enable")
    sim.run(20.0)
    ex = sim.loop.executor.counters
    assert ex.chunks_from_arrival >= 3 and ex.chunks_rejected_stale == 0
    check_within_limits(sim, sim.commands())
    assert sim.commands()[-1, 7] > 0.1  # it moved
    # timed mode with the same latency never moves
    sim2 = loop_sim(latency_s=4.0, overrides={"safety": {"max_action_age_s": 10.0}})
    sim2.loop.submit("enable")
    sim2.run(20.0)
    assert sim2.loop.executor.counters.chunks_accepted == 0
    np.testing.assert_allclose(sim2.commands()[-1], np.zeros(13))


def test_homing_moves_to_target_within_limits_then_reports(loop_sim):
    sim = loop_sim(latency_s=0.3)
    sim.loop.submit("enable")
    sim.run(2.0)
    assert np.abs(sim.commands()[-1]).max() > 0.1
    sim.loop.submit("home", target=[0.0] * 13)
    sim.run(0.5)
    assert sim.loop.hold_reason == "homing"
    assert not sim.loop.policy_enabled.is_set()
    sim.run(6.0)
    np.testing.assert_allclose(sim.commands()[-1], np.zeros(13), atol=1e-4)
    assert sim.loop.hold_reason == "policy_disabled"
    assert [e for _, e in sim.loop.events].count("home reached") == 1
    check_within_limits(sim, sim.commands())


def test_observation_to_actuation_is_measured_per_chunk(loop_sim):
    """Each accepted chunk gives one sample: its observation time to the end of the first command
    sent from it = the inference latency + the frame's age at the request + at most one cycle."""
    sim = loop_sim(latency_s=0.5)
    sim.loop.submit("enable")
    sim.run(6.0)
    ex = sim.loop.executor.counters
    o2a = sim.loop.report()["obs_to_actuation_ms"]
    assert ex.chunks_accepted >= 3 and o2a["count"] == ex.chunks_accepted
    assert 500.0 <= o2a["p50"] <= o2a["max"] <= 500.0 + 1000 / 30 + 2 * 1000 / RATE
    slow = loop_sim(latency_s=1.5)
    slow.loop.submit("enable")
    slow.run(6.0)
    assert slow.loop.report()["obs_to_actuation_ms"]["p50"] >= 1500.0  # follows the policy's latency
