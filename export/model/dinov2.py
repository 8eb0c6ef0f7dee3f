"""DINOv2 ViT as torch.hub's `dinov2_vit{s,b,l,g}14` builds it, with dinov2's parameter names.

Only what upstream's ObsEncoder uses: `get_intermediate_layers(x, n=1)[0]` (last block, final
LayerNorm, patch tokens without the class token). Hub settings: img_size 518, patch 14, LayerScale
(init 1.0), no registers, no block chunks, so at 518x518 the position embedding is used as-is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from export.model.layers import LayerScale, SwiGLUFFNFused, attention


@dataclass(frozen=True)
class DinoArch:
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str = "mlp"  # "mlp" or "swiglufused"


DINOV2_ARCHS: dict[str, DinoArch] = {
    "dinov2_vits14": DinoArch(384, 12, 6),
    "dinov2_vitb14": DinoArch(768, 12, 12),
    "dinov2_vitl14": DinoArch(1024, 24, 16),
    "dinov2_vitg14": DinoArch(1536, 40, 24, "swiglufused"),
    # Private architecture for fast unit tests (not a hub model, never a user preset).
    "_test_tiny": DinoArch(32, 1, 2),
}

PATCH_SIZE = 14
IMAGE_SIZE = 518


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, use_sdpa: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.use_sdpa = use_sdpa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        x = F.scaled_dot_product_attention(q, k, v) if self.use_sdpa else attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class DinoMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DinoBlock(nn.Module):
    def __init__(self, arch: DinoArch, use_sdpa: bool) -> None:
        super().__init__()
        dim = arch.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DinoAttention(dim, arch.num_heads, use_sdpa)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLUFFNFused(dim, 4 * dim) if arch.ffn == "swiglufused" else DinoMlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    def __init__(self, model_type: str, use_sdpa: bool = True) -> None:
        super().__init__()
        arch = DINOV2_ARCHS[model_type]
        dim = arch.embed_dim
        num_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
        self.embed_dim = dim
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.ModuleList([DinoBlock(arch, use_sdpa) for _ in range(arch.depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))

    def get_intermediate_layers(self, x: torch.Tensor, n: int = 1) -> tuple[torch.Tensor, ...]:
        """Patch tokens of the last `n` blocks after the final norm (dinov2 semantics, n=1 used)."""
        if not torch.jit.is_tracing() and tuple(x.shape[-2:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"DINOv2 input must be {IMAGE_SIZE}x{IMAGE_SIZE}, got {tuple(x.shape[-2:])}")
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        outputs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i >= len(self.blocks) - n:
                outputs.append(x)
        return tuple(self.norm(out)[:, 1:] for out in outputs)
