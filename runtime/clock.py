"""Injectable clocks.

Every loop, executor and staleness check takes a Clock instead of calling time.* directly, so
tests drive a FakeClock with exact assertions and production code never touches the wall clock
(wall-clock jumps must have no effect: everything here is monotonic).
"""

from __future__ import annotations

import threading
import time


class Clock:
    """The real monotonic clock. `now()` is seconds from an arbitrary origin (time.monotonic)."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float, spin_s: float = 0.0002) -> None:
        """Sleep until the absolute monotonic `deadline`: OS sleep, then a short spin for the last stretch.

        The spin trades a little CPU for sub-100-us wake-up precision (diffusion_policy's precise_wait).
        Blocks the calling thread; returns immediately if the deadline is past.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if remaining > spin_s:
                time.sleep(remaining - spin_s)
            # spin: yield the GIL so other threads progress while we wait out the last stretch
            else:
                time.sleep(0)


class FakeClock(Clock):
    """A manually advanced clock for tests. `sleep_until` advances time instead of blocking."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, dt: float) -> float:
        if dt < 0:
            raise ValueError(f"FakeClock cannot go backwards (dt={dt})")
        with self._lock:
            self._t += dt
            return self._t

    def set(self, t: float) -> None:
        with self._lock:
            if t < self._t:
                raise ValueError(f"FakeClock cannot go backwards ({t} < {self._t})")
            self._t = float(t)

    def sleep_until(self, deadline: float, spin_s: float = 0.0) -> None:
        with self._lock:
            if deadline > self._t:
                self._t = float(deadline)
