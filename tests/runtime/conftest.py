"""Shared fixtures for the runtime tests: one tiny random-weight controller exported per session
(torch builds it; the runtime under test never imports torch), and private copies of it."""

from __future__ import annotations

import os
import random
import shutil

import pytest

# Tests that run configs/sim.yaml publish DDS telemetry (telemetry.dds.enabled: auto) on the domain
# a config without domain_id gets: one of this session's own, never a demo's default 0 on this host.
os.environ.setdefault("DEXGRASP_DDS_DOMAIN_ID", str(random.SystemRandom().randint(20, 200)))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The `_test_tiny` preset, seed 3, exported to ONNX once per session. Read-only: tests that
    write into a model directory (verifications, tampering) take `tiny_model_copy` instead."""
    from export.checkpoint import load_checkpoint
    from export.model.arch import get_preset
    from export.onnx_export import export_controller
    from export.random_init import make_checkpoint

    root = tmp_path_factory.mktemp("tiny_model")
    export_controller(load_checkpoint(make_checkpoint(get_preset("_test_tiny"), root / "t.ckpt", seed=3)),
                      root / "model", progress=False)
    return root / "model"


@pytest.fixture
def tiny_model_copy(tiny_model_dir, tmp_path, monkeypatch):
    """A private copy of the tiny model and a private cache root (compiled engines, verifications)."""
    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    return tmp_path / "model"
