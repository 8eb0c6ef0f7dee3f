"""Upstream's ObsEncoder (controller/model/vision/obs_encoder.py) with its parameter names.

Head camera: BGR->RGB, ImageNet normalisation, DINOv2 patch tokens, concatenated with a 4-layer
transformer over 14x14 mask patches, fused by `head_net`. Wrist camera: DINOv2 -> `wrist_net`.
State: `state_net` on the joint state, `state_dim` wide (upstream hard-codes nn.Linear(13, 256):
7 arm + 6 hand joints; another robot's model is the same network with another input width, which
upstream's own code cannot load). Output: (B, 1369 + 1369 + 1, feature_dim) tokens.
Inference only (upstream's `training=False`: no colour jitter, dropout off in eval()).
"""

from __future__ import annotations

import torch
from torch import nn

from export.model.dinov2 import DINOV2_ARCHS, IMAGE_SIZE, PATCH_SIZE, DinoVisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UPSTREAM_STATE_DIM = 13  # upstream hard-codes nn.Linear(13, 256)
MASK_TRANSFORMER_HEADS = 8
MASK_TRANSFORMER_LAYERS = 4


def num_obs_tokens() -> int:
    """2 x 37 x 37 patch tokens + 1 state token: upstream's hard-coded 2739."""
    return 2 * (IMAGE_SIZE // PATCH_SIZE) ** 2 + 1


class BcnToBnc(nn.Module):
    """einops Rearrange('b c n -> b n c') (no parameters, keeps Sequential indices identical)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def _fusion_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.LayerNorm(hidden),
        nn.GELU(),
        nn.Dropout(0.1),
        nn.Linear(hidden, out_dim),
        nn.LayerNorm(out_dim),
    )


class ObsEncoder(nn.Module):
    def __init__(self, head_model_type: str, wrist_model_type: str, use_sdpa: bool = True,
                 state_dim: int = UPSTREAM_STATE_DIM) -> None:
        super().__init__()
        self._dummy_variable = nn.Parameter(torch.empty(0), requires_grad=False)  # ModuleAttrMixin
        self.dino_head = DinoVisionTransformer(head_model_type, use_sdpa)
        self.dino_wrist = DinoVisionTransformer(wrist_model_type, use_sdpa)
        for p in list(self.dino_head.parameters()) + list(self.dino_wrist.parameters()):
            p.requires_grad = False
        head_dim = DINOV2_ARCHS[head_model_type].embed_dim
        wrist_dim = DINOV2_ARCHS[wrist_model_type].embed_dim
        feature_dim = max(head_dim, wrist_dim)
        self.mask_process_net = nn.ModuleDict(
            {
                "patch_embed": nn.Sequential(
                    nn.Conv2d(1, head_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE),
                    nn.Flatten(2),
                    BcnToBnc(),
                    nn.LayerNorm(head_dim),
                ),
                "transformer": nn.TransformerEncoder(
                    encoder_layer=nn.TransformerEncoderLayer(
                        d_model=head_dim,
                        nhead=MASK_TRANSFORMER_HEADS,
                        dim_feedforward=head_dim * 4,
                        dropout=0.0,
                        activation=nn.GELU(),
                        batch_first=True,
                        norm_first=True,
                    ),
                    num_layers=MASK_TRANSFORMER_LAYERS,
                    enable_nested_tensor=False,
                ),
            }
        )
        self.head_net = _fusion_mlp(head_dim * 2, feature_dim, feature_dim)
        self.wrist_net = _fusion_mlp(wrist_dim, feature_dim, feature_dim)
        self.state_net = _fusion_mlp(state_dim, 256, feature_dim)
        self.state_dim = state_dim
        self.feature_dim = feature_dim
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _dino_input(self, bgr: torch.Tensor) -> torch.Tensor:
        # (B,T,3,H,W) BGR in [0,1] -> (B*T,3,H,W) ImageNet-normalised RGB (torchvision Normalize).
        rgb = bgr[:, :, [2, 1, 0], ...]
        rgb = rgb.reshape(-1, *rgb.shape[2:])
        return (rgb - self._mean) / self._std

    def forward_head(self, rgbm: torch.Tensor) -> torch.Tensor:
        b = rgbm.shape[0]
        rgb_feature = self.dino_head.get_intermediate_layers(self._dino_input(rgbm[:, :, :3]), n=1)[0]
        mask = rgbm[:, :, 3:].reshape(-1, 1, *rgbm.shape[-2:])
        mask_feature = self.mask_process_net["transformer"](self.mask_process_net["patch_embed"](mask))
        head = self.head_net(torch.cat([rgb_feature, mask_feature], dim=-1))
        return head.reshape(b, -1, head.shape[-1])

    def forward_wrist(self, wrist: torch.Tensor) -> torch.Tensor:
        b = wrist.shape[0]
        feature = self.dino_wrist.get_intermediate_layers(self._dino_input(wrist), n=1)[0]
        feature = self.wrist_net(feature)
        return feature.reshape(b, -1, feature.shape[-1])

    def forward_state(self, state: torch.Tensor) -> torch.Tensor:
        b, t = state.shape[:2]
        return self.state_net(state.reshape(b * t, -1)).reshape(b, t, -1)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat(
            [
                self.forward_head(obs["rgbm"]),
                self.forward_wrist(obs["right_cam_img"]),
                self.forward_state(obs["right_state"]),
            ],
            dim=1,
        )
