"""The one rate helper that paces every fixed-rate loop in the project.

Deadlines are absolute on the monotonic clock (t0 + k*period), never `sleep(dt)`, so jitter does
not accumulate. When a cycle overruns past one or more deadlines, those cycles are skipped and
counted, never bursted to catch up (ros2_control's sleeping policies). Lateness (wake-up time minus
deadline) is recorded for every cycle; an overrun warning is throttled so a struggling loop does not
also flood the log. Sleep-then-spin for the last stretch comes from `Clock.sleep_until`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from runtime.clock import Clock
from runtime.stats import LatencyStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tick:
    """One cycle: its index (counting skipped ones), its deadline, how late we woke, and how many
    cycles were skipped just before it."""

    index: int
    deadline: float
    lateness_s: float
    skipped: int


class Rate:
    """Paces a loop at `hz` on absolute deadlines.

    Usage::

        rate = Rate(200.0, clock, name="control")
        while not stop.is_set():
            tick = rate.sleep()     # blocks until the next deadline
            ...                     # the cycle's work

    `sleep()` blocks the calling thread until the next deadline that has not passed. If the previous
    cycle ran past whole periods, the missed deadlines are skipped (counted in `missed_cycles`).
    """

    def __init__(
        self,
        hz: float,
        clock: Clock | None = None,
        name: str = "loop",
        warn_interval_s: float = 5.0,
        stats_capacity: int = 200_000,
    ) -> None:
        if not (isinstance(hz, (int, float)) and math.isfinite(hz) and hz > 0):
            raise ValueError(f"Rate '{name}': hz must be a positive finite number, got {hz!r}")
        self.hz = float(hz)
        self.period_s = 1.0 / self.hz
        self.clock = clock or Clock()
        self.name = name
        self.warn_interval_s = warn_interval_s
        self.lateness = LatencyStats(stats_capacity)
        self.missed_cycles = 0
        self.cycles = 0
        self._t0: float | None = None
        self._k = 0  # index of the next deadline
        self._last_warn = -math.inf

    def reset(self) -> None:
        """Restart the schedule: the next `sleep()` returns at once and becomes cycle 0."""
        self._t0 = None
        self._k = 0

    @property
    def started_at(self) -> float | None:
        return self._t0

    def sleep(self) -> Tick:
        now = self.clock.now()
        if self._t0 is None:
            self._t0 = now
            self._k = 1
            self.cycles += 1
            self.lateness.add(0.0)
            return Tick(0, now, 0.0, 0)
        deadline = self._t0 + self._k * self.period_s
        skipped = 0
        if now > deadline + self.period_s:
            # We are already past the next deadline too: skip every missed one, never burst.
            skipped = int((now - deadline) // self.period_s)
            self._k += skipped
            deadline = self._t0 + self._k * self.period_s
            self.missed_cycles += skipped
            self._warn_overrun(now, skipped)
        self.clock.sleep_until(deadline)
        woke = self.clock.now()
        late = max(0.0, woke - deadline)
        self.lateness.add(late)
        tick = Tick(self._k, deadline, late, skipped)
        self._k += 1
        self.cycles += 1
        return tick

    def achieved_hz(self) -> float:
        """Cycles run per second of elapsed schedule (skipped cycles lower it)."""
        if self._t0 is None or self.cycles < 2:
            return float("nan")
        elapsed = self.clock.now() - self._t0
        return (self.cycles - 1) / elapsed if elapsed > 0 else float("nan")

    def report(self) -> dict:
        return {
            "rate_hz_target": self.hz,
            "rate_hz_achieved": self.achieved_hz(),
            "cycles": self.cycles,
            "missed_cycles": self.missed_cycles,
            "lateness_us": {k: v for k, v in self.lateness.summary_us().items() if k in ("p50", "p99", "max")},
        }

    def _warn_overrun(self, now: float, skipped: int) -> None:
        if now - self._last_warn >= self.warn_interval_s:
            self._last_warn = now
            log.warning(
                "%s loop overran: skipped %d cycle(s) at %.1f Hz (%d missed so far)",
                self.name, skipped, self.hz, self.missed_cycles,
            )
