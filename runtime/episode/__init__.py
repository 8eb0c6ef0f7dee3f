"""The grasping episode: a pure state machine (machine.py), its runner (runner.py), and the wiring
into runtime/app.py (app_glue.make_episode). See docs/planner.md."""

from runtime.episode.machine import (
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
from runtime.episode.runner import EpisodeActuator, EpisodeRunner


def make_episode(app):
    """EpisodeRunner wired to `app` (runtime.app.App); see app_glue.make_episode."""
    from runtime.episode.app_glue import make_episode as _make

    return _make(app)


__all__ = [
    "Abort", "DisableController", "EnableController", "EpisodeActuator", "EpisodeConfig", "EpisodeEnded",
    "EpisodeMachine", "EpisodeRunner", "GraspSignal", "HomeReached", "InitTracker", "OperatorBox",
    "OperatorEndGrasp", "Phase", "PlannerAnswer", "RequestOperatorBox", "RequestPlanner", "ResetArm",
    "SnapshotInitialImage", "Start", "TrackerLost", "TrackerReady", "make_episode",
]
