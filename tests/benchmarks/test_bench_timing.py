"""Timing helper statistics on synthetic samples: deterministic, no wall-clock asserts."""

import math

import numpy as np
import pytest

from benchmarks.common.timing import measure, ratio, summarize


def test_summarize_percentiles_on_known_samples():
    s = summarize(np.arange(1, 101, dtype=float), unit="s")
    assert s["count"] == 100
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert (s["min"], s["max"]) == (1.0, 100.0)
    assert s["mean"] == pytest.approx(50.5)
    assert s["std"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))


def test_summarize_converts_units_and_ignores_order():
    samples_s = [0.003, 0.001, 0.002]
    ms = summarize(samples_s, unit="ms")
    us = summarize([x * 1e6 for x in samples_s], unit="ms", from_unit="us")
    assert ms["p50"] == pytest.approx(2.0)
    assert ms["max"] == pytest.approx(3.0)
    for key in ("p50", "p90", "p99", "max", "min", "mean"):
        assert us[key] == pytest.approx(ms[key])
    assert ms["unit"] == "ms"


def test_summarize_empty_is_none_not_zero():
    s = summarize([], unit="ms")
    assert s["count"] == 0
    assert s["p50"] is None and s["max"] is None


def test_summarize_rejects_non_finite_and_unknown_units():
    with pytest.raises(ValueError, match="not finite"):
        summarize([0.1, math.nan])
    with pytest.raises(ValueError, match="unknown unit"):
        summarize([0.1], unit="minutes")


class ScriptedClock:
    """Returns t, t+step, t+2*step... and counts calls, so measure's arithmetic is exact."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.t = 0.0
        self.calls = 0

    def __call__(self):
        self.calls += 1
        self.t += self.steps.pop(0) if self.steps else 0.0
        return self.t


def test_measure_runs_warmups_untimed_then_repeats():
    calls = []
    # Each timed call reads the clock twice: start (advance 0) and end (advance by the call's "duration").
    clock = ScriptedClock([0, 0.010, 0, 0.020, 0, 0.030])
    t = measure(lambda: calls.append(1), repeats=3, warmup=2, clock=clock)
    assert len(calls) == 5  # 2 warm-ups + 3 timed
    assert clock.calls == 6  # warm-ups are not timed
    np.testing.assert_allclose(t.samples_s, [0.010, 0.020, 0.030])
    assert t.warmup == 2
    assert t.summary("ms")["p50"] == pytest.approx(20.0)


def test_measure_extends_until_min_time_but_caps():
    clock = ScriptedClock([0, 0.1] * 100)
    t = measure(lambda: None, repeats=2, warmup=0, min_time_s=0.45, clock=clock)
    assert t.samples_s.size == 5  # 0.1 s each: the 5th call brings the total to 0.5 >= 0.45
    clock = ScriptedClock([0, 0.1] * 100)
    t = measure(lambda: None, repeats=2, warmup=0, min_time_s=10.0, max_repeats=4, clock=clock)
    assert t.samples_s.size == 4


def test_measure_validates_arguments_and_propagates_errors():
    with pytest.raises(ValueError, match="repeats"):
        measure(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="max_repeats"):
        measure(lambda: None, repeats=5, max_repeats=2)

    def broken():
        raise RuntimeError("backend failed")

    with pytest.raises(RuntimeError, match="backend failed"):
        measure(broken, repeats=1, warmup=0)


def test_timing_to_dict_includes_samples_on_request():
    clock = ScriptedClock([0, 0.002, 0, 0.004])
    d = measure(lambda: None, name="op", repeats=2, warmup=0, clock=clock).to_dict("us", include_samples=True)
    assert d["name"] == "op" and d["count"] == 2 and d["unit"] == "us"
    assert d["samples_us"] == pytest.approx([2000.0, 4000.0])


def test_ratio_handles_missing_and_zero():
    assert ratio(6.0, 2.0) == 3.0
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None
    assert ratio(math.inf, 1.0) is None
