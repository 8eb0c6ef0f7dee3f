"""The tracker worker: turns every new head frame into (frame, mask) for the policy.

The output pairs each mask with the very frame it was computed on (same capture time and index),
so the policy never combines a mask with a different image. Until a target is initialised (from
the planner's box or a manual box) nothing is published, and the policy worker waits.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from runtime.clock import Clock
from runtime.mailbox import Mailbox
from runtime.stats import LatencyStats
from runtime.workers.base import WorkerThread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackedFrame:
    """A head frame and the tracker's mask for it."""

    image: np.ndarray
    mask: np.ndarray
    t_capture: float
    index: int
    score: float = 1.0
    lost: bool = False
    info: dict = field(default_factory=dict)


class TrackerWorker(WorkerThread):
    """Waits for new head frames (blocking up to 100 ms at a time) and tracks them.

    `request_init(box_xyxy=...)` / `request_reset()` may be called from any thread; they take effect
    on the next frame, in this thread (trackers are not thread-safe)."""

    name = "tracker-worker"

    def __init__(self, tracker, head: Mailbox, out: Mailbox, clock: Clock | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.head = head
        self.out = out
        self.clock = clock or Clock()
        self._lock = threading.Lock()
        self._pending_init: dict | None = None
        self._pending_reset = False
        self.initialised = False
        self.latency = LatencyStats(20_000)
        self.frames = 0
        self.lost_frames = 0
        self._seq = 0
        self.last_result = None
        self.on_tracked = None  # optional callback(TrackedFrame), run in this thread

    def request_init(self, box_xyxy=None, mask=None) -> None:
        with self._lock:
            self._pending_init = {"box_xyxy": None if box_xyxy is None else np.asarray(box_xyxy, dtype=np.float32),
                                  "mask": mask}

    def request_reset(self) -> None:
        with self._lock:
            self._pending_reset = True
            self._pending_init = None

    def _loop_once(self) -> None:
        item = self.head.wait_newer(self._seq, 0.1)
        if item is None:
            return
        self._seq = item.seq
        self.process(item)

    def process(self, item) -> TrackedFrame | None:
        frame = item.value
        with self._lock:
            init, self._pending_init = self._pending_init, None
            reset, self._pending_reset = self._pending_reset, False
        if reset:
            self.tracker.reset()
            self.initialised = False
            self.out.clear()
        t0 = self.clock.now()
        if init is not None:
            result = self.tracker.init(frame.image, box_xyxy=init["box_xyxy"], mask=init["mask"])
            self.initialised = True
        elif self.initialised:
            result = self.tracker.track(frame.image)
        else:
            return None
        self.latency.add(self.clock.now() - t0)
        self.frames += 1
        self.lost_frames += int(bool(result.lost))
        self.last_result = result
        tracked = TrackedFrame(frame.image, result.mask, item.t_capture, getattr(frame, "index", item.seq),
                               float(result.score), bool(result.lost), dict(result.info))
        self.out.put(tracked, t_capture=item.t_capture)
        if self.on_tracked is not None:
            self.on_tracked(tracked)
        return tracked

    def report(self) -> dict:
        s = self.latency.summary_ms()
        return {
            "frames": self.frames,
            "latency_ms": {"p50": s["p50"], "p99": s["p99"]},
            "lost_frames": self.lost_frames,
            "initialised": self.initialised,
            "errors": self.errors,
            "last_error": self.last_error,
        }
