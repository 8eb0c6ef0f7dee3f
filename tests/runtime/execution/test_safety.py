import numpy as np
import pytest

from runtime.execution.safety import JointLimits, SafetyFilter

DT = 0.005


def make(vmax=1.0, amax=8.0, n=2):
    lim = JointLimits(np.full(n, -1.5), np.full(n, 1.5), np.full(n, vmax), np.full(n, amax))
    f = SafetyFilter(lim, DT)
    f.reset(np.zeros(n))
    return f


def run(f, targets):
    return np.array([f.apply(t)[0] for t in targets])


def test_first_step_is_acceleration_limited_exactly():
    f = make()
    q, ok = f.apply(np.array([1.0, -1.0]))
    assert ok
    np.testing.assert_allclose(q, [8.0 * DT * DT, -8.0 * DT * DT])


def test_step_target_respects_velocity_and_acceleration_and_settles():
    f = make()
    qs = run(f, [np.array([1.0, -0.3])] * 600)
    v = np.diff(np.vstack([np.zeros(2), qs]), axis=0) / DT
    a = np.diff(v, axis=0) / DT
    assert np.abs(v).max() <= 1.0 + 1e-9
    assert np.abs(a).max() <= 8.0 + 1e-6
    np.testing.assert_allclose(qs[-1], [1.0, -0.3], atol=1e-9)
    assert qs[:, 0].max() < 1.0 + 0.01  # approaches without a large overshoot
    assert f.counters.limited_velocity > 0 and f.counters.limited_acceleration > 0
    assert f.counters.largest_step == pytest.approx([1.0 * DT, 1.0 * DT])
    assert f.counters.largest_step_requested == pytest.approx(1.0)


def test_smooth_trajectory_within_limits_is_followed_exactly():
    f = make()
    t = np.arange(400) * DT
    traj = np.stack([0.3 * (1 - np.cos(t)), 0.1 * (1 - np.cos(2 * t))], axis=1)  # starts at rest
    out = run(f, traj)
    np.testing.assert_allclose(out, traj, atol=1e-12)
    assert f.counters.limited_velocity == 0 and f.counters.clamped_position == 0


def test_position_clamped_to_limits():
    f = make(vmax=1e3, amax=1e6)
    out = run(f, [np.array([5.0, -5.0])] * 200)
    np.testing.assert_allclose(out[-1], [1.5, -1.5])
    assert f.counters.clamped_position == 200


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_target_is_rejected_and_robot_holds(bad):
    f = make()
    run(f, [np.array([0.1, 0.1])] * 100)
    before = f.position
    q, ok = f.apply(np.array([bad, 0.1]))
    assert not ok
    assert np.all(np.isfinite(q))
    assert f.counters.rejected_nonfinite == 1
    np.testing.assert_allclose(q, before, atol=1e-12)  # already at rest: holds exactly


def test_hold_while_moving_decelerates_within_limits_without_turning_back():
    f = make()
    run(f, [np.array([k * DT * 0.9, 0.0]) for k in range(300)])  # moving at 0.9 rad/s
    q0 = f.position[0]
    out = run(f, [None] * 200)[:, 0]
    steps = np.diff(np.concatenate([[q0], out]))
    assert np.all(steps >= -1e-12)  # never reverses
    v = steps / DT
    assert np.abs(np.diff(v)).max() / DT <= 8.0 + 1e-6
    assert out[-1] == pytest.approx(q0 + 0.9**2 / (2 * 8.0), abs=0.9 * DT)
    assert out[-1] == out[-2]  # at rest


def test_apply_before_reset_raises():
    lim = JointLimits(np.zeros(1) - 1, np.ones(1), np.ones(1), np.ones(1))
    with pytest.raises(RuntimeError, match="reset"):
        SafetyFilter(lim, DT).apply(np.zeros(1))
