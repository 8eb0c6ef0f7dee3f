"""Bounded latency statistics shared by every component (loops, inference, serial RTT, planner).

A fixed-size ring of the most recent samples gives percentiles without unbounded memory; counters
(count, max) cover the whole run. Thread-safe: one writer and any number of readers.
"""

from __future__ import annotations

import threading

import numpy as np


class LatencyStats:
    """Rolling samples (seconds) with whole-run count and max. `summary_ms()` is what reports print."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._buf = np.zeros(capacity, dtype=np.float64)
        self._n = 0
        self._max = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._buf[self._n % self._buf.size] = seconds
            self._n += 1
            if seconds > self._max:
                self._max = seconds

    @property
    def count(self) -> int:
        return self._n

    def samples(self) -> np.ndarray:
        """The retained samples, oldest first (a copy)."""
        with self._lock:
            n, cap = self._n, self._buf.size
            if n <= cap:
                return self._buf[:n].copy()
            i = n % cap
            return np.concatenate([self._buf[i:], self._buf[:i]])

    def percentile(self, q: float) -> float:
        s = self.samples()
        return float(np.percentile(s, q)) if s.size else float("nan")

    def summary(self, scale: float = 1.0) -> dict:
        """{'count', 'p50', 'p99', 'max', 'mean'} in seconds times `scale`."""
        s = self.samples()
        if not s.size:
            return {"count": 0, "p50": None, "p99": None, "max": None, "mean": None}
        return {
            "count": self._n,
            "p50": float(np.percentile(s, 50)) * scale,
            "p99": float(np.percentile(s, 99)) * scale,
            "max": self._max * scale,
            "mean": float(s.mean()) * scale,
        }

    def summary_ms(self) -> dict:
        return self.summary(1e3)

    def summary_us(self) -> dict:
        return self.summary(1e6)
