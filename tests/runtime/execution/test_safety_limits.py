"""Safety filter at the joint limits: position, velocity AND acceleration bounded on every cycle.

Before the discrete stopping rule a target at/beyond a limit made the position clip zero the
velocity in one cycle (arm 43 rad/s^2 against 8, hand 58 against 20 at 200 Hz)."""

import numpy as np
import pytest

from runtime.execution.safety import JointLimits, SafetyFilter, stopping_velocity

DT = 0.005  # 200 Hz
ARM = dict(lo=-1.5, hi=1.5, vmax=1.0, amax=8.0)
HAND = dict(lo=0.0, hi=1.0, vmax=2.0, amax=20.0)


def limits(p, n):
    return JointLimits(np.full(n, p["lo"]), np.full(n, p["hi"]), np.full(n, p["vmax"]), np.full(n, p["amax"]))


def check_run(f, q0, targets, p):
    """Feed targets, assert every cycle is within position/velocity/acceleration limits."""
    q_prev, v_prev = np.asarray(q0, dtype=np.float64), f.velocity
    out = []
    for t in targets:
        q, _ = f.apply(t)
        v = (q - q_prev) / DT
        a = (v - v_prev) / DT
        assert np.all(q >= p["lo"]) and np.all(q <= p["hi"]), q
        assert np.abs(v).max() <= p["vmax"] * (1 + 1e-9), v
        assert np.abs(a).max() <= p["amax"] * (1 + 1e-9), a
        q_prev, v_prev = q, v
        out.append(q)
    return np.array(out)


@pytest.mark.parametrize("p", [ARM, HAND], ids=["arm", "hand"])
@pytest.mark.parametrize("beyond", [0.0, 0.5], ids=["at_limit", "beyond_limit"])
@pytest.mark.parametrize("start", ["rest", "vmax"])
def test_target_at_or_beyond_limit_brakes_within_acceleration(p, beyond, start):
    f = SafetyFilter(limits(p, 1), DT)
    f.reset(np.array([p["lo"]]))
    q0 = f.position
    ramp = []
    if start == "vmax":  # a feasible ramp to full speed toward the upper limit
        q, v = p["lo"], 0.0
        while v < p["vmax"]:
            v = min(p["vmax"], v + p["amax"] * DT)
            q += v * DT
            ramp.append(np.array([q]))
    target = np.array([p["hi"] + beyond])
    out = check_run(f, q0, ramp + [target] * 2000, p)
    assert out[-1, 0] == pytest.approx(p["hi"], abs=1e-12)  # reaches the limit and stays
    assert f.velocity[0] == 0.0


@pytest.mark.parametrize("p", [ARM, HAND], ids=["arm", "hand"])
def test_random_targets_and_states_stay_within_all_limits(p):
    rng = np.random.default_rng(1234)
    n = 4
    span = p["hi"] - p["lo"]
    for _ in range(40):
        f = SafetyFilter(limits(p, n), DT)
        q0 = rng.uniform(p["lo"], p["hi"], n)
        f.reset(q0)
        targets = []
        for _seg in range(rng.integers(2, 6)):
            # jumps anywhere, including at and beyond the limits, held for a random time
            tgt = rng.uniform(p["lo"] - 0.5 * span, p["hi"] + 0.5 * span, n)
            tgt[rng.random(n) < 0.3] = p["hi"] if rng.random() < 0.5 else p["lo"]
            targets += [tgt] * int(rng.integers(1, 150))
            if rng.random() < 0.3:
                targets += [None] * int(rng.integers(1, 30))  # hold while moving
        check_run(f, f.position, targets, p)


def test_stopping_velocity_matches_discrete_braking_distance():
    a, dt = np.array([8.0]), DT
    d = a[0] * dt
    for v in np.linspace(0.0, 2.0, 97):
        travel = dt * sum(max(v - i * d, 0.0) for i in range(1000))
        assert stopping_velocity(np.array([travel]), a, dt)[0] == pytest.approx(v, abs=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_reset_with_nonfinite_state_refuses_without_raising(bad):
    f = SafetyFilter(limits(ARM, 2), DT)
    assert f.reset(np.array([bad, 0.0])) is False
    assert not f.ready and "joint(s) [0]" in f.reset_error
    assert f.reset(np.array([0.2, 0.1])) is True and f.reset_error is None
    for _ in range(50):
        f.apply(np.array([1.0, 0.1]))
    before_q, before_v = f.position, f.velocity
    assert f.reset(np.array([0.0, bad])) is False  # keeps the last safe state
    np.testing.assert_array_equal(f.position, before_q)
    np.testing.assert_array_equal(f.velocity, before_v)
    assert f.counters.rejected_nonfinite_state == 2
    q, ok = f.apply(None)  # and can keep braking from it
    assert ok and np.all(np.isfinite(q))


def test_reset_wrong_shape_still_raises():
    f = SafetyFilter(limits(ARM, 2), DT)
    with pytest.raises(ValueError, match="2 positions"):
        f.reset(np.zeros(3))


def test_loop_holds_on_nonfinite_state_at_resync_then_resumes(loop_sim):
    """A NaN joint reading at the loop's resync used to raise out of `ControlLoop.step` (crashing the
    loop); now the loop holds, sends nothing, and resyncs on the first finite state."""
    sim = loop_sim(latency_s=0.1)
    sim.bridge._q[3] = np.nan  # a glitched encoder read before the first resync
    sim.run(0.2)
    assert sim.loop.hold_reason == "measured_state_nonfinite"
    assert all(c is None for _, c in sim.sent)  # nothing reached the robot while the state was bad
    assert sim.loop.safety.counters.rejected_nonfinite_state > 0
    sim.bridge._q[3] = 0.0
    sim.run(2.0)
    cmds = sim.commands()
    assert len(cmds) > 0 and np.all(np.isfinite(cmds))
    lim, rate = sim.limits, sim.loop.rate.hz
    assert np.all(cmds >= lim.lower - 1e-12) and np.all(cmds <= lim.upper + 1e-12)
    v = np.diff(cmds, axis=0) * rate
    a = np.diff(v, axis=0) * rate
    assert np.all(np.abs(v) <= lim.max_velocity * (1 + 1e-9))
    assert np.all(np.abs(a) <= lim.max_acceleration * (1 + 1e-6))
