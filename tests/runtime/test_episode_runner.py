"""EpisodeRunner: planner calls polled (never awaited), frames attached, the box's own frame used for
the mask, stale frames and late answers handled. Deterministic with a FakeClock and a scripted planner;
plus an in-process end-to-end run with the local OpenCV backend on the synthetic scene."""

from __future__ import annotations

import time

import numpy as np
import pytest

from runtime.clock import Clock, FakeClock
from runtime.episode.machine import EpisodeConfig, HomeReached, Phase, TrackerReady
from runtime.episode.runner import EpisodeRunner
from runtime.mailbox import Mailbox
from runtime.planner.calls import LinkState, PlannerCall, PlannerReply


class ScriptedPlanner:
    """Records submissions; the test resolves calls when it wants (or never)."""

    state = LinkState.CONNECTED

    def __init__(self):
        self.calls: list[tuple[PlannerCall, dict, dict]] = []
        self.cancelled: list[str] = []

    def submit(self, task, images, *, episode_id, timeout_s, prompt=None, instruction=None):
        rid = f"r{len(self.calls) + 1}"
        call = PlannerCall(rid, episode_id, task, 0.0 + timeout_s, {r: f"{rid}-{r}" for r in images},
                           {r: (img.shape[1], img.shape[0]) for r, img in images.items()})
        self.calls.append((call, images, {"prompt": prompt, "instruction": instruction, "timeout_s": timeout_s}))
        return call

    def cancel_episode(self, episode_id):
        self.cancelled.append(episode_id)
        return 0

    def resolve(self, i, ok=True, **result):
        call = self.calls[i][0]
        call.resolve(PlannerReply(call.request_id, call.episode_id, call.task, ok, result=result,
                                  error_code=None if ok else "timeout"))


class FakeActuator:
    def __init__(self):
        self.log: list = []
        self.pending: list = []

    def init_tracker(self, image, box, image_id):
        self.log.append(("init_tracker", image, box, image_id))

    def enable_controller(self):
        self.log.append(("enable",))

    def disable_controller(self):
        self.log.append(("disable",))

    def reset_arm(self, place):
        self.log.append(("reset", place))

    def request_operator_box(self, image):
        self.log.append(("operator_box", image is not None))

    def episode_ended(self, outcome, reason):
        self.log.append(("ended", outcome, reason))

    def poll(self, now):
        out, self.pending = self.pending, []
        return out


def frame(value, shape=(480, 640, 3)):
    return np.full(shape, value, np.uint8)


@pytest.fixture
def rig():
    clock = FakeClock(100.0)
    head, wrist = Mailbox("head", clock), Mailbox("wrist", clock)
    planner, actuator = ScriptedPlanner(), FakeActuator()
    cfg = EpisodeConfig(planner_timeout_s=4.0, planner_retries=0, verify_settle_s=0.0)
    runner = EpisodeRunner(planner, actuator, head, wrist, clock, cfg, max_frame_age_s=0.5)
    return clock, head, wrist, planner, actuator, runner


def test_runner_attaches_frames_and_inits_tracker_on_the_boxes_own_frame(rig):
    clock, head, wrist, planner, actuator, runner = rig
    head.put(frame(1))
    wrist.put(frame(9))
    runner.start("put the red cube away")
    runner.tick()
    call, images, text = planner.calls[0]
    assert call.task == "complete" and call.episode_id == "ep-1" and text["timeout_s"] == 4.0
    assert images["initial_head"][0, 0, 0] == 1 and images["head"][0, 0, 0] == 1
    # Nothing resolved: ticks return without waiting.
    t0 = time.monotonic()
    for _ in range(5):
        clock.advance(0.05)
        head.put(frame(2))
        assert runner.tick() == []
    assert time.monotonic() - t0 < 1.0
    planner.resolve(0, completed=False, reasoning="")
    runner.tick()
    assert planner.calls[1][0].task == "instruction" and planner.calls[1][1]["initial_head"][0, 0, 0] == 1
    planner.resolve(1, instruction="pick up the red cube")
    runner.tick()
    bbox_call, bbox_images, _ = planner.calls[2]
    assert bbox_call.task == "bbox" and bbox_images["head"][0, 0, 0] == 2
    head.put(frame(3))  # the scene moves on while the planner thinks
    planner.resolve(2, bbox=[10, 20, 60, 80], label="red cube", image_id=bbox_call.image_ids["head"],
                    image_size=[640, 480])
    runner.tick()
    (_, image, box, image_id), = [e for e in actuator.log if e[0] == "init_tracker"]
    assert box == (10, 20, 60, 80) and image_id == bbox_call.image_ids["head"]
    assert image[0, 0, 0] == 2  # the frame the box was found in, not the newest one
    actuator.pending.append(TrackerReady(True))
    runner.tick()
    assert actuator.log[-1] == ("enable",) and runner.machine.phase == Phase.GRASPING
    assert runner.status()["planner_link"] == "connected"


def test_stale_frames_are_an_explicit_planner_failure(rig):
    clock, head, wrist, planner, actuator, runner = rig
    head.put(frame(1))
    clock.advance(2.0)  # the head frame is now 2 s old
    runner.start("put the red cube away")
    runner.tick()
    assert planner.calls == []  # nothing was sent with an old frame
    runner.tick()
    assert runner.machine.phase == Phase.ENDED and runner.machine.outcome == "planner_failed"
    assert "no initial_head frame newer than 0.5 s" in runner.machine.reason
    assert actuator.log[-1][0] == "ended"


def test_new_episode_cancels_the_old_ones_calls_and_ignores_their_answers(rig):
    clock, head, wrist, planner, actuator, runner = rig
    head.put(frame(1))
    runner.start("a cube")
    runner.tick()
    runner.abort("operator stop")
    runner.tick()
    actuator.pending.append(HomeReached())
    runner.tick()
    assert runner.machine.outcome == "aborted" and "ep-1" in planner.cancelled
    planner.resolve(0, completed=True, reasoning="late answer")  # arrives after the episode ended
    head.put(frame(2))
    runner.start("b ball")
    runner.tick()
    assert runner.episode_id == "ep-2" and runner.machine.phase == Phase.CHECKING_COMPLETE
    assert planner.calls[-1][0].episode_id == "ep-2"


def scene_frames():
    from runtime.cameras.scene import HeadRenderer, TabletopScene, WristRenderer

    scene = TabletopScene()
    snap = scene.snapshot()
    labels = np.zeros((480, 640), np.int32)
    head = HeadRenderer().render(snap, labels)
    wrist = WristRenderer().render(snap)
    return scene, head, wrist, labels


def test_end_to_end_in_process_local_backend_finds_the_red_cube():
    from runtime.planner.inprocess import InProcessPlanner
    from runtime.planner.local_backend import LocalBackend

    scene, head_img, wrist_img, labels = scene_frames()
    clock = Clock()
    head, wrist = Mailbox("head", clock), Mailbox("wrist", clock)
    actuator = FakeActuator()
    with InProcessPlanner(LocalBackend(), clock) as planner:
        runner = EpisodeRunner(planner, actuator, head, wrist, clock, EpisodeConfig(planner_timeout_s=5.0),
                               max_frame_age_s=5.0)
        head.put(head_img)
        wrist.put(wrist_img)
        runner.start("grasp the red block")
        deadline = time.monotonic() + 10.0
        while runner.machine.phase != Phase.INIT_MASK and time.monotonic() < deadline:
            runner.tick()
            time.sleep(0.005)
    assert runner.machine.phase == Phase.INIT_MASK, runner.machine.status()
    assert runner.machine.instruction.startswith("pick up the red cube")
    x1, y1, x2, y2 = runner.machine.box
    truth = labels == scene.labels["red cube"]
    ys, xs = np.nonzero(truth)
    gx1, gy1, gx2, gy2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    inter = max(0, min(x2, gx2) - max(x1, gx1)) * max(0, min(y2, gy2) - max(y1, gy1))
    union = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter
    assert inter / union > 0.8


def test_runner_thread_and_planner_lifecycle():
    from runtime.planner.inprocess import InProcessPlanner
    from runtime.planner.local_backend import LocalBackend

    _, head_img, wrist_img, _ = scene_frames()
    clock = Clock()
    head, wrist = Mailbox("head", clock), Mailbox("wrist", clock)
    planner = InProcessPlanner(LocalBackend(), clock)
    runner = EpisodeRunner(planner, FakeActuator(), head, wrist, clock, EpisodeConfig(), max_frame_age_s=30.0)
    head.put(head_img)
    wrist.put(wrist_img)
    runner.start_threads()
    try:
        runner.start("pick up the green ball")
        deadline = time.monotonic() + 10.0
        while runner.machine.phase != Phase.INIT_MASK and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.machine.phase == Phase.INIT_MASK and "green ball" in runner.machine.instruction
        assert runner.status()["planner_link"] == "connected"
    finally:
        runner.stop()
    assert not runner._thread.is_alive() and planner.state == LinkState.STOPPED


def test_manual_mode_takes_the_operator_box_only_when_waiting_for_one(rig):
    clock, head, wrist, planner, actuator, runner = rig
    head.put(frame(5))
    assert runner.operator_box((10, 20, 60, 80)) is False  # no episode: nothing posted
    runner.start("", manual=True)
    runner.tick()
    assert actuator.log[-1] == ("operator_box", True) and runner.machine.phase == Phase.AWAIT_OPERATOR_BOX
    assert runner.operator_box((10, 20, 60, 80)) is True
    runner.tick()
    (_, image, box, image_id), = [e for e in actuator.log if e[0] == "init_tracker"]
    assert box == (10, 20, 60, 80) and image_id is None and image is None
    assert planner.calls == []  # manual mode never asks the planner


def test_planner_prompts_and_replies_reach_the_observers(rig):
    """The recorder's events.jsonl and the status topic see every planner request (with the user prompt /
    instruction) and every reply (with what the planner said, or why it failed)."""
    clock, head, wrist, planner, actuator, runner = rig
    seen: list[dict] = []
    runner.on_event = seen.append
    head.put(frame(1))
    wrist.put(frame(9))
    runner.start("put the red cube away")
    runner.tick()
    planner.resolve(0, completed=False, reasoning="the cube is still on the table")
    runner.tick()
    planner.resolve(1, ok=False)
    runner.tick()
    requests = [e for e in seen if e["event"] == "planner request"]
    replies = [e for e in seen if e["event"] == "planner reply"]
    assert [r["task"] for r in requests][:2] == ["complete", "instruction"]
    assert requests[0]["prompt"] == "put the red cube away" and requests[0]["episode_id"] == "ep-1"
    assert requests[0]["request_id"] == "r1" and set(requests[0]["images"]) == {"initial_head", "head"}
    assert replies[0] == {"source": "planner", "event": "planner reply", "episode_id": "ep-1", "request_id": "r1",
                          "task": "complete", "ok": True, "error_code": None, "error_message": "", "rtt_s": None,
                          "result": {"completed": False, "reasoning": "the cube is still on the table"}}
    assert replies[1]["task"] == "instruction" and replies[1]["ok"] is False and replies[1]["error_code"] == "timeout"


def test_a_stale_frame_failure_is_logged_as_a_planner_reply(rig):
    clock, head, wrist, planner, actuator, runner = rig
    seen: list[dict] = []
    runner.on_event = seen.append
    head.put(frame(1))
    clock.advance(2.0)
    runner.start("a cube")
    runner.tick()
    (reply,) = [e for e in seen if e["event"] == "planner reply"]
    assert reply["ok"] is False and reply["error_code"] == "stale" and "newer than 0.5 s" in reply["error_message"]
