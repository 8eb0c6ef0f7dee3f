"""Map device frame timestamps onto the runtime's monotonic clock.

Why: staleness checks and chunk stamping compare a frame's capture time with `Clock.now()`. The
arrival time of a frame includes USB transfer and driver queueing (several ms, sometimes tens), so
the device's own timestamp is the better capture time, but it lives on another clock:

* `hardware_clock`: the camera's free-running clock (ms). We estimate the offset between it and the
  monotonic clock as the MINIMUM of (arrival - device time) over a sliding window: the frame with
  the least transport delay bounds the offset best, and the window lets the estimate follow slow
  drift between the two oscillators. A falling estimate is slewed (at most half a frame interval
  per frame) so mapped times stay strictly increasing.
* `global_time` / `system_time`: milliseconds on the host's wall clock (librealsense syncs the
  device clock to it). We convert by the frame's age on the wall clock at arrival, so a wall-clock
  jump between frames cannot move monotonic capture times by more than the clamp.

The result never lies in the future and never predates the arrival by more than `max_age_s`.
Pure Python so it is tested without a device.
"""

from __future__ import annotations

import collections


class TimestampMapper:
    """Turns (device timestamp ms, domain, arrival monotonic s, arrival wall s) into monotonic s."""

    HARDWARE = "hardware_clock"
    GLOBAL = "global_time"
    SYSTEM = "system_time"

    def __init__(self, window: int = 120, max_age_s: float = 1.0) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._offsets: collections.deque[float] = collections.deque(maxlen=window)
        self.max_age_s = float(max_age_s)
        self.clamped = 0  # frames whose mapped time had to be clamped (suspicious device times)
        self._offset_used: float | None = None
        self._last_device_ms: float | None = None

    def reset(self) -> None:
        """Forget the offset estimate (after a reconnect the device clock restarts)."""
        self._offsets.clear()
        self._offset_used = None
        self._last_device_ms = None

    def map(self, device_ms: float, domain: str, arrival_mono_s: float, arrival_wall_s: float) -> float:
        if domain == self.HARDWARE:
            if self._last_device_ms is not None and device_ms < self._last_device_ms:
                self.reset()  # the device clock restarted (reset or reconnect)
            self._offsets.append(arrival_mono_s - device_ms / 1e3)
            best = min(self._offsets)
            if self._offset_used is None:
                used = best
            else:
                # slew a falling offset by at most half a frame interval per frame, so mapped times
                # stay strictly increasing (the capture worker drops out-of-order frames)
                dt_s = (device_ms - self._last_device_ms) / 1e3
                used = max(best, self._offset_used - 0.5 * dt_s)
            self._offset_used, self._last_device_ms = used, device_ms
            t = device_ms / 1e3 + used
        elif domain in (self.GLOBAL, self.SYSTEM):
            t = arrival_mono_s - (arrival_wall_s - device_ms / 1e3)
        else:  # unknown domain: the arrival time is the honest answer
            return arrival_mono_s
        if t > arrival_mono_s or t < arrival_mono_s - self.max_age_s:
            self.clamped += 1
            t = min(max(t, arrival_mono_s - self.max_age_s), arrival_mono_s)
        return t
