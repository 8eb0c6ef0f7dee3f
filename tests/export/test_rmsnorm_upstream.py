"""RmsNorm == the formula of the timm upstream pins (requirements.txt: timm==1.0.12).

timm <= 1.0.12's layers/fast_norm.py rms_norm divides by sqrt(torch.var(x) + eps): the unbiased,
*centered* variance, not mean(x^2) (changed in timm 1.0.13). Upstream's DiT uses it for norm1/2/3,
ln_f and the q/k norms. benchmarks/upstream_parity.py found the mean(x^2) version 2% of the action
range away from upstream's own predict_action; this test pins the formula without needing timm.
"""

from __future__ import annotations

import numpy as np
import torch

from export.model.layers import RmsNorm


def timm_1_0_12_rms_norm(x: np.ndarray, weight: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """timm 1.0.12 fast_norm.rms_norm in float64: v = torch.var(x, dim=-1, keepdim=True) (correction 1)."""
    v = x.var(axis=-1, ddof=1, keepdims=True)
    return x / np.sqrt(v + eps) * weight


def test_rmsnorm_is_timm_1_0_12():
    gen = torch.Generator().manual_seed(0)
    norm = RmsNorm(48)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(48, generator=gen) + 0.5)
    # A non-zero mean per row, as q/k and hidden states have: var and mean(x^2) then differ a lot.
    x = torch.randn(2, 8, 64, 48, generator=gen) + torch.randn(2, 8, 64, 1, generator=gen)
    expected = timm_1_0_12_rms_norm(x.double().numpy(), norm.weight.detach().double().numpy())
    got = norm(x).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    mean_square = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert np.abs(mean_square.detach().double().numpy() - expected).max() > 0.1  # the test can tell them apart


def test_rmsnorm_eps_is_timm_default():
    assert RmsNorm(8).eps == 1e-6
