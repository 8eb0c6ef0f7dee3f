"""Analytic FLOP counts agree with DESIGN.md's figures for the paper's sizes and with a direct count."""

from __future__ import annotations

import pytest

from export.flops import controller, dinov2
from export.model.arch import get_preset


def test_paper_size_counts_match_design():
    f = controller(get_preset("dexgraspvla"))
    assert f["encoder_total"] == pytest.approx(1.43e12, rel=0.01)  # "encoders cost ~1.43 TFLOP"
    assert f["dit_uncached_total"] == pytest.approx(2.55e12, rel=0.01)  # "16 DiT steps ~2.55 TFLOP"
    assert f["dit_cached_total"] == pytest.approx(0.49e12, rel=0.02)  # "cached, the DiT costs ~0.49 TFLOP"
    assert f["dit_uncached_total"] - f["dit_cached_total"] == pytest.approx(2.07e12, rel=0.02)


def test_vit_base_direct_count():
    # 12 blocks at 1370 tokens, width 768: qkv + proj + mlp = 12 d^2 per token, attention 4 t^2 d, + patch embed.
    t, d = 1370, 768
    expected = 12 * (2 * t * 12 * d * d + 4 * t * t * d) + 2 * 1369 * 3 * 14 * 14 * d
    assert dinov2("dinov2_vitb14") == expected
