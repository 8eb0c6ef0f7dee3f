"""Chunk execution: which setpoint now, and when to ask the policy for the next chunk.

Wraps any policy that produces stamped chunks (ONNX Runtime, TensorRT, fake): the executor sees
only `TimedChunk`s, like openpi's ActionChunkBroker. In "timed" mode the next chunk is requested
when the current one has (measured latency percentile + margin) left, so that on a steady policy
the new chunk lands before the old one runs out and the robot never waits. Every decision takes
`now` from the caller (the control loop's clock), so tests drive it with exact fake times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime.execution.blending import ChunkBlender
from runtime.execution.chunk import TimedChunk
from runtime.stats import LatencyStats

# Observations and the loop share one monotonic clock (across processes too), so a chunk observed
# after "now" can only come from a stamping or clock fault. Its age (now - t_obs) is negative and
# would pass every age limit, so it is refused beyond this rounding tolerance.
MAX_FUTURE_S = 0.05


@dataclass
class ExecutorCounters:
    chunks_received: int = 0
    chunks_accepted: int = 0
    chunks_rejected_nonfinite: int = 0
    chunks_rejected_shape: int = 0
    chunks_rejected_stale: int = 0  # arrived with every action already too old or past
    chunks_rejected_future: int = 0  # observation stamped after "now": a clock or stamping fault
    chunks_from_arrival: int = 0  # auto mode: too late for their timestamps, run from arrival
    actions_dropped_late: int = 0  # actions already past when their chunk arrived
    requests: int = 0
    starved_cycles: int = 0  # cycles with no usable action while the policy was enabled

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class ChunkExecutor:
    """Turns accepted chunks into one setpoint per control cycle. Owned by the control thread."""

    def __init__(
        self,
        n_joints: int,
        action_dt_s: float,
        mode: str = "timed",
        upstream_execute_n: int = 6,
        late_execute_n: int = 64,
        blend: str = "crossfade",
        crossfade_steps: int = 4,
        weighted_decay_per_s: float = 2.0,
        interpolation: str = "linear",
        max_action_age_s: float = 3.3,
        request_margin_s: float = 0.3,
        latency_percentile: float = 90.0,
        initial_latency_estimate_s: float = 2.0,
        max_future_s: float = MAX_FUTURE_S,
    ) -> None:
        if mode not in ("timed", "upstream", "auto"):
            raise ValueError(f"mode must be 'timed', 'upstream' or 'auto', got {mode!r}")
        self.late_execute_n = int(late_execute_n)
        self.n_joints = n_joints
        self.action_dt_s = float(action_dt_s)
        self.mode = mode
        self.upstream_execute_n = int(upstream_execute_n)
        self.max_action_age_s = float(max_action_age_s)
        self.request_margin_s = float(request_margin_s)
        self.latency_percentile = float(latency_percentile)
        self.initial_latency_estimate_s = float(initial_latency_estimate_s)
        self.max_future_s = float(max_future_s)
        self.blender = ChunkBlender(
            mode="latest" if mode == "upstream" else blend,
            crossfade_s=crossfade_steps * self.action_dt_s,
            weighted_decay_per_s=weighted_decay_per_s,
            interpolation=interpolation,
        )
        # Observation-to-ready latency of each chunk (inference + frame age at request).
        self.latency = LatencyStats(4096)
        self.counters = ExecutorCounters()
        self.last_reject_reason: str | None = None

    @classmethod
    def from_config(cls, cfg) -> ChunkExecutor:
        ex, ctl = cfg.execution, cfg.control
        return cls(
            n_joints=cfg.robot.n_joints,
            action_dt_s=1.0 / ctl.action_rate_hz,
            mode=ex.mode,
            upstream_execute_n=ex.upstream_execute_n,
            late_execute_n=ex.late_execute_n,
            blend=ex.blend,
            crossfade_steps=ex.crossfade_steps,
            weighted_decay_per_s=ex.weighted_decay_per_s,
            interpolation=ctl.interpolation,
            max_action_age_s=cfg.safety.max_action_age_s,
            request_margin_s=ex.request_margin_s,
            latency_percentile=ex.latency_percentile,
            initial_latency_estimate_s=ex.initial_latency_estimate_s,
        )

    def latency_estimate_s(self) -> float:
        if self.latency.count == 0:
            return self.initial_latency_estimate_s
        return self.latency.percentile(self.latency_percentile)

    def offer(self, chunk: TimedChunk, now: float) -> bool:
        """Validate and take a new chunk. Returns False (and sets `last_reject_reason`) if rejected;
        a rejected chunk changes nothing (the loop keeps executing or holding as before)."""
        c = self.counters
        c.chunks_received += 1
        pos = chunk.positions
        if pos.ndim != 2 or pos.shape[1] != self.n_joints or pos.shape[0] < 1:
            c.chunks_rejected_shape += 1
            self.last_reject_reason = f"chunk shape {pos.shape}, expected (H, {self.n_joints})"
            return False
        if not np.all(np.isfinite(pos)):
            c.chunks_rejected_nonfinite += 1
            bad = int(np.count_nonzero(~np.isfinite(pos)))
            self.last_reject_reason = f"chunk {chunk.seq} has {bad} non-finite value(s)"
            return False
        if not chunk.t_obs - now <= self.max_future_s:  # also catches a NaN stamp
            c.chunks_rejected_future += 1
            self.last_reject_reason = (
                f"chunk {chunk.seq} observed {chunk.t_obs - now:.3f} s in the future (tolerance "
                f"{self.max_future_s:.3f} s): a stamping or clock fault, not executed"
            )
            return False
        if math.isfinite(chunk.t_ready):
            self.latency.add(max(0.0, chunk.t_ready - chunk.t_obs))
        if self.mode == "upstream":
            # Upstream executes the first N actions from the moment predict_action returns.
            chunk = self._from_arrival(chunk, now, self.upstream_execute_n)
        elif self.mode == "auto" and now > chunk.t_end and now - chunk.t_obs <= self.max_action_age_s:
            # Inference took longer than the chunk lasts: every timestamp is past. Rather than never
            # moving, run the chunk from its arrival (upstream's behaviour), still within the age limit.
            chunk = self._from_arrival(chunk, now, self.late_execute_n)
            c.chunks_from_arrival += 1
        past = chunk.actions_past(now)
        if now > chunk.t_end or now - chunk.t_obs > self.max_action_age_s:
            c.chunks_rejected_stale += 1
            c.actions_dropped_late += chunk.horizon
            self.last_reject_reason = (
                f"chunk {chunk.seq} arrived {now - chunk.t_obs:.3f} s after its observation: every "
                f"action is past or older than {self.max_action_age_s:.3f} s"
            )
            return False
        # Sampling at `now` interpolates between the action just before and the next one; the
        # actions strictly before that pair are never sent.
        c.actions_dropped_late += max(0, past - 1)
        self.blender.add(chunk, now)
        c.chunks_accepted += 1
        self.last_reject_reason = None
        return True

    @staticmethod
    def _from_arrival(chunk: TimedChunk, now: float, n: int) -> TimedChunk:
        return TimedChunk(
            positions=chunk.positions[:n].astype(np.float64, copy=False), t_obs=chunk.t_obs, t_start=now,
            dt_s=chunk.dt_s, seq=chunk.seq, t_ready=chunk.t_ready, inference_s=chunk.inference_s,
        )

    def setpoint(self, now: float) -> np.ndarray | None:
        """The blended setpoint for `now`, or None (hold) if no fresh chunk covers `now`."""
        p = self.blender.sample(now, self.max_action_age_s)
        if p is None:
            self.counters.starved_cycles += 1
        return p

    def should_request(self, now: float, in_flight: bool) -> bool:
        """True when the next chunk should be requested now (at most one request in flight)."""
        if in_flight:
            return False
        newest = self.blender.newest
        if newest is None:
            return True
        if self.mode == "upstream":
            return now > newest.t_end  # after the last of the N actions was executed
        usable_until = min(newest.t_end, newest.t_obs + self.max_action_age_s)
        return now >= usable_until - (self.latency_estimate_s() + self.request_margin_s)

    def note_request(self) -> None:
        self.counters.requests += 1

    def start_homing(self, chunk: TimedChunk, now: float) -> None:
        """Replace everything with a homing trajectory (no policy chunk may blend into it)."""
        self.blender.clear()
        self.blender.add(chunk, now)

    def clear(self) -> None:
        """Forget every chunk (stop, disable, re-arm): the next motion needs a fresh observation."""
        self.blender.clear()
