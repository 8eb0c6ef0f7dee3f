"""Action chunks that carry time.

The policy answers an observation captured at `t_obs` with H actions spaced `dt_s` apart; action i
is meant for `t_start + i*dt_s` (t_start = t_obs when actions are timed from the observation, as in
diffusion_policy's real-robot eval). The control loop samples the chunk at its own (servo) rate;
samples between two actions are interpolated, actions whose time has passed are never sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

# The model's [-1, 1] arm scaling lives with the joint space; re-exported for older imports.
from runtime.joint_space import scale_arm, unscale_arm  # noqa: F401

INTERPOLATIONS = ("linear", "cubic", "hold")


@dataclass(frozen=True)
class TimedChunk:
    """H joint-space setpoints (H, J) float64; action i is for `t_start + i * dt_s` (monotonic s).

    t_obs:       capture time of the observation the chunk was computed from (its age limit).
    t_ready:     when the chunk became available to the control loop.
    inference_s: how long the policy call took.
    """

    positions: np.ndarray
    t_obs: float
    t_start: float
    dt_s: float
    seq: int = 0
    t_ready: float = math.nan
    inference_s: float = math.nan

    @property
    def horizon(self) -> int:
        return int(self.positions.shape[0])

    @property
    def t_end(self) -> float:
        """Time of the last action."""
        return self.t_start + (self.horizon - 1) * self.dt_s

    def time_of(self, i: int) -> float:
        return self.t_start + i * self.dt_s

    def covers(self, t: float) -> bool:
        return self.t_start <= t <= self.t_end

    def actions_past(self, t: float) -> int:
        """How many actions are strictly before `t` (already past when the chunk is used at t)."""
        u = (t - self.t_start) / self.dt_s
        return max(0, min(self.horizon, int(math.ceil(u - 1e-9))))

    def truncated(self, n: int) -> TimedChunk:
        """The first `n` actions only (upstream's "execute the first 6 of 64")."""
        return replace(self, positions=self.positions[: max(1, n)])

    def sample(self, t: float, interpolation: str = "linear") -> np.ndarray | None:
        """The setpoint for time `t`, or None when `t` is after the last action.

        Before `t_start` the first action is returned (the chunk starts "now" or later).
        """
        if t > self.t_end + 1e-12:
            return None
        p = self.positions
        u = (t - self.t_start) / self.dt_s
        if u <= 0:
            return p[0].copy()
        i = min(int(math.floor(u)), self.horizon - 1)
        frac = u - i
        if i >= self.horizon - 1 or frac <= 0.0:
            return p[i].copy()
        if interpolation == "hold":
            return p[i].copy()
        if interpolation == "linear":
            return (1.0 - frac) * p[i] + frac * p[i + 1]
        if interpolation == "cubic":
            # Catmull-Rom through the neighbouring actions (end points repeated): passes through
            # every action exactly and has a continuous velocity, unlike the linear segments.
            p0 = p[max(i - 1, 0)]
            p1, p2 = p[i], p[i + 1]
            p3 = p[min(i + 2, self.horizon - 1)]
            f2, f3 = frac * frac, frac * frac * frac
            return 0.5 * (
                2.0 * p1 + (p2 - p0) * frac + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * f2
                + (3.0 * p1 - p0 - 3.0 * p2 + p3) * f3
            )
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
