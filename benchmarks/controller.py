"""Controller latency: the exported controller (ONNX Runtime CPU, fp32) vs upstream-style PyTorch
eager `predict_action` on the same checkpoint, in the same run, plus the compute floor.

Per preset (quick: `small`; full: `small` and `dexgraspvla`, the paper's sizes):
- exported: encoder graph once + 16 denoiser calls with the cached observation K/V (the runtime path);
- exported without K/V cache: the same encoder + upstream's full DiT per step (denoiser_uncached.onnx),
  to show what the caching buys on its own;
- eager: our PyTorch rebuild running upstream's computation (SDPA, uncached DiT, diffusers
  DDIMScheduler), torch.set_num_threads(threads);
- parity: max |exported - eager| / range of the eager action chunk, same initial noise;
- floor: analytic FLOPs (export/flops.py) / the matmul rate measured in this process
  (benchmarks/common/matmul.py: best median of numpy and ONNX Runtime MatMul).
Models are random-weight checkpoints in upstream format (`dexgrasp make-checkpoint`), exported once
and cached under ~/.cache/dexgrasp/controller-bench/<preset>-seed<seed>-<export code hash> (the
paper-size export takes minutes).

Run alone: python -m benchmarks.controller --quick --out bench-out
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import time

import numpy as np

from benchmarks.common.timing import measure, ratio
from runtime.cache import cache_dir

log = logging.getLogger(__name__)
CACHE = cache_dir("controller-bench")


def _ensure_model(preset: str, seed: int = 0) -> tuple[pathlib.Path, pathlib.Path]:
    """Random-weight checkpoint + export (with the uncached denoiser) for `preset`, cached on disk."""
    from export.checkpoint import load_checkpoint
    from export.model.arch import get_preset
    from export.onnx_export import export_controller
    from export.random_init import make_checkpoint
    from runtime.config.models import exporter_fingerprint
    from runtime.controller.manifest import DENOISER_UNCACHED, Manifest
    from runtime.errors import ModelError

    # Keyed by the export code too: a model exported by older code (e.g. before a numerics fix in
    # export/model) is never timed as if it were the current one.
    root = CACHE / f"{preset}-seed{seed}-{exporter_fingerprint()}"
    ckpt, model_dir = root / "model.ckpt", root / "model"
    if not ckpt.is_file():
        make_checkpoint(get_preset(preset), ckpt, seed=seed)
    try:
        manifest = Manifest.load(model_dir)
        manifest.graph(DENOISER_UNCACHED)
        if not all((model_dir / g.file).is_file() for g in manifest.graphs.values()):
            raise ModelError("graph files missing")
    except ModelError:
        export_controller(load_checkpoint(ckpt), model_dir, with_uncached=True, progress=False)
    return ckpt, model_dir


def _inputs(seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgbm = rng.random((1, 1, 4, 518, 518), dtype=np.float32)
    rgbm[:, :, 3] = (rgbm[:, :, 3] > 0.5).astype(np.float32)
    obs = {
        "rgbm": rgbm,
        "right_cam_img": rng.random((1, 1, 3, 518, 518), dtype=np.float32),
        "right_state": (rng.random((1, 1, 13), dtype=np.float32) * 2 - 1).astype(np.float32),
    }
    return obs, rng.standard_normal((1, 64, 13)).astype(np.float32)


def _rate_sample() -> float | None:
    """One fp32 matmul-rate sample (ONNX Runtime MatMul, 2048^3, all usable cores), in GFLOP/s."""
    from benchmarks.common import matmul

    r = matmul.onnxruntime_rate(2048, 2048, 2048, repeats=2, warmup=1)
    return r.get("gflops_median")


def _exported(model_dir: pathlib.Path, obs: dict, noise: np.ndarray, threads: int, repeats: int,
              rate_samples: list[float]) -> dict:
    """The runtime path. A matmul-rate sample is taken right before every timed run, so the floor
    uses the rate this shared CPU gave us at that moment (other load moves both together)."""
    from runtime.controller import Controller

    controller = Controller.from_dir(model_dir, threads=threads)
    action = controller.predict(obs, noise=noise)  # warm-up (allocations, first-run kernels)
    parts: dict[str, list[float]] = {"encoder_ms": [], "denoise_ms": [], "total_ms": []}

    def once():
        rate = _rate_sample()
        if rate:
            rate_samples.append(rate)
        t0 = time.perf_counter()
        controller.predict(obs, noise=noise)
        parts["wall_ms"] = parts.get("wall_ms", []) + [(time.perf_counter() - t0) * 1e3]
        for k in ("encoder_ms", "denoise_ms", "total_ms"):
            parts[k].append(controller.last_timing[k])

    for _ in range(repeats):
        once()
    controller.close()
    return {"action": action, "samples_total_ms": parts["total_ms"],
            **{k: float(np.median(v)) for k, v in parts.items()}}


def _exported_uncached(model_dir: pathlib.Path, obs: dict, noise: np.ndarray, threads: int) -> dict:
    """Encoder once, then upstream's per-step DiT (re-projecting all condition tokens) as ONNX."""
    from runtime.controller.ddim import DDIMSampler
    from runtime.controller.manifest import DENOISER_UNCACHED, ENCODER, OBS_TOKENS, Manifest
    from runtime.inference.onnxruntime import OrtBackend

    manifest = Manifest.load(model_dir)
    enc = OrtBackend(model_dir / manifest.graph(ENCODER).file, threads=threads)
    den = OrtBackend(model_dir / manifest.graph(DENOISER_UNCACHED).file, threads=threads)
    sampler = DDIMSampler(manifest.scheduler, manifest.num_inference_steps)
    t0 = time.perf_counter()
    tokens = enc.run(obs)[OBS_TOKENS]
    t1 = time.perf_counter()
    sample = noise
    for t in sampler.timesteps:
        eps = den.run({"sample": sample, "timestep": np.asarray([t], np.float32), OBS_TOKENS: tokens})["epsilon"]
        sample = sampler.step(eps, int(t), sample)
    t2 = time.perf_counter()
    return {"encoder_ms": (t1 - t0) * 1e3, "denoise_ms": (t2 - t1) * 1e3, "total_ms": (t2 - t0) * 1e3}


def _eager(ckpt: pathlib.Path, obs: dict, noise: np.ndarray, threads: int, repeats: int, warmup: int) -> dict:
    import torch

    from export.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    policy = load_checkpoint(ckpt).policy
    tobs = {k: torch.from_numpy(v) for k, v in obs.items()}
    tnoise = torch.from_numpy(noise)
    result = {}

    def once():
        result["action"] = policy.predict_action(tobs, tnoise).numpy()[0]

    timing = measure(once, name="eager", repeats=repeats, warmup=warmup)
    return {"timing": timing.to_dict(), "total_ms": timing.median_s * 1e3, "action": result["action"]}


def bench_preset(preset: str, quick: bool, threads: int, rate_gflops: float | None,
                 eager_repeats: int | None = None) -> dict:
    from export.flops import controller as controller_flops
    from export.model.arch import get_preset

    full = preset == "dexgraspvla"
    ckpt, model_dir = _ensure_model(preset)
    obs, noise = _inputs()
    row: dict = {"preset": preset, "threads": threads, "backend": "onnxruntime CPUExecutionProvider fp32"}
    rate_samples: list[float] = []
    exported = _exported(model_dir, obs, noise, threads, 2 if (quick or full) else 3, rate_samples)
    row.update(exported_encoder_ms=exported["encoder_ms"], exported_denoise_ms=exported["denoise_ms"],
               exported_ms=exported["total_ms"], exported_samples_ms=exported["samples_total_ms"])
    if rate_samples:
        rate_gflops = float(np.median(rate_samples))
    row["floor_rate_gflops"] = rate_gflops
    row["floor_rate_samples_gflops"] = rate_samples
    row["exported_nocache"] = _exported_uncached(model_dir, obs, noise, threads)
    row["exported_nocache_ms"] = row["exported_nocache"]["total_ms"]
    # Never a single-shot number: one warm-up and at least two timed runs, also at paper size
    # (where one eager inference takes about a minute on a 2-core CPU).
    eager = _eager(ckpt, obs, noise, threads, repeats=max(2, eager_repeats or 2), warmup=1)
    row.update(eager_ms=eager["total_ms"], eager_timing=eager["timing"])
    ref = eager["action"]
    row["parity_max_abs_error"] = float(np.abs(exported["action"] - ref).max())
    row["parity_rel_error"] = ratio(row["parity_max_abs_error"], float(ref.max() - ref.min()))
    row["speedup_vs_eager"] = ratio(row["eager_ms"], row["exported_ms"])
    row["speedup_cache_alone"] = ratio(row["exported_nocache_ms"], row["exported_ms"])
    flops = controller_flops(get_preset(preset))
    row["flops"] = {k: v / 1e9 for k, v in flops.items()}
    row["flops_unit"] = "GFLOP"
    if rate_gflops:
        row["floor_ms"] = flops["inference_cached"] / (rate_gflops * 1e9) * 1e3
        row["floor_uncached_ms"] = flops["inference_uncached"] / (rate_gflops * 1e9) * 1e3
        row["ratio_to_floor"] = ratio(row["exported_ms"], row["floor_ms"])
        row["eager_ratio_to_uncached_floor"] = ratio(row["eager_ms"], row["floor_uncached_ms"])
        row["achieved_gflops"] = flops["inference_cached"] / 1e9 / (row["exported_ms"] / 1e3)
    return row


def run(quick: bool, out_dir: pathlib.Path, **opts) -> dict:
    """Quick: the small preset only (about a minute). Full: small + dexgraspvla (about 10 minutes,
    plus a one-time ~2-10 minute export of the paper-size model). opts: presets (list or comma string),
    threads (default: usable cores), eager_repeats (default 1 at paper size: one eager run is ~1 min)."""
    from benchmarks.common import matmul
    from benchmarks.common.machine import load_average

    presets = opts.get("presets") or (["small"] if quick else ["small", "dexgraspvla"])
    if isinstance(presets, str):
        presets = [p.strip() for p in presets.split(",") if p.strip()]
    threads = int(opts.get("threads") or len(os.sched_getaffinity(0)))
    load_before = load_average()
    rates = {
        "numpy": matmul.numpy_rate(2048, 2048, 2048, repeats=3),
        "onnxruntime": matmul.onnxruntime_rate(2048, 2048, 2048, repeats=3),
    }
    medians = [r["gflops_median"] for r in rates.values() if "gflops_median" in r]
    rate = max(medians) if medians else None
    rows = []
    for preset in presets:
        t0 = time.perf_counter()
        rows.append(bench_preset(preset, quick, threads, rate, opts.get("eager_repeats")))
        rows[-1]["bench_wall_s"] = time.perf_counter() - t0
        log.info("controller bench %s: %s", preset, {k: rows[-1].get(k) for k in ("exported_ms", "eager_ms")})
    bars = [{"label": r["preset"], "exported_ms": r["exported_ms"], "exported_nocache_ms": r["exported_nocache_ms"],
             "eager_ms": r["eager_ms"], "floor_ms": r.get("floor_ms")} for r in rows]
    table_rows = [[r["preset"], f"{r['exported_encoder_ms']:.0f}", f"{r['exported_denoise_ms']:.0f}",
                   f"{r['exported_ms']:.0f}", f"{r['exported_nocache_ms']:.0f}", f"{r['eager_ms']:.0f}",
                   f"{r.get('floor_ms') or float('nan'):.0f}", f"{r['speedup_vs_eager']:.2f}x",
                   f"{r.get('ratio_to_floor') or float('nan'):.2f}x", f"{r['parity_rel_error']:.1e}"] for r in rows]
    return {
        "device": "cpu",
        "threads": threads,
        "matmul_rate_gflops": rate,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "matmul_rates": rates,
        "presets": rows,
        "tables": [{
            "title": "Controller latency per inference (ms), ONNX Runtime CPU fp32 vs PyTorch eager",
            "columns": ["preset", "encoder", "denoise (16 steps)", "exported total", "exported, no K/V cache",
                        "PyTorch eager", "compute floor", "speedup vs eager", "x floor", "parity (rel. range)"],
            "rows": table_rows,
        }],
        "plot_data": {"controller_bars": bars},
        "not_measured": [
            {"what": "TensorRT engines (FP16/FP32) and ONNX Runtime CUDA/TensorRT providers",
             "reason": "no NVIDIA GPU on this machine"},
            {"what": "Jetson Orin latency", "reason": "no Jetson here"},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Benchmark the exported controller against PyTorch eager.

    Example: python -m benchmarks.controller --presets small,dexgraspvla --out bench-out
    """
    p = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small preset only")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out"), help="output directory")
    p.add_argument("--presets", help="comma-separated presets (default: small[,dexgraspvla])")
    p.add_argument("--threads", type=int, help="intra-op threads for ONNX Runtime and torch")
    p.add_argument("--eager-repeats", type=int, help="timed PyTorch eager runs per preset")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.quick, args.out, presets=args.presets, threads=args.threads, eager_repeats=args.eager_repeats)
    (args.out / "controller.json").write_text(json.dumps(res, indent=2, default=str))
    for row in res["tables"][0]["rows"]:
        print(" | ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
