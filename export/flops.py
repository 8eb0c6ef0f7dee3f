"""Analytic FLOP counts of the controller (2 FLOPs per multiply-add; matmuls and attention only).

Elementwise work (norms, activations, softmax) is left out: it is memory-bound and a few percent.
Used by benchmarks/controller.py for the compute floor (FLOPs / measured matmul rate).
"""

from __future__ import annotations

from export.model.arch import ControllerArch
from export.model.dinov2 import DINOV2_ARCHS, IMAGE_SIZE, PATCH_SIZE

PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2


def _transformer_layer(tokens: int, dim: int, ffn_flops_per_token: float) -> float:
    t, d = tokens, dim
    return 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + t * ffn_flops_per_token


def dinov2(model_type: str) -> float:
    arch = DINOV2_ARCHS[model_type]
    d = arch.embed_dim
    if arch.ffn == "swiglufused":
        hidden = (int(4 * d * 2 / 3) + 7) // 8 * 8
        ffn = 2 * d * 2 * hidden + 2 * hidden * d
    else:
        ffn = 2 * d * 4 * d * 2
    patch_embed = 2 * PATCHES * 3 * PATCH_SIZE**2 * d
    return patch_embed + arch.depth * _transformer_layer(PATCHES + 1, d, ffn)


def encoders(arch: ControllerArch) -> dict[str, float]:
    """Per-part FLOPs of the observation encoder (one inference)."""
    dh, dw, f = arch.head_dim, DINOV2_ARCHS[arch.wrist_model_type].embed_dim, arch.feature_dim
    mask = 2 * PATCHES * PATCH_SIZE**2 * dh + 4 * _transformer_layer(PATCHES, dh, 2 * dh * 4 * dh * 2)
    return {
        "dino_head": dinov2(arch.head_model_type),
        "dino_wrist": dinov2(arch.wrist_model_type),
        "mask_transformer": mask,
        "fusion_mlps": 2 * PATCHES * (2 * dh * f + f * f) + 2 * PATCHES * (dw * f + f * f) + 2 * (arch.state_dim * 256 + 256 * f),
    }


def dit_step(arch: ControllerArch, cond_tokens_projected: int) -> float:
    """One DiT forward at `cond_tokens_projected` K/V projections (2740 upstream, 1 when cached)."""
    h, c, e = arch.action_horizon, arch.max_cond_tokens, arch.feature_dim
    per_layer = (
        2 * h * e * 3 * e + 2 * 2 * h * h * e + 2 * h * e * e  # self-attention
        + 2 * h * e * e + 2 * cond_tokens_projected * e * 2 * e + 2 * 2 * h * c * e + 2 * h * e * e  # cross
        + 2 * h * e * e * 2  # ffn (hidden = width)
    )
    embeds = 2 * h * arch.action_dim * e + 2 * (256 * e + e * e) + 2 * h * e * arch.action_dim
    return arch.n_layer * per_layer + embeds


def controller(arch: ControllerArch) -> dict[str, float]:
    """FLOPs of one inference: encoders, the DiT uncached (upstream) and cached (exported)."""
    enc = encoders(arch)
    obs_kv = arch.n_layer * 2 * arch.num_obs_tokens * arch.feature_dim * 2 * arch.feature_dim
    steps = arch.num_inference_steps
    uncached = steps * dit_step(arch, arch.max_cond_tokens)
    cached = obs_kv + steps * dit_step(arch, 1)
    total_enc = sum(enc.values())
    return {
        **{f"encoder_{k}": v for k, v in enc.items()},
        "encoder_total": total_enc,
        "obs_kv_projection_once": obs_kv,
        "dit_uncached_total": uncached,
        "dit_cached_total": cached,
        "inference_uncached": total_enc + uncached,
        "inference_cached": total_enc + cached,
    }
