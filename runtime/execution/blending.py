"""Blending overlapping chunks so a new chunk never makes the setpoint jump.

When a new chunk arrives, the previous one usually still covers the next few hundred ms, and the
two disagree (different observation, fresh noise). Three ways to hand over:

- latest:    switch at once (what most deployments do; a visible step at every hand-over).
- crossfade: fade linearly from the old chunk to the new one over N action steps.
- weighted:  average every live chunk covering "now", weighting newer observations more
             (w = exp(-decay * (t_obs_newest - t_obs))): temporal ensembling in the spirit of
             ACT, but favouring fresh observations because our chunks arrive late.
"""

from __future__ import annotations

import math

import numpy as np

from runtime.execution.chunk import TimedChunk

BLEND_MODES = ("latest", "weighted", "crossfade")


class ChunkBlender:
    """Holds the live chunks and answers "what is the setpoint at t". Owned by one thread."""

    def __init__(
        self,
        mode: str = "crossfade",
        crossfade_s: float = 0.2,
        weighted_decay_per_s: float = 2.0,
        interpolation: str = "linear",
        max_live: int = 4,
    ) -> None:
        if mode not in BLEND_MODES:
            raise ValueError(f"blend mode must be one of {BLEND_MODES}, got {mode!r}")
        self.mode = mode
        self.crossfade_s = float(crossfade_s)
        self.decay = float(weighted_decay_per_s)
        self.interpolation = interpolation
        self.max_live = max_live
        self._chunks: list[TimedChunk] = []  # oldest first
        self._fade_from: TimedChunk | None = None
        self._fade_t0 = 0.0

    @property
    def newest(self) -> TimedChunk | None:
        return self._chunks[-1] if self._chunks else None

    def clear(self) -> None:
        self._chunks.clear()
        self._fade_from = None

    def add(self, chunk: TimedChunk, now: float) -> None:
        prev = self.newest
        if self.mode == "crossfade":
            # Fade from whatever was being executed (the previous chunk) if it still covers now.
            self._fade_from = prev if prev is not None and prev.sample(now, self.interpolation) is not None else None
            self._fade_t0 = now
        self._chunks.append(chunk)
        keep = 1 if self.mode == "latest" else self.max_live
        self._chunks = self._chunks[-keep:]

    def sample(self, t: float, max_action_age_s: float = math.inf) -> np.ndarray | None:
        """Blended setpoint at `t` from chunks whose observation is at most `max_action_age_s`
        old at `t`; None if no chunk covers `t` (exhausted or stale: the caller holds)."""
        self._chunks = [c for c in self._chunks if t - c.t_obs <= max_action_age_s and t <= c.t_end]
        new = self.newest
        if new is None:
            return None
        p_new = new.sample(t, self.interpolation)
        if p_new is None:  # pragma: no cover - filtered above
            return None
        if self.mode == "crossfade" and self._fade_from is not None:
            old = self._fade_from
            w = (t - self._fade_t0) / self.crossfade_s if self.crossfade_s > 0 else 1.0
            p_old = old.sample(t, self.interpolation) if t - old.t_obs <= max_action_age_s else None
            if w >= 1.0 or p_old is None:
                self._fade_from = None
                return p_new
            w = max(0.0, w)
            return (1.0 - w) * p_old + w * p_new
        if self.mode == "weighted" and len(self._chunks) > 1:
            acc = np.zeros_like(p_new)
            total = 0.0
            for c in self._chunks:
                p = c.sample(t, self.interpolation)
                if p is None:
                    continue
                w = math.exp(-self.decay * (new.t_obs - c.t_obs))
                acc += w * p
                total += w
            return acc / total
        return p_new
