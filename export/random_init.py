"""Random-weight checkpoints in the upstream workspace format, for demos and tests.

The weights follow upstream's init (Linear weights N(0, 0.02)) plus random biases, norm weights and
LayerScale gammas, so every parameter matters in parity tests and the action chunk depends on the
observations. The action normalizer is fitted (upstream's 'limits' mode) on synthetic joint data.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from torch import nn

from export.model.arch import ControllerArch
from export.model.obs_encoder import UPSTREAM_STATE_DIM
from export.model.policy import ControllerPolicy
from export.upstream_cfg import build_cfg
from runtime.errors import ConfigError
from runtime.joint_space import UPSTREAM_ARM_JOINTS, UPSTREAM_HAND_JOINTS


def fit_limits(data: np.ndarray, range_eps: float = 1e-4) -> dict:
    """Upstream normalizer._fit(mode='limits', output in [-1, 1], fit_offset=True) in float32."""
    x = torch.from_numpy(data.astype(np.float32))
    input_min, input_max = x.min(dim=0).values, x.max(dim=0).values
    input_range = input_max - input_min
    ignore = input_range < range_eps
    input_range[ignore] = 2.0
    scale = 2.0 / input_range
    offset = -1.0 - scale * input_min
    offset[ignore] = 0.0 - input_min[ignore]
    return {
        "scale": scale,
        "offset": offset,
        "input_stats": {"min": input_min, "max": input_max, "mean": x.mean(dim=0), "std": x.std(dim=0)},
    }


def synthetic_joint_data(rng: np.random.Generator, n: int = 2000, n_arm: int = UPSTREAM_ARM_JOINTS,
                         n_hand: int = UPSTREAM_HAND_JOINTS) -> np.ndarray:
    """(n, n_arm + n_hand) joint trajectories: arm joints already in [-1, 1] (limit-scaled), hand
    joints in [0, 1.6]. Upstream's 7 + 6 draws the same numbers as before the layout was a parameter."""
    lo = np.concatenate([rng.uniform(-0.9, -0.2, n_arm), rng.uniform(0.0, 0.3, n_hand)])
    hi = np.concatenate([rng.uniform(0.2, 0.9, n_arm), rng.uniform(1.0, 1.6, n_hand)])
    return lo + (hi - lo) * rng.random((n, n_arm + n_hand))


def _split(width: int, n_hand: int | None, what: str) -> tuple[int, int]:
    """(arm, hand) joints of a `width`-wide vector whose last n_hand joints are the hand (None:
    upstream's 6, fewer when the vector is narrower, keeping one arm joint)."""
    if n_hand is None:
        n_hand = max(0, min(UPSTREAM_HAND_JOINTS, width - 1))
    if not 0 <= n_hand < width:
        raise ConfigError(f"{what} {width} cannot hold {n_hand} hand joints and at least one arm joint")
    return width - n_hand, n_hand


def random_normalizer_stats(seed: int, arch: ControllerArch | None = None, n_hand: int | None = None) -> dict:
    """Normalizers fitted on synthetic data of the arch's widths (default: upstream's 13 = 7 + 6)."""
    action_dim = arch.action_dim if arch is not None else UPSTREAM_STATE_DIM
    state_dim = arch.state_dim if arch is not None else UPSTREAM_STATE_DIM
    rng = np.random.default_rng(seed)
    action = synthetic_joint_data(rng, 2000, *_split(action_dim, n_hand, "action_dim"))
    state = synthetic_joint_data(rng, 2000, *_split(state_dim, n_hand, "state_dim"))
    return {"action": fit_limits(action), "right_state": fit_limits(state)}


@torch.no_grad()
def init_weights(policy: ControllerPolicy, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=gen) * std + mean)

    for name, p in policy.named_parameters():
        if p.numel() == 0 or name.startswith("normalizer."):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith(("norm1.weight", "norm2.weight", "norm3.weight", "norm.weight", "ln_f.weight",
                          "q_norm.weight", "k_norm.weight")) or (leaf == "weight" and p.dim() == 1):
            normal(p, 0.1, 1.0)  # LayerNorm / RmsNorm gains around 1
        elif leaf == "gamma":
            p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.1)  # LayerScale
        elif leaf in ("bias", "in_proj_bias"):
            normal(p, 0.02)
        elif name.endswith(("cls_token", "mask_token")):
            normal(p, 1e-6 if "cls" not in name else 0.02)
        else:  # Linear/Conv weights, position embeddings
            normal(p, 0.02)
    # Buffers such as the training-only attention masks keep their defaults.
    for module in policy.modules():
        if isinstance(module, nn.Dropout):
            module.eval()


def make_policy(arch: ControllerArch, seed: int, n_hand: int | None = None) -> ControllerPolicy:
    """Random weights for `arch`; the last `n_hand` joints get hand-like normalizer ranges."""
    torch.manual_seed(seed)
    policy = ControllerPolicy(arch, random_normalizer_stats(seed, arch, n_hand))
    init_weights(policy, seed)
    return policy.eval()


def save_upstream_checkpoint(policy: ControllerPolicy, path: pathlib.Path,
                             ema_policy: ControllerPolicy | None = None) -> None:
    """torch.save(payload, pickle_module=dill) exactly like upstream BaseWorkspace.save_checkpoint."""
    import dill
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(build_cfg(policy.arch, use_ema=ema_policy is not None))
    state_dicts = {"model": policy.state_dict()}
    if ema_policy is not None:
        state_dicts["ema_model"] = ema_policy.state_dict()
    payload = {
        "cfg": cfg,
        "state_dicts": state_dicts,
        "pickles": {"global_step": dill.dumps(0), "epoch": dill.dumps(0), "_output_dir": dill.dumps(None)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as f:
        torch.save(payload, f, pickle_module=dill)
    tmp.replace(path)


def make_checkpoint(arch: ControllerArch, path: str | pathlib.Path, seed: int = 0, with_ema: bool = False,
                    n_hand: int | None = None) -> pathlib.Path:
    """Write a random-init checkpoint for `arch` to `path`; with_ema adds perturbed EMA weights.
    `n_hand`: how many of the arch's joints (the last ones) are hand joints, for the normalizer."""
    path = pathlib.Path(path)
    policy = make_policy(arch, seed, n_hand)
    ema = None
    if with_ema:
        ema = make_policy(arch, seed, n_hand)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in ema.named_parameters():
                if p.numel() and not name.startswith("normalizer."):
                    p.add_(torch.randn(p.shape, generator=gen) * 0.002)
    save_upstream_checkpoint(policy, path, ema)
    return path
