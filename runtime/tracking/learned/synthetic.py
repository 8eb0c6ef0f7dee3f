"""A synthetic head-camera video: a textured object moving over a textured table.

Used by the parity tests, `dexgrasp track` demos and the tracker benchmark, where no camera or
dataset exists. The object moves along a path that can leave the frame, so "target lost" is
exercised too. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np


def _texture(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    coarse = rng.integers(0, 256, size=(h // cell + 2, w // cell + 2, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:h, :w]
    noise = rng.integers(-20, 21, size=(h, w, 3))
    return np.clip(tex.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def moving_object_video(n_frames: int = 32, height: int = 480, width: int = 640, seed: int = 0,
                        step_px: tuple[float, float] = (9.0, 4.0), radius_px: tuple[int, int] = (70, 50),
                        start_xy: tuple[float, float] | None = None, noise_std: float = 4.0
                        ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames (BGR uint8 HxWx3) and ground-truth masks (uint8 {0,1} HxW) of an ellipse moving by `step_px`/frame.

    Per-frame sensor noise (`noise_std` grey levels) keeps the static background from repeating
    bit-exactly, as no real camera does (identical frames make top-k memory reads tie).
    """
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, cell=24)
    obj_tex = _texture(rng, height, width, cell=8)
    obj_tex[..., 1] = np.clip(obj_tex[..., 1].astype(np.int16) + 60, 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = start_xy if start_xy is not None else (width * 0.3, height * 0.4)
    frames, masks = [], []
    for i in range(n_frames):
        x, y = cx + step_px[0] * i, cy + step_px[1] * i
        inside = ((xx - x) / radius_px[0]) ** 2 + ((yy - y) / radius_px[1]) ** 2 <= 1.0
        # the object's texture moves with it (shifted copy), so features can be matched across frames
        shifted = np.roll(obj_tex, (int(round(step_px[1] * i)), int(round(step_px[0] * i))), axis=(0, 1))
        frame = np.where(inside[..., None], shifted, background).astype(np.float32)
        if noise_std > 0:
            frame += rng.normal(0.0, noise_std, size=frame.shape).astype(np.float32)
        frame = np.clip(np.round(frame), 0, 255).astype(np.uint8)
        frames.append(np.ascontiguousarray(frame))
        masks.append(inside.astype(np.uint8))
    return frames, masks
