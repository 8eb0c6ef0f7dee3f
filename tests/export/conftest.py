"""Shared fixtures: random-weight checkpoints in upstream format, exported once per session."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from export.model.arch import get_preset
from export.onnx_export import example_inputs
from export.random_init import make_checkpoint


def run_cli(*args: str, check_torch_free: bool = False) -> subprocess.CompletedProcess:
    """Run `dexgrasp ARGS` in a fresh interpreter; optionally fail if it imported torch."""
    code = (
        "import sys\n"
        "from runtime.cli.main import main\n"
        f"rc = main({list(args)!r})\n"
        + ("if 'torch' in sys.modules:\n    print('TORCH WAS IMPORTED', file=sys.stderr); rc = 99\n"
           if check_torch_free else "")
        + "sys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200)


def save_inputs(directory, arch, seed: int = 5, noise_seed: int = 3):
    obs = example_inputs(arch, seed=seed)
    noise = torch.randn(1, arch.action_horizon, arch.action_dim, generator=torch.Generator().manual_seed(noise_seed))
    obs_path, noise_path = directory / "obs.npz", directory / "noise.npz"
    np.savez(obs_path, **{k: v.numpy() for k, v in obs.items()})
    np.savez(noise_path, noise=noise.numpy())
    return obs, noise, obs_path, noise_path


@pytest.fixture(name="run_cli")
def run_cli_fixture():
    return run_cli


@pytest.fixture(name="save_inputs")
def save_inputs_fixture():
    return save_inputs


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.ckpt"
    return make_checkpoint(get_preset("_test_tiny"), path, seed=0, with_ema=True)
