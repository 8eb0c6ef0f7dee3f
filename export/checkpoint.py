"""Load upstream DexGraspVLA controller checkpoints into our PyTorch rebuild, with clear errors.

Accepted inputs:
- an upstream workspace `.ckpt` (torch.save with dill): {'cfg', 'state_dicts': {'model', 'ema_model'?}, ...};
  the architecture comes from cfg.policy;
- a plain state dict (or {'state_dict': ...}) saved with torch.save, plus a preset naming the architecture;
  the joint layout (action and state widths) is then read from the weights, which fix it
  (model.input_emb's input width, obs_encoder.state_net's input width).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from export.model.arch import ControllerArch, get_preset
from export.model.policy import ControllerPolicy
from export.upstream_cfg import arch_from_cfg
from runtime.errors import CheckpointError, ConfigError
from runtime.hashing import sha256_file

log = logging.getLogger(__name__)

NORMALIZER_PREFIX = "normalizer.params_dict."
MAX_NAMES = 5


@dataclass
class LoadedCheckpoint:
    policy: ControllerPolicy
    arch: ControllerArch
    sha256: str
    path: str
    weights: str  # "model", "ema_model" or "state_dict"
    # `dexgrasp train`'s provenance (episodes dir, scene seeds, action rate and recorded fps) when the
    # payload has it; the export copies it into the manifest's source_checkpoint.training for
    # `dexgrasp eval`'s seed check.
    training: dict = field(default_factory=dict)


file_sha256 = sha256_file  # the checkpoint's hash, recorded in the export manifest


def _safe_globals() -> list:
    """Exactly the globals an upstream workspace .ckpt references (OmegaConf cfg containers, the
    defaultdict OmegaConf uses for flags, dill's builtin-type lookup): nothing that runs code."""
    import collections
    import typing

    import dill
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode

    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, collections.defaultdict,
            typing.Any, dill._dill._load_type]


def _read_payload(path: pathlib.Path, trust_checkpoint: bool = False):
    """Unpickle with torch's weights_only loader and an allow-list, so a hostile .ckpt cannot run code;
    trust_checkpoint=True (CLI --trust-checkpoint) does full dill unpickling for files you trust."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes)")
    try:
        if trust_checkpoint:
            import dill

            return torch.load(path, map_location="cpu", pickle_module=dill, weights_only=False)
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = None if trust_checkpoint else _refused_global(str(exc))
        if name is not None:
            raise CheckpointError(
                f"checkpoint '{path}' references the disallowed global '{name}' (refused: it could run "
                "code); pass --trust-checkpoint only for files you trust"
            ) from exc
        raise _unreadable(path, exc) from exc
    except Exception as exc:  # noqa: BLE001 - torch.load raises RuntimeError/UnpicklingError/EOFError/...
        raise _unreadable(path, exc) from exc


def _refused_global(message: str) -> str | None:
    """The global torch's weights_only unpickler refused, from its message ('?' if it names none);
    None when the error is not such a refusal (a truncated or corrupt file)."""
    found = re.search(r"GLOBAL ([\w.]+)|global ([\w.]+)|Unsupported class ([\w.]+)|"
                      r"Trying to call reduce for ([\w.<>]+)", message)
    if found:
        return next(g for g in found.groups() if g)
    return "?" if "weights only load failed" in message.lower() else None


def _unreadable(path: pathlib.Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"checkpoint '{path}' cannot be read (corrupt or truncated file?): {type(exc).__name__}: {exc}"
    )


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f" ... ({len(names)} in total)" if len(names) > MAX_NAMES else "")


def _split_normalizer(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Separate normalizer.params_dict.* (any fitted keys, like upstream's custom loader) from the rest."""
    stats: dict = {}
    rest = {}
    for key, value in state_dict.items():
        if key.startswith(NORMALIZER_PREFIX):
            parts = key[len(NORMALIZER_PREFIX):].split(".")
            node = stats
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value.detach().float()
        else:
            rest[key] = value
    return stats, rest


def build_policy(arch: ControllerArch, state_dict: Mapping[str, torch.Tensor], source: str,
                 use_sdpa: bool = True) -> ControllerPolicy:
    """Instantiate the policy for `arch` and load `state_dict` strictly, explaining any mismatch."""
    if not isinstance(state_dict, Mapping) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise CheckpointError(f"{source}: the model weights are not a state dict of tensors")
    stats, module_sd = _split_normalizer(state_dict)
    action = stats.get("action", {})
    if "scale" not in action or "offset" not in action:
        raise CheckpointError(
            f"{source}: missing the action normalizer ({NORMALIZER_PREFIX}action.scale / .offset); "
            "was the policy's normalizer set before saving?"
        )
    for name in ("scale", "offset"):
        if tuple(action[name].shape) != (arch.action_dim,):
            raise CheckpointError(
                f"{source}: {NORMALIZER_PREFIX}action.{name} has shape {tuple(action[name].shape)}, "
                f"expected ({arch.action_dim},)"
            )
    policy = ControllerPolicy(arch, stats, use_sdpa=use_sdpa)
    expected = {k: v for k, v in policy.state_dict().items() if not k.startswith(NORMALIZER_PREFIX)}
    missing = [k for k in expected if k not in module_sd]
    unexpected = [k for k in module_sd if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(module_sd[k].shape)} vs expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in module_sd and tuple(module_sd[k].shape) != tuple(v.shape)
    ]
    desc = (f"head {arch.head_model_type}, wrist {arch.wrist_model_type}, "
            f"DiT {arch.n_layer} layers x {arch.n_head} heads, width {arch.feature_dim}, "
            f"action_dim {arch.action_dim}, state_dim {arch.state_dim}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_names(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_names(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the architecture ({desc}): " + "; ".join(problems)
        )
    policy.load_state_dict({**module_sd, **policy.normalizer.state_dict(prefix="normalizer.")}, strict=True)
    for key, value in policy.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: parameter {key} contains NaN or Inf")
    return policy.eval()


def load_checkpoint(path: str | pathlib.Path, preset: str | None = None, use_ema: bool = False,
                    use_sdpa: bool = True, trust_checkpoint: bool = False) -> LoadedCheckpoint:
    """Load a checkpoint into a ControllerPolicy in eval mode.

    Raises CheckpointError naming what is wrong (unreadable file, unknown architecture, missing,
    unexpected or mis-shaped keys, non-finite weights). Blocks while reading the file (seconds for
    the full-size model).
    """
    path = pathlib.Path(path)
    payload = _read_payload(path, trust_checkpoint)
    source = f"checkpoint '{path}'"
    if isinstance(payload, Mapping) and "state_dicts" in payload:
        state_dicts = payload["state_dicts"]
        try:
            arch = arch_from_cfg(payload.get("cfg")) if payload.get("cfg") is not None else None
        except ConfigError as exc:
            raise CheckpointError(f"{source}: {exc}") from exc
        if arch is None:
            if preset is None:
                raise CheckpointError(f"{source} has no cfg; pass --preset to name its architecture")
            arch = _preset_for_weights(preset, state_dicts.get("model") or {})
        elif preset is not None and _sized_like(get_preset(preset), arch) != arch:
            log.warning("%s: --preset %s ignored, the checkpoint's cfg defines the architecture", source, preset)
        key = "ema_model" if use_ema else "model"
        if key not in state_dicts or state_dicts[key] is None:
            have = sorted(k for k, v in state_dicts.items() if v is not None)
            raise CheckpointError(f"{source} has no '{key}' weights (it has: {have})")
        state_dict = state_dicts[key]
        weights = key
    elif isinstance(payload, Mapping):
        state_dict = payload.get("state_dict", payload)
        if preset is None:
            raise CheckpointError(f"{source} is a plain state dict without cfg; pass --preset to name its architecture")
        if use_ema:
            raise CheckpointError(f"{source} is a plain state dict: it has no separate EMA weights (drop --use-ema)")
        arch = _preset_for_weights(preset, state_dict)
        weights = "state_dict"
    else:
        raise CheckpointError(f"{source} holds a {type(payload).__name__}, not a workspace payload or state dict")
    policy = build_policy(arch, state_dict, source, use_sdpa=use_sdpa)
    return LoadedCheckpoint(policy, arch, file_sha256(path), str(path), weights, _training_provenance(payload))


def _sized_like(arch: ControllerArch, other: ControllerArch) -> ControllerArch:
    """`arch` with `other`'s joint layout (a preset names no joint count)."""
    return dataclasses.replace(arch, action_dim=other.action_dim, state_dim=other.state_dim)


def _preset_for_weights(preset: str, state_dict) -> ControllerArch:
    """The preset, with the action and state widths the weights were made for: without a cfg
    nothing else says which robot the model drives, and the weights fix both widths."""
    arch = get_preset(preset)
    if not isinstance(state_dict, Mapping):
        return arch
    widths = {}
    for field_name, key in (("action_dim", "model.input_emb.weight"), ("state_dim", "obs_encoder.state_net.0.weight")):
        weight = state_dict.get(key)
        if torch.is_tensor(weight) and weight.dim() == 2 and weight.shape[1] >= 1:
            widths[field_name] = int(weight.shape[1])
    if widths and any(getattr(arch, k) != v for k, v in widths.items()):
        log.info("preset %s sized for the weights: %s", preset, ", ".join(f"{k} {v}" for k, v in widths.items()))
        arch = dataclasses.replace(arch, **widths)
    return arch


def _training_provenance(payload) -> dict:
    """payload['dexgrasp'] as written by export/train (plain JSON-able values only), else {}."""
    info = payload.get("dexgrasp") if isinstance(payload, Mapping) else None
    if not isinstance(info, Mapping):
        return {}
    seeds = info.get("scene_seeds")
    out = {k: str(info[k]) for k in ("episodes_dir",) if k in info}
    if isinstance(seeds, (list, tuple)) and all(isinstance(s, int) for s in seeds):
        out["scene_seeds"] = sorted({int(s) for s in seeds})
    for key in ("action_rate_hz", "recorded_fps"):  # Hz, as export/train/timeline.py put the data
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            out[key] = float(value)
    return out
