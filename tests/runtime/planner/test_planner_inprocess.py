"""InProcessPlanner: same non-blocking contract as the ZMQ client (deadline, busy, cancel, late discard)."""

from __future__ import annotations

import threading
import time

import pytest

from runtime.planner.backend import VLMError
from runtime.planner.calls import LinkState
from runtime.planner.inprocess import InProcessPlanner
from runtime.planner.local_backend import LocalBackend


class GatedBackend:
    """Answers when released (or raises what it is told to)."""

    name = "gated"

    def __init__(self, error=None):
        self.gate = threading.Event()
        self.error = error
        self.calls = 0

    def run(self, request, deadline):
        self.calls += 1
        self.gate.wait(5.0)
        if self.error:
            raise self.error
        return {"completed": True, "reasoning": "gated"}

    def close(self):
        self.gate.set()


def test_answers_through_the_local_backend(head_image):
    with InProcessPlanner(LocalBackend()) as planner:
        call = planner.submit("bbox", {"head": head_image}, episode_id="e", timeout_s=5.0, instruction="the green ball")
        reply = call.wait(5.0)
    assert reply.ok and reply.result["label"] == "green ball" and reply.result["image_id"] == call.image_ids["head"]


def test_deadline_resolves_the_call_and_the_late_result_is_dropped(head_image):
    backend = GatedBackend()
    with InProcessPlanner(backend) as planner:
        t0 = time.monotonic()
        call = planner.submit("complete", {"head": head_image, "initial_head": head_image}, episode_id="e",
                              timeout_s=0.2, prompt="clear")
        assert call.reply() is None  # submit returned before any work was done
        reply = call.wait(2.0)
        assert reply.error_code == "timeout" and time.monotonic() - t0 < 1.5
        backend.gate.set()
        time.sleep(0.1)
        assert call.reply().error_code == "timeout"  # the backend's later answer did not replace it
        assert planner.state == LinkState.DEGRADED


def test_busy_and_cancel(head_image):
    backend = GatedBackend()
    with InProcessPlanner(backend, queue_size=1) as planner:
        images = {"head": head_image, "initial_head": head_image}
        first = planner.submit("complete", images, episode_id="old", timeout_s=5.0, prompt="x")
        time.sleep(0.05)  # the worker has taken `first`; the queue holds one more
        second = planner.submit("complete", images, episode_id="old", timeout_s=5.0, prompt="x")
        third = planner.submit("complete", images, episode_id="new", timeout_s=5.0, prompt="x")
        assert third.wait(1.0).error_code == "busy"
        assert planner.cancel_episode("old") == 2
        assert first.reply().error_code == "cancelled" and second.reply().error_code == "cancelled"
        backend.gate.set()


def test_backend_errors_become_codes(head_image):
    backend = GatedBackend(error=VLMError("HTTP 503"))
    backend.gate.set()
    with InProcessPlanner(backend) as planner:
        reply = planner.submit("complete", {"head": head_image, "initial_head": head_image}, episode_id="e",
                               timeout_s=2.0, prompt="x").wait(2.0)
    assert reply.error_code == "vlm_error" and "503" in reply.error_message


def test_bad_arguments_raise(head_image):
    with InProcessPlanner(LocalBackend()) as planner:
        with pytest.raises(ValueError, match="missing"):
            planner.submit("verify", {"head": head_image}, episode_id="e", timeout_s=1.0, instruction="x")
        with pytest.raises(ValueError, match="task must be"):
            planner.submit("dance", {}, episode_id="e", timeout_s=1.0)
