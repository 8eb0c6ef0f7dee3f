"""Checks that an exported controller is the one its manifest describes, and that its action
normalizer can only produce actions of a sane size. Torch-free.

Why at load: a graph file that was truncated by a copy, bit-flipped on an SD card or swapped for
another export still parses and runs, and its actions look like any other random-weight model's.
The only evidence is the sha256 the exporter recorded. Likewise a normalizer scale of 1e-6 turns
the policy's [-1, 1] output into actions of +-2.5e6: the safety filter would clamp them, but the
robot would then bang into its limits with every chunk. Both are refused with one line that says
what to do, before a single inference runs.
"""

from __future__ import annotations

import pathlib

import numpy as np

from runtime.controller.manifest import Manifest
from runtime.errors import ModelError
from runtime.hashing import sha256_files

# The policy's normalized output lies in [-1, 1] (DDIM clip_sample). A normalizer whose inverse maps
# that interval outside +-ACTION_ABS_CAP is not a trained policy's: arm actions are in upstream's
# normalized joint space ([-1, 1]) and hand actions are joint positions of order 1.
ACTION_ABS_CAP = 10.0


def graph_paths(model_dir: pathlib.Path, file: str, external_data: bool) -> list[pathlib.Path]:
    """The files whose concatenation the exporter hashed: the .onnx, then its external data."""
    onnx_path = model_dir / file
    return [onnx_path, onnx_path.with_name(onnx_path.name + ".data")] if external_data else [onnx_path]


def verify_graph_hashes(model_dir: str | pathlib.Path, manifest: Manifest, names=None) -> None:
    """Recompute each graph's sha256 (over the .onnx and its external data) and compare it with the
    manifest. Raises ModelError naming the first graph that differs or is missing."""
    model_dir = pathlib.Path(model_dir)
    for name in names if names is not None else sorted(manifest.graphs):
        spec = manifest.graph(name)
        paths = graph_paths(model_dir, spec.file, spec.external_data)
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise ModelError(f"{model_dir}: graph file(s) {missing} of '{name}' are missing (copy the whole model directory)")
        actual = sha256_files(paths)
        if actual != spec.sha256:
            raise ModelError(
                f"{model_dir / spec.file}: sha256 {actual[:12]}... does not match the manifest's "
                f"{spec.sha256[:12]}... (corrupted or replaced; re-export or copy the model again)"
            )


def action_range(manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """Per action dimension, the interval the inverse normalizer maps [-1, 1] onto (lo <= hi)."""
    scale = np.asarray(manifest.normalizer.get("scale", []), dtype=np.float64)
    offset = np.asarray(manifest.normalizer.get("offset", []), dtype=np.float64)
    if scale.shape != (manifest.action_dim,) or offset.shape != (manifest.action_dim,):
        raise ModelError(
            f"manifest normalizer has {scale.shape}/{offset.shape} values, expected {manifest.action_dim}"
        )
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()):
        raise ModelError("manifest normalizer contains NaN/Inf (corrupt export)")
    if (scale == 0).any():
        raise ModelError(f"manifest normalizer scale is 0 for action dims {np.flatnonzero(scale == 0).tolist()}")
    a = (-1.0 - offset) / scale
    b = (1.0 - offset) / scale
    return np.minimum(a, b), np.maximum(a, b)


def check_normalizer(manifest: Manifest, cap: float = ACTION_ABS_CAP) -> None:
    """Refuse a normalizer that can map the policy's [-1, 1] output beyond +-cap."""
    lo, hi = action_range(manifest)
    bad = np.flatnonzero((lo < -cap) | (hi > cap))
    if bad.size:
        i = int(bad[0])
        raise ModelError(
            f"manifest normalizer maps the policy output [-1, 1] of action dim {i} to [{lo[i]:.4g}, {hi[i]:.4g}], "
            f"beyond the sanity cap +-{cap:g} (scale {manifest.normalizer['scale'][i]:.3g}); "
            "the checkpoint's normalizer was not fitted on joint data"
        )


def check_normalizer_against_limits(manifest: Manifest, lower, upper, margin: float = 1.0) -> None:
    """Refuse a normalizer whose action range reaches more than `margin` joint ranges beyond the
    joint limits, in the action's own units (arm: normalized [-1, 1] -> lower/upper = -1/1)."""
    lo, hi = action_range(manifest)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if lower.shape != lo.shape or upper.shape != hi.shape:
        raise ModelError(f"the model has {lo.shape[0]} action dims but the robot config has {lower.shape[0]} joints")
    width = upper - lower
    bad = np.flatnonzero((lo < lower - margin * width) | (hi > upper + margin * width))
    if bad.size:
        i = int(bad[0])
        raise ModelError(
            f"the model's action dim {i} spans [{lo[i]:.4g}, {hi[i]:.4g}], far outside the joint range "
            f"[{lower[i]:.4g}, {upper[i]:.4g}]: the normalizer does not match this robot's joint space"
        )
