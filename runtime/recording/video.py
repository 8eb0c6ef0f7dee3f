"""The per-episode video people watch: head | wrist | head with the mask overlaid.

Upstream's record_frame writes wrist | head | green mask side by side with OpenCV's VideoWriter;
we keep that idea (one frame per recorded step) with the mask blended onto the head image so the
tracked object is visible in context. Encoding runs on the recorder's writer thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

MASK_BGR = np.array([0, 255, 0], dtype=np.float32)
MASK_ALPHA = 0.5


BOX_BGR = (0, 0, 255)  # the planner's box, red on the head and overlay panels
TEXT_BGR = (255, 255, 255)


def compose_frame(head_bgr: np.ndarray, wrist_bgr: np.ndarray, mask: np.ndarray, max_height: int = 0,
                  phase: str | None = None, box=None) -> np.ndarray:
    """One video frame (h, 3W', 3) uint8: head | wrist resized to the head's height | overlay.

    `max_height` > 0 scales a taller head image (and its mask) down to it first: cheaper to blend and
    to encode, and the video is only for watching. `phase` (the episode phase) is written on the head
    panel and `box` ([x1, y1, x2, y2] in head-image pixels, the planner's target box) drawn on the head
    and overlay panels, so a reviewer sees what the runtime was doing and what it was told to grasp."""
    h0 = head_bgr.shape[0]
    h = h0
    if 0 < max_height < h:
        w = max(1, round(head_bgr.shape[1] * max_height / h))
        head_bgr = cv2.resize(head_bgr, (w, max_height), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(np.ascontiguousarray(mask, dtype=np.uint8), (w, max_height), interpolation=cv2.INTER_NEAREST)
        h = max_height
    if wrist_bgr.shape[0] != h:
        w = max(1, round(wrist_bgr.shape[1] * h / wrist_bgr.shape[0]))
        wrist_bgr = cv2.resize(wrist_bgr, (w, h), interpolation=cv2.INTER_AREA)
    overlay = head_bgr.copy()
    on = mask > 0
    overlay[on] = (head_bgr[on] * (1 - MASK_ALPHA) + MASK_BGR * MASK_ALPHA).astype(np.uint8)
    if box is not None or phase:
        head_bgr = head_bgr.copy()
    corners = _box_corners(box, h / h0)
    if corners is not None:
        for panel in (head_bgr, overlay):
            cv2.rectangle(panel, corners[0], corners[1], BOX_BGR, thickness=max(1, h // 160))
    if phase:
        scale = max(0.35, h / 480)
        cv2.putText(head_bgr, str(phase), (4, int(16 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale,
                    TEXT_BGR, 1, cv2.LINE_AA)
    return np.hstack([head_bgr, wrist_bgr, overlay])


def _box_corners(box, scale: float):
    """Integer corners of a finite [x1, y1, x2, y2] box scaled to the panel, or None (no box / malformed)."""
    if box is None:
        return None
    try:
        x1, y1, x2, y2 = (float(v) * scale for v in box)
    except (TypeError, ValueError):
        return None
    if not all(np.isfinite((x1, y1, x2, y2))):
        return None
    return (round(x1), round(y1)), (round(x2), round(y2))


class VideoSink:
    """An OpenCV VideoWriter opened on the first frame (size known then); mp4v .mp4, or MJPG .avi
    when this OpenCV build cannot write mp4. A failing video never stops the data recording."""

    def __init__(self, stem: Path, fps: float) -> None:
        self.stem = stem
        self.fps = fps
        self.path: Path | None = None
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.frames = 0
        self.errors = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._size is None:
            self._open(frame_bgr.shape[1], frame_bgr.shape[0])
        if self._writer is None:
            return
        if (frame_bgr.shape[1], frame_bgr.shape[0]) != self._size:
            frame_bgr = cv2.resize(frame_bgr, self._size)
        self._writer.write(np.ascontiguousarray(frame_bgr))
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        self._size = (width, height)
        from runtime.data import h264

        if h264.available():  # H.264 yuv420p plays in browsers; mp4v does not
            try:
                path = self.stem.with_suffix(".mp4")
                self._writer, self.path = _H264Adapter(h264.H264Writer(path, self.fps, bgr=True)), path
                return
            except Exception as exc:  # noqa: BLE001 - a failing video never stops the recording
                log.warning("recording: H.264 via PyAV failed (%s); falling back to OpenCV", exc)
        for suffix, fourcc in ((".mp4", "mp4v"), (".avi", "MJPG")):
            path = self.stem.with_suffix(suffix)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), self.fps, self._size)
            if writer.isOpened():
                self._writer, self.path = writer, path
                return
            writer.release()
            path.unlink(missing_ok=True)
        self.errors += 1
        log.warning("recording: no video codec available (tried mp4v, MJPG); episode video skipped")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class _H264Adapter:
    """PyAV's H.264 writer behind OpenCV VideoWriter's write/release."""

    def __init__(self, writer) -> None:
        self._w = writer

    def write(self, frame_bgr: np.ndarray) -> None:
        self._w.write(frame_bgr)

    def release(self) -> None:
        self._w.close()
