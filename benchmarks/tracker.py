"""Learned tracker latency: exported Cutie (+ SAM) per graph on this CPU, vs PyTorch InferenceCore.

What it measures (random weights at the packages' own architectures; weights do not change cost):
  * Cutie per graph (encode_image, segment, encode_mask every 5th frame) and per frame, p50/p99,
    through CutieTracker on ONNX Runtime (CPU, 2 threads) over a synthetic moving-object video at
    640x480 (upstream's full resolution);
  * the same on every other backend x precision available here (OpenVINO fp32/bf16, TensorRT when
    present; the rest listed with the reason), with the mask IoU per frame against ONNX Runtime fp32
    on the same frames (issue 16's gate: >= 0.99 over 30+ frames);
  * the same sequence through PyTorch InferenceCore (eager, CPU) for comparison;
  * SAM image encoder and box decoder (vit_b here) per call.
What it cannot measure here: TensorRT / CUDA on the Jetson (no GPU), SAM vit_h and Cutie base
with real checkpoints (not downloadable; cost is the same as random weights of the same shape).

--precision-sweep (issue 16's per-graph precision): every subset of Cutie's graphs in bf16 on
OpenVINO (the others fp32), each over the same frames, mask IoU per frame vs ONNX Runtime fp32 and
per-graph/per-frame latency with the load average; the recipe is the graphs whose bf16 passes the
gate alone, if together they pass too (else the fastest passing subset). It writes
tracker_precision.json and prints whether runtime/tracking/learned/precision.py's BF16_RECIPE matches.

    python benchmarks/tracker.py --quick --out bench-out/tracker
    python benchmarks/tracker.py --precision-sweep --cutie-config base --frames 40
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time
import warnings

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


NOT_MEASURED = [
    "TensorRT engines on Jetson Orin (fp32/fp16): no GPU or TensorRT on this machine "
    "(cutie_backends lists every backend x precision and why it was or was not measured)",
    "ONNX Runtime CUDA execution provider: no GPU",
    "SAM vit_h / vit_l (upstream uses vit_h): export is >2 GB and its CPU encoder takes tens of seconds",
]


def _cached_export_dir(cutie_config: str, with_sam: bool, sam_type: str, height: int, width: int) -> pathlib.Path:
    """Where the random-weight export for these settings is cached: keyed by the exporter's source, so a
    change to export/tracker re-exports once (exporting SAM ViT-B alone takes over a minute here)."""
    import hashlib

    from runtime.cache import cache_dir

    repo = pathlib.Path(__file__).resolve().parents[1]
    h = hashlib.sha256(f"{cutie_config}|{with_sam}|{sam_type}|{height}x{width}".encode())
    for src in sorted((repo / "export" / "tracker").glob("*.py")):
        h.update(src.read_bytes())
    root = cache_dir("bench-tracker")
    root.mkdir(parents=True, exist_ok=True)
    return root / h.hexdigest()[:16]


def _summ(samples_s) -> dict:
    from benchmarks.common.timing import summarize

    return summarize(samples_s, "ms")


def _track(tracker, frames, first_mask) -> tuple[list, list[float]]:
    """init on frame 0 with the given mask, track the rest: (masks per tracked frame, seconds each)."""
    tracker.init(frames[0], mask=first_mask)
    out, secs = [], []
    for frame in frames[1:]:
        t = time.perf_counter()
        res = tracker.track(frame)
        secs.append(time.perf_counter() - t)
        out.append(res.mask.astype(bool))
    return out, secs


def mask_iou(a, b) -> float:
    """IoU of two boolean masks; two empty masks agree (1.0). The tracker gate's own definition."""
    from runtime.tracking.learned.verify import mask_iou as iou

    return iou(a, b)


def _other_backends(model_dir, frames, first_mask, reference_masks) -> list[dict]:
    """Every (backend, precision) but ONNX Runtime fp32: per-graph/per-frame latency and IoU vs it."""
    from benchmarks.common.backends import TRACKER_CONFIGS, open_tracker, unavailable_reason

    rows = []
    for backend, precision in TRACKER_CONFIGS:
        if (backend, precision) == ("onnxruntime", "fp32"):
            continue
        row = {"backend": backend, "precision": precision}
        reason = unavailable_reason(backend, precision)
        tracker = None
        if reason is None:
            tracker, reason = open_tracker(model_dir, backend, precision)
        if tracker is None:
            rows.append({**row, "status": "not measured", "reason": reason})
            continue
        try:
            got, secs = _track(tracker, frames, first_mask)
        except Exception as exc:  # noqa: BLE001 - a backend failing at run time is a result too
            rows.append({**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        ious = [mask_iou(a, b) for a, b in zip(got, reference_masks, strict=True)]
        rows.append({**row, "status": "ok",
                     "per_graph_ms": {name: _summ(r.stats.samples()) for name, r in tracker.runners.items()},
                     "per_frame_ms": _summ(secs), "iou_vs_fp32_mean": sum(ious) / len(ious),
                     "iou_vs_fp32_min": min(ious), "iou_frames": len(ious)})
        if hasattr(tracker, "close"):
            tracker.close()
    return rows


def _ensure_export(cutie_config: str, with_sam: bool, sam_type: str, height: int, width: int
                   ) -> tuple[pathlib.Path, float | None]:
    """(the cached random-weight export for these settings, seconds spent exporting or None if cached)."""
    from export.tracker.exporter import TrackerExportRequest, export_tracker

    model_dir = _cached_export_dir(cutie_config, with_sam, sam_type, height, width)
    if (model_dir / "manifest.json").is_file():
        return model_dir, None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tracker-bench-", dir=model_dir.parent) as tmp:
        staging = pathlib.Path(tmp) / "model"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_tracker(TrackerExportRequest(output=staging, random_init=True, cutie_config=cutie_config,
                                                with_sam=with_sam, sam_type=sam_type, height=height, width=width))
        staging.rename(model_dir)  # atomic: a cut export never looks complete
    return model_dir, time.perf_counter() - t0


def run(quick: bool, out_dir: pathlib.Path, **opts) -> dict:
    """Export a random-weight tracker, time it per graph, return JSON-serialisable results."""
    import torch

    from benchmarks.common.machine import machine_info
    from runtime.tracking.cutie import CutieTracker
    from runtime.tracking.learned.synthetic import moving_object_video
    from runtime.tracking.sam import SamBoxSegmenter

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cutie_config = opts.get("cutie_config", "small" if quick else "base")
    n_frames = int(opts.get("frames", 8 if quick else 40))
    sam_type = opts.get("sam_type", "vit_b")
    with_sam = bool(opts.get("with_sam", True))
    height, width = 480, 640
    results: dict = {"benchmark": "tracker", "quick": quick, "machine": machine_info(),
                     "device": "cpu", "backend": "onnxruntime CPUExecutionProvider, 2 threads",
                     "cutie_config": cutie_config, "frame_hw": [height, width], "frames": n_frames,
                     "not_measured": NOT_MEASURED}
    model_dir, results["export_s"] = _ensure_export(cutie_config, with_sam, sam_type, height, width)
    if results["export_s"] is None:  # reused: exports are cached per exporter version and settings
        results["export_cached"] = str(model_dir)
    frames, masks = moving_object_video(n_frames)
    tracker = CutieTracker(model_dir)
    reference_masks, frame_s = _track(tracker, frames, masks[0])
    results["cutie_onnxruntime"] = {
        "per_graph_ms": {name: _summ(r.stats.samples()) for name, r in tracker.runners.items()},
        "per_frame_ms": _summ(frame_s),
    }
    if hasattr(tracker, "close"):
        tracker.close()
    results["cutie_backends"] = _other_backends(model_dir, frames, masks[0], reference_masks)
    # PyTorch eager reference, same frames, same settings (upstream's get_mask loop)
    from cutie.inference.inference_core import InferenceCore

    from export.tracker.cutie_model import build_cutie

    torch.set_grad_enabled(False)
    (ckpt,) = sorted(model_dir.glob("cutie_*_random_seed*.pth"))
    net = build_cutie(cutie_config, checkpoint=ckpt)
    processor = InferenceCore(net, cfg=net.cfg)
    processor.max_internal_size = -1
    torch_s = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, frame in enumerate(frames):
            image = torch.from_numpy(frame[..., ::-1].copy()).permute(2, 0, 1).float() / 255
            t = time.perf_counter()
            if i == 0:
                processor.step(image, torch.from_numpy(masks[0]), objects=[1])
            else:
                processor.step(image)
                torch_s.append(time.perf_counter() - t)
    results["cutie_pytorch_eager"] = {"per_frame_ms": _summ(torch_s), "torch_threads": torch.get_num_threads()}
    p50_ort = results["cutie_onnxruntime"]["per_frame_ms"]["p50"]
    p50_torch = results["cutie_pytorch_eager"]["per_frame_ms"]["p50"]
    results["speedup_p50_vs_pytorch"] = p50_torch / p50_ort if p50_ort else None
    if with_sam:
        sam = SamBoxSegmenter(model_dir)
        calls = 2 if quick else 5
        for i in range(calls):
            sam.segment(frames[i], [122, 142, 262, 242])
        results["sam_onnxruntime"] = {"sam_type": sam_type,
                                      "per_graph_ms": {n: _summ(r.stats.samples()) for n, r in sam.runners.items()}}
    results["targets"] = declared_targets(results)
    (out_dir / "tracker.json").write_text(json.dumps(results, indent=2))
    return results


def bf16_subsets(graphs) -> list[tuple[str, ...]]:
    """Every subset of `graphs` to run in bf16, smallest first (the empty one: OpenVINO all fp32)."""
    from itertools import combinations

    graphs = tuple(graphs)
    return [c for k in range(len(graphs) + 1) for c in combinations(graphs, k)]


def recipe_from_sweep(rows: list[dict], graphs) -> dict:
    """The bf16 graphs of the recipe, from sweep rows ({"bf16": [...], "passed": bool, "per_frame_ms": {"mean"}}).

    Rule: the graphs whose bf16 passes the gate alone; if those together fail (errors add up
    through the memory), the fastest passing subset instead; none passing: all fp32.
    """
    by = {frozenset(r["bf16"]): r for r in rows if r.get("status") == "ok"}
    alone = [g for g in graphs if by.get(frozenset([g]), {}).get("passed")]
    union = by.get(frozenset(alone))
    if union is not None and union["passed"]:
        return {"bf16": sorted(alone), "rule": "every graph that passes alone, and together they pass"}
    passing = [r for r in by.values() if r["passed"] and r["bf16"]]
    if passing:
        best = min(passing, key=lambda r: r["per_frame_ms"]["mean"])
        return {"bf16": sorted(best["bf16"]), "rule": "the graphs passing alone fail together; fastest passing subset"}
    return {"bf16": [], "rule": "no graph passes in bf16: all fp32"}


def precision_sweep(out_dir: pathlib.Path, cutie_config: str = "base", n_frames: int = 40, threads: int = 2,
                    gate: float | None = None) -> dict:
    """Issue 16's per-graph measurement: each subset of Cutie's graphs in bf16 (OpenVINO) vs ONNX
    Runtime fp32 on the same synthetic frames; writes tracker_precision.json. Blocks for
    (2^3 + 1) passes over the frames (~5 min for base at 40 frames on 2 busy cores)."""
    from benchmarks.common.machine import load_average, machine_info
    from runtime.tracking.cutie import CutieTracker
    from runtime.tracking.learned import precision as gp
    from runtime.tracking.learned import verify as tv

    gate = tv.DEFAULT_GATE if gate is None else gate
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = 480, 640
    model_dir, export_s = _ensure_export(cutie_config, False, "vit_b", height, width)
    frames, masks = tv.synthetic_sequence((height, width), n_frames)
    results: dict = {"benchmark": "tracker_precision_sweep", "machine": machine_info(), "cutie_config": cutie_config,
                     "frame_hw": [height, width], "frames": n_frames, "tracked_frames": n_frames - 1,
                     "threads": threads, "gate_iou_min": gate, "export_s": export_s, "model_dir": str(model_dir)}
    load0 = load_average()
    reference = CutieTracker(model_dir, threads=threads)
    ref_masks, ref_s = tv.run_sequence(reference, frames, masks[0])
    results["reference"] = {"backend": "onnxruntime", "precision": "fp32", "load_before": load0,
                            "load_after": load_average(), "per_frame_ms": _summ(ref_s),
                            "per_graph_ms": {n: _summ(r.stats.samples()) for n, r in reference.runners.items()}}
    rows = []
    for subset in bf16_subsets(gp.CUTIE_GRAPHS):
        mapping = dict.fromkeys(subset, "bf16")
        row: dict = {"backend": "openvino", "bf16": list(subset), "precision": gp.key(mapping),
                     "load_before": load_average()}
        try:
            t0 = time.perf_counter()
            tracker = CutieTracker(model_dir, backend="openvino", threads=threads, precision=mapping,
                                   allow_unverified=True)
            row["open_s"] = time.perf_counter() - t0  # compile, or the compiled-model cache
            got, secs = tv.run_sequence(tracker, frames, masks[0])
        except Exception as exc:  # noqa: BLE001 - a refusal (no openvino, no bf16) is a result too
            rows.append({**row, "status": "not measured", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        row.update(status="ok", load_after=load_average(), per_frame_ms=_summ(secs),
                   per_graph_ms={n: _summ(r.stats.samples()) for n, r in tracker.runners.items()},
                   **tv.compare_masks(ref_masks, got, gate))
        rows.append(row)
        print(f"bf16 {'+'.join(subset) or '(none: openvino fp32)'}: IoU mean {row['iou_mean']:.4f} "
              f"min {row['iou_min']:.4f} {'pass' if row['passed'] else 'FAIL'}, frame p50 "
              f"{row['per_frame_ms']['p50']:.0f} ms mean {row['per_frame_ms']['mean']:.0f} ms, "
              f"load {row['load_before']} -> {row['load_after']}", flush=True)
    results["rows"] = rows
    recipe = recipe_from_sweep(rows, gp.CUTIE_GRAPHS)
    in_code = sorted(g for g in gp.CUTIE_GRAPHS if gp.BF16_RECIPE.get(g) == "bf16")
    recipe_row = next((r for r in rows if sorted(r["bf16"]) == recipe["bf16"] and r["status"] == "ok"), None)
    ref_mean = results["reference"]["per_frame_ms"]["mean"]
    results["recipe"] = {**recipe, "matches_code": recipe["bf16"] == in_code, "in_code": in_code,
                         # frames/s from the mean frame (memory frames, every 5th, cost more than p50 shows)
                         "fps_fp32_onnxruntime": 1e3 / ref_mean if ref_mean else None,
                         "fps_recipe": (1e3 / recipe_row["per_frame_ms"]["mean"]) if recipe_row else None,
                         "iou_mean": recipe_row and recipe_row["iou_mean"],
                         "iou_min": recipe_row and recipe_row["iou_min"]}
    (out_dir / "tracker_precision.json").write_text(json.dumps(results, indent=2))
    return results


def declared_targets(results: dict) -> list[dict]:
    """Issue 16: Cutie base at 640x480 >= 5 frames/s (goal 10) on a backend whose masks keep
    IoU >= 0.99 vs fp32 over 30+ frames; a verdict only for Cutie base with 30+ frames."""
    rows = [{"backend": "onnxruntime", "precision": "fp32", "status": "ok", "iou_vs_fp32_min": 1.0,
             "iou_frames": None, **results["cutie_onnxruntime"]}] + list(results.get("cutie_backends", []))
    at = results.get("cutie_config") == "base" and int(results.get("frames", 0)) - 1 >= 30
    gated = [r for r in rows if r.get("status") == "ok" and r.get("iou_vs_fp32_min", 0) >= 0.99]
    best = min(gated, key=lambda r: r["per_frame_ms"]["p50"]) if gated else None
    fps = 1e3 / best["per_frame_ms"]["p50"] if best and best["per_frame_ms"]["p50"] else None
    worst = min((r["iou_vs_fp32_min"] for r in rows[1:] if r.get("status") == "ok"), default=None)
    cond = "" if at else f"measured with Cutie {results.get('cutie_config')} over {results.get('frames')} frames"
    return [
        {"name": "Cutie frames/s at 640x480, fastest backend with IoU >= 0.99", "target": ">= 5 (goal 10)",
         "measured": None if fps is None else round(fps, 2), "pass": (fps >= 5.0) if (at and fps) else None,
         "note": (f"{best['backend']} {best['precision']}; " if best else "") + cond},
        {"name": "Cutie mask IoU vs fp32, worst frame of any reduced/other backend", "target": ">= 0.99",
         "measured": None if worst is None else round(worst, 4), "pass": (worst >= 0.99) if (at and worst is not None)
         else None, "note": cond or "over the tracked frames"},
    ]


def main(argv: list[str] | None = None) -> int:
    """Example: python benchmarks/tracker.py --quick --out bench-out/tracker"""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small Cutie, 8 frames, 2 SAM calls")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out/tracker"))
    parser.add_argument("--cutie-config", choices=("base", "small"))
    parser.add_argument("--frames", type=int)
    parser.add_argument("--no-sam", action="store_true")
    parser.add_argument("--precision-sweep", action="store_true",
                        help="per-graph bf16 vs fp32 mask IoU and latency (Cutie base, 40 frames by default)")
    parser.add_argument("--threads", type=int, default=2, help="--precision-sweep: threads per graph (default 2)")
    args = parser.parse_args(argv)
    if args.precision_sweep:
        res = precision_sweep(args.out, args.cutie_config or "base", args.frames or 40, args.threads)
        ref = res["reference"]
        print(json.dumps({"reference_onnxruntime_fp32_frame_p50_ms": round(ref["per_frame_ms"]["p50"], 1),
                          "reference_onnxruntime_fp32_frame_mean_ms": round(ref["per_frame_ms"]["mean"], 1),
                          "load": [ref["load_before"], ref["load_after"]], "recipe": res["recipe"]}))
        return 0
    opts = {k: v for k, v in {"cutie_config": args.cutie_config, "frames": args.frames}.items() if v}
    if args.no_sam:
        opts["with_sam"] = False
    results = run(args.quick, args.out, **opts)
    cut = results["cutie_onnxruntime"]
    print(json.dumps({"cutie_config": results["cutie_config"],
                      "per_graph_p50_ms": {k: round(v["p50"], 1) for k, v in cut["per_graph_ms"].items()},
                      "per_graph_p99_ms": {k: round(v["p99"], 1) for k, v in cut["per_graph_ms"].items()},
                      "frame_p50_ms": round(cut["per_frame_ms"]["p50"], 1),
                      "pytorch_frame_p50_ms": round(results["cutie_pytorch_eager"]["per_frame_ms"]["p50"], 1),
                      "sam_p50_ms": {k: round(v["p50"], 1) for k, v in
                                     results.get("sam_onnxruntime", {}).get("per_graph_ms", {}).items()}}))
    for row in results.get("cutie_backends", []):
        if row["status"] == "ok":
            print(f"{row['backend']} {row['precision']}: frame p50 {row['per_frame_ms']['p50']:.1f} ms, "
                  + ", ".join(f"{k} {v['p50']:.1f}" for k, v in row["per_graph_ms"].items())
                  + f" ms; IoU vs fp32 mean {row['iou_vs_fp32_mean']:.4f} min {row['iou_vs_fp32_min']:.4f} "
                  f"over {row['iou_frames']} frames")
        else:
            print(f"{row['backend']} {row['precision']}: {row['status']}: {row['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
