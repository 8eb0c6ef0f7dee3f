import math

import numpy as np
import pytest

from runtime.execution.chunk import TimedChunk
from runtime.execution.executor import ChunkExecutor

DT = 0.05


def chunk(t_obs, t_ready, h=64, value=None, seq=1):
    pos = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, 13)) if value is None else np.full((h, 13), value)
    return TimedChunk(pos, t_obs=t_obs, t_start=t_obs, dt_s=DT, seq=seq, t_ready=t_ready)


def make(**kw):
    args = dict(n_joints=13, action_dt_s=DT, blend="latest", max_action_age_s=3.3, request_margin_s=0.3,
                initial_latency_estimate_s=2.0)
    args.update(kw)
    return ChunkExecutor(**args)


def test_executes_action_for_now_and_drops_past_actions():
    ex = make()
    assert ex.offer(chunk(t_obs=10.0, t_ready=11.0), now=11.0)
    # 1.0 s after the observation is action 20; actions 0..19 were never sent.
    np.testing.assert_allclose(ex.setpoint(11.0), np.full(13, 20.0))
    np.testing.assert_allclose(ex.setpoint(11.025), np.full(13, 20.5))
    assert ex.counters.actions_dropped_late == 19


def test_requests_next_chunk_early_from_measured_latency():
    ex = make()
    assert ex.should_request(0.0, in_flight=False)  # nothing yet
    ex.offer(chunk(t_obs=10.0, t_ready=11.0), now=11.0)  # measured latency 1.0 s
    assert ex.latency_estimate_s() == pytest.approx(1.0)
    t_end = 10.0 + 63 * DT  # 13.15
    # request when (latency 1.0 + margin 0.3) is left: at 11.85
    assert not ex.should_request(11.84, in_flight=False)
    assert ex.should_request(11.85, in_flight=False)
    assert not ex.should_request(11.85, in_flight=True)
    assert t_end - 1.3 == pytest.approx(11.85)


def test_chunk_requested_early_lands_before_old_runs_out_so_no_starvation():
    ex = make(blend="crossfade", crossfade_steps=4)
    latency = 1.0
    ex.offer(chunk(0.0, latency, seq=1), latency)
    t, seq, pending = latency, 1, None
    while t < 20.0:
        if pending is not None and t >= pending[1]:
            assert ex.offer(chunk(pending[0], pending[1], seq=seq), t)
            pending = None
        assert ex.setpoint(t) is not None, f"starved at t={t}"
        if pending is None and ex.should_request(t, in_flight=False):
            seq += 1
            pending = (t, t + latency)
        t = round(t + 0.005, 6)
    assert ex.counters.starved_cycles == 0
    assert ex.counters.chunks_accepted >= 9


def test_nonfinite_chunk_rejected_and_previous_kept():
    ex = make()
    ex.offer(chunk(0.0, 0.5, value=0.1), 0.5)
    bad = chunk(0.6, 1.0, value=0.2)
    bad.positions[10, 3] = np.nan
    assert not ex.offer(bad, 1.0)
    assert "non-finite" in ex.last_reject_reason
    assert ex.counters.chunks_rejected_nonfinite == 1
    np.testing.assert_allclose(ex.setpoint(1.0), np.full(13, 0.1))


def test_wrong_shape_rejected():
    ex = make()
    c = TimedChunk(np.zeros((64, 12)), 0.0, 0.0, DT)
    assert not ex.offer(c, 0.1)
    assert ex.counters.chunks_rejected_shape == 1


def test_chunk_older_than_limit_never_executed():
    ex = make(max_action_age_s=1.0)
    # 5x overrun: the chunk arrives 1.5 s after its observation -> rejected, hold.
    assert not ex.offer(chunk(0.0, 1.5), 1.5)
    assert ex.counters.chunks_rejected_stale == 1
    assert ex.setpoint(1.5) is None
    # A chunk in time is used, then expires at t_obs + 1.0 even though it has actions left.
    assert ex.offer(chunk(2.0, 2.5), 2.5)
    assert ex.setpoint(3.0) is not None
    assert ex.setpoint(3.0001) is None
    assert ex.counters.starved_cycles == 2


def test_upstream_mode_runs_first_n_from_arrival_then_requests():
    ex = make(mode="upstream", upstream_execute_n=6)
    assert ex.offer(chunk(0.0, 2.0), 2.0)
    # action 0 at arrival, action 5 at arrival + 0.25 s
    np.testing.assert_allclose(ex.setpoint(2.0), np.zeros(13))
    np.testing.assert_allclose(ex.setpoint(2.25), np.full(13, 5.0))
    assert not ex.should_request(2.25, in_flight=False)
    assert ex.setpoint(2.2501) is None
    assert ex.should_request(2.2501, in_flight=False)


def test_latency_estimate_uses_percentile():
    ex = make(latency_percentile=50.0)
    for i, lat in enumerate([1.0, 2.0, 3.0]):
        ex.offer(chunk(10.0 * i, 10.0 * i + lat, seq=i), 10.0 * i + lat)
    assert ex.latency_estimate_s() == pytest.approx(2.0)
    assert math.isclose(make().latency_estimate_s(), 2.0)


def test_auto_mode_runs_late_chunks_from_arrival_within_age_limit():
    ex = make(mode="auto", late_execute_n=10, max_action_age_s=8.0)
    # in time: behaves as timed
    assert ex.offer(chunk(0.0, 1.0, seq=1), 1.0)
    np.testing.assert_allclose(ex.setpoint(1.0), np.full(13, 20.0))
    # 5 s late (> 3.15 s horizon): runs actions 0..9 from arrival
    assert ex.offer(chunk(10.0, 15.0, seq=2), 15.0)
    assert ex.counters.chunks_from_arrival == 1
    np.testing.assert_allclose(ex.setpoint(15.0), np.zeros(13))
    np.testing.assert_allclose(ex.setpoint(15.45), np.full(13, 9.0))
    assert ex.setpoint(15.46) is None
    # older than the age limit: still rejected
    assert not ex.offer(chunk(20.0, 28.5, seq=3), 28.5)
    assert ex.counters.chunks_rejected_stale == 1
