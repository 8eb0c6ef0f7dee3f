"""Timestamped latest-value hand-off between threads.

One primitive for frames, masks, chunks, plans and robot state: a producer `put`s a value with the
time it was captured (not the time it was delivered); consumers read the newest value and say how
old they accept it to be. Old values are overwritten, never queued: a slow consumer always sees the
freshest data and a fast producer is never blocked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from runtime.clock import Clock
from runtime.errors import StaleDataError

T = TypeVar("T")


@dataclass(frozen=True)
class Stamped(Generic[T]):
    """A value, the monotonic time it was captured, and its sequence number in its mailbox."""

    value: T
    t_capture: float
    seq: int

    def age(self, now: float) -> float:
        return now - self.t_capture


class Mailbox(Generic[T]):
    """Latest-value slot with capture timestamps and staleness checks. Thread-safe."""

    def __init__(self, name: str, clock: Clock | None = None) -> None:
        self.name = name
        self.clock = clock or Clock()
        self._cond = threading.Condition()
        self._item: Stamped[T] | None = None
        self._seq = 0

    def put(self, value: T, t_capture: float | None = None) -> Stamped[T]:
        """Replace the value; `t_capture` defaults to now. Never blocks beyond the lock."""
        t = self.clock.now() if t_capture is None else float(t_capture)
        with self._cond:
            self._seq += 1
            self._item = Stamped(value, t, self._seq)
            self._cond.notify_all()
            return self._item

    def peek(self) -> Stamped[T] | None:
        """The newest stamped value, or None if nothing was ever put. Never raises, never blocks."""
        with self._cond:
            return self._item

    def latest(self, max_age_s: float | None = None) -> Stamped[T]:
        """The newest value; raises StaleDataError if none, or if older than `max_age_s`."""
        with self._cond:
            item = self._item
        if item is None:
            raise StaleDataError(f"mailbox '{self.name}': no value yet")
        if max_age_s is not None:
            age = self.clock.now() - item.t_capture
            if age > max_age_s:
                raise StaleDataError(
                    f"mailbox '{self.name}': latest value is {age * 1e3:.1f} ms old "
                    f"(max {max_age_s * 1e3:.1f} ms)"
                )
        return item

    def wait_newer(self, after_seq: int, timeout_s: float | None) -> Stamped[T] | None:
        """Block until a value with seq > `after_seq` arrives, or `timeout_s` passes (returns None).

        Uses real time for the timeout (a condition variable), so do not call it with a FakeClock
        expecting the fake time to advance it.
        """
        with self._cond:
            if not (self._item is not None and self._item.seq > after_seq):
                self._cond.wait_for(
                    lambda: self._item is not None and self._item.seq > after_seq, timeout=timeout_s
                )
            item = self._item
            return item if item is not None and item.seq > after_seq else None

    def clear(self) -> None:
        with self._cond:
            self._item = None
