"""A named worker thread stopped by an Event and joined with a timeout (warns if still alive)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class WorkerThread:
    """Subclasses implement `_loop_once()`; it must return within ~100 ms so `stop()` is prompt
    (wait on events with timeouts, never sleep long). Exceptions escaping `_loop_once` are
    counted, logged and the worker keeps going: one bad frame never kills perception."""

    name = "worker"

    def __init__(self, name: str | None = None) -> None:
        if name:
            self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Signal and join; returns False (and warns) if the thread did not end within `timeout_s`."""
        self._stop.set()
        self._on_stop()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("thread %s still alive %.1f s after stop", self.name, timeout_s)
            return False
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _on_stop(self) -> None:
        """Hook to wake a blocked `_loop_once` (e.g. set an event it waits on)."""

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._loop_once()
            except Exception as exc:  # keep the worker alive; the error is counted and logged
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.errors <= 5 or self.errors % 100 == 0:
                    log.warning("%s: error #%d: %s", self.name, self.errors, self.last_error)
                self._stop.wait(0.05)

    def _loop_once(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
