"""Upstream DexGraspVLAController.compute_loss: the diffusion training objective.

1. actions normalised with the fitted action normalizer (x * scale + offset; observations are NOT
   normalised: upstream commented that out, the state goes in raw);
2. Gaussian noise, re-ordered across the batch by a minimum-cost assignment to the action chunks
   (scipy linear_sum_assignment on the pairwise L2 distances, pi-zero's noise assignment);
3. one timestep per sample, uniform in [0, num_train_timesteps) (50 for upstream's cfg);
4. forward diffusion with the cfg's scheduler (DDIMScheduler: add_noise uses the squaredcos_cap_v2
   alphas_cumprod, the same as DDPM's);
5. MSE (mean over every element, no mask: upstream asserts there is no 'valid_mask') between the
   DiT output and the noise (prediction_type 'epsilon') or the clean chunk ('sample').
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from export.train.forward import dit_forward, encode_obs
from runtime.errors import ConfigError


def noise_assignment(data: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Indices such that noise[idx] pairs each chunk with noise at minimum total L2 distance."""
    from scipy.optimize import linear_sum_assignment

    dist = torch.cdist(data.reshape(data.shape[0], -1).float(), noise.reshape(noise.shape[0], -1).float())
    _, assign = linear_sum_assignment(dist.cpu().numpy())
    return torch.from_numpy(assign).to(data.device)


def normalize_action(policy, action: torch.Tensor) -> torch.Tensor:
    params = policy.normalizer.params_dict["action"]
    return action * params["scale"] + params["offset"]


def diffusion_loss(policy, scheduler, batch: dict, training: bool = True, features=None, jitter=None,
                   autocast: bool = False) -> torch.Tensor:
    """Scalar fp32 loss for one batch; `features` are cached DINOv2 tokens (or None to compute them)."""
    trajectory = normalize_action(policy, batch["action"])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        cond = encode_obs(policy.obs_encoder, batch["obs"], features, jitter)
    noise = torch.randn(trajectory.shape)
    noise = noise[noise_assignment(trajectory, noise)]
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (trajectory.shape[0],)).long()
    noisy = scheduler.add_noise(trajectory, noise, timesteps)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        pred = dit_forward(policy.model, noisy, timesteps, cond, policy.arch.p_drop_attn, training,
                           policy.arch.use_attn_mask)
    pred_type = scheduler.config.prediction_type
    if pred_type == "epsilon":
        target = noise
    elif pred_type == "sample":
        target = trajectory
    else:
        raise ConfigError(f"noise_scheduler.prediction_type '{pred_type}' is not supported (epsilon or sample)")
    return F.mse_loss(pred.float(), target)
