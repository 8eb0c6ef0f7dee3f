"""Observers (DDS telemetry, recorder, UIs) are called here, never on the control thread.

The control loop and the workers `publish(kind, *args)` into a bounded queue (a put that never
blocks; when full the event is dropped and counted), and one dispatcher thread calls each
observer's `on_<kind>(*args)` if it has one. A slow or failing observer costs only its own events.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from typing import Any

from runtime.workers.base import WorkerThread

log = logging.getLogger(__name__)

KINDS = ("joint_state", "command", "status", "frames", "episode_event")


class ObserverDispatcher(WorkerThread):
    name = "telemetry-dispatch"

    def __init__(self, maxsize: int = 4096, max_pending_frames: int = 4) -> None:
        super().__init__()
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        # Frames are large (two 640x480 images): only a few may wait, so a slow recorder costs
        # dropped frames (counted), never memory.
        self.max_pending_frames = max_pending_frames
        self._pending_frames = 0
        self._observers: list[Any] = []
        self._lock = threading.Lock()
        self.published = Counter()
        self.dropped = Counter()
        self.observer_errors = Counter()

    def add(self, observer: Any) -> None:
        with self._lock:
            self._observers.append(observer)

    @property
    def has_observers(self) -> bool:
        return bool(self._observers)

    def publish(self, kind: str, *args: Any) -> None:
        """Never blocks. Without observers, nothing is queued."""
        if not self._observers:
            return
        if kind == "frames":
            with self._lock:
                if self._pending_frames >= self.max_pending_frames:
                    self.dropped[kind] += 1
                    return
                self._pending_frames += 1
        try:
            self._queue.put_nowait((kind, args))
            self.published[kind] += 1
        except queue.Full:
            self.dropped[kind] += 1
            if kind == "frames":
                with self._lock:
                    self._pending_frames -= 1

    def _loop_once(self) -> None:
        try:
            kind, args = self._queue.get(timeout=0.1)
        except queue.Empty:
            return
        self._deliver(kind, args)

    def _deliver(self, kind: str, args: tuple) -> None:
        with self._lock:
            observers = list(self._observers)
            if kind == "frames":
                self._pending_frames -= 1
        for obs in observers:
            fn = getattr(obs, f"on_{kind}", None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception as exc:  # an observer's bug must not stop the others; counted + logged
                name = type(obs).__name__
                self.observer_errors[name] += 1
                if self.observer_errors[name] <= 3:
                    log.warning("observer %s.on_%s failed: %r", name, kind, exc)

    def drain(self, timeout_s: float = 1.0) -> None:
        """Deliver what is queued (called at shutdown to flush), bounded by `timeout_s`."""
        import time

        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                kind, args = self._queue.get_nowait()
            except queue.Empty:
                return
            self._deliver(kind, args)

    def report(self) -> dict:
        return {
            "published": dict(self.published),
            "dropped": dict(self.dropped),
            "observer_errors": dict(self.observer_errors),
        }
