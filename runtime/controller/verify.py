"""Accuracy gate of a reduced-precision controller: the candidate backend/precision against the fp32
reference (onnxruntime fp32) on the same observations and the same initial noise. Torch-free.

Why per graph as well as end to end: a failing action error says "too inaccurate", the encoder's
K/V error and the denoiser's own error (fed the reference K/V) say where. The action error is
max |a - a_ref| / (max a_ref - min a_ref) over all observations, the convention of the export
parity tests. A passing result is recorded in manifest.json (`record`), which is what lets the
runtime start a reduced-precision model (Controller.from_dir).
"""

from __future__ import annotations

import datetime
import pathlib

import numpy as np

from runtime.controller.controller import Controller
from runtime.controller.manifest import DENOISER, ENCODER, Manifest
from runtime.errors import ObservationError

DEFAULT_GATE = 1e-2


def synthetic_obs(manifest: Manifest, count: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded observations of the encoder's input shapes: images in [0, 1], a {0, 1} mask channel,
    the state in [-1, 1] (upstream's normalized joint space)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        obs = {t.name: rng.random(t.shape).astype(np.float32) for t in manifest.graph(ENCODER).inputs}
        if "rgbm" in obs:
            obs["rgbm"][:, :, 3] = (obs["rgbm"][:, :, 3] > 0.5).astype(np.float32)
        if "right_state" in obs:
            obs["right_state"] = (obs["right_state"] * 2 - 1).astype(np.float32)
        out.append(obs)
    return out


def episode_obs(root: str | pathlib.Path, manifest: Manifest, count: int = 4) -> list[dict[str, np.ndarray]]:
    """`count` frames spread evenly over the recorded episodes under `root` (the recorder's zarr
    layout: rgbm HxWx4 uint8 = BGR + mask, right_cam_img, right_state), as process_obs makes them."""
    from runtime.controller.preprocess import process_obs
    from runtime.recording.store import iter_episodes

    size = int(manifest.graph(ENCODER).input("rgbm").shape[-1])
    frames = []
    for episode in iter_episodes(root):
        d = episode.data
        frames += [(d, i) for i in range(episode.frames)]
    if not frames:
        raise ObservationError(f"--episodes '{root}' holds no recorded frames (finished episodes)")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    return [process_obs(d["rgbm"][i][..., :3], d["rgbm"][i][..., 3], d["right_cam_img"][i], d["right_state"][i],
                        size=size) for d, i in (frames[k] for k in picks)]


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    span = float(ref.max() - ref.min())
    return float(np.abs(a.astype(np.float64) - ref).max() / span) if span > 0 else float(np.abs(a - ref).max())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 1.0


def compare(reference: Controller, candidate: Controller, observations: list[dict], seed: int = 0,
            gate: float = DEFAULT_GATE) -> dict:
    """Run both controllers on each observation with the same noise; errors relative to ranges.
    Blocks for 2 full inferences + 1 denoise per observation."""
    rng = np.random.default_rng(seed)
    actions, ref_actions, kv_err, den_err = [], [], 0.0, 0.0
    for obs in observations:
        noise = rng.standard_normal(reference.sample_shape).astype(np.float32)
        kv_ref = reference.encode(obs)
        kv_c = candidate.encode(obs)
        kv_err = max(kv_err, max(_rel(np.asarray(kv_c[k]), kv_ref[k]) for k in kv_ref))
        ref_sample = reference.denoise(kv_ref, noise.copy())
        den_sample = candidate.denoise({k: np.ascontiguousarray(v) for k, v in kv_ref.items()}, noise.copy())
        den_err = max(den_err, _rel(den_sample, ref_sample))
        ref_actions.append(reference.predict(obs, noise=noise))
        actions.append(candidate.predict(obs, noise=noise))
    a, r = np.stack(actions), np.stack(ref_actions)
    err = _rel(a, r)
    return {
        "max_error_of_range": err,
        "max_abs_error": float(np.abs(a - r).max()),
        "action_range": float(r.max() - r.min()),
        "cosine": _cosine(a, r),
        "graphs": {ENCODER: {"kv_max_error_of_range": kv_err},
                   DENOISER: {"sample_max_error_of_range": den_err}},
        "gate": gate,
        "passed": bool(np.isfinite(err) and err <= gate),
        "observations": len(observations),
    }


def backend_version(backend: str) -> str:
    import importlib

    module = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}.get(backend, backend)
    try:
        return str(importlib.import_module(module).__version__)
    except (ImportError, AttributeError):
        return "unknown"


def record(model_dir: str | pathlib.Path, backend: str, precision: str, result: dict, source: str) -> dict:
    """Add a passing result to manifest.json (replacing the older one for backend+precision)."""
    from runtime.inference.openvino import cpu_summary

    manifest = Manifest.load(model_dir)
    entry = {
        "backend": backend, "precision": precision, "passed": True,
        "max_error_of_range": result["max_error_of_range"], "gate": result["gate"],
        "graph_sha256": {k: manifest.graph(k).sha256 for k in (ENCODER, DENOISER)},
        "backend_version": backend_version(backend), "cpu": cpu_summary(),
        "observations": result["observations"], "source": source,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    manifest.record_verification(entry)
    manifest.save(model_dir)
    return entry
