import numpy as np
import pytest

from runtime.execution.chunk import TimedChunk, scale_arm, unscale_arm


def ramp_chunk(h=5, t0=10.0, dt=0.05):
    pos = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, 2))
    return TimedChunk(pos, t_obs=t0, t_start=t0, dt_s=dt)


def test_action_times_and_end():
    c = ramp_chunk()
    assert c.time_of(0) == 10.0
    assert c.time_of(3) == pytest.approx(10.15)
    assert c.t_end == pytest.approx(10.2)
    assert c.covers(10.2) and not c.covers(10.2001) and not c.covers(9.99)


def test_linear_interpolation_between_actions_exact():
    c = ramp_chunk()
    np.testing.assert_allclose(c.sample(10.0), [0, 0])
    np.testing.assert_allclose(c.sample(10.025), [0.5, 0.5])
    np.testing.assert_allclose(c.sample(10.1375), [2.75, 2.75])
    np.testing.assert_allclose(c.sample(10.2), [4, 4])
    assert c.sample(10.2001) is None  # past the last action: nothing to execute


def test_before_start_returns_first_action_and_hold_mode():
    c = ramp_chunk()
    np.testing.assert_allclose(c.sample(9.0), [0, 0])
    np.testing.assert_allclose(c.sample(10.09, "hold"), [1, 1])


def test_cubic_passes_through_actions_and_is_smooth_on_a_line():
    c = ramp_chunk()
    for i in range(5):
        np.testing.assert_allclose(c.sample(c.time_of(i), "cubic"), [i, i], atol=1e-12)
    # Catmull-Rom reproduces a straight line exactly away from the ends.
    np.testing.assert_allclose(c.sample(10.075, "cubic"), [1.5, 1.5], atol=1e-12)


def test_actions_past_counts_strictly_earlier_actions():
    c = ramp_chunk()
    assert c.actions_past(9.0) == 0
    assert c.actions_past(10.0) == 0
    assert c.actions_past(10.05) == 1
    assert c.actions_past(10.06) == 2
    assert c.actions_past(99.0) == 5


def test_truncated_keeps_first_n():
    c = ramp_chunk().truncated(2)
    assert c.horizon == 2 and c.t_end == pytest.approx(10.05)


def test_scale_unscale_match_upstream_formula():
    lower = np.array([-3.1, -2.268])
    upper = -lower
    x = np.array([[-1.0, 1.0], [0.0, 0.5]])
    q = scale_arm(x, lower, upper)
    np.testing.assert_allclose(q, [[-3.1, 2.268], [0.0, 0.5 * 1.5 * 4.536 - 2.268]])
    np.testing.assert_allclose(unscale_arm(q, lower, upper), x)
