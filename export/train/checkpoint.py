"""Starting weights and the trained checkpoint, in upstream's workspace format.

Starting weights: `--init CKPT` (any checkpoint export/checkpoint.py loads; its cfg names the
architecture) or a fresh policy. A fresh policy gets upstream's initialisation for everything that
trains: the DiT as TransformerForActionDiffusion._init_weights does it (Linear N(0, 0.02) with zero
bias, position embeddings N(0, 0.02), RmsNorm weights 1) and the ObsEncoder heads as PyTorch
constructs them (upstream does not re-initialise them). DINOv2 cannot be downloaded here, so the
frozen encoders keep the random weights `dexgrasp make-checkpoint` would give them (same seed): the
trained policy only ever sees those features, and the runtime runs the same weights from the export.

The output is what upstream's BaseWorkspace.save_checkpoint writes (torch.save with dill): cfg
(the workspace cfg of export/upstream_cfg.py with this run's training settings), state_dicts.model
(+ ema_model), pickles global_step / epoch, so `dexgrasp export controller` and upstream's
`load_payload` both take it; plus this project's training provenance under "dexgrasp".
"""

from __future__ import annotations

import pathlib

import torch
from torch import nn

from export.model.arch import ControllerArch
from export.model.layers import RmsNorm
from export.model.policy import ControllerPolicy
from export.random_init import make_policy
from export.upstream_cfg import build_cfg


@torch.no_grad()
def upstream_dit_init(dit: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for module in dit.modules():
        if isinstance(module, nn.Linear):
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * 0.02)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, RmsNorm):
            module.weight.fill_(1.0)
    for name in ("pos_emb", "cond_pos_emb"):
        p = getattr(dit, name)
        p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def fresh_policy(arch: ControllerArch, normalizer_stats: dict, seed: int) -> ControllerPolicy:
    """Random frozen DINOv2 (make-checkpoint's init), upstream init for the trained parts."""
    dino = make_policy(arch, seed)  # the DINOv2 weights `dexgrasp make-checkpoint --seed` writes
    torch.manual_seed(seed)
    policy = ControllerPolicy(arch, normalizer_stats)  # ObsEncoder heads: PyTorch's default init
    policy.obs_encoder.dino_head.load_state_dict(dino.obs_encoder.dino_head.state_dict())
    policy.obs_encoder.dino_wrist.load_state_dict(dino.obs_encoder.dino_wrist.state_dict())
    upstream_dit_init(policy.model, seed)
    return policy


def with_normalizer(policy: ControllerPolicy, stats: dict) -> ControllerPolicy:
    """A copy of `policy` whose normalizer is `stats` (upstream set_normalizer), same weights."""
    fresh = ControllerPolicy(policy.arch, stats, rmsnorm=policy.rmsnorm)
    own = {k: v for k, v in policy.state_dict().items() if not k.startswith("normalizer.")}
    fresh.load_state_dict({**own, **fresh.normalizer.state_dict(prefix="normalizer.")}, strict=True)
    return fresh


def save_trained_checkpoint(policy: ControllerPolicy, path: str | pathlib.Path, ema_policy=None,
                            training: dict | None = None, dataset_path: str | None = None,
                            global_step: int = 0, epoch: int = 0, provenance: dict | None = None) -> pathlib.Path:
    """Write the workspace payload. `provenance` (plain ints/strings: the training episodes
    directory and the scene seeds it holds) is stored under the payload's "dexgrasp" key, which
    upstream's load_payload ignores; the export copies it into the manifest for `dexgrasp eval`."""
    import dill
    from omegaconf import OmegaConf

    cfg = build_cfg(policy.arch, use_ema=ema_policy is not None, run_name="dexgrasp_train")
    for key, value in (training or {}).items():
        section, name = key.split(".", 1)
        cfg[section][name] = value
    if dataset_path is not None:
        cfg["task"]["dataset_paths"] = [dataset_path]
        cfg["task"]["dataset"]["zarr_paths"] = [dataset_path]
    state_dicts = {"model": policy.state_dict()}
    if ema_policy is not None:
        state_dicts["ema_model"] = ema_policy.state_dict()
    payload = {
        "cfg": OmegaConf.create(cfg),
        "state_dicts": state_dicts,
        "pickles": {"global_step": dill.dumps(global_step), "epoch": dill.dumps(epoch),
                    "_output_dir": dill.dumps(None)},
    }
    if provenance:
        payload["dexgrasp"] = dict(provenance)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as f:
        torch.save(payload, f, pickle_module=dill)
    tmp.replace(path)
    return path
