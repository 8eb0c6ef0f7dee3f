import numpy as np
import pytest

from runtime.execution.blending import ChunkBlender
from runtime.execution.chunk import TimedChunk


def const_chunk(value, t0, h=10, dt=0.1):
    return TimedChunk(np.full((h, 1), float(value)), t_obs=t0, t_start=t0, dt_s=dt)


def test_latest_switches_immediately():
    b = ChunkBlender("latest")
    b.add(const_chunk(0, 0.0), 0.0)
    b.add(const_chunk(1, 0.3), 0.35)
    assert b.sample(0.35)[0] == 1.0


def test_crossfade_ramps_linearly_over_window():
    b = ChunkBlender("crossfade", crossfade_s=0.2)
    b.add(const_chunk(0, 0.0), 0.0)
    b.add(const_chunk(1, 0.3), 0.4)
    assert b.sample(0.4)[0] == pytest.approx(0.0)
    assert b.sample(0.45)[0] == pytest.approx(0.25)
    assert b.sample(0.5)[0] == pytest.approx(0.5)
    assert b.sample(0.6)[0] == pytest.approx(1.0)
    assert b.sample(0.65)[0] == pytest.approx(1.0)


def test_crossfade_ends_when_old_chunk_runs_out():
    b = ChunkBlender("crossfade", crossfade_s=1.0)
    b.add(const_chunk(0, 0.0, h=5), 0.0)  # ends at 0.4
    b.add(const_chunk(1, 0.3), 0.35)
    assert 0.0 < b.sample(0.36)[0] < 0.1
    assert b.sample(0.41)[0] == 1.0


def test_weighted_prefers_newer_observation():
    b = ChunkBlender("weighted", weighted_decay_per_s=np.log(3.0) / 0.5)
    b.add(const_chunk(0, 0.0), 0.0)
    b.add(const_chunk(1, 0.5), 0.6)
    # weights 1/3 (old) and 1 (new): (0*1/3 + 1*1) / (4/3) = 0.75
    assert b.sample(0.6)[0] == pytest.approx(0.75)


def test_stale_chunks_are_not_sampled():
    b = ChunkBlender("latest")
    b.add(const_chunk(2, 0.0), 0.0)
    assert b.sample(0.5, max_action_age_s=0.4) is None
    assert b.newest is None


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match="blend mode"):
        ChunkBlender("average")
