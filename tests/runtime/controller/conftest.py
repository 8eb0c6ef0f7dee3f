"""A tiny random-weight controller exported once per session (torch builds it; the runtime never does)."""

from __future__ import annotations

import pytest
import torch

from export.checkpoint import load_checkpoint
from export.model.arch import get_preset
from export.onnx_export import example_inputs, export_controller
from export.random_init import make_checkpoint


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_controller")
    ckpt = make_checkpoint(get_preset("_test_tiny"), root / "tiny.ckpt", seed=1)
    loaded = load_checkpoint(ckpt)
    export_controller(loaded, root / "model", progress=False)
    obs = example_inputs(loaded.arch, seed=2)
    noise = torch.randn(1, 64, 13, generator=torch.Generator().manual_seed(4))
    return {"dir": root / "model", "policy": loaded.policy, "obs": obs, "noise": noise}
