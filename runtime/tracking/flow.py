"""Sparse optical flow of feature points inside a mask -> the mask's frame-to-frame motion.

Pyramidal Lucas-Kanade on a crop around the target (cost scales with the target, not the frame),
a forward-backward check that discards points that do not track back to where they started
(occluder edges, textureless drift), and a RANSAC similarity fit (translation, rotation, uniform
scale) so a few bad points cannot drag the mask away.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Motion:
    """prev -> current frame motion of the target, as a 2x3 affine in full-image pixels."""

    matrix: np.ndarray
    method: str  # "similarity" | "translation" | "none"
    points: int  # points that tracked forward and back
    inliers: int


def roi_slices(roi: tuple[int, int, int, int]) -> tuple[slice, slice]:
    x1, y1, x2, y2 = roi
    return slice(y1, y2), slice(x1, x2)


class PointFlow:
    """Selects corners inside a mask and follows them to the next frame."""

    def __init__(self, max_points: int = 40, win_px: int = 15, levels: int = 2, fb_max_px: float = 1.0) -> None:
        self.max_points = max_points
        self.lk = dict(winSize=(win_px, win_px), maxLevel=levels,
                       criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
        self.fb_max_px = fb_max_px

    def select(self, gray: np.ndarray, mask: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
        """Up to `max_points` corners (Nx2 float32, full-image coordinates) on or just around the mask.

        The mask is dilated a little: object outlines carry the corners of flat-coloured objects.
        """
        sy, sx = roi_slices(roi)
        m = cv2.dilate(mask[sy, sx], np.ones((5, 5), np.uint8))
        pts = cv2.goodFeaturesToTrack(gray[sy, sx], self.max_points, 0.01, 3, mask=m, blockSize=5)
        if pts is None:
            return np.zeros((0, 2), np.float32)
        return pts.reshape(-1, 2) + np.array([roi[0], roi[1]], np.float32)

    def estimate(self, prev_gray: np.ndarray, gray: np.ndarray, points: np.ndarray,
                 roi: tuple[int, int, int, int]) -> Motion:
        """Motion of `points` (full coordinates) from `prev_gray` to `gray`, measured inside `roi`."""
        if len(points) == 0:
            return Motion(IDENTITY.copy(), "none", 0, 0)
        sy, sx = roi_slices(roi)
        off = np.array([roi[0], roi[1]], np.float32)
        p0 = (points - off).reshape(-1, 1, 2).astype(np.float32)
        a, b = prev_gray[sy, sx], gray[sy, sx]
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **self.lk)
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **self.lk)
        fb = np.linalg.norm((p0 - p0r).reshape(-1, 2), axis=1)
        good = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (fb < self.fb_max_px)
        src, dst = p0.reshape(-1, 2)[good] + off, p1.reshape(-1, 2)[good] + off
        n = int(good.sum())
        if n >= 6:
            m, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
            if m is not None and inl is not None and int(inl.sum()) >= 4:
                return Motion(m, "similarity", n, int(inl.sum()))
        if n >= 1:
            t = np.median(dst - src, axis=0)
            m = IDENTITY.copy()
            m[:, 2] = t
            return Motion(m, "translation", n, n)
        return Motion(IDENTITY.copy(), "none", 0, 0)
