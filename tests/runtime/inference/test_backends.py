"""Backends: ONNX Runtime session options and errors; TensorRT only where it exists."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from export.tensorrt_build import build_engines
from runtime.controller import Controller
from runtime.controller.manifest import Manifest
from runtime.errors import ConfigError, ModelError
from runtime.inference import open_backend
from runtime.inference.onnxruntime import OrtBackend


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from export.checkpoint import load_checkpoint
    from export.model.arch import get_preset
    from export.onnx_export import export_controller
    from export.random_init import make_checkpoint

    root = tmp_path_factory.mktemp("backend")
    export_controller(load_checkpoint(make_checkpoint(get_preset("_test_tiny"), root / "t.ckpt")), root / "m",
                      progress=False)
    return root / "m"


def test_ort_runs_graph_with_options(tiny_dir, tmp_path):
    manifest = Manifest.load(tiny_dir)
    spec = manifest.graph("denoiser")
    cache = tmp_path / "denoiser.opt.onnx"
    backend = open_backend("onnxruntime", tiny_dir, spec, threads=1, opt_level="basic",
                           optimized_model_path=str(cache))
    inputs = {t.name: np.zeros(t.shape, np.float32) for t in spec.inputs}
    out = backend.run(inputs)
    assert out["epsilon"].shape == (1, 64, 13) and np.isfinite(out["epsilon"]).all()
    assert cache.is_file() and backend.providers == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match="not given"):
        backend.run({"sample": inputs["sample"]})


def test_ort_errors(tiny_dir, tmp_path):
    spec = Manifest.load(tiny_dir).graph("encoder")
    with pytest.raises(ModelError, match="not available here"):
        OrtBackend(tiny_dir / spec.file, spec, providers=["cuda"])
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelError, match="cannot load"):
        OrtBackend(broken, None)
    with pytest.raises(ConfigError, match="unknown inference backend"):
        open_backend("nonexistent", tiny_dir, spec)
    with pytest.raises(ConfigError, match="no TensorRT engine"):
        open_backend("tensorrt", tiny_dir, spec)


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (no GPU here)")
def test_tensorrt_engine_matches_ort(tiny_dir, tmp_path):  # pragma: no cover - needs a GPU
    manifest = build_engines(tiny_dir, Manifest.load(tiny_dir), fp16=False, timing_cache=str(tmp_path / "tc"))
    obs = {t.name: np.random.default_rng(0).random(t.shape).astype(np.float32)
           for t in manifest.graph("encoder").inputs}
    ort = Controller.from_dir(tiny_dir).predict(obs, seed=0)
    trt = Controller.from_dir(tiny_dir, backend="tensorrt").predict(obs, seed=0)
    np.testing.assert_allclose(trt, ort, atol=1e-3)
