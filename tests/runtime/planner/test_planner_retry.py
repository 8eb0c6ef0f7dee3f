"""Retry scheduling inside a deadline, against a real HTTP stand-in VLM that fails every other call.

The backend runs on a FakeClock: only the clock decides how much of the budget is left, so each
case has exactly one outcome (the HTTP round trips take real time but no fake time).
"""

from __future__ import annotations

import pytest

from runtime.clock import FakeClock
from runtime.planner import wire
from runtime.planner.backend import PlannerTimeoutError, VLMError
from runtime.planner.images import encode_image
from runtime.planner.replies import ReplyError
from runtime.planner.retry import retry_wait
from runtime.planner.vlm_backend import VLMBackend
from runtime.planner.vlm_http import OpenAIChatClient

BOX = '{"bbox_2d": [100, 200, 150, 250], "label": "red cube"}'


class RecordingClock(FakeClock):
    """A FakeClock that remembers every sleep target."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.sleeps: list[float] = []

    def sleep_until(self, deadline: float, spin_s: float = 0.0) -> None:
        self.sleeps.append(deadline)
        super().sleep_until(deadline)


def backend(url, clock, **kw):
    kw.setdefault("backoff_s", 0.2)
    kw.setdefault("min_attempt_s", 0.5)
    return VLMBackend(OpenAIChatClient(url, model="fake-vl"), clock=clock, max_attempts=3, **kw)


def bbox_request(head, timeout_s):
    return wire.TaskRequest("r1", "e1", "bbox", timeout_s, {"head": encode_image(head, image_id="img-head")},
                            instruction="the red cube")


@pytest.fixture
def flaky(fake_vlm):
    fake_vlm.default = ("alternate", 500, BOX)  # 1st call HTTP 500, 2nd answers, 3rd 500, ...
    return fake_vlm


def test_ample_budget_retries_after_the_full_backoff(flaky, head_image):
    clock = RecordingClock()
    out = backend(flaky.url, clock).run(bbox_request(head_image, 1.0), deadline=1.0)
    assert out["bbox"] == [100, 200, 150, 250] and out["attempts"] == 2
    assert clock.sleeps == [pytest.approx(0.2)]


def test_backoff_is_shortened_so_the_retry_keeps_min_attempt_s(flaky, head_image):
    # 0.6 s budget: a 0.2 s backoff would leave 0.4 s (< 0.5 s); waiting 0.1 s leaves exactly 0.5 s.
    clock = RecordingClock()
    out = backend(flaky.url, clock).run(bbox_request(head_image, 0.6), deadline=0.6)
    assert out["attempts"] == 2 and flaky.posts == 2
    assert clock.sleeps == [pytest.approx(0.1)]
    assert all(t <= 0.6 - 0.5 + 1e-9 for t in clock.sleeps)


def test_no_time_for_a_retry_reports_the_real_error_at_once(flaky, head_image):
    # 0.3 s budget: less than an attempt is given, so no doomed retry; the caller learns "HTTP 500".
    clock = RecordingClock()
    with pytest.raises(VLMError, match=r"HTTP 500.*no attempt 2/3: 0\.30 s left") as info:
        backend(flaky.url, clock).run(bbox_request(head_image, 0.3), deadline=0.3)
    assert not isinstance(info.value, PlannerTimeoutError)
    assert flaky.posts == 1 and clock.sleeps == []


def test_retry_after_that_leaves_too_little_time_is_not_waited(fake_vlm, head_image):
    fake_vlm.push(("status", 429, 0.4), ("good", BOX))
    clock = RecordingClock()
    with pytest.raises(VLMError, match=r"HTTP 429.*asked to wait 0\.4 s \(Retry-After\)"):
        backend(fake_vlm.url, clock).run(bbox_request(head_image, 0.6), deadline=0.6)
    assert fake_vlm.posts == 1 and clock.sleeps == []


@pytest.mark.parametrize("error, left, expected", [
    (VLMError("HTTP 500"), 10.0, 0.4),             # attempt 2 done: backoff 0.2 * 2
    (VLMError("HTTP 500"), 0.7, pytest.approx(0.2)),  # shortened to keep 0.5 s
    (VLMError("HTTP 500"), 0.5, 0.0),              # exactly one attempt's time left: retry at once
    (ReplyError("box is reversed"), 0.5, 0.0),     # invalid replies retry at once
    (VLMError("HTTP 500"), 0.49, None),            # no time for a retry
    (PlannerTimeoutError("slow"), 0.1, None),
])
def test_retry_wait_rule(error, left, expected):
    wait, note = retry_wait(error, 2, 3, left, backoff_s=0.2, min_attempt_s=0.5)
    assert wait == expected
    assert (note != "") == (expected is None)


def test_no_retry_after_the_last_attempt():
    assert retry_wait(VLMError("HTTP 500"), 3, 3, 100.0, 0.2, 0.5) == (None, "")
