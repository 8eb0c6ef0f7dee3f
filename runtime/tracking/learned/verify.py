"""Accuracy gate of a reduced-precision tracker: its masks against ONNX Runtime fp32 on the same frames.

Why masks and not probabilities: the controller consumes the binary mask (the 4th image channel),
so the gate is what issue 16 states, mask IoU >= 0.99 against fp32 on every frame of a 30+ frame
sequence (the worst frame decides, since tracking errors compound through Cutie's memory). A pass
is recorded in the tracker's manifest.json with the controller's record rules (replaced per
backend + precision, valid only for the graph hashes it was made on), which is what lets
CutieTracker start that precision. Torch-free.
"""

from __future__ import annotations

import datetime
import pathlib

import numpy as np

from runtime.errors import ConfigError

DEFAULT_GATE = 0.99
DEFAULT_FRAMES = 32  # the init frame + 31 tracked frames


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks (nonzero = in); two empty masks agree (1.0)."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def box_of(mask: np.ndarray) -> list[float]:
    """The tight pixel box [x1, y1, x2, y2] of a non-empty mask (SAM init from a known mask)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        raise ConfigError("the initial mask is empty: nothing to verify the tracker on")
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def run_sequence(tracker, frames, first_mask=None, box=None) -> tuple[list[np.ndarray], list[float]]:
    """init on frames[0] (mask or box), track the rest: (mask per frame incl. the first, seconds per
    tracked frame). Blocks for every graph run."""
    import time

    masks = [tracker.init(frames[0], box_xyxy=box, mask=None if box is not None else first_mask).mask]
    secs = []
    for frame in frames[1:]:
        t = time.perf_counter()
        masks.append(tracker.track(frame).mask)
        secs.append(time.perf_counter() - t)
    return masks, secs


def compare_masks(reference: list[np.ndarray], candidate: list[np.ndarray], gate: float = DEFAULT_GATE,
                  include_first: bool = False) -> dict:
    """Per-frame IoU of candidate vs reference masks. The first frame counts only when the init
    itself may differ (SAM in the candidate's precision); with a given mask it is identical."""
    ious = [mask_iou(c, r) for c, r in zip(candidate, reference, strict=True)]
    scored = ious if include_first else ious[1:]
    worst = int(np.argmin(scored)) + (0 if include_first else 1)
    iou_min = float(min(scored))
    return {"iou_mean": float(np.mean(scored)), "iou_min": iou_min, "worst_frame": worst,
            "frames": len(scored), "gate": gate, "passed": bool(iou_min >= gate)}


def compare(reference, candidate, frames, first_mask=None, box=None, gate: float = DEFAULT_GATE) -> dict:
    """Run both trackers over `frames` from the same init; the IoU summary of compare_masks plus
    per-frame seconds of each. Blocks for two passes over the frames."""
    ref_masks, ref_s = run_sequence(reference, frames, first_mask, box)
    cand_masks, cand_s = run_sequence(candidate, frames, first_mask, box)
    out = compare_masks(ref_masks, cand_masks, gate, include_first=box is not None)
    out["reference_frame_s"], out["candidate_frame_s"] = ref_s, cand_s
    return out


def synthetic_sequence(frame_hw: tuple[int, int], count: int = DEFAULT_FRAMES, seed: int = 0):
    """The project's synthetic head-camera video at the export's frame size (runtime's own frames)."""
    from runtime.tracking.learned.synthetic import moving_object_video

    h, w = frame_hw  # the benchmark's defaults at 640x480, scaled for other export sizes
    return moving_object_video(count, height=h, width=w, seed=seed,
                               radius_px=(max(4, round(70 * w / 640)), max(3, round(50 * h / 480))),
                               step_px=(9.0 * w / 640, 4.0 * h / 480))


def record(model_dir: str | pathlib.Path, backend: str, precision: str, result: dict, source: str) -> dict:
    """Add a passing result to the tracker's manifest.json (replacing the older one for
    backend + precision key) and return the record."""
    from runtime.controller.verify import backend_version
    from runtime.inference.openvino import cpu_summary
    from runtime.tracking.learned.manifest import load_manifest

    manifest = load_manifest(model_dir)
    entry = {
        "backend": backend, "precision": precision, "passed": True,
        "iou_min": result["iou_min"], "iou_mean": result["iou_mean"], "frames": result["frames"],
        "gate": result["gate"], "graph_sha256": manifest.graph_hashes(),
        "backend_version": backend_version(backend), "cpu": cpu_summary(), "source": source,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    manifest.record_verification(entry)
    manifest.save(model_dir)
    return entry
