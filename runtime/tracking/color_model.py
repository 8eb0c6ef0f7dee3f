"""A foreground-vs-background colour model (HSV histogram ratio) for the classical tracker.

Why a ratio model: back-projecting the object's own histogram lights up every pixel that shares
a colour with it (the table under a beige object, the arm under a grey one). Dividing by the
histogram of the object's surroundings keeps only colours that are typical of the object and
rare around it, which is what separates target from background in practice (the "discriminative
colour" trick of classical trackers). Hue, saturation and a coarse value channel are used so
dark and light parts of the same object fall into different but related bins.
"""

from __future__ import annotations

import cv2
import numpy as np

CHANNELS = [0, 1, 2]
RANGES = [0, 180, 0, 256, 0, 256]


class ColorModel:
    """P(target | colour) as a 3-D HSV lookup, fitted from a foreground mask and a background ring."""

    def __init__(self, bins: tuple[int, int, int] = (30, 16, 8), smooth: bool = True) -> None:
        self.bins = list(bins)
        self.smooth = smooth
        self.hist: np.ndarray | None = None  # float32 P(target | bin) * 255
        self._table: np.ndarray | None = None  # the same, flattened to uint8 for lookups
        # per-channel value -> bin index, applied with cv2.LUT (one pass over the three channels)
        self._bin_lut = np.stack(
            [np.minimum(np.arange(256) * n // r, n - 1) for n, r in zip(self.bins, (180, 256, 256), strict=True)], axis=-1
        ).astype(np.uint8).reshape(1, 256, 3)

    @property
    def fitted(self) -> bool:
        return self.hist is not None

    def fit(self, hsv: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> None:
        """Fit from uint8 masks (nonzero = sample) of the same HxW as `hsv`."""
        h_fg = cv2.calcHist([hsv], CHANNELS, fg, self.bins, RANGES)
        h_bg = cv2.calcHist([hsv], CHANNELS, bg, self.bins, RANGES)
        n_fg, n_bg = float(h_fg.sum()), float(h_bg.sum())
        if n_fg == 0:
            raise ValueError("colour model: the foreground mask selects no pixels")
        h_fg /= n_fg
        h_bg = h_bg / n_bg if n_bg > 0 else np.zeros_like(h_bg)
        if self.smooth:  # spread each colour into neighbouring bins: robust to noise and shading
            h_fg = _blur3(h_fg)
            h_bg = _blur3(h_bg)
        ratio = h_fg / (h_fg + h_bg + 1e-6)
        ratio[h_fg < 1e-4] = 0.0  # colours the object (almost) never has
        self.hist = (ratio * 255.0).astype(np.float32)
        self._table = np.round(self.hist).astype(np.uint8).reshape(-1)

    def prob(self, hsv: np.ndarray) -> np.ndarray:
        """uint8 HxW map: 255 * P(target | pixel colour).

        A table lookup rather than cv2.calcBackProject: OpenCV 5.0's 3-D back-projection returns
        zeros (2-D works), and the lookup is as fast on the crops used here.
        """
        if self._table is None:
            raise RuntimeError("colour model used before fit()")
        b = cv2.LUT(hsv, self._bin_lut)
        _, n_s, n_v = self.bins
        idx = (b[..., 0].astype(np.int32) * (n_s * n_v)) + (b[..., 1].astype(np.int32) * n_v) + b[..., 2]
        return self._table[idx]


def _blur3(h: np.ndarray) -> np.ndarray:
    """Separable [1 2 1]/4 blur along each histogram axis (hue wraps around)."""
    out = h
    for axis in range(3):
        mode = "wrap" if axis == 0 else "edge"
        pad = [(0, 0)] * 3
        pad[axis] = (1, 1)
        p = np.pad(out, pad, mode=mode)
        sl = [slice(None)] * 3
        a, b, c = (list(sl) for _ in range(3))
        a[axis], b[axis], c[axis] = slice(0, -2), slice(1, -1), slice(2, None)
        out = 0.25 * p[tuple(a)] + 0.5 * p[tuple(b)] + 0.25 * p[tuple(c)]
    return out.astype(np.float32)
