"""The control loop's "next chunk please" signal to the policy worker.

At most one request is in flight (one policy worker, one model); the control loop asks, the worker
takes the request, runs the policy and marks it done. Thread-safe; nothing here blocks the control
loop (set/inspect only), the worker blocks in `take` with a timeout.
"""

from __future__ import annotations

import threading


class ChunkRequests:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._in_flight = False
        self._idle = threading.Event()  # set while no request is in flight (wait_idle)
        self._idle.set()
        self.t_requested = 0.0
        self.count = 0

    @property
    def in_flight(self) -> bool:
        """True from `request` until the worker calls `done` (pending or running)."""
        with self._lock:
            return self._in_flight

    def request(self, now: float) -> bool:
        """Ask for a chunk; False if one is already pending or running. Never blocks."""
        with self._lock:
            if self._in_flight:
                return False
            self._in_flight = True
            self._idle.clear()
            self.t_requested = now
            self.count += 1
        self._wanted.set()
        return True

    def take(self, timeout_s: float) -> bool:
        """Worker side: wait up to `timeout_s` for a request; True if there is one to serve."""
        if not self._wanted.wait(timeout_s):
            return False
        self._wanted.clear()
        return True

    def done(self) -> None:
        with self._lock:
            self._in_flight = False
            self._idle.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request is in flight (True) or `timeout_s` passes (False): lets the control
        process's link forward `done` the moment it happens instead of polling `in_flight`."""
        return self._idle.wait(timeout_s)

    def cancel(self) -> None:
        """Drop a pending request (e.g. the policy was disabled before the worker took it)."""
        self._wanted.clear()
        self.done()
