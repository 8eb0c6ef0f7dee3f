"""Upstream's training-time colour jitter (torchvision ColorJitter(0.3, 0.3, 0.3, 0.1)), written out.

torchvision is not installed here (its wheels pin a torch build), so this reproduces the semantics
upstream relies on: ObsEncoder calls the transform on the whole (B*T, 3, H, W) RGB batch, so ONE
set of factors and ONE random order of the four adjustments is drawn per call and applied to every
image; brightness/contrast/saturation factors are uniform in [1 - 0.3, 1 + 0.3], the hue shift is
uniform in [-0.1, 0.1] (fraction of the colour circle). Contrast blends with each image's own mean
grey level; every step clamps to [0, 1], as torchvision's float-image functional ops do.
"""

from __future__ import annotations

import torch

GREY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, torchvision's rgb_to_grayscale


def _grey(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(dim=-3)
    return (GREY[0] * r + GREY[1] * g + GREY[2] * b).unsqueeze(-3)


def _blend(img: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * img + (1.0 - factor) * other).clamp(0.0, 1.0)


def _rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(dim=-3)
    maxc = img.amax(dim=-3)
    minc = img.amin(dim=-3)
    delta = maxc - minc
    eq = maxc == minc
    s = delta / torch.where(eq, torch.ones_like(maxc), maxc)
    safe = torch.where(eq, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(eq, torch.zeros_like(h), h)
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def _hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    h, s, v = img.unbind(dim=-3)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    # sextant i -> (r, g, b)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = []
    for channel in range(3):
        value = torch.zeros_like(v)
        for k, rgb in enumerate(table):
            value = torch.where(i == k, rgb[channel], value)
        out.append(value)
    return torch.stack(out, dim=-3)


def adjust_hue(img: torch.Tensor, shift: float) -> torch.Tensor:
    hsv = _rgb_to_hsv(img)
    h = torch.fmod(hsv[..., 0, :, :] + shift + 1.0, 1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[..., 1, :, :], hsv[..., 2, :, :]), dim=-3))


class ColorJitter:
    """Callable like torchvision.transforms.ColorJitter(brightness, contrast, saturation, hue)."""

    def __init__(self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                 hue: float = 0.1, generator: torch.Generator | None = None) -> None:
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.generator = generator

    def _uniform(self, lo: float, hi: float) -> float:
        return float(torch.empty(1).uniform_(lo, hi, generator=self.generator))

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """img: (..., 3, H, W) RGB in [0, 1]; one draw of order and factors for the whole batch."""
        order = torch.randperm(4, generator=self.generator).tolist()
        b = self._uniform(1 - self.brightness, 1 + self.brightness)
        c = self._uniform(1 - self.contrast, 1 + self.contrast)
        s = self._uniform(1 - self.saturation, 1 + self.saturation)
        h = self._uniform(-self.hue, self.hue)
        for fn in order:
            if fn == 0:
                img = _blend(img, torch.zeros_like(img), b)
            elif fn == 1:
                img = _blend(img, _grey(img).mean(dim=(-3, -2, -1), keepdim=True), c)
            elif fn == 2:
                img = _blend(img, _grey(img), s)
            else:
                img = adjust_hue(img, h)
        return img
