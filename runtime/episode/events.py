"""Events into and actions out of the episode state machine (plain frozen dataclasses).

Events come from the operator, the planner (via the runner), the tracker and the robot state;
actions are what the runner performs. Kept apart from machine.py so both stay small.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.planner.calls import PlannerReply


# ---- events in -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    """Begin an episode. `prompt` is the operator's goal (planner mode); `manual` = operator gives boxes."""

    prompt: str = ""
    manual: bool = False


@dataclass(frozen=True)
class PlannerAnswer:
    """The outcome of the planner request with `token` (timeouts and errors included)."""

    token: int
    reply: PlannerReply


@dataclass(frozen=True)
class OperatorBox:
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackerReady:
    """The box became a mask and the tracker follows it (ok), or that failed (reason)."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class TrackerLost:
    reason: str = ""


@dataclass(frozen=True)
class GraspSignal:
    """Robot state summarised for the verification trigger (from hand joints and arm height)."""

    hand_closed: bool
    arm_lifted: bool


@dataclass(frozen=True)
class HomeReached:
    pass


@dataclass(frozen=True)
class OperatorEndGrasp:
    """The operator ends the current grasp attempt (upstream: Enter)."""


@dataclass(frozen=True)
class Abort:
    reason: str = "operator abort"


# ---- actions out -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestPlanner:
    """Submit a planner call; answer with PlannerAnswer(token, reply). Images: the runner attaches
    the current head (+ initial head / wrist) frames the task needs."""

    token: int
    task: str
    prompt: str | None = None
    instruction: str | None = None


@dataclass(frozen=True)
class InitTracker:
    """Make a mask from `box` on the head frame `image_id` (the frame the box was found in), then track."""

    box: tuple[int, int, int, int]
    image_id: str | None


@dataclass(frozen=True)
class SnapshotInitialImage:
    """Keep the current head frame as the episode's 'initial' image (for instruction / completion)."""


@dataclass(frozen=True)
class RequestOperatorBox:
    pass


@dataclass(frozen=True)
class EnableController:
    pass


@dataclass(frozen=True)
class DisableController:
    pass


@dataclass(frozen=True)
class ResetArm:
    """Move to the placement pose, open the hand, return home (upstream right_finish_reset); answer
    with HomeReached. `place` is False when nothing was grasped (just open and go home)."""

    place: bool


@dataclass(frozen=True)
class EpisodeEnded:
    outcome: str  # completed | attempt_done | failed | planner_failed | timeout | aborted | fault
    reason: str
