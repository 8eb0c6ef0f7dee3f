"""The camera interface every camera implements (RealSense, `.bag` playback, synthetic scene).

Shaped like lerobot's `cameras/camera.py`: `connect()` / `read(timeout_ms)` / `read_latest(max_age_ms)`
/ `disconnect()`, a context manager and `is_connected`. Differences that matter on a robot:

* `read()` returns a `Frame` that carries its capture time on the runtime's monotonic clock (not
  the time it was delivered), a per-camera frame index (gaps = dropped frames) and the camera name,
  so every consumer can judge staleness and alignment.
* Timeouts are explicit and in the argument name; a timeout raises `CameraTimeoutError` (a
  `TimeoutError`), an unplugged device raises `DeviceNotConnectedError` naming the device.
* `read_latest()` never blocks: it returns the newest frame any `read()` produced (normally the
  `CameraWorker` thread's) or raises `StaleDataError` with the measured age.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field

import numpy as np

from runtime.clock import Clock
from runtime.errors import DeviceNotConnectedError, DexGraspError, StaleDataError
from runtime.mailbox import Mailbox

log = logging.getLogger(__name__)


class CameraTimeoutError(DexGraspError, TimeoutError):
    """No new frame arrived within the read timeout (camera stalled, or fps lower than expected)."""


@dataclass(frozen=True)
class Frame:
    """One captured image.

    image:     BGR uint8 HxWx3 (upstream's cameras deliver BGR; the controller's preprocessing
               expects BGR too).
    t_capture: capture time in seconds on the runtime's monotonic clock (`runtime.clock.Clock`).
    index:     the camera's own frame counter; consecutive frames differ by 1, gaps mean drops.
    camera:    the camera's name ("third" = head, "right_first" = wrist, like upstream's config).
    depth:     optional uint16 HxW depth in device units (RealSense), aligned to `image` or None.
    info:      diagnostics (device timestamp and domain, synthetic ground-truth labels, ...).
    """

    image: np.ndarray
    t_capture: float
    index: int
    camera: str
    depth: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


class Camera(abc.ABC):
    """Base class: lifecycle, context manager and the `read_latest` slot shared by all cameras.

    Subclasses implement `_connect()`, `_read(timeout_ms)` and `_disconnect()`; the base class
    handles connection state, error messages that name the device, and records each frame for
    `read_latest`. Not thread-safe for concurrent `read()` calls: one reader thread (the
    `CameraWorker`) per camera, any number of `read_latest` callers.
    """

    def __init__(self, name: str, width: int, height: int, fps: float, clock: Clock | None = None) -> None:
        if not name:
            raise ValueError("camera name must be a non-empty string")
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"camera '{name}': resolution must be positive, got {width}x{height}")
        if not (fps > 0):
            raise ValueError(f"camera '{name}': fps must be positive, got {fps!r}")
        self.name = name
        self.width = int(width)
        self.height = int(height)
        self.fps = float(fps)
        self.clock = clock or Clock()
        self._connected = False
        self._latest: Mailbox[Frame] = Mailbox(f"camera:{name}", self.clock)

    # ----------------------------------------------------------------- subclass hooks
    @abc.abstractmethod
    def _connect(self) -> None:
        """Open the device; raise DeviceNotConnectedError (naming the device) on failure."""

    @abc.abstractmethod
    def _read(self, timeout_ms: float) -> Frame:
        """Block until the next new frame or `timeout_ms`; raise CameraTimeoutError / DeviceNotConnectedError."""

    @abc.abstractmethod
    def _disconnect(self) -> None:
        """Release the device. Must not raise for an already-lost device."""

    def describe(self) -> str:
        """A short human name for messages, e.g. "RealSense 'third' (serial 123456)"."""
        return f"{type(self).__name__} '{self.name}'"

    # ----------------------------------------------------------------- public interface
    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Open the device. Blocks until it streams or fails (subclass-specific bound)."""
        if self._connected:
            return
        self._connect()
        self._connected = True
        log.info("%s connected (%dx%d @ %.0f fps)", self.describe(), self.width, self.height, self.fps)

    def read(self, timeout_ms: float = 200.0) -> Frame:
        """Block until the next NEW frame (never one returned before) or `timeout_ms` passes.

        Raises CameraTimeoutError on timeout, DeviceNotConnectedError when not connected or when
        the device disappeared (then `is_connected` becomes False and `connect()` may be retried).
        """
        if not self._connected:
            raise DeviceNotConnectedError(f"{self.describe()} is not connected; call connect() first")
        if not (timeout_ms > 0):
            raise ValueError(f"{self.describe()}: timeout_ms must be positive, got {timeout_ms!r}")
        try:
            frame = self._read(float(timeout_ms))
        except DeviceNotConnectedError:
            self._mark_lost()
            raise
        self._latest.put(frame, frame.t_capture)
        return frame

    def read_latest(self, max_age_ms: float = 500.0) -> Frame:
        """The newest frame produced by `read()`, without blocking.

        Raises DeviceNotConnectedError if not connected, StaleDataError if no frame was read yet or
        the newest one is older than `max_age_ms` (the message gives the measured age).
        """
        if not self._connected:
            raise DeviceNotConnectedError(f"{self.describe()} is not connected; call connect() first")
        try:
            return self._latest.latest(max_age_ms / 1e3).value
        except StaleDataError as exc:
            raise StaleDataError(f"{self.describe()}: {exc}") from None

    def disconnect(self) -> None:
        """Release the device. Idempotent; never raises for a device that is already gone."""
        if not self._connected:
            return
        self._connected = False
        self._disconnect()
        log.info("%s disconnected", self.describe())

    def _mark_lost(self) -> None:
        """The device vanished mid-stream: release what we hold and mark it disconnected."""
        self._connected = False
        try:
            self._disconnect()
        except Exception as exc:  # releasing a vanished device may fail; the loss is what matters
            log.warning("%s: error while releasing a lost device: %s", self.describe(), exc)

    def __enter__(self) -> Camera:
        self.connect()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return f"<{self.describe()} {self.width}x{self.height}@{self.fps:g} {state}>"
