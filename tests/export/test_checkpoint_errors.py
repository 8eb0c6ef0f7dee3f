"""Bad checkpoints give a CheckpointError naming the problem; via the CLI: exit 2, no traceback."""

from __future__ import annotations

import dill
import pytest
import torch

from export.checkpoint import load_checkpoint
from runtime.errors import CheckpointError


def _load_payload(path):
    return torch.load(path, map_location="cpu", pickle_module=dill, weights_only=False)


def _save(payload, path):
    torch.save(payload, path, pickle_module=dill)
    return path


@pytest.fixture
def cli_export(run_cli, tmp_path):
    return lambda ckpt, *extra: _cli_export(run_cli, ckpt, tmp_path, *extra)


def _cli_export(run_cli, ckpt, tmp_path, *extra):
    r = run_cli("export", "controller", "--checkpoint", str(ckpt), "--output", str(tmp_path / "out"),
                "--no-progress", *extra)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stderr


def test_loads_and_picks_ema(tiny_ckpt):
    model = load_checkpoint(tiny_ckpt)
    ema = load_checkpoint(tiny_ckpt, use_ema=True)
    assert model.weights == "model" and ema.weights == "ema_model"
    w0 = model.policy.state_dict()["model.head.weight"]
    w1 = ema.policy.state_dict()["model.head.weight"]
    assert not torch.equal(w0, w1)


def test_truncated_checkpoint(tiny_ckpt, tmp_path, cli_export):
    data = tiny_ckpt.read_bytes()
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    assert "truncated.ckpt" in cli_export(bad)


def test_corrupt_and_empty_files(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(garbage)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_missing_keys_are_named(tiny_ckpt, tmp_path, cli_export):
    payload = _load_payload(tiny_ckpt)
    del payload["state_dicts"]["model"]["model.blocks.1.cross_attn.kv.weight"]
    bad = _save(payload, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match=r"1 missing keys: model\.blocks\.1\.cross_attn\.kv\.weight"):
        load_checkpoint(bad)
    assert "model.blocks.1.cross_attn.kv.weight" in cli_export(bad)


def test_unexpected_keys_and_missing_normalizer(tiny_ckpt, tmp_path):
    payload = _load_payload(tiny_ckpt)
    sd = payload["state_dicts"]["model"]
    sd["model.blocks.2.attn.qkv.weight"] = torch.zeros(96, 32)
    with pytest.raises(CheckpointError, match=r"unexpected keys: model\.blocks\.2\.attn\.qkv\.weight"):
        load_checkpoint(_save(payload, tmp_path / "extra.ckpt"))
    del sd["model.blocks.2.attn.qkv.weight"]
    for k in [k for k in sd if k.startswith("normalizer.params_dict.action")]:
        del sd[k]
    with pytest.raises(CheckpointError, match="action normalizer"):
        load_checkpoint(_save(payload, tmp_path / "nonorm.ckpt"))


def test_wrong_architecture(tiny_ckpt, tmp_path, cli_export):
    # Weights of the tiny architecture under a cfg claiming the `small` preset.
    from omegaconf import OmegaConf

    payload = _load_payload(tiny_ckpt)
    cfg = OmegaConf.to_container(payload["cfg"])
    cfg["policy"]["obs_encoder"]["model_config"]["head"]["model_type"] = "dinov2_vits14"
    cfg["policy"]["obs_encoder"]["model_config"]["wrist"]["model_type"] = "dinov2_vits14"
    payload["cfg"] = OmegaConf.create(cfg)
    bad = _save(payload, tmp_path / "wrongarch.ckpt")
    with pytest.raises(CheckpointError, match=r"does not match the architecture .*dinov2_vits14.*shape mismatches"):
        load_checkpoint(bad)
    message = cli_export(bad)
    assert "shape mismatches" in message and "obs_encoder.dino_head" in message


def test_unknown_model_type_and_scheduler(tiny_ckpt, tmp_path):
    from omegaconf import OmegaConf

    payload = _load_payload(tiny_ckpt)
    cfg = OmegaConf.to_container(payload["cfg"])
    cfg["policy"]["obs_encoder"]["model_config"]["head"]["model_type"] = "dinov2_vitx14"
    payload["cfg"] = OmegaConf.create(cfg)
    with pytest.raises(CheckpointError, match="dinov2_vitx14"):
        load_checkpoint(_save(payload, tmp_path / "unknown.ckpt"))
    cfg["policy"]["obs_encoder"]["model_config"]["head"]["model_type"] = "_test_tiny"
    cfg["policy"]["noise_scheduler"]["_target_"] = "diffusers.DDPMScheduler"
    payload["cfg"] = OmegaConf.create(cfg)
    with pytest.raises(CheckpointError, match="DDPMScheduler"):
        load_checkpoint(_save(payload, tmp_path / "ddpm.ckpt"))


def test_plain_state_dict_needs_preset(tiny_ckpt, tmp_path, cli_export):
    sd = _load_payload(tiny_ckpt)["state_dicts"]["model"]
    plain = _save(sd, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="--preset"):
        load_checkpoint(plain)
    assert load_checkpoint(plain, preset="_test_tiny").weights == "state_dict"
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(plain, preset="small")
    assert "--preset" in cli_export(plain)


def test_non_finite_weights(tiny_ckpt, tmp_path):
    payload = _load_payload(tiny_ckpt)
    payload["state_dicts"]["model"]["model.head.bias"][0] = float("nan")
    with pytest.raises(CheckpointError, match=r"model\.head\.bias contains NaN"):
        load_checkpoint(_save(payload, tmp_path / "nan.ckpt"))


def test_missing_ema(tmp_path):
    from export.model.arch import get_preset
    from export.random_init import make_checkpoint

    ckpt = make_checkpoint(get_preset("_test_tiny"), tmp_path / "noema.ckpt")
    with pytest.raises(CheckpointError, match="no 'ema_model' weights"):
        load_checkpoint(ckpt, use_ema=True)
