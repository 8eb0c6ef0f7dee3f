"""The one rate helper, driven by a FakeClock with exact assertions."""

import math

import pytest

from runtime.clock import FakeClock
from runtime.rate import Rate


def test_deadlines_are_absolute_and_do_not_drift():
    clock = FakeClock(10.0)
    rate = Rate(100.0, clock)
    assert rate.sleep().deadline == 10.0
    for k in range(1, 6):
        clock.advance(0.0031)  # work shorter than the period, with an awkward length
        tick = rate.sleep()
        assert tick.index == k
        assert tick.deadline == pytest.approx(10.0 + k * 0.01, abs=1e-12)
        assert clock.now() == pytest.approx(tick.deadline, abs=1e-12)
        assert tick.skipped == 0
    assert rate.missed_cycles == 0


def test_overrun_skips_missed_cycles_instead_of_bursting():
    clock = FakeClock(0.0)
    rate = Rate(100.0, clock)
    rate.sleep()
    clock.advance(0.0355)  # the cycle ran 3.55 periods: deadlines 0.01, 0.02, 0.03 are gone
    tick = rate.sleep()
    assert tick.skipped == 2
    assert tick.index == 3
    assert tick.deadline == pytest.approx(0.03)
    assert tick.lateness_s == pytest.approx(0.0055)
    assert rate.missed_cycles == 2
    nxt = rate.sleep()  # the schedule continues on the original grid
    assert nxt.index == 4
    assert nxt.deadline == pytest.approx(0.04)
    assert nxt.skipped == 0


def test_late_within_one_period_is_lateness_not_a_miss():
    clock = FakeClock(0.0)
    rate = Rate(50.0, clock)
    rate.sleep()
    clock.advance(0.025)  # 5 ms past the 20 ms deadline, before the next one
    tick = rate.sleep()
    assert tick.skipped == 0
    assert tick.lateness_s == pytest.approx(0.005)
    assert rate.missed_cycles == 0


def test_report_counts_rate_and_misses():
    clock = FakeClock(0.0)
    rate = Rate(200.0, clock)
    for _ in range(201):
        rate.sleep()
    rep = rate.report()
    assert rep["rate_hz_target"] == 200.0
    assert rep["rate_hz_achieved"] == pytest.approx(200.0)
    assert rep["missed_cycles"] == 0
    assert rep["lateness_us"]["max"] == pytest.approx(0.0, abs=1e-6)


def test_reset_restarts_schedule():
    clock = FakeClock(0.0)
    rate = Rate(10.0, clock)
    rate.sleep()
    clock.advance(5.0)
    rate.reset()
    tick = rate.sleep()
    assert tick.index == 0 and tick.deadline == 5.0 and rate.missed_cycles == 0


@pytest.mark.parametrize("hz", [0, -1, math.nan, math.inf, "fast"])
def test_invalid_rate_is_rejected_with_the_value(hz):
    with pytest.raises(ValueError, match="hz must be a positive finite number"):
        Rate(hz, FakeClock())


def test_fake_clock_never_goes_backwards():
    clock = FakeClock(1.0)
    with pytest.raises(ValueError):
        clock.advance(-0.1)
    with pytest.raises(ValueError):
        clock.set(0.5)
