"""A scriptable fake tracker for tests of the components around tracking (workers, episode logic).

It honours the Tracker contract (same validation, same result shapes) without segmenting
anything: the mask is the init box filled in (or the init mask), and faults are scripted: extra
latency per call, a frame index from which the target is lost, an empty mask from init.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from runtime.errors import ObservationError
from runtime.tracking.base import TrackResult, check_frame


class FakeTracker:
    """Box-as-mask tracker with injectable latency and loss.

    Args:
        latency_s: each init/track call blocks this long (via `sleep`, default time.sleep).
        lost_after: track() calls after this many report `lost` with an empty mask (None = never).
        sleep: injectable sleep, e.g. a FakeClock's advance.
    """

    def __init__(self, latency_s: float = 0.0, lost_after: int | None = None,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.latency_s = float(latency_s)
        self.lost_after = lost_after
        self.sleep = sleep
        self.calls = {"init": 0, "track": 0, "reset": 0}
        self.reset()
        self.calls["reset"] = 0

    def reset(self) -> None:
        self._mask: np.ndarray | None = None
        self._hw: tuple[int, int] | None = None
        self._tracked = 0
        self.calls["reset"] += 1

    def init(self, image_bgr: np.ndarray, box_xyxy: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> TrackResult:
        check_frame(image_bgr)
        self.calls["init"] += 1
        if self.latency_s:
            self.sleep(self.latency_s)
        h, w = image_bgr.shape[:2]
        if mask is not None:
            m = (np.asarray(mask) > 0).astype(np.uint8)
            if m.shape != (h, w):
                raise ObservationError(f"fake tracker: init mask is {m.shape}, frame is {(h, w)}")
        elif box_xyxy is not None:
            b = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
            if b.size != 4 or not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
                raise ObservationError(f"fake tracker: bad box {box_xyxy!r}")
            x1, y1, x2, y2 = np.clip(np.round(b), 0, [w, h, w, h]).astype(int)
            m = np.zeros((h, w), np.uint8)
            m[y1:y2, x1:x2] = 1
        else:
            raise ObservationError("fake tracker: init needs a box_xyxy or a mask")
        self._mask, self._hw, self._tracked = m, (h, w), 0
        return TrackResult(m.copy(), score=1.0 if m.any() else 0.0, lost=not m.any(),
                           info={"fake": True} if m.any() else {"fake": True, "reason": "empty_init"})

    def track(self, image_bgr: np.ndarray) -> TrackResult:
        if self._hw is None:
            raise RuntimeError("FakeTracker.track() called before init()")
        check_frame(image_bgr, self._hw)
        self.calls["track"] += 1
        self._tracked += 1
        if self.latency_s:
            self.sleep(self.latency_s)
        if (self.lost_after is not None and self._tracked > self.lost_after) or not self._mask.any():
            return TrackResult(np.zeros(self._hw, np.uint8), score=0.0, lost=True, info={"fake": True, "reason": "scripted"})
        return TrackResult(self._mask.copy(), score=1.0, lost=False, info={"fake": True})
