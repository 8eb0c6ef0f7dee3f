"""The controller architecture as upstream's cfg.policy describes it, and the named presets.

The joint layout is two widths: `action_dim` (upstream: cfg shape_meta.action.shape) and
`state_dim`, the joint state the encoder reads (upstream: shape_meta.obs.right_state.shape, though
upstream's ObsEncoder ignores it and hard-codes nn.Linear(13, 256)). Both default to upstream's 13
(7 arm + 6 hand joints). They are kept separate, not tied together, because upstream's format lets
them differ (a checkpoint trained with another action shape still reads 13 state values) and the
exporter must round-trip any upstream checkpoint. Every model this project makes for a robot
(`dexgrasp make-checkpoint --config`, `dexgrasp train --config`) has both equal to the robot's joint
count (`with_joints`), and the runtime refuses a model whose either width differs from the robot's
joint space (runtime/joint_space.py JointSpace.check_model).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import asdict, dataclass, field

from export.model.dinov2 import DINOV2_ARCHS
from export.model.obs_encoder import UPSTREAM_STATE_DIM, num_obs_tokens
from runtime.errors import ConfigError

# Upstream's controller/config/train_dexgraspvla_controller_workspace.yaml noise_scheduler block.
UPSTREAM_SCHEDULER = {
    "num_train_timesteps": 50,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "squaredcos_cap_v2",
    "clip_sample": True,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "epsilon",
}


@dataclass(frozen=True)
class ControllerArch:
    head_model_type: str
    wrist_model_type: str
    n_layer: int
    n_head: int
    action_dim: int = UPSTREAM_STATE_DIM
    state_dim: int = UPSTREAM_STATE_DIM
    action_horizon: int = 64
    num_inference_steps: int = 16
    use_attn_mask: bool = False
    p_drop_attn: float = 0.1
    scheduler: dict = field(default_factory=lambda: dict(UPSTREAM_SCHEDULER))

    def __post_init__(self) -> None:
        for role, name in (("head", self.head_model_type), ("wrist", self.wrist_model_type)):
            if name not in DINOV2_ARCHS:
                raise ConfigError(
                    f"obs_encoder.model_config.{role}.model_type '{name}' is not a DINOv2 hub model; "
                    f"expected one of {sorted(k for k in DINOV2_ARCHS if not k.startswith('_'))}"
                )
        for name in ("action_dim", "state_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer (joints), got {value!r}")
        if self.feature_dim % self.n_head:
            raise ConfigError(f"n_head {self.n_head} does not divide the DiT width {self.feature_dim}")

    @property
    def head_dim(self) -> int:
        return DINOV2_ARCHS[self.head_model_type].embed_dim

    @property
    def feature_dim(self) -> int:
        return max(self.head_dim, DINOV2_ARCHS[self.wrist_model_type].embed_dim)

    @property
    def num_obs_tokens(self) -> int:
        return num_obs_tokens()

    @property
    def max_cond_tokens(self) -> int:
        return self.num_obs_tokens + 1  # + the time token

    @property
    def attn_head_dim(self) -> int:
        return self.feature_dim // self.n_head

    @property
    def joints(self) -> int | None:
        """The robot joint count this model is for (action and state of one width), else None."""
        return self.action_dim if self.action_dim == self.state_dim else None

    def with_joints(self, n: int) -> ControllerArch:
        """This architecture for a robot with `n` joints: action and state both `n` wide."""
        return dataclasses.replace(self, action_dim=n, state_dim=n)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, ControllerArch] = {
    # The paper's sizes: ViT-B/14 head, ViT-L/14 wrist, 12-layer DiT of width 1024.
    "dexgraspvla": ControllerArch("dinov2_vitb14", "dinov2_vitl14", n_layer=12, n_head=8),
    # Upstream-valid and quick on a CPU: ViT-S/14 on both cameras (width 384), 4-layer DiT.
    "small": ControllerArch("dinov2_vits14", "dinov2_vits14", n_layer=4, n_head=8),
}

# Private: unit tests only (not listed by the CLI, not loadable by upstream code).
TEST_ARCH = ControllerArch("_test_tiny", "_test_tiny", n_layer=2, n_head=8, num_inference_steps=4)


def get_preset(name: str, joints: int | None = None) -> ControllerArch:
    """Look up a preset by name, with a did-you-mean hint; `joints` sizes it for a robot with that
    many joints (None: upstream's 13)."""
    if name == "_test_tiny":
        arch = TEST_ARCH
    elif name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset '{name}'; choose one of {sorted(PRESETS)}.{hint}")
    else:
        arch = PRESETS[name]
    return arch if joints is None else arch.with_joints(joints)
