"""Loading a checkpoint must not execute pickled code unless --trust-checkpoint is given."""

import os
import pickle

import pytest
import torch

from export.checkpoint import load_checkpoint
from export.model.arch import get_preset
from export.random_init import make_checkpoint
from runtime.errors import CheckpointError


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_does_not_run(tmp_path):
    marker = str(tmp_path / "pwned")
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dicts": _Evil(marker)}, bad, pickle_module=pickle)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert not os.path.exists(marker)
    msg = str(err.value)
    assert "mkdir" in msg and "--trust-checkpoint" in msg and "\n" not in msg


def test_random_init_checkpoint_loads_without_trust(tmp_path):
    path = make_checkpoint(get_preset("small"), tmp_path / "small.ckpt")
    ckpt = load_checkpoint(path)
    assert ckpt.weights == "model"
    assert ckpt.arch == get_preset("small")
