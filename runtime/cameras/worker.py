"""The capture thread: reads one camera and publishes frames into a latest-value mailbox.

Consumers (tracker, policy worker, recorder) only ever read the mailbox, so a camera that stalls,
drops or disappears can never block them: they see the newest frame get old and decide with their
own `max_age_s` (the control loop holds). The worker classifies what it sees (dropped frames from
index gaps, duplicates, out-of-order timestamps, late deliveries, read timeouts = stalls) and
reconnects with exponential backoff after an unplug, waiting on its stop Event so `stop()` is
prompt even mid-backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from runtime.cameras.base import Camera, CameraTimeoutError, Frame
from runtime.errors import DeviceNotConnectedError
from runtime.mailbox import Mailbox
from runtime.stats import LatencyStats

log = logging.getLogger(__name__)


class CameraWorker:
    """Named capture thread for one camera.

    Usage::

        frames = Mailbox("head", clock)
        with CameraWorker(camera, frames):          # start() ... stop()
            frame = frames.latest(max_age_s=0.1).value

    Args:
        camera: any `Camera`; the worker connects it if needed and owns its reads.
        mailbox: where frames go (`put(frame, frame.t_capture)`); created if None (`.mailbox`).
        read_timeout_ms: one `read()` may block this long (default: 3 frame periods, >= 100 ms);
            each timeout counts one stall.
        reconnect_after_stalls: this many consecutive stalls close and reopen the device.
        backoff_initial_s / backoff_max_s: reconnect delays double from initial up to max.
        late_after_s: a frame whose capture time is older than this on delivery counts as late
            (it is still published; consumers judge staleness). Default: 2 frame periods.
        on_frame: optional callback run in the worker thread for each published frame (keep it
            short: it delays the next read, not the consumers).
    """

    def __init__(
        self,
        camera: Camera,
        mailbox: Mailbox[Frame] | None = None,
        *,
        read_timeout_ms: float | None = None,
        reconnect_after_stalls: int = 5,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        late_after_s: float | None = None,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        period_s = 1.0 / camera.fps
        self.camera = camera
        self.clock = camera.clock
        self.mailbox: Mailbox[Frame] = mailbox if mailbox is not None else Mailbox(camera.name, camera.clock)
        self.read_timeout_ms = float(read_timeout_ms) if read_timeout_ms else max(100.0, 3e3 * period_s)
        if reconnect_after_stalls < 1:
            raise ValueError(f"reconnect_after_stalls must be >= 1, got {reconnect_after_stalls}")
        if not (0 < backoff_initial_s <= backoff_max_s):
            raise ValueError(
                f"need 0 < backoff_initial_s <= backoff_max_s, got {backoff_initial_s}, {backoff_max_s}"
            )
        self.reconnect_after_stalls = int(reconnect_after_stalls)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.late_after_s = float(late_after_s) if late_after_s is not None else 2.0 * period_s
        self.on_frame = on_frame
        self.name = f"camera-{camera.name}"
        self.delivery_latency = LatencyStats(20_000)  # now - t_capture when published
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counts = dict(
            frames=0, dropped=0, duplicates=0, out_of_order=0, late=0, stalls=0,
            disconnects=0, reconnects=0, connect_failures=0, errors=0,
        )
        self._last_error: str | None = None
        self._last_index: int | None = None
        self._last_t: float | None = None
        self._ever_connected = False
        self._last_connect_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> CameraWorker:
        """Start the thread (returns at once; the first connect happens in the thread)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.name} is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Ask the thread to stop, join it for up to `timeout_s`, disconnect the camera.

        Blocks at most about `timeout_s` (a read in progress finishes within `read_timeout_ms`).
        Returns False (and logs a warning) if the thread is still alive.
        """
        self._stop.set()
        alive = False
        if self._thread is not None:
            self._thread.join(timeout_s)
            alive = self._thread.is_alive()
            if alive:
                log.warning("%s still alive %.1f s after stop(); camera left connected", self.name, timeout_s)
        if not alive:
            self.camera.disconnect()
        return not alive

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> CameraWorker:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict:
        """Counters (thread-safe snapshot): frames published, dropped (index gaps; across a reopen,
        estimated from the capture-time gap), duplicates,
        out_of_order, late, stalls (read timeouts), disconnects, reconnects, connect_failures,
        errors, last_error, connected, delivery_latency_ms {p50, p99, max}."""
        with self._lock:
            out: dict = dict(self._counts)
            out["last_error"] = self._last_error
        out["camera"] = self.camera.name
        out["connected"] = self.camera.is_connected
        lat = self.delivery_latency.summary_ms()
        out["delivery_latency_ms"] = {k: lat[k] for k in ("p50", "p99", "max")}
        return out

    def _count(self, key: str, n: int = 1, error: str | None = None) -> None:
        with self._lock:
            self._counts[key] += n
            if error is not None:
                self._last_error = error

    # ------------------------------------------------------------------ thread body
    def _run(self) -> None:
        backoff_s = self.backoff_initial_s
        consecutive_stalls = 0
        while not self._stop.is_set():
            if not self.camera.is_connected:
                if not self._try_connect():
                    self._stop.wait(backoff_s)
                    backoff_s = min(2.0 * backoff_s, self.backoff_max_s)
                    continue
                backoff_s = self.backoff_initial_s
                consecutive_stalls = 0
            try:
                frame = self.camera.read(self.read_timeout_ms)
            except CameraTimeoutError as exc:
                consecutive_stalls += 1
                self._count("stalls", error=str(exc))
                if consecutive_stalls >= self.reconnect_after_stalls:
                    log.warning("%s: %d consecutive stalls; reopening the device", self.name, consecutive_stalls)
                    self.camera.disconnect()
                continue
            except DeviceNotConnectedError as exc:
                self._count("disconnects", error=str(exc))
                log.warning("%s: %s; reconnecting with backoff", self.name, exc)
                self._stop.wait(backoff_s)
                continue
            except Exception as exc:  # a driver error must not kill capture; count, log, reopen
                self._count("errors", error=f"{type(exc).__name__}: {exc}")
                log.exception("%s: unexpected error while reading; reopening the device", self.name)
                self.camera.disconnect()
                self._stop.wait(backoff_s)
                continue
            consecutive_stalls = 0
            self._publish(frame)

    def _try_connect(self) -> bool:
        try:
            self.camera.connect()
        except Exception as exc:  # any failure to open is retried with backoff, and counted
            message = f"{type(exc).__name__}: {exc}"
            self._count("connect_failures", error=message)
            if message != self._last_connect_error:  # warn once per distinct cause, not per retry
                log.warning("%s: cannot open the camera (retrying with backoff): %s", self.name, message)
            self._last_connect_error = message
            return False
        self._last_connect_error = None
        if self._ever_connected:
            self._count("reconnects")
            log.info("%s: reconnected", self.name)
        self._ever_connected = True
        self._last_index = None  # device counters may restart after a reopen
        return True

    def _publish(self, frame: Frame) -> None:
        if self._last_index is not None and frame.index == self._last_index:
            self._count("duplicates")
            return
        if self._last_t is not None and frame.t_capture <= self._last_t:
            # an identical timestamp is a duplicate delivered under a new index; older is out of order
            self._count("duplicates" if frame.t_capture == self._last_t else "out_of_order")
            return
        if self._last_index is not None and frame.index > self._last_index + 1:
            self._count("dropped", frame.index - self._last_index - 1)
        elif self._last_index is None and self._last_t is not None:
            # first frame after a reopen: device counters may have restarted, so estimate the
            # frames lost during the outage from the capture-time gap
            missed = round((frame.t_capture - self._last_t) * self.camera.fps) - 1
            if missed > 0:
                self._count("dropped", missed)
        self._last_index = frame.index
        self._last_t = frame.t_capture
        age_s = self.clock.now() - frame.t_capture
        self.delivery_latency.add(max(age_s, 0.0))
        if age_s > self.late_after_s:
            self._count("late")
        self.mailbox.put(frame, frame.t_capture)
        self._count("frames")
        if self.on_frame is not None:
            try:
                self.on_frame(frame)
            except Exception as exc:  # a faulty callback must not stop capture
                self._count("errors", error=f"on_frame: {type(exc).__name__}: {exc}")
                log.exception("%s: on_frame callback failed", self.name)
