"""Wake a thread that is blocked in zmq.Poller from any other thread, without sharing a socket.

ZeroMQ sockets are not thread-safe, so only the I/O thread touches them. Other threads put work on
a queue.Queue and then `wake()`: one byte into a non-blocking pipe whose read end the I/O thread
polls next to its socket. No polling interval, no added latency, no lock around zmq calls.
"""

from __future__ import annotations

import os


class Wakeup:
    """A self-pipe. `wake()` never blocks (a full pipe already guarantees a wake-up)."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    def wake(self) -> None:
        try:
            os.write(self._w, b"x")
        except BlockingIOError:
            pass  # pipe full: the reader has wake-ups pending already
        except OSError:
            pass  # closed during shutdown: nobody is waiting any more

    def drain(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            return

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
