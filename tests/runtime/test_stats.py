"""Bounded latency statistics."""

import numpy as np
import pytest

from runtime.stats import LatencyStats


def test_percentiles_match_numpy_on_known_samples():
    s = LatencyStats(capacity=1000)
    data = np.arange(1, 101, dtype=float) / 1000.0  # 1..100 ms
    for x in data:
        s.add(x)
    summ = s.summary_ms()
    assert summ["count"] == 100
    assert summ["p50"] == pytest.approx(np.percentile(data, 50) * 1e3)
    assert summ["p99"] == pytest.approx(np.percentile(data, 99) * 1e3)
    assert summ["max"] == pytest.approx(100.0)


def test_ring_keeps_newest_samples_but_whole_run_max_and_count():
    s = LatencyStats(capacity=4)
    for x in [9.0, 1.0, 2.0, 3.0, 4.0, 5.0]:
        s.add(x)
    assert list(s.samples()) == [2.0, 3.0, 4.0, 5.0]
    assert s.count == 6
    assert s.summary()["max"] == 9.0


def test_empty_summary_has_no_numbers():
    assert LatencyStats().summary()["p50"] is None
    with pytest.raises(ValueError):
        LatencyStats(0)
