"""Our rebuild's parameter names and shapes == upstream's (listed independently from upstream code)."""

from __future__ import annotations

import pytest

from export.model.arch import get_preset
from export.model.policy import ControllerPolicy
from export.random_init import random_normalizer_stats


def expected_dino_keys(prefix: str, depth: int) -> set[str]:
    # facebookresearch/dinov2 DinoVisionTransformer (hub: LayerScale, MLP FFN, no registers).
    keys = {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
            "norm.weight", "norm.bias"}
    for i in range(depth):
        for name in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                     "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
                     "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma"):
            keys.add(f"blocks.{i}.{name}")
    return {f"{prefix}.{k}" for k in keys}


def expected_keys(n_layer: int, head_depth: int, wrist_depth: int) -> set[str]:
    keys = {"_dummy_variable", "obs_encoder._dummy_variable", "model._dummy_variable"}
    keys |= expected_dino_keys("obs_encoder.dino_head", head_depth)
    keys |= expected_dino_keys("obs_encoder.dino_wrist", wrist_depth)
    mp = "obs_encoder.mask_process_net"
    keys |= {f"{mp}.patch_embed.0.weight", f"{mp}.patch_embed.0.bias", f"{mp}.patch_embed.3.weight",
             f"{mp}.patch_embed.3.bias"}
    for i in range(4):  # torch nn.TransformerEncoderLayer
        for name in ("self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                     "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
                     "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"):
            keys.add(f"{mp}.transformer.layers.{i}.{name}")
    for net in ("head_net", "wrist_net", "state_net"):  # Linear, LayerNorm, GELU, Dropout, Linear, LayerNorm
        for idx in (0, 1, 4, 5):
            keys |= {f"obs_encoder.{net}.{idx}.weight", f"obs_encoder.{net}.{idx}.bias"}
    keys |= {"model.pos_emb", "model.cond_pos_emb", "model.input_emb.weight", "model.input_emb.bias",
             "model.time_emb.mlp.0.weight", "model.time_emb.mlp.0.bias", "model.time_emb.mlp.2.weight",
             "model.time_emb.mlp.2.bias", "model.ln_f.weight", "model.head.weight", "model.head.bias"}
    for i in range(n_layer):  # RDTBlock: timm Attention, CrossAttention, timm Mlp, RmsNorm
        for name in ("norm1.weight", "attn.qkv.weight", "attn.qkv.bias", "attn.q_norm.weight",
                     "attn.k_norm.weight", "attn.proj.weight", "attn.proj.bias", "cross_attn.q.weight",
                     "cross_attn.q.bias", "cross_attn.kv.weight", "cross_attn.kv.bias",
                     "cross_attn.q_norm.weight", "cross_attn.k_norm.weight", "cross_attn.proj.weight",
                     "cross_attn.proj.bias", "norm2.weight", "ffn.fc1.weight", "ffn.fc1.bias",
                     "ffn.fc2.weight", "ffn.fc2.bias", "norm3.weight"):
            keys.add(f"model.blocks.{i}.{name}")
    for field in ("action", "right_state"):
        for name in ("scale", "offset", "input_stats.min", "input_stats.max", "input_stats.mean", "input_stats.std"):
            keys.add(f"normalizer.params_dict.{field}.{name}")
    return keys


@pytest.mark.parametrize("preset,n_layer,head_depth,wrist_depth", [("small", 4, 12, 12), ("dexgraspvla", 12, 12, 24)])
def test_state_dict_keys_equal_upstream(preset, n_layer, head_depth, wrist_depth):
    with __import__("torch").device("meta"):
        policy = ControllerPolicy(get_preset(preset), random_normalizer_stats(0))
    keys = set(policy.state_dict().keys())
    expected = expected_keys(n_layer, head_depth, wrist_depth)
    assert keys - expected == set(), f"names upstream does not have: {sorted(keys - expected)[:10]}"
    assert expected - keys == set(), f"upstream names we lack: {sorted(expected - keys)[:10]}"


def test_full_size_shapes_match_upstream():
    import torch

    with torch.device("meta"):
        sd = ControllerPolicy(get_preset("dexgraspvla"), random_normalizer_stats(0)).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["obs_encoder.dino_head.pos_embed"] == (1, 1370, 768)  # ViT-B/14 at 518: 37*37 + cls
    assert shapes["obs_encoder.dino_wrist.pos_embed"] == (1, 1370, 1024)  # ViT-L/14
    assert shapes["obs_encoder.dino_head.mask_token"] == (1, 768)
    assert shapes["obs_encoder.mask_process_net.patch_embed.0.weight"] == (768, 1, 14, 14)
    assert shapes["obs_encoder.mask_process_net.transformer.layers.0.linear1.weight"] == (3072, 768)
    assert shapes["obs_encoder.head_net.0.weight"] == (1024, 1536)
    assert shapes["obs_encoder.state_net.0.weight"] == (256, 13)
    assert shapes["model.cond_pos_emb"] == (1, 2740, 1024)  # upstream's hard-coded 2739 obs tokens + time
    assert shapes["model.pos_emb"] == (1, 64, 1024)
    assert shapes["model.blocks.11.cross_attn.kv.weight"] == (2048, 1024)
    assert shapes["model.blocks.0.attn.q_norm.weight"] == (128,)  # RmsNorm over head_dim = 1024 / 8
    assert shapes["model.blocks.0.ffn.fc1.weight"] == (1024, 1024)  # Mlp hidden = n_emb
    assert shapes["model.time_emb.mlp.0.weight"] == (1024, 256)
    assert shapes["model.head.weight"] == (13, 1024)
    assert shapes["_dummy_variable"] == (0,)


def test_giant_uses_swiglu_names():
    import torch

    from export.model.dinov2 import DinoVisionTransformer

    with torch.device("meta"):
        sd = DinoVisionTransformer("dinov2_vitg14").state_dict()
    assert tuple(sd["blocks.0.mlp.w12.weight"].shape) == (8192, 1536)  # hidden (6144*2/3 rounded) x 2
    assert tuple(sd["blocks.39.mlp.w3.weight"].shape) == (1536, 4096)
    assert "blocks.0.mlp.fc1.weight" not in sd
