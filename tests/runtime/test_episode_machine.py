"""The episode state machine, driven with exact times and exact action lists (no threads, no clock)."""

from __future__ import annotations

import pytest

from runtime.episode.machine import (
    PLANNER_GRACE_S,
    Abort,
    DisableController,
    EnableController,
    EpisodeConfig,
    EpisodeEnded,
    EpisodeMachine,
    GraspSignal,
    HomeReached,
    InitTracker,
    OperatorBox,
    OperatorEndGrasp,
    Phase,
    PlannerAnswer,
    RequestOperatorBox,
    RequestPlanner,
    ResetArm,
    SnapshotInitialImage,
    Start,
    TrackerLost,
    TrackerReady,
)
from runtime.errors import ConfigError
from runtime.planner.calls import PlannerReply


def ok(task, **result):
    return PlannerReply("r", "e", task, True, result=result)


def err(task, code="timeout", message="deadline"):
    return PlannerReply("r", "e", task, False, error_code=code, error_message=message)


def answer(actions, reply):
    """PlannerAnswer for the single RequestPlanner in `actions`."""
    (req,) = [a for a in actions if isinstance(a, RequestPlanner)]
    assert req.task == reply.task
    return PlannerAnswer(req.token, reply)


CFG = EpisodeConfig(planner_timeout_s=5.0, planner_retries=1, max_grasp_duration_s=20.0, max_verify_failures=2,
                    max_failed_attempts=2, max_episode_duration_s=300.0, verify_settle_s=0.5,
                    verify_interval_s=1.0, tracker_init_timeout_s=3.0, reset_timeout_s=10.0)
BOX = {"bbox": [100, 200, 150, 250], "label": "red cube", "image_id": "img-7", "image_size": [640, 480]}


def to_grasping(m, t=0.0):
    """Start -> complete? no -> instruction -> bbox -> tracker ready; returns the time reached."""
    acts = m.step(t, [Start("put the red cube away")])
    assert acts == [SnapshotInitialImage(), RequestPlanner(1, "complete", prompt="put the red cube away")]
    acts = m.step(t + 1, [answer(acts, ok("complete", completed=False, reasoning=""))])
    assert acts == [RequestPlanner(2, "instruction", prompt="put the red cube away")]
    acts = m.step(t + 2, [answer(acts, ok("instruction", instruction="pick up the red cube"))])
    assert acts == [RequestPlanner(3, "bbox", instruction="pick up the red cube")]
    acts = m.step(t + 3, [answer(acts, ok("bbox", **BOX))])
    assert acts == [InitTracker((100, 200, 150, 250), "img-7")]
    assert m.phase == Phase.INIT_MASK
    acts = m.step(t + 3.5, [TrackerReady(True)])
    assert acts == [EnableController()] and m.phase == Phase.GRASPING
    return t + 3.5


def test_full_planner_episode_success_then_complete():
    m = EpisodeMachine(CFG)
    t = to_grasping(m)
    # Hand closed but not lifted: no verification.
    assert m.step(t + 1, [GraspSignal(True, False)]) == []
    # Closed and lifted: verification after verify_settle_s, not before.
    assert m.step(t + 2, [GraspSignal(True, True)]) == []
    assert m.step(t + 2.4) == []
    acts = m.step(t + 2.5)
    assert acts == [RequestPlanner(4, "verify", instruction="pick up the red cube")]
    assert m.phase == Phase.VERIFYING
    acts = m.step(t + 4, [answer(acts, ok("verify", success=True, reasoning="held"))])
    assert acts == [DisableController(), ResetArm(place=True)] and m.phase == Phase.RESETTING
    acts = m.step(t + 6, [HomeReached()])
    assert acts == [RequestPlanner(5, "complete", prompt="put the red cube away")]
    acts = m.step(t + 7, [answer(acts, ok("complete", completed=True, reasoning="done"))])
    assert acts == [EpisodeEnded("completed", "planner: prompt complete (done)")]
    assert m.phase == Phase.ENDED and m.counters.successes == 1 and m.counters.attempts == 1


def test_already_complete_at_start_ends_without_moving():
    m = EpisodeMachine(CFG)
    acts = m.step(0.0, [Start("clear the table")])
    acts = m.step(1.0, [answer(acts, ok("complete", completed=True, reasoning="empty"))])
    assert acts == [EpisodeEnded("completed", "planner: prompt complete (empty)")]


def test_failed_verifications_end_attempt_then_episode_after_limit():
    m = EpisodeMachine(CFG)
    t = to_grasping(m)
    m.step(t, [GraspSignal(True, True)])
    acts = m.step(t + 0.5)
    acts = m.step(t + 1, [answer(acts, ok("verify", success=False, reasoning="on table"))])
    assert acts == [] and m.phase == Phase.GRASPING
    # Next verification waits verify_interval_s after the last verdict.
    assert m.step(t + 1.9) == []
    acts = m.step(t + 2.0)
    assert [a.task for a in acts] == ["verify"]
    acts = m.step(t + 3, [answer(acts, ok("verify", success=False, reasoning="on table"))])
    assert acts == [DisableController(), ResetArm(place=False)]  # 2 failed verdicts = attempt failed
    acts = m.step(t + 4, [HomeReached()])
    assert [a.task for a in acts] == ["complete"]
    acts = m.step(t + 5, [answer(acts, ok("complete", completed=False, reasoning=""))])
    acts = m.step(t + 6, [answer(acts, ok("instruction", instruction="pick up the red cube"))])
    acts = m.step(t + 7, [answer(acts, ok("bbox", **BOX))])
    m.step(t + 8, [TrackerReady(True)])
    acts = m.step(t + 9, [TrackerLost("occluded")])  # second failed attempt in a row
    assert acts == [DisableController(), ResetArm(place=False)]
    acts = m.step(t + 10, [HomeReached()])
    assert len(acts) == 1 and isinstance(acts[0], EpisodeEnded) and acts[0].outcome == "failed"
    assert "2 failed grasp attempts in a row" in acts[0].reason and "tracker lost" in acts[0].reason


def test_grasp_time_limit_ends_attempt_like_upstream():
    m = EpisodeMachine(CFG)
    t = to_grasping(m)
    assert m.step(t + 19.9) == []
    acts = m.step(t + 20.0)
    assert acts == [DisableController(), ResetArm(place=False)]
    assert "exceeded 20 s" in m.last_error


def test_planner_timeout_retried_then_explicit_failure():
    m = EpisodeMachine(CFG)
    acts = m.step(0.0, [Start("put the red cube away")])
    acts = m.step(5.0, [answer(acts, err("complete"))])
    assert acts == [RequestPlanner(2, "complete", prompt="put the red cube away")]  # retry 1 of 1
    acts = m.step(10.0, [answer(acts, err("complete", "vlm_error", "HTTP 500"))])
    assert len(acts) == 1 and acts[0].outcome == "planner_failed"
    assert "HTTP 500" in acts[0].reason and m.phase == Phase.ENDED


def test_machine_never_waits_past_planner_deadline_even_without_an_answer():
    m = EpisodeMachine(CFG)
    m.step(0.0, [Start("put the red cube away")])
    assert m.step(CFG.planner_timeout_s + PLANNER_GRACE_S - 0.01) == []
    acts = m.step(CFG.planner_timeout_s + PLANNER_GRACE_S)
    assert acts == [RequestPlanner(2, "complete", prompt="put the red cube away")]
    assert "no answer within" in m.last_error


def test_stale_answers_are_ignored():
    m = EpisodeMachine(CFG)
    acts = m.step(0.0, [Start("put the red cube away")])
    first = answer(acts, err("complete"))
    acts = m.step(5.0, [first])                      # retried as token 2
    late = PlannerAnswer(first.token, ok("complete", completed=True, reasoning="late"))
    assert m.step(6.0, [late]) == [] and m.phase == Phase.CHECKING_COMPLETE


@pytest.mark.parametrize("bad", [
    [150, 200, 100, 250], [0, 0, 640, 480], [-1, 0, 30, 30], [600, 400, 900, 700], [1, 1, 2, 2],
    [float("nan"), 1, 30, 30],
])
def test_bad_box_from_planner_is_rejected_and_asked_again(bad):
    m = EpisodeMachine(CFG)
    acts = m.step(0.0, [Start("put the red cube away")])
    acts = m.step(1.0, [answer(acts, ok("complete", completed=False, reasoning=""))])
    acts = m.step(2.0, [answer(acts, ok("instruction", instruction="pick up the red cube"))])
    acts = m.step(3.0, [answer(acts, ok("bbox", **{**BOX, "bbox": bad}))])
    assert acts == [RequestPlanner(4, "bbox", instruction="pick up the red cube")]
    assert "box rejected" in m.last_error and m.phase == Phase.LOCATING


def test_tracker_init_timeout_is_an_attempt_failure():
    m = EpisodeMachine(CFG)
    acts = m.step(0.0, [Start("x cube")])
    acts = m.step(1.0, [answer(acts, ok("complete", completed=False, reasoning=""))])
    acts = m.step(2.0, [answer(acts, ok("instruction", instruction="the cube"))])
    m.step(3.0, [answer(acts, ok("bbox", **BOX))])
    assert m.step(5.9) == []
    assert m.step(6.0) == [DisableController(), ResetArm(place=False)]


def test_manual_mode_operator_box_and_end():
    m = EpisodeMachine(CFG)
    assert m.step(0.0, [Start(manual=True)]) == [SnapshotInitialImage(), RequestOperatorBox()]
    # A reversed box is refused and asked again.
    assert m.step(1.0, [OperatorBox((50, 50, 10, 10))]) == [RequestOperatorBox()]
    assert m.step(2.0, [OperatorBox((10.4, 20.6, 50, 60))]) == [InitTracker((10, 21, 50, 60), None)]
    assert m.step(2.5, [TrackerReady(True)]) == [EnableController()]
    # Manual mode never asks the planner to verify (upstream has no check in --manual).
    assert m.step(3.0, [GraspSignal(True, True)]) == [] and m.step(10.0) == []
    assert m.step(11.0, [OperatorEndGrasp()]) == [DisableController(), ResetArm(place=True)]
    assert m.step(12.0, [HomeReached()]) == [EpisodeEnded("attempt_done", "manual grasp attempt finished")]


def test_abort_resets_safely_and_reset_timeout_is_a_fault():
    m = EpisodeMachine(CFG)
    t = to_grasping(m)
    assert m.step(t + 1, [Abort("operator stop")]) == [DisableController(), ResetArm(place=False)]
    assert m.step(t + 10.9) == []
    acts = m.step(t + 11)
    assert acts == [DisableController(), EpisodeEnded("fault", "arm did not reach home within 10 s")]


def test_episode_duration_limit():
    m = EpisodeMachine(CFG)
    t = to_grasping(m)
    cfg_limit = CFG.max_episode_duration_s
    m.step(t + 10, [OperatorEndGrasp()])
    acts = m.step(t + 11, [HomeReached()])
    assert [a.task for a in acts] == ["complete"]
    acts = m.step(cfg_limit)
    assert acts == [DisableController(), ResetArm(place=False)]
    assert m.step(cfg_limit + 1, [HomeReached()]) == [EpisodeEnded("timeout", "episode exceeded 300 s")]


def test_start_while_running_is_ignored_and_restart_after_end_works():
    m = EpisodeMachine(CFG)
    m.step(0.0, [Start("a cube")])
    assert m.step(0.5, [Start("other")]) == [] and "ignored" in m.last_error
    m.step(1.0, [Abort()])
    m.step(2.0, [HomeReached()])
    assert m.phase == Phase.ENDED and m.outcome == "aborted"
    acts = m.step(3.0, [Start("b ball")])
    assert acts[0] == SnapshotInitialImage() and acts[1].prompt == "b ball" and m.counters.attempts == 0


def test_planner_mode_needs_a_prompt():
    m = EpisodeMachine(CFG)
    assert m.step(0.0, [Start("  ")]) == [SnapshotInitialImage(),
                                          EpisodeEnded("failed", "planner mode needs a non-empty prompt")]


@pytest.mark.parametrize("field, value", [("planner_timeout_s", 0), ("max_verify_failures", 0),
                                          ("verify_settle_s", -1), ("reset_timeout_s", float("nan"))])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        EpisodeConfig(**{field: value})


def test_verify_after_a_time_without_the_hand_signal():
    from dataclasses import replace

    m = EpisodeMachine(replace(CFG, verify_after_s=8.0))
    t = to_grasping(m)
    assert m.step(t + 7.9) == []
    acts = m.step(t + 8.0)
    assert acts == [RequestPlanner(4, "verify", instruction="pick up the red cube")]
    acts = m.step(t + 9.0, [answer(acts, ok("verify", success=False, reasoning="not yet"))])
    assert acts == [] and m.step(t + 9.9) == []  # the interval since the last verdict still applies
    assert [a.task for a in m.step(t + 10.0)] == ["verify"]
    with pytest.raises(ConfigError, match="verify_after_s"):
        EpisodeConfig(verify_after_s=0)
