"""Small layers re-implemented with the exact parameter names of timm and dinov2.

Upstream builds its DiT from timm (`Attention`, `Mlp`, `RmsNorm`) and its image encoders from
facebookresearch/dinov2. Installing timm would pull a CUDA torch, and dinov2 is loaded through
torch.hub, so we write the few layers ourselves. The attribute names below ARE the checkpoint format:
renaming one breaks strict loading of upstream state dicts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TIMM_1_0_12 = "timm-1.0.12"
MEAN_SQUARE = "mean-square"
# Upstream's requirements.txt pins timm==1.0.12, so that is the default; a checkpoint trained with
# timm >= 1.0.13 (or with NVIDIA apex installed) needs "mean-square" or its actions are off by ~1e-2
# of the range. The export option `--rmsnorm` picks it and the manifest records it.
RMSNORM_CONVENTIONS = (TIMM_1_0_12, MEAN_SQUARE)


def check_rmsnorm_convention(convention: str) -> str:
    """Return `convention` if known, else raise a one-line ConfigError naming the valid choices."""
    if convention not in RMSNORM_CONVENTIONS:
        from runtime.errors import ConfigError

        raise ConfigError(f"rmsnorm convention '{convention}' is unknown; choose one of {list(RMSNORM_CONVENTIONS)}")
    return convention


def set_rmsnorm_convention(module: nn.Module, convention: str) -> int:
    """Switch every RmsNorm under `module` to `convention` (no weights change); returns how many.

    The convention is not in the state dict (timm's checkpoints do not say which timm trained them),
    so the exporter sets it after strict loading, from the user's `--rmsnorm` choice.
    """
    check_rmsnorm_convention(convention)
    norms = [m for m in module.modules() if isinstance(m, RmsNorm)]
    for m in norms:
        m.convention = convention
    return len(norms)


class RmsNorm(nn.Module):
    """timm.layers.RmsNorm as upstream runs it (requirements.txt pins timm==1.0.12), eps 1e-6.

    timm <= 1.0.12 (layers/fast_norm.py rms_norm, CPU and non-apex GPU path) divides by the square root
    of the *unbiased variance* of x, torch.var(x, dim=-1), not of mean(x^2): x * rsqrt(var(x) + eps)
    * weight. timm 1.0.13 (commit 15406a93, "Fixing RmsNorm") switched to mean(x^2). Upstream's
    checkpoints are trained with the pinned timm, so we reproduce its formula; with mean(x^2) the
    action chunk moved by ~2% of its range (benchmarks/upstream_parity.py, small preset).
    `convention="mean-square"` gives timm >= 1.0.13's x * rsqrt(mean(x^2) + eps) * weight, for
    checkpoints trained with a newer timm.
    """

    def __init__(self, channels: int, eps: float = 1e-6, convention: str = TIMM_1_0_12) -> None:
        super().__init__()
        self.eps = eps
        self.convention = check_rmsnorm_convention(convention)
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.convention == MEAN_SQUARE:
            v = x.pow(2).mean(dim=-1, keepdim=True)  # timm >= 1.0.13
        else:
            v = torch.var(x, dim=-1, keepdim=True)  # unbiased, centered: timm 1.0.12's rms_norm
        return x * torch.rsqrt(v + self.eps) * self.weight


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, written out so the ONNX graph is plain MatMul/Softmax.

    Numerically equivalent to F.scaled_dot_product_attention (upstream's fused path) to float32
    rounding; the parity tests compare against the SDPA path of the reference model.
    """
    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q * scale, k.transpose(-2, -1))
    return torch.matmul(scores.softmax(dim=-1), v)


class TimmAttention(nn.Module):
    """timm Attention(qkv_bias=True, qk_norm=True, norm_layer=RmsNorm): names qkv, q_norm, k_norm, proj."""

    def __init__(self, dim: int, num_heads: int, use_sdpa: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = RmsNorm(self.head_dim)
        self.k_norm = RmsNorm(self.head_dim)
        self.proj = nn.Linear(dim, dim)
        self.use_sdpa = use_sdpa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v) if self.use_sdpa else attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class TimmMlp(nn.Module):
    """timm Mlp: fc1 -> act -> fc2 (dropout 0, no norm); upstream uses GELU(tanh) and hidden = dim."""

    def __init__(self, dim: int, hidden: int, approximate: str = "tanh") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """dinov2 LayerScale: x * gamma (parameter name `gamma`)."""

    def __init__(self, dim: int, init_values: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class SwiGLUFFNFused(nn.Module):
    """dinov2 SwiGLUFFNFused (ViT-g/14): w12 -> silu(x1) * x2 -> w3, hidden rounded to a multiple of 8."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)
