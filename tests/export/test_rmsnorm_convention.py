"""`--rmsnorm`: the RmsNorm formula is an explicit export choice, and the manifest records it.

timm 1.0.12 (upstream's pin) divides by sqrt(unbiased variance + eps); timm >= 1.0.13 by
sqrt(mean(x^2) + eps). The weights cannot tell which timm trained them, so a checkpoint from a newer
timm exported with the wrong formula is ~1e-2 of the action range off with no way to say so. The
references below are written with plain torch ops in float64, independent of export/model/layers.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export.checkpoint import load_checkpoint
from export.model.layers import RmsNorm, set_rmsnorm_convention
from export.onnx_export import example_inputs, export_controller
from runtime.controller import Controller
from runtime.errors import ConfigError


def ref_timm_1_0_12(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """sum((x - mean)^2) / (n - 1), then x / sqrt(that + eps) * w."""
    n = x.shape[-1]
    centered = x - x.sum(-1, keepdim=True) / n
    var = (centered * centered).sum(-1, keepdim=True) / (n - 1)
    return x / torch.sqrt(var + eps) * w


def ref_mean_square(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * w (timm >= 1.0.13)."""
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) / x.shape[-1] + eps) * w


def _inputs():
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(48, generator=gen) + 0.5
    # A non-zero per-row mean (as hidden states have) makes the two formulas differ clearly.
    x = torch.randn(2, 8, 16, 48, generator=gen) + torch.randn(2, 8, 16, 1, generator=gen)
    return x, w


@pytest.mark.parametrize(("convention", "ref", "other"), [
    ("timm-1.0.12", ref_timm_1_0_12, ref_mean_square),
    ("mean-square", ref_mean_square, ref_timm_1_0_12),
])
def test_rmsnorm_matches_its_convention(convention, ref, other):
    x, w = _inputs()
    norm = RmsNorm(48, convention=convention)
    with torch.no_grad():
        norm.weight.copy_(w)
        got = norm(x).double()
    expected = ref(x.double(), w.double())
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert (got - other(x.double(), w.double())).abs().max() > 0.1  # the test can tell them apart


def test_default_is_upstream_pin():
    x, w = _inputs()
    norm = RmsNorm(48)
    with torch.no_grad():
        norm.weight.copy_(w)
        assert torch.allclose(norm(x).double(), ref_timm_1_0_12(x.double(), w.double()), rtol=1e-5, atol=1e-5)


def test_unknown_convention_is_a_one_line_error():
    with pytest.raises(ConfigError, match="rmsnorm convention 'timm-1.0.13'.*mean-square"):
        RmsNorm(8, convention="timm-1.0.13")
    with pytest.raises(ConfigError, match="rmsnorm"):
        set_rmsnorm_convention(RmsNorm(8), "rms")


def test_export_records_and_applies_the_convention(tiny_ckpt, tmp_path):
    """A mean-square export's manifest says so, and its graphs compute the mean-square model."""
    loaded = load_checkpoint(tiny_ckpt)
    default = export_controller(loaded, tmp_path / "d", progress=False)
    assert default.rmsnorm == "timm-1.0.12"
    manifest = export_controller(loaded, tmp_path / "ms", progress=False, rmsnorm="mean-square")
    assert manifest.rmsnorm == "mean-square"
    assert json.loads((tmp_path / "ms" / "manifest.json").read_text())["rmsnorm"] == "mean-square"
    assert Controller.from_dir(tmp_path / "ms", threads=1).manifest.rmsnorm == "mean-square"

    obs = example_inputs(loaded.arch, seed=1)
    noise = torch.randn(1, 64, 13, generator=torch.Generator().manual_seed(2))
    np_obs = {k: v.numpy() for k, v in obs.items()}
    action = Controller.from_dir(tmp_path / "ms", threads=1).predict(np_obs, noise=noise.numpy())
    with torch.no_grad():
        ref_upstream = loaded.policy.predict_action(obs, noise).numpy()[0]
        set_rmsnorm_convention(loaded.policy, "mean-square")
        ref_ms = loaded.policy.predict_action(obs, noise).numpy()[0]
    value_range = float(ref_ms.max() - ref_ms.min())
    assert np.abs(action - ref_ms).max() <= 1e-4 * value_range
    assert np.abs(ref_ms - ref_upstream).max() > 1e-3 * value_range  # the choice matters on these weights
    with pytest.raises(ConfigError, match="rmsnorm"):
        export_controller(loaded, tmp_path / "bad", progress=False, rmsnorm="bogus")
