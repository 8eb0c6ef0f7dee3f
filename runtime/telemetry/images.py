"""Operator images: head / wrist / mask frames as small JPEGs, off the control path.

The observer thread only drops a reference into a one-slot box (`offer`, never blocks, no pixel
work); the `dds-images` thread takes it at telemetry.dds.images.rate_hz, downscales, encodes and
publishes. A frame offered while the previous one is still waiting for the encoder replaces it and
is counted as `images_dropped_busy`; frames between two due times are counted as skipped.
"""

from __future__ import annotations

import threading

import numpy as np

from runtime.clock import Clock
from runtime.telemetry.config import ImagesConfig

CAMERAS = ("head", "wrist", "mask")


def encode_jpeg(image: np.ndarray, max_width: int, quality: int, is_mask: bool = False) -> tuple[bytes, int, int]:
    """(JPEG bytes, width, height) of `image` (BGR uint8 HxWx3, gray HxW, or a bool/0..1 mask),
    downscaled to at most max_width wide (aspect kept). Raises ValueError for a non-image."""
    import cv2

    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"not an image: shape {img.shape}")
    if is_mask or img.dtype == bool:
        img = ((img > 0.5) if img.dtype.kind == "f" else (img > 0)).astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    if w > max_width:
        h, w = max(1, round(h * max_width / w)), max_width
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST if is_mask else cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for shape {img.shape}")
    return buf.tobytes(), w, h


def decode_jpeg(data) -> np.ndarray:
    """A received CompressedImage's data (bytes or list of ints) as a BGR/gray uint8 array."""
    import cv2

    arr = np.frombuffer(bytes(data), dtype=np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("not a decodable JPEG")
    return img


class FrameSlot:
    """The one-slot hand-off between the observer thread and the image thread, rate-gated."""

    def __init__(self, cfg: ImagesConfig, clock: Clock, counters: dict) -> None:
        self.period_s = 1.0 / cfg.rate_hz
        self.clock = clock
        self.counters = counters
        self._lock = threading.Lock()
        self._pending: tuple | None = None
        self._next_due = -np.inf
        self.ready = threading.Event()
        self.head_size: tuple[int, int] | None = None  # (width, height) of the latest head frame
        self.t_last_frame: float | None = None

    def offer(self, head, wrist, mask, t) -> None:
        """Observer thread: keep a reference to the frames if an image is due. Never blocks."""
        now = self.clock.now()
        with self._lock:
            if head is not None and getattr(head, "ndim", 0) >= 2:
                self.head_size = (int(head.shape[1]), int(head.shape[0]))
            self.t_last_frame = now
            if now < self._next_due:
                self.counters["images_skipped_rate"] += 1
                return
            if self._pending is not None:
                self.counters["images_dropped_busy"] += 1  # the encoder has not taken the last one
            self._pending = (head, wrist, mask, t)
            # absolute schedule: a late frame does not push every later one back
            self._next_due = self._next_due + self.period_s if np.isfinite(self._next_due) else now + self.period_s
            if self._next_due <= now:  # far behind: restart the schedule, never burst
                self._next_due = now + self.period_s
        self.ready.set()

    def take(self) -> tuple | None:
        with self._lock:
            item, self._pending = self._pending, None
            self.ready.clear()
            return item
