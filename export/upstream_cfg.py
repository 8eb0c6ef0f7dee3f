"""Build and read upstream's workspace cfg (train_dexgraspvla_controller_workspace.yaml + task/grasp.yaml).

`build_cfg` writes the cfg a real training run would have saved (resolved: no interpolations, so it
loads without hydra's custom resolvers), with upstream's `_target_` class paths, so
`TrainDexGraspVLAControllerWorkspace(cfg).load_payload(payload)` works on our checkpoints.
`arch_from_cfg` reads the architecture back, from ours or from a real upstream checkpoint.

The joint state width is written as shape_meta.obs.right_state.shape (upstream's task cfg field,
[13] in every upstream run) and read back from there, so a model for another robot round-trips.
Upstream's own ObsEncoder ignores the field (nn.Linear(13, 256)): it can load only 13-wide models.
"""

from __future__ import annotations

from typing import Any

from export.model.arch import ControllerArch
from export.model.dinov2 import IMAGE_SIZE
from export.model.obs_encoder import UPSTREAM_STATE_DIM
from runtime.errors import CheckpointError

SCHEDULER_TARGET = "diffusers.DDIMScheduler"


def build_cfg(arch: ControllerArch, use_ema: bool = False, run_name: str = "random_init") -> dict[str, Any]:
    """Upstream's workspace cfg (as a plain dict) for `arch`."""
    n_obs_steps = 1
    shape_meta = {
        "obs": {
            "right_cam_img": {"shape": [3, IMAGE_SIZE, IMAGE_SIZE], "type": "rgb", "horizon": n_obs_steps},
            "rgbm": {"shape": [4, IMAGE_SIZE, IMAGE_SIZE], "type": "rgbm", "horizon": n_obs_steps},
            "right_state": {"shape": [arch.state_dim], "type": "low_dim", "horizon": n_obs_steps},
        },
        "action": {"shape": [arch.action_dim], "horizon": arch.action_horizon},
    }
    scheduler = {"_target_": SCHEDULER_TARGET, **arch.scheduler}
    loader = {"batch_size": 48, "num_workers": 8, "pin_memory": True, "persistent_workers": True}
    return {
        "name": "train_dexgraspvla_controller",
        "_target_": "controller.workspace.train_dexgraspvla_controller_workspace.TrainDexGraspVLAControllerWorkspace",
        "task_name": "grasp",
        "shape_meta": shape_meta,
        "exp_name": "default",
        "n_action_steps": arch.action_horizon,
        "n_obs_steps": n_obs_steps,
        "n_latency_steps": 0,
        "dataset_obs_steps": n_obs_steps,
        "past_action_visible": False,
        "keypoint_visible_rate": 1.0,
        "obs_as_cond": True,
        "policy": {
            "_target_": "controller.policy.dexgraspvla_controller.DexGraspVLAController",
            "shape_meta": shape_meta,
            "noise_scheduler": scheduler,
            "obs_encoder": {
                "_target_": "controller.model.vision.obs_encoder.ObsEncoder",
                "shape_meta": shape_meta,
                "model_config": {
                    "head": {"model_type": arch.head_model_type, "local_weights_path": None},
                    "wrist": {"model_type": arch.wrist_model_type, "local_weights_path": None},
                },
            },
            "num_inference_steps": arch.num_inference_steps,
            "n_layer": arch.n_layer,
            "n_head": arch.n_head,
            "p_drop_attn": arch.p_drop_attn,
            "use_attn_mask": arch.use_attn_mask,
            "start_ckpt_path": None,
        },
        "ema": {
            "_target_": "controller.model.diffusion.ema_model.EMAModel",
            "update_after_step": 0, "inv_gamma": 1.0, "power": 0.75, "min_value": 0.0, "max_value": 0.9999,
        },
        "dataloader": {**loader, "shuffle": True},
        "val_dataloader": {**loader, "shuffle": False},
        "optimizer": {"lr": 1.0e-4, "weight_decay": 1e-4, "betas": [0.95, 0.999]},
        "training": {
            "device": "cuda:0", "seed": 42, "debug": False, "resume": False, "lr_scheduler": "cosine",
            "lr_warmup_steps": 2000, "num_epochs": 125, "gradient_accumulate_every": 1, "use_ema": use_ema,
            "rollout_every": 10, "checkpoint_every": 1, "val_every": 10000, "sample_every": 10,
            "gen_attn_map": True, "max_train_steps": None, "max_val_steps": None, "tqdm_interval_sec": 1.0,
        },
        "logging": {
            "project": "train_dexgraspvla_controller", "resume": False, "mode": "online",
            "name": f"{run_name}_train_dexgraspvla_controller_grasp",
            "tags": ["train_dexgraspvla_controller", "grasp", "default"], "id": None, "group": None,
        },
        "checkpoint": {
            "topk": {"monitor_key": "train_loss", "mode": "min", "k": 1,
                     "format_str": "epoch={epoch:04d}-train_loss={train_loss:.3f}.ckpt"},
            "save_last_ckpt": False, "save_last_snapshot": False,
        },
        "multi_run": {"run_dir": f"data/outputs/{run_name}", "wandb_name_base": run_name},
        "task": {
            "name": "grasp",
            "image_shape": [3, IMAGE_SIZE, IMAGE_SIZE],
            "mask_image_shape": [4, IMAGE_SIZE, IMAGE_SIZE],
            "dataset_paths": ["data/grasp_demo_example"],
            "shape_meta": shape_meta,
            "env_runner": {"_target_": "controller.env_runner.real_grasp_image_runner.RealGraspImageRunner"},
            "dataset": {
                "_target_": "controller.dataset.mask_image_dataset.MaskImageDataset",
                "zarr_paths": ["data/grasp_demo_example"], "horizon": arch.action_horizon,
                "pad_before": 0, "pad_after": arch.action_horizon - 1, "seed": 42, "val_ratio": 0,
            },
        },
    }


def _get(cfg: Any, dotted: str, default: Any = KeyError) -> Any:
    node = cfg
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            if default is KeyError:
                raise CheckpointError(f"checkpoint cfg has no '{dotted}' (missing '{part}')") from exc
            return default
        if node is None and default is not KeyError:
            return default
    return node


def arch_from_cfg(cfg: Any) -> ControllerArch:
    """Read the controller architecture from an upstream cfg (OmegaConf DictConfig or dict)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is part of the export extra
        pass
    except Exception as exc:  # noqa: BLE001 - OmegaConf raises many types on unresolvable cfgs
        raise CheckpointError(f"checkpoint cfg cannot be resolved: {exc}") from exc
    policy = _get(cfg, "policy")
    target = str(_get(policy, "_target_", ""))
    if target and not target.endswith("DexGraspVLAController"):
        raise CheckpointError(f"checkpoint cfg.policy is a '{target}', not a DexGraspVLAController")
    scheduler = dict(_get(policy, "noise_scheduler"))
    sched_target = str(scheduler.pop("_target_", SCHEDULER_TARGET))
    if not sched_target.endswith("DDIMScheduler"):
        raise CheckpointError(
            f"checkpoint noise_scheduler is '{sched_target}'; only diffusers.DDIMScheduler is supported"
        )
    action_shape = list(_get(policy, "shape_meta.action.shape"))
    if len(action_shape) != 1:
        raise CheckpointError(f"shape_meta.action.shape must be 1-D, got {action_shape}")
    state_shape = list(_get(policy, "shape_meta.obs.right_state.shape", [UPSTREAM_STATE_DIM]))
    if len(state_shape) != 1:
        raise CheckpointError(f"shape_meta.obs.right_state.shape must be 1-D (joints), got {state_shape}")
    for what, shape in (("action", action_shape), ("obs.right_state", state_shape)):
        if isinstance(shape[0], bool) or not isinstance(shape[0], int) or shape[0] < 1:
            raise CheckpointError(f"shape_meta.{what}.shape must be a positive joint count, got {shape}")
    for key, channels in (("rgbm", 4), ("right_cam_img", 3)):
        shape = list(_get(policy, f"shape_meta.obs.{key}.shape", [channels, IMAGE_SIZE, IMAGE_SIZE]))
        if shape != [channels, IMAGE_SIZE, IMAGE_SIZE]:
            raise CheckpointError(
                f"shape_meta.obs.{key}.shape is {shape}; upstream's encoder only supports "
                f"[{channels}, {IMAGE_SIZE}, {IMAGE_SIZE}] (2739 tokens are hard-coded)"
            )
    num_steps = _get(policy, "num_inference_steps", None)
    if num_steps is None:  # upstream default: as many steps as training timesteps
        num_steps = int(scheduler.get("num_train_timesteps", 1000))
    return ControllerArch(
        head_model_type=str(_get(policy, "obs_encoder.model_config.head.model_type")),
        wrist_model_type=str(_get(policy, "obs_encoder.model_config.wrist.model_type")),
        n_layer=int(_get(policy, "n_layer", 7)),
        n_head=int(_get(policy, "n_head", 8)),
        action_dim=int(action_shape[0]),
        state_dim=int(state_shape[0]),
        action_horizon=int(_get(policy, "shape_meta.action.horizon")),
        num_inference_steps=int(num_steps),
        use_attn_mask=bool(_get(policy, "use_attn_mask", False)),
        p_drop_attn=float(_get(policy, "p_drop_attn", 0.1)),
        scheduler=scheduler,
    )
