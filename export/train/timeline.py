"""Recorded episodes on the action-rate grid: one training step per action the runtime plays.

The runtime plays a chunk's actions `1 / control.action_rate_hz` apart (20 Hz, the rate of
upstream's data, where one recorded frame is one action step). The recorder writes one frame per
camera frame instead (15 fps in the MuJoCo sim, 30 fps on the example robots), so taking
consecutive frames as consecutive actions would train chunks that play back 33 % too fast (15 fps)
or 1.5x too slow (30 fps). Each episode is therefore put on the grid t0 + k / rate with the rule the
LeRobot export uses (runtime.data.source.resample_indices: the last frame captured at or before each
tick), so a window's actions are the commands in force 0, 50, 100 ms ... after its observation, and
every observation is an image the robot saw with the state and command recorded with it.

Only the frames some tick holds are kept (`EpisodeGrid.kept`): at 30 fps a third of the frames are
never used, so they are neither held in memory nor encoded by the DINOv2 feature cache. A recording
slower than the action rate repeats frames; that is allowed (the chunk still has the right timing)
but warned about once per load, with how many steps repeat.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from runtime.data.source import resample_indices
from runtime.errors import ConfigError

log = logging.getLogger(__name__)

UPSTREAM_ACTION_RATE_HZ = 20.0
# A recording within 1 % of the action rate is "at" it: camera timestamps jitter, and at a nominal
# 20 fps the median interval comes out a hair above 50 ms; that repeats a tick now and then, which
# is not worth a warning.
SLOW_TOLERANCE = 0.01


def check_action_rate(rate_hz) -> float:
    """The action rate as a float, or a one-line ConfigError naming the option."""
    try:
        rate = float(rate_hz)
    except (TypeError, ValueError):
        rate = float("nan")
    if not math.isfinite(rate) or rate <= 0:
        raise ConfigError(f"--action-rate-hz (the action rate a chunk is played at, control.action_rate_hz) "
                          f"must be a positive number, got {rate_hz!r}")
    return rate


@dataclass(frozen=True)
class EpisodeGrid:
    """One episode on the grid: `kept` recorded frames (increasing), `ticks[k]` = the position in
    `kept` of the frame tick k holds."""

    name: str
    kept: np.ndarray  # (F,) int64, indices into the episode's recorded frames
    ticks: np.ndarray  # (M,) int64, indices into kept
    intervals: np.ndarray  # (n - 1,) float64 recorded frame intervals, s

    @property
    def recorded_fps(self) -> float | None:
        return 1.0 / float(np.median(self.intervals)) if self.intervals.size else None

    @property
    def repeated_ticks(self) -> int:
        """Ticks that hold the same frame as the tick before (the recording is slower there)."""
        return int(np.count_nonzero(np.diff(self.ticks) == 0))


def episode_grid(timestamps: np.ndarray, rate_hz: float, name: str) -> EpisodeGrid:
    """Put one episode on the grid; a ConfigError (one line) for timestamps that are not finite and
    strictly increasing, on which "the last frame at or before" means nothing."""
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(ts)):
        raise ConfigError(f"episode '{name}': frame timestamps contain NaN or Inf; it cannot be put on the "
                          f"{rate_hz:g} Hz action grid")
    steps = np.diff(ts)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ConfigError(f"episode '{name}': frame timestamps are not strictly increasing (frame {i} at "
                          f"{ts[i]:.6f} s after frame {i - 1} at {ts[i - 1]:.6f} s; {bad.size} of {steps.size} "
                          "intervals <= 0); "
                          f"it cannot be put on the {rate_hz:g} Hz action grid")
    held = resample_indices(ts, rate_hz)
    kept, ticks = np.unique(held, return_inverse=True)
    return EpisodeGrid(name, kept.astype(np.int64), ticks.astype(np.int64).reshape(-1), steps)


@dataclass(frozen=True)
class Timeline:
    """Every episode's grid, concatenated like the EpisodeSet's (kept) frames."""

    action_rate_hz: float
    ticks: np.ndarray  # (M,) int64: the EpisodeSet frame each action step holds
    ends: np.ndarray  # (E,) int64: cumulative action steps per episode
    recorded_frames: int
    recorded_interval_s: float | None  # median over every episode's frame intervals
    repeated_ticks: int

    @property
    def steps(self) -> int:
        return int(self.ticks.size)

    @property
    def frames_used(self) -> int:
        return int(np.unique(self.ticks).size)

    @property
    def recorded_fps(self) -> float | None:
        return 1.0 / self.recorded_interval_s if self.recorded_interval_s else None

    def summary(self) -> dict:
        return {"recorded_fps": round(self.recorded_fps, 3) if self.recorded_fps else None,
                "action_rate_hz": self.action_rate_hz, "frames_recorded": self.recorded_frames,
                "frames_used": self.frames_used, "action_steps": self.steps,
                "repeated_steps": self.repeated_ticks}


def build_timeline(grids: list[EpisodeGrid], rate_hz: float) -> Timeline:
    """Concatenate per-episode grids (frame offsets by kept frames) and warn once about slow ones."""
    offsets = np.cumsum([0] + [g.kept.size for g in grids[:-1]])
    ticks = np.concatenate([g.ticks + off for g, off in zip(grids, offsets, strict=True)] or [np.zeros(0, np.int64)])
    ends = np.cumsum([g.ticks.size for g in grids]).astype(np.int64)
    intervals = np.concatenate([g.intervals for g in grids] or [np.zeros(0)])
    timeline = Timeline(
        action_rate_hz=rate_hz, ticks=ticks.astype(np.int64), ends=ends,
        recorded_frames=int(sum(g.intervals.size + 1 for g in grids)),
        recorded_interval_s=float(np.median(intervals)) if intervals.size else None,
        repeated_ticks=int(sum(g.repeated_ticks for g in grids)))
    _warn_slow(grids, rate_hz)
    dropped = timeline.recorded_frames - timeline.frames_used
    if dropped:
        log.info("action grid %g Hz: %d of %d recorded frames fall between ticks and are not used",
                 rate_hz, dropped, timeline.recorded_frames)
    return timeline


def _warn_slow(grids: list[EpisodeGrid], rate_hz: float) -> None:
    slow = [g for g in grids if g.recorded_fps is not None and g.recorded_fps < rate_hz * (1 - SLOW_TOLERANCE)]
    if not slow:
        return
    slowest = min(slow, key=lambda g: g.recorded_fps)
    repeated = sum(g.repeated_ticks for g in slow)
    steps = sum(g.ticks.size for g in slow)
    log.warning("%d of %d episodes are recorded below the %g Hz action rate (slowest: %s at %.1f fps, %.0f%% "
                "below): %d of %d action steps (%.0f%%) of those episodes repeat the previous frame and "
                "command; record at >= %g fps for one new frame per action step",
                len(slow), len(grids), rate_hz, slowest.name, slowest.recorded_fps,
                100 * (1 - slowest.recorded_fps / rate_hz), repeated, steps, 100 * repeated / max(steps, 1), rate_hz)
