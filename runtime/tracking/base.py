"""The tracker interface every tracker implements (classical CPU, Cutie, fakes).

Upstream DexGraspVLA turns the planner's box into a mask with SAM, then Cutie tracks that mask on
every head frame; the mask becomes the 4th channel of the head image. Trackers here take BGR uint8
frames at camera resolution (as captured) and return a uint8 {0,1} mask of the same height/width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class TrackResult:
    """The tracker's answer for one frame.

    mask:  uint8 HxW with values {0, 1} (1 = target).
    prob:  optional float32 HxW foreground probability (learned trackers).
    score: tracker confidence in [0, 1] (area ratio, flow consistency, or max prob).
    lost:  True when the target is considered lost (empty mask, left the frame, low confidence).
    info:  free-form diagnostics (latencies per graph, points tracked, ...).
    """

    mask: np.ndarray
    prob: np.ndarray | None = None
    score: float = 1.0
    lost: bool = False
    info: dict = field(default_factory=dict)


@runtime_checkable
class Tracker(Protocol):
    """Box in, mask per frame out. Methods block the calling thread (the tracker thread) only."""

    def init(self, image_bgr: np.ndarray, box_xyxy: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> TrackResult:
        """(Re-)initialise on `image_bgr` from a pixel box [x1, y1, x2, y2] or a {0,1} mask."""

    def track(self, image_bgr: np.ndarray) -> TrackResult:
        """Propagate to the next frame. Raises RuntimeError if called before `init`."""

    def reset(self) -> None:
        """Forget the target (the next call must be `init`)."""


def check_frame(image_bgr: np.ndarray, expected_hw: tuple[int, int] | None = None) -> None:
    """Validate a BGR uint8 frame; raise ObservationError naming what was wrong."""
    from runtime.errors import ObservationError

    if not isinstance(image_bgr, np.ndarray):
        raise ObservationError(f"frame must be a numpy array, got {type(image_bgr).__name__}")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ObservationError(f"frame must be HxWx3 (BGR), got shape {image_bgr.shape}")
    if image_bgr.dtype != np.uint8:
        raise ObservationError(f"frame must be uint8, got {image_bgr.dtype}")
    if expected_hw is not None and tuple(image_bgr.shape[:2]) != tuple(expected_hw):
        raise ObservationError(
            f"frame is {image_bgr.shape[1]}x{image_bgr.shape[0]}, tracker was initialised on "
            f"{expected_hw[1]}x{expected_hw[0]}"
        )
