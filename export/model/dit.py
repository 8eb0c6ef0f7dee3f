"""Upstream's TransformerForActionDiffusion (controller/model/diffusion/transformer_for_action_diffusion.py).

RDT blocks: x += self_attn(norm1 x); x += cross_attn(norm2 x, cond); x += ffn(norm3 x); then ln_f
and head. The condition is [obs tokens, time token] + cond_pos_emb. `forward` is the upstream
computation (the reference and the eager baseline); `encode_obs_kv` / `forward_cached` split it for
export so the observation K/V is projected once per inference instead of once per DDIM step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from export.model.layers import RmsNorm, TimmAttention, TimmMlp, attention


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # no-op in fp32; fp16 export casts


class CrossAttention(nn.Module):
    """RDT cross-attention: names q, kv, q_norm, k_norm, proj (+ masks/probs buffers when enabled)."""

    def __init__(self, dim: int, num_heads: int, use_attn_mask: bool, max_cond_tokens: int,
                 action_horizon: int, use_sdpa: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.q_norm = RmsNorm(self.head_dim)
        self.k_norm = RmsNorm(self.head_dim)
        self.proj = nn.Linear(dim, dim)
        self.use_sdpa = use_sdpa
        if use_attn_mask:
            # Training-only attention masks; present in the state dict, unused at inference.
            self.register_buffer("masks", torch.ones((4, action_horizon, max_cond_tokens), dtype=torch.bool))
            self.register_buffer("probs", torch.tensor([0.1, 0.1, 0.1, 0.7]))

    def project_kv(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, C) condition -> k-normed K and V, each (B, heads, L, head_dim)."""
        b, n, _ = c.shape
        kv = self.kv(c).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        return self.k_norm(k), v

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return self.q_norm(self.q(x).reshape(b, n, self.num_heads, self.head_dim).permute(0, 2, 1, 3))

    def _out(self, out: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = out.shape
        return self.proj(out.permute(0, 2, 1, 3).reshape(b, n, self.num_heads * self.head_dim))

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._query(x)
        out = F.scaled_dot_product_attention(q, k, v) if self.use_sdpa else attention(q, k, v)
        return self._out(out)

    def attend_split(self, x: torch.Tensor, k_obs: torch.Tensor, vt_obs: torch.Tensor,
                     k_t: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        """Attention over [obs tokens, time token] without concatenating K/V.

        softmax over the union is computed from both score blocks (shared max, summed
        denominators), so the cached observation K/V are read in place at every step. The scores
        are computed transposed (K @ q^T, V^T @ P^T) so the large cached tensors are the left
        operands of the matmuls, which CPU GEMM kernels read in place (right operands get packed,
        i.e. copied, on every call). vt_obs is V transposed: (B, heads, head_dim, N_obs).
        """
        q_t = (self._query(x) * self.head_dim**-0.5).transpose(-2, -1)  # (B, H, hd, n)
        s_obs = torch.matmul(k_obs, q_t)  # (B, H, N_obs, n)
        s_time = torch.matmul(k_t, q_t)  # (B, H, 1, n)
        m = torch.maximum(s_obs.amax(dim=-2, keepdim=True), s_time)
        e_obs = torch.exp(s_obs - m)
        e_time = torch.exp(s_time - m)
        denom = e_obs.sum(dim=-2, keepdim=True) + e_time
        out_t = torch.matmul(vt_obs, e_obs) + torch.matmul(v_t.transpose(-2, -1), e_time)  # (B, H, hd, n)
        return self._out((out_t / denom).transpose(-2, -1))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        k, v = self.project_kv(c)
        return self.attend(x, k, v)


class RDTBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, cross_kwargs: dict, use_sdpa: bool) -> None:
        super().__init__()
        self.norm1 = RmsNorm(hidden_size)
        self.attn = TimmAttention(hidden_size, num_heads, use_sdpa)
        self.cross_attn = CrossAttention(hidden_size, num_heads, use_sdpa=use_sdpa, **cross_kwargs)
        self.norm2 = RmsNorm(hidden_size)
        self.ffn = TimmMlp(hidden_size, hidden_size, approximate="tanh")
        self.norm3 = RmsNorm(hidden_size)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), c)
        return x + self.ffn(self.norm3(x))

    def forward_cached(self, x: torch.Tensor, k_obs: torch.Tensor, vt_obs: torch.Tensor,
                       time_tok: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        k_t, v_t = self.cross_attn.project_kv(time_tok)
        x = x + self.cross_attn.attend_split(self.norm2(x), k_obs, vt_obs, k_t, v_t)
        return x + self.ffn(self.norm3(x))


class TransformerForActionDiffusion(nn.Module):
    def __init__(self, action_dim: int, action_horizon: int, n_layer: int, n_head: int, n_emb: int,
                 max_cond_tokens: int, use_attn_mask: bool = False, use_sdpa: bool = True) -> None:
        super().__init__()
        self._dummy_variable = nn.Parameter(torch.empty(0), requires_grad=False)  # ModuleAttrMixin
        self.input_emb = nn.Linear(action_dim, n_emb)
        self.pos_emb = nn.Parameter(torch.zeros(1, action_horizon, n_emb))
        self.time_emb = TimestepEmbedder(n_emb)
        self.cond_pos_emb = nn.Parameter(torch.zeros(1, max_cond_tokens, n_emb))
        cross_kwargs = dict(use_attn_mask=use_attn_mask, max_cond_tokens=max_cond_tokens,
                            action_horizon=action_horizon)
        self.blocks = nn.ModuleList(
            [RDTBlock(n_emb, n_head, cross_kwargs, use_sdpa) for _ in range(n_layer)]
        )
        self.ln_f = RmsNorm(n_emb)
        self.head = nn.Linear(n_emb, action_dim)

    def _input(self, sample: torch.Tensor) -> torch.Tensor:
        return self.input_emb(sample) + self.pos_emb[:, : sample.shape[1]]

    def _time_token(self, timestep: torch.Tensor, batch: int) -> torch.Tensor:
        return self.time_emb(timestep.reshape(-1).expand(batch)).unsqueeze(1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Upstream forward: re-projects the whole condition (obs + time token) in every block."""
        cond_emb = torch.cat([cond, self._time_token(timestep, sample.shape[0])], dim=1)
        cond_emb = cond_emb + self.cond_pos_emb[:, : cond_emb.shape[1]]
        x = self._input(sample)
        for block in self.blocks:
            x = block(x, cond_emb)
        return self.head(self.ln_f(x))

    def encode_obs_kv(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (K, V^T) of the observation tokens: K (B, heads, N_obs, head_dim), k-normed,
        and V transposed (B, heads, head_dim, N_obs), the layout `forward_cached` reads."""
        c = cond + self.cond_pos_emb[:, : cond.shape[1]]
        kv = (block.cross_attn.project_kv(c) for block in self.blocks)
        return [(k, v.transpose(-2, -1).contiguous()) for k, v in kv]

    def forward_cached(self, sample: torch.Tensor, timestep: torch.Tensor,
                       obs_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Same result as `forward`, with the observation (K, V^T) precomputed by `encode_obs_kv`.

        Only the time token (condition index N_obs, depends on t) is projected here.
        """
        n_obs = obs_kv[0][0].shape[2]
        time_tok = self._time_token(timestep, sample.shape[0]) + self.cond_pos_emb[:, n_obs : n_obs + 1]
        x = self._input(sample)
        for block, (k_obs, vt_obs) in zip(self.blocks, obs_kv, strict=True):
            x = block.forward_cached(x, k_obs, vt_obs, time_tok)
        return self.head(self.ln_f(x))
