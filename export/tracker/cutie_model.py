"""Build Cutie (the `rf-cutie` package's own model code) from a plain state dict or random weights.

Upstream DexGraspVLA calls `cutie.utils.get_default_model()`, which composes the package's hydra
`eval_config` (dataset d17-val: no long-term memory, a memory frame every 5 frames, 5 memory frames,
top-k 30) with the `base` model and loads `cutie-base-mega.pth`. We compose the same YAML files with
OmegaConf alone (hydra-core would downgrade omegaconf here), so the network and every inference
setting are the package's, not a copy.
"""

from __future__ import annotations

import contextlib
import pathlib

from runtime.errors import CheckpointError, ConfigError

CUTIE_CONFIGS = ("base", "small")

# The settings get_default_model() ends up with (eval_config + datasets.d17-val overrides).
UPSTREAM_INFERENCE = {"mem_every": 5, "max_mem_frames": 5, "top_k": 30, "stagger_updates": 5,
                      "use_long_term": False, "max_internal_size": -1, "chunk_size": -1}


def _config_dir() -> pathlib.Path:
    import cutie

    return pathlib.Path(cutie.__path__[0]) / "config"


def build_cutie_config(model_config: str = "base"):
    """The package's eval config with `model: <model_config>`, resolved like get_default_model()."""
    from omegaconf import OmegaConf, open_dict

    if model_config not in CUTIE_CONFIGS:
        raise ConfigError(f"unknown Cutie config {model_config!r}; choose one of {', '.join(CUTIE_CONFIGS)}")
    cfg_dir = _config_dir()
    model = OmegaConf.load(cfg_dir / "model" / "base.yaml")
    if model_config != "base":
        override = OmegaConf.load(cfg_dir / "model" / f"{model_config}.yaml")
        override.pop("defaults", None)
        model = OmegaConf.merge(model, override)
    evalc = OmegaConf.load(cfg_dir / "eval_config.yaml")
    for key in ("defaults", "hydra"):
        evalc.pop(key, None)
    cfg = OmegaConf.merge(evalc, {"model": model})
    with open_dict(cfg):
        data_cfg = cfg.datasets[cfg.dataset]
        for key in ("image_directory", "mask_directory", "json_directory", "size", "save_all",
                    "use_all_masks", "use_long_term", "mem_every"):
            if cfg.get(key) is not None:
                data_cfg[key] = cfg[key]
            if key in data_cfg:
                cfg[key] = data_cfg[key]
        cfg.max_internal_size = -1  # upstream: processor.max_internal_size = -1 (full resolution)
        cfg.tracker_model_config = model_config
    for key, value in UPSTREAM_INFERENCE.items():
        if cfg[key] != value:
            raise ConfigError(f"Cutie eval config has {key}={cfg[key]}, expected upstream's {value}")
    return cfg


@contextlib.contextmanager
def _no_imagenet_download():
    """Cutie's encoders start from ImageNet ResNets (a download); a checkpoint overwrites them anyway."""
    from cutie.model import big_modules

    real = big_modules.resnet.resnet18, big_modules.resnet.resnet50
    big_modules.resnet.resnet18 = lambda pretrained=True, **kw: real[0](pretrained=False, **kw)
    big_modules.resnet.resnet50 = lambda pretrained=True, **kw: real[1](pretrained=False, **kw)
    try:
        yield
    finally:
        big_modules.resnet.resnet18, big_modules.resnet.resnet50 = real


def build_cutie(model_config: str = "base", checkpoint: str | pathlib.Path | None = None,
                seed: int | None = None):
    """A CUTIE network in eval mode: weights from `checkpoint` (a plain state dict), or random with `seed`."""
    import torch
    from cutie.model.cutie import CUTIE

    cfg = build_cutie_config(model_config)
    if seed is not None:
        torch.manual_seed(seed)
    with _no_imagenet_download():
        net = CUTIE(cfg).eval()
    if checkpoint is not None:
        path = pathlib.Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"Cutie checkpoint {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise CheckpointError(f"cannot read Cutie checkpoint {path}: {exc}") from exc
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} is not a state dict (got {type(state).__name__})")
        expected = net.state_dict()
        missing = [k for k in expected if k not in state]
        wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
        if missing or wrong:
            raise CheckpointError(
                f"{path} does not fit Cutie config {model_config!r}: {len(missing)} missing keys "
                f"(e.g. {missing[:3]}), {len(wrong)} with other shapes (e.g. {wrong[:3]})")
        net.load_weights(dict(state))
    return net
