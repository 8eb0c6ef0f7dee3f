"""--precision fp16: half-precision graphs with float32 inputs/outputs, close to the fp32 reference."""

from __future__ import annotations

import numpy as np
import torch

from export.checkpoint import load_checkpoint
from export.onnx_export import example_inputs, export_controller
from runtime.controller import Controller


def test_fp16_export_runs_and_stays_close(tiny_ckpt, tmp_path):
    loaded = load_checkpoint(tiny_ckpt)
    manifest = export_controller(loaded, tmp_path / "fp16", precision="fp16", progress=False)
    assert manifest.precision == "fp16"
    assert manifest.graph("encoder").input("rgbm").dtype == "float32"
    obs = example_inputs(loaded.arch, seed=1)
    noise = torch.randn(1, 64, 13, generator=torch.Generator().manual_seed(2))
    action = Controller.from_dir(tmp_path / "fp16", threads=1).predict(
        {k: v.numpy() for k, v in obs.items()}, noise=noise.numpy())
    reference = loaded.policy.predict_action(obs, noise).numpy()[0]
    value_range = float(reference.max() - reference.min())
    assert np.abs(action - reference).max() <= 1e-2 * value_range
