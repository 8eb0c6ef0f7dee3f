"""The controller's forward pass in training mode, as upstream runs it (`model(batch, training=True)`).

export/model/ is the inference rebuild (bit-identical to upstream's predict_action) and has no
training-only behaviour, so the differences live here, using those modules' own weights:

- ObsEncoder(training=True): colour jitter on the head and wrist RGB (before ImageNet
  normalisation); DINOv2 under no_grad (frozen); Dropout(0.1) in head_net/wrist_net/state_net is
  active because the policy is in train() mode (nn.Dropout modules, nothing to add).
- DiT: timm Attention and the RDT CrossAttention both drop attention probabilities and their output
  projection with p_drop_attn (0.1) in train() mode; with use_attn_mask the cross attention hides
  the head / wrist / both observation parts with probabilities 0.1 / 0.1 / 0.1 (0.7: none), one
  draw per layer call for the whole batch.
- DINOv2 features can come from a FeatureCache instead of being recomputed (no jitter then).
With the policy in eval() mode and jitter off, these functions give exactly the inference forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from export.model.dinov2 import IMAGE_SIZE, PATCH_SIZE

PARTS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 1369 patch tokens per camera


def upstream_attn_masks(action_horizon: int, max_cond_tokens: int) -> torch.Tensor:
    """The (4, horizon, cond) bool masks upstream's CrossAttention registers (True = attend)."""
    masks = torch.ones((4, action_horizon, max_cond_tokens), dtype=torch.bool)
    masks[0, :, :PARTS] = False
    masks[1, :, PARTS:2 * PARTS] = False
    masks[2, :, :2 * PARTS] = False
    return masks


def fill_attn_masks(policy) -> int:
    """Write upstream's mask contents into the `masks` buffers (our rebuild registers ones); returns count."""
    n = 0
    for block in policy.model.blocks:
        cross = block.cross_attn
        if hasattr(cross, "masks"):
            cross.masks.copy_(upstream_attn_masks(*cross.masks.shape[1:]))
            n += 1
    return n


def dino_features(encoder, rgbm: torch.Tensor, wrist: torch.Tensor, jitter=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 4|3, 518, 518) BGR in [0, 1] -> head / wrist DINOv2 patch tokens (B*T, 1369, D), no grad."""

    def prep(bgr: torch.Tensor) -> torch.Tensor:
        rgb = bgr[:, :, [2, 1, 0], ...].reshape(-1, 3, *bgr.shape[-2:])
        if jitter is not None:
            rgb = jitter(rgb)
        return (rgb - encoder._mean) / encoder._std

    with torch.no_grad():
        head = encoder.dino_head.get_intermediate_layers(prep(rgbm[:, :, :3]), n=1)[0]
        wrist_f = encoder.dino_wrist.get_intermediate_layers(prep(wrist), n=1)[0]
    return head, wrist_f


def encode_obs(encoder, obs: dict, features: tuple[torch.Tensor, torch.Tensor] | None = None,
               jitter=None) -> torch.Tensor:
    """ObsEncoder.forward(obs, training) -> (B, 2739, feature_dim) tokens.

    obs has right_state (B, 1, 13) and either rgbm + right_cam_img (features computed here) or a
    mask (B, 1, 1, 518, 518) together with `features` = cached (head, wrist) DINOv2 tokens.
    """
    if features is None:
        features = dino_features(encoder, obs["rgbm"], obs["right_cam_img"], jitter)
        mask = obs["rgbm"][:, :, 3:]
    else:
        mask = obs["mask"]
    head_rgb, wrist_rgb = features
    b = obs["right_state"].shape[0]
    mask = mask.reshape(-1, 1, *mask.shape[-2:])
    net = encoder.mask_process_net
    mask_feature = net["transformer"](net["patch_embed"](mask))
    head = encoder.head_net(torch.cat([head_rgb.to(mask_feature.dtype), mask_feature], dim=-1))
    head = head.reshape(b, -1, head.shape[-1])
    wrist = encoder.wrist_net(wrist_rgb.to(head.dtype))
    wrist = wrist.reshape(b, -1, wrist.shape[-1])
    return torch.cat([head, wrist, encoder.forward_state(obs["right_state"])], dim=1)


def _self_attn(attn, x: torch.Tensor, p: float) -> torch.Tensor:
    b, n, c = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
    return F.dropout(attn.proj(out.transpose(1, 2).reshape(b, n, c)), p, training=p > 0)


def _cross_attn(cross, x: torch.Tensor, c: torch.Tensor, p: float, use_mask: bool) -> torch.Tensor:
    q = cross._query(x)
    k, v = cross.project_kv(c)
    mask = None
    if use_mask:
        idx = torch.multinomial(cross.probs, num_samples=1)
        mask = cross.masks[idx.squeeze()]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    return F.dropout(cross._out(out), p, training=p > 0)


def dit_forward(dit, sample: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor,
                p_drop_attn: float, training: bool, use_attn_mask: bool) -> torch.Tensor:
    """TransformerForActionDiffusion.forward(sample, timesteps, cond, training) -> (B, T, A)."""
    p = p_drop_attn if dit.training else 0.0
    use_mask = use_attn_mask and training
    cond_emb = torch.cat([cond, dit._time_token(timesteps, sample.shape[0])], dim=1)
    cond_emb = cond_emb + dit.cond_pos_emb[:, : cond_emb.shape[1]]
    x = dit._input(sample)
    for block in dit.blocks:
        x = x + _self_attn(block.attn, block.norm1(x), p)
        x = x + _cross_attn(block.cross_attn, block.norm2(x), cond_emb, p, use_mask)
        x = x + block.ffn(block.norm3(x))
    return dit.head(dit.ln_f(x))
