"""Build SAM (the `segment-anything` package's own model code) from a checkpoint or random weights.

`import segment_anything` runs the package __init__, which imports the automatic mask generator and
through it torchvision; on machines where torchvision does not match the installed torch (this CPU
box) that import fails although the model code never needs it. We then load `build_sam` and
`modeling` without the package __init__: same modules, same architecture registry.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
import types

from runtime.errors import CheckpointError, ConfigError, MissingExtraError

SAM_TYPES = ("vit_h", "vit_l", "vit_b")


def _build_sam_module():
    try:
        import segment_anything.build_sam as build_sam

        return build_sam
    except ImportError as exc:
        if "torchvision" not in str(exc) and getattr(exc, "name", "") != "torchvision":
            raise
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("exporting SAM needs the 'segment-anything' package: pip install segment-anything")
    for name in [n for n in sys.modules if n == "segment_anything" or n.startswith("segment_anything.")]:
        del sys.modules[name]  # a half-imported package from the failed attempt
    package = types.ModuleType("segment_anything")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["segment_anything"] = package
    return importlib.import_module("segment_anything.build_sam")


def build_sam(sam_type: str = "vit_b", checkpoint: str | pathlib.Path | None = None, seed: int | None = None):
    """A Sam in eval mode from `sam_model_registry[sam_type]`, with the checkpoint's or random weights."""
    import torch

    if sam_type not in SAM_TYPES:
        raise ConfigError(f"unknown SAM type {sam_type!r}; choose one of {', '.join(SAM_TYPES)}")
    registry = _build_sam_module().sam_model_registry
    if seed is not None:
        torch.manual_seed(seed)
    sam = registry[sam_type](checkpoint=None).eval()
    if checkpoint is not None:
        path = pathlib.Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"SAM checkpoint {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise CheckpointError(f"cannot read SAM checkpoint {path}: {exc}") from exc
        try:
            sam.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path} does not fit SAM {sam_type}: {str(exc)[:400]}") from exc
    return sam


def random_sam_state(sam_type: str = "vit_b", seed: int = 0) -> dict:
    return {k: v.clone() for k, v in build_sam(sam_type, seed=seed).state_dict().items()}
