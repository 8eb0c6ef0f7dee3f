"""Timestamped latest-value mailbox: staleness, ordering and cross-thread wake-ups."""

import threading

import pytest

from runtime.clock import FakeClock
from runtime.errors import StaleDataError
from runtime.mailbox import Mailbox


def test_latest_raises_when_empty_then_returns_newest():
    clock = FakeClock(0.0)
    box = Mailbox("frames", clock)
    with pytest.raises(StaleDataError, match="frames.*no value"):
        box.latest()
    box.put("a", t_capture=0.0)
    box.put("b")
    item = box.latest()
    assert item.value == "b" and item.seq == 2 and item.t_capture == 0.0


def test_staleness_uses_capture_time_not_delivery_time():
    clock = FakeClock(100.0)
    box = Mailbox("mask", clock)
    box.put(1, t_capture=99.95)  # captured 50 ms before delivery
    assert box.latest(max_age_s=0.06).value == 1
    with pytest.raises(StaleDataError, match=r"mask.*50\.0 ms old.*max 40\.0 ms"):
        box.latest(max_age_s=0.04)
    clock.advance(1.0)
    assert box.peek().value == 1  # peek never raises
    assert isinstance(box.latest(max_age_s=None).value, int)


def test_wait_newer_wakes_on_put_from_another_thread():
    box = Mailbox("chunk")
    first = box.put("x")
    got = {}

    def consumer():
        got["item"] = box.wait_newer(first.seq, timeout_s=5.0)

    t = threading.Thread(target=consumer, name="consumer")
    t.start()
    box.put("y")
    t.join(timeout=5.0)
    assert not t.is_alive()
    assert got["item"].value == "y"


def test_wait_newer_times_out_with_none():
    box = Mailbox("state")
    box.put(0)
    assert box.wait_newer(1, timeout_s=0.01) is None


def test_clear_forgets_value():
    box = Mailbox("plan")
    box.put(1)
    box.clear()
    with pytest.raises(StaleDataError):
        box.latest()
