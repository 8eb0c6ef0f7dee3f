"""The exported pieces as torch modules with fixed, named inputs and outputs.

- EncoderGraph: rgbm, right_cam_img, right_state -> obs_k_0, obs_vt_0, ..., obs_k_{L-1}, obs_vt_{L-1}
  (per-layer cross-attention K, k-normed, and V transposed, of the observation tokens,
  cond_pos_emb added before projection) and obs_tokens. One tensor per layer, so the denoiser reads them in place (a stacked
  tensor would be split, i.e. copied, at every step).
- DenoiserGraph: sample, timestep, obs_k_0, obs_vt_0, ... -> epsilon. Projects only the time token.
- UncachedDenoiserGraph: sample, timestep, obs_tokens -> epsilon: upstream's full DiT forward
  (re-projects all 2740 condition tokens), exported only for the benchmark's ablation.
"""

from __future__ import annotations

import torch
from torch import nn

from export.model.policy import ControllerPolicy


def use_explicit_attention(module: nn.Module) -> None:
    """Switch SDPA to explicit MatMul/Softmax attention (plain ONNX ops, same math)."""
    for m in module.modules():
        if hasattr(m, "use_sdpa"):
            m.use_sdpa = False


class _Cast(nn.Module):
    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype


class EncoderGraph(_Cast):
    def __init__(self, policy: ControllerPolicy, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(dtype)
        self.obs_encoder = policy.obs_encoder
        self.model = policy.model

    def forward(self, rgbm, right_cam_img, right_state):
        obs = {"rgbm": rgbm.to(self.dtype), "right_cam_img": right_cam_img.to(self.dtype),
               "right_state": right_state.to(self.dtype)}
        tokens = self.obs_encoder(obs)
        flat = [t.float() for kv in self.model.encode_obs_kv(tokens) for t in kv]
        return (*flat, tokens.float())


class DenoiserGraph(_Cast):
    def __init__(self, policy: ControllerPolicy, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(dtype)
        self.model = policy.model

    def forward(self, sample, timestep, *obs_kv):
        kv = [t.to(self.dtype) for t in obs_kv]
        pairs = list(zip(kv[0::2], kv[1::2], strict=True))
        return self.model.forward_cached(sample.to(self.dtype), timestep, pairs).float()


class UncachedDenoiserGraph(_Cast):
    def __init__(self, policy: ControllerPolicy, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(dtype)
        self.model = policy.model

    def forward(self, sample, timestep, obs_tokens):
        return self.model(sample.to(self.dtype), timestep, obs_tokens.to(self.dtype)).float()
