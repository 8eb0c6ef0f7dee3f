"""Which coordinate frame a VLM writes its boxes in, so they map back to camera pixels exactly.

Models disagree: some answer in pixels of the image they were sent ("pixels"), Qwen2-VL on a
0..1000 grid ("norm1000"), others in 0..1 ("norm1"), and Qwen2.5-VL in absolute pixels of the
image *after its processor resized it* ("qwen2.5-vl"): each side rounded to a multiple of 28 and
the area clamped to [min_pixels, max_pixels] (transformers' Qwen2VLImageProcessor and
qwen-vl-utils call this smart_resize). A 640x480 frame becomes 644x476, so a box touching the
right edge says x2 = 644, which read as sent pixels is "outside the image"; read in the right
frame it maps back to x2 = 640.

The min/max pixel bounds must be the ones the serving processor uses: Qwen2.5-VL's
preprocessor_config.json says 3136 and 12845056; vLLM's `--mm-processor-kwargs` can change them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BOX_FRAMES = ("pixels", "qwen2.5-vl", "norm1000", "norm1")
QWEN_FACTOR = 28  # patch 14 x spatial merge 2
QWEN25_MIN_PIXELS = 56 * 56
QWEN25_MAX_PIXELS = 16384 * 28 * 28  # 12845056
QWEN_MAX_ASPECT = 200


def qwen_resized_size(width: int, height: int, *, factor: int = QWEN_FACTOR,
                      min_pixels: int = QWEN25_MIN_PIXELS, max_pixels: int = QWEN25_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of the image Qwen2/2.5-VL's processor feeds the model for a width x height input.

    Each side goes to the nearest multiple of `factor` (Python's round, as the processor does);
    if the area then exceeds `max_pixels` (or falls under `min_pixels`) both sides are scaled by
    the same factor and floored (ceiled) to multiples of `factor`. Raises ValueError for an aspect
    ratio over 200, which the processor refuses too.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(width, height) / min(width, height) > QWEN_MAX_ASPECT:
        raise ValueError(f"aspect ratio of {width}x{height} exceeds {QWEN_MAX_ASPECT}, which Qwen-VL refuses")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return w, h


@dataclass(frozen=True)
class BoxFrame:
    """A box frame mode (one of BOX_FRAMES) plus the resize bounds the "qwen2.5-vl" mode needs."""

    mode: str = "pixels"
    min_pixels: int = QWEN25_MIN_PIXELS
    max_pixels: int = QWEN25_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.mode not in BOX_FRAMES:
            raise ValueError(f"box frame must be one of {BOX_FRAMES}, got {self.mode!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels ({self.min_pixels}) <= max_pixels ({self.max_pixels})")

    @property
    def absolute(self) -> bool:
        """True when the model writes pixels (of the sent or the resized image), not a normalised grid."""
        return self.mode in ("pixels", "qwen2.5-vl")

    def grid(self, sent_w: int, sent_h: int) -> tuple[int, int]:
        """The (width, height) of the grid the model's numbers live on, for an image sent at sent_w x sent_h."""
        if self.mode == "pixels":
            return sent_w, sent_h
        if self.mode == "qwen2.5-vl":
            return qwen_resized_size(sent_w, sent_h, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        if self.mode == "norm1000":
            return 1000, 1000
        return 1, 1


def as_frame(coords: str | BoxFrame) -> BoxFrame:
    """Accept a mode name (default resize bounds) or a BoxFrame."""
    return coords if isinstance(coords, BoxFrame) else BoxFrame(coords)
