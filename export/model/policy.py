"""The controller policy (upstream DexGraspVLAController) and its reference `predict_action`.

`ControllerPolicy.predict_action` runs exactly upstream's computation: ObsEncoder, then the DDIM
loop of diffusers' DDIMScheduler (built from the checkpoint's scheduler cfg) calling the full DiT at
every step (uncached observation K/V), then the action normalizer's unnormalize. It is the PyTorch
reference for parity tests and the "upstream-style eager" baseline of the benchmark.
"""

from __future__ import annotations

import torch
from torch import nn

from export.model.arch import ControllerArch
from export.model.dit import TransformerForActionDiffusion
from export.model.layers import TIMM_1_0_12, set_rmsnorm_convention
from export.model.obs_encoder import ObsEncoder


def make_normalizer_params(stats: dict[str, dict[str, torch.Tensor]]) -> nn.ParameterDict:
    """Nested ParameterDict with upstream LinearNormalizer's layout: <key>.{scale,offset,input_stats.*}."""
    out = nn.ParameterDict()
    for key, group in stats.items():
        inner = nn.ParameterDict()
        for name, value in group.items():
            if isinstance(value, dict):
                inner[name] = nn.ParameterDict(
                    {k: nn.Parameter(v.clone(), requires_grad=False) for k, v in value.items()}
                )
            else:
                inner[name] = nn.Parameter(value.clone(), requires_grad=False)
        out[key] = inner
    return out


class LinearNormalizer(nn.Module):
    """State-dict compatible stand-in for upstream's LinearNormalizer (params_dict.<key>.*)."""

    def __init__(self, stats: dict | None = None) -> None:
        super().__init__()
        self.params_dict = make_normalizer_params(stats or {})

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        scale = self.params_dict[key]["scale"]
        offset = self.params_dict[key]["offset"]
        shape = y.shape
        return ((y.reshape(-1, scale.shape[0]) - offset) / scale).reshape(shape)


class ControllerPolicy(nn.Module):
    def __init__(self, arch: ControllerArch, normalizer_stats: dict | None = None, use_sdpa: bool = True,
                 rmsnorm: str = TIMM_1_0_12) -> None:
        super().__init__()
        self.arch = arch
        self._dummy_variable = nn.Parameter(torch.empty(0), requires_grad=False)  # ModuleAttrMixin
        self.obs_encoder = ObsEncoder(arch.head_model_type, arch.wrist_model_type, use_sdpa, arch.state_dim)
        self.model = TransformerForActionDiffusion(
            action_dim=arch.action_dim,
            action_horizon=arch.action_horizon,
            n_layer=arch.n_layer,
            n_head=arch.n_head,
            n_emb=arch.feature_dim,
            max_cond_tokens=arch.max_cond_tokens,
            use_attn_mask=arch.use_attn_mask,
            use_sdpa=use_sdpa,
        )
        self.normalizer = LinearNormalizer(normalizer_stats)
        # timm's RmsNorm formula changed in 1.0.13; the weights do not say which one trained them.
        self.rmsnorm = rmsnorm
        set_rmsnorm_convention(self, rmsnorm)

    def make_scheduler(self):
        from diffusers import DDIMScheduler

        return DDIMScheduler(**self.arch.scheduler)

    @torch.no_grad()
    def predict_action(self, obs: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """Upstream predict_action with a given initial sample `noise` (B, horizon, action_dim)."""
        cond = self.obs_encoder(obs)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(self.arch.num_inference_steps)
        trajectory = noise
        for t in scheduler.timesteps:
            model_output = self.model(trajectory, t, cond)
            trajectory = scheduler.step(model_output, t, trajectory).prev_sample
        return self.normalizer.unnormalize("action", trajectory)

    @torch.no_grad()
    def predict_action_cached(self, obs: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """The exported computation in PyTorch: observation K/V once, then the cached denoiser."""
        cond = self.obs_encoder(obs)
        obs_kv = self.model.encode_obs_kv(cond)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(self.arch.num_inference_steps)
        trajectory = noise
        for t in scheduler.timesteps:
            model_output = self.model.forward_cached(trajectory, t, obs_kv)
            trajectory = scheduler.step(model_output, t, trajectory).prev_sample
        return self.normalizer.unnormalize("action", trajectory)
