"""Controller latency: the exported controller on every backend x precision available here vs
upstream-style PyTorch eager `predict_action` in fp32 AND under `torch.autocast("cpu", bfloat16)`
(the first thing a user would try), same checkpoint and noise, in one run, plus compute floors.

Per preset (quick: `small`; full: `small` and `dexgraspvla`, the paper's sizes):
- exported, per (backend, precision) of benchmarks/common/backends.py: encoder graph once + 16
  denoiser calls with the cached observation K/V (the runtime path): encoder, denoise, total.
  Combinations that cannot run here (no GPU, `openvino` missing, a precision refused) are listed
  with the reason;
- exported without K/V cache (ONNX Runtime fp32): the same encoder + upstream's full DiT per step
  (denoiser_uncached.onnx), to show what the caching buys on its own;
- eager fp32 and eager bf16 autocast: our PyTorch rebuild (export/model) running upstream's
  computation (SDPA, uncached DiT, diffusers DDIMScheduler; bit-identical to upstream's
  predict_action, see benchmarks/upstream_parity.py), torch.set_num_threads(threads); the
  encoder/denoise split comes from hooks on the observation encoder;
- error: max |candidate - eager fp32| / range of the eager fp32 action chunk, same initial noise
  (for ONNX Runtime fp32 this is the parity with upstream, `parity_rel_error`);
- floors per precision: analytic FLOPs (export/flops.py) / the GEMM rate measured in this run in
  that precision (fp32: best of numpy, ONNX Runtime and torch matmul, re-sampled before each ONNX
  Runtime run; bf16: torch bf16 matmul, oneDNN on AMX / AVX512-BF16). fp16 has no CPU floor.
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
GATE = 1e-2  # reduced-precision action error gate, fraction of the fp32 action range (issue 16)
SQUARE = (2048, 2048, 2048)


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


def _rate_sample(precision: str = "fp32", threads: int | None = None) -> float | None:
    """One matmul-rate sample (2048^3, all usable cores) in GFLOP/s, taken right before a timed run:
    fp32 with ONNX Runtime MatMul, bf16 with torch (oneDNN). None for precisions without a CPU rate."""
    from benchmarks.common import matmul

    if precision == "fp32":
        r = matmul.onnxruntime_rate(*SQUARE, repeats=2, warmup=1)
    elif precision == "bf16":
        r = matmul.torch_rate(*SQUARE, "bfloat16", repeats=2, warmup=1, threads=threads)
    else:
        return None
    return r.get("gflops_median")


def gemm_rates(threads: int, repeats: int = 3) -> dict:
    """fp32 (numpy, ONNX Runtime, torch) and bf16 (torch) square-GEMM rates measured now."""
    from benchmarks.common import matmul

    return {
        "numpy_fp32": matmul.numpy_rate(*SQUARE, repeats=repeats),
        "onnxruntime_fp32": matmul.onnxruntime_rate(*SQUARE, repeats=repeats),
        "torch_fp32": matmul.torch_rate(*SQUARE, "float32", repeats=repeats, threads=threads),
        "torch_bf16": matmul.torch_rate(*SQUARE, "bfloat16", repeats=repeats, threads=threads),
    }


def floor_rates(rates: dict) -> dict[str, float | None]:
    """GFLOP/s per precision: fp32 = best fp32 median of any library, bf16 = torch bf16."""
    fp32 = [r.get("gflops_median") for k, r in rates.items() if k.endswith("_fp32")]
    fp32 = [v for v in fp32 if v]
    return {"fp32": max(fp32) if fp32 else None, "bf16": rates.get("torch_bf16", {}).get("gflops_median"),
            "fp16": None}


def _timed_controller(controller, obs: dict, noise: np.ndarray, repeats: int,
                      before_each=None) -> dict:
    """Warm-up, then `repeats` timed predicts: medians of the controller's own encoder/denoise split."""
    action = controller.predict(obs, noise=noise)  # warm-up (allocations, first-run kernels, compile)
    parts: dict[str, list[float]] = {"encoder_ms": [], "denoise_ms": [], "total_ms": [], "wall_ms": []}
    for _ in range(repeats):
        if before_each is not None:
            before_each()
        t0 = time.perf_counter()
        controller.predict(obs, noise=noise)
        parts["wall_ms"].append((time.perf_counter() - t0) * 1e3)
        for k in ("encoder_ms", "denoise_ms", "total_ms"):
            parts[k].append(controller.last_timing[k])
    # medians, and the minimum: on a shared CPU the least disturbed run
    return {"action": action, "samples_total_ms": parts["total_ms"], "min_total_ms": float(min(parts["total_ms"])),
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


def _eager(policy, obs: dict, noise: np.ndarray, threads: int, repeats: int, warmup: int,
           autocast_bf16: bool = False) -> dict:
    """Upstream-style predict_action; under torch.autocast("cpu", torch.bfloat16) when asked.
    The observation encoder's share is timed by forward hooks (the rest is the DDIM loop)."""
    import contextlib

    import torch

    torch.set_num_threads(threads)
    tobs = {k: torch.from_numpy(v) for k, v in obs.items()}
    tnoise = torch.from_numpy(noise)
    result: dict = {"encoder_s": []}
    mark: dict = {}
    pre = policy.obs_encoder.register_forward_pre_hook(lambda *_: mark.__setitem__("t0", time.perf_counter()))
    post = policy.obs_encoder.register_forward_hook(
        lambda *_: result["encoder_s"].append(time.perf_counter() - mark["t0"]))

    def once():
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast_bf16 else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            result["action"] = policy.predict_action(tobs, tnoise).float().numpy()[0]

    try:
        timing = measure(once, name="eager bf16 autocast" if autocast_bf16 else "eager", repeats=repeats,
                         warmup=warmup)
    finally:
        pre.remove()
        post.remove()
    total = timing.median_s * 1e3
    encoder = float(np.median(result["encoder_s"][warmup:])) * 1e3
    return {"timing": timing.to_dict(), "total_ms": total, "encoder_ms": encoder, "denoise_ms": total - encoder,
            "action": result["action"]}


def _rel_error(action: np.ndarray, ref: np.ndarray) -> tuple[float, float | None]:
    err = float(np.abs(np.asarray(action, np.float32) - ref).max())
    return err, ratio(err, float(ref.max() - ref.min()))


def _config_rows(model_dir, obs, noise, threads, repeats, rate_samples: dict[str, list[float]]) -> list[dict]:
    """One row per (backend, precision): timings, or the reason it was not measured. A GEMM-rate
    sample in the row's precision is taken right before each timed run (into rate_samples), so the
    floor uses the rate this shared CPU gave at that moment (other load moves both together)."""
    from benchmarks.common.backends import CONTROLLER_CONFIGS, open_controller, unavailable_reason

    rows = []
    for backend, precision in CONTROLLER_CONFIGS:
        row: dict = {"backend": backend, "precision": precision}
        reason = unavailable_reason(backend, precision)
        controller = None
        if reason is None:
            controller, reason = open_controller(model_dir, backend, precision, threads)
        if controller is None:
            rows.append({**row, "status": "not measured", "reason": reason})
            log.info("controller bench: %s %s not measured: %s", backend, precision, reason)
            continue

        def before(precision=precision):
            r = _rate_sample(precision, threads)
            if r:
                rate_samples.setdefault(precision, []).append(r)

        try:
            timed = _timed_controller(controller, obs, noise, repeats, before)
        except Exception as exc:  # noqa: BLE001 - a backend failing at run time is a result too
            rows.append({**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        finally:
            controller.close()
        rows.append({**row, "status": "ok", "encoder_ms": timed["encoder_ms"], "denoise_ms": timed["denoise_ms"],
                     "total_ms": timed["total_ms"], "min_total_ms": timed["min_total_ms"], "wall_ms": timed["wall_ms"],
                     "samples_total_ms": timed["samples_total_ms"], "action": timed["action"]})
    return rows


def preset_floors(start: dict[str, float | None], samples: dict[str, list[float]]) -> dict[str, float | None]:
    """Per precision, the fastest rate seen in this preset (the start-of-run rates and the samples
    next to the timed runs): a floor from the best rate is never flattering."""
    out = {}
    for precision, rate in start.items():
        seen = [v for v in [rate, *samples.get(precision, [])] if v]
        out[precision] = max(seen) if seen else None
    return out


def bench_preset(preset: str, quick: bool, threads: int, rates: dict, eager_repeats: int | None = None) -> dict:
    import torch

    from export.checkpoint import load_checkpoint
    from export.flops import controller as controller_flops
    from export.model.arch import get_preset

    full = preset == "dexgraspvla"
    ckpt, model_dir = _ensure_model(preset)
    obs, noise = _inputs()
    flops = controller_flops(get_preset(preset))
    rate_samples: dict[str, list[float]] = {}
    repeats = 2 if (quick or full) else 3
    configs = _config_rows(model_dir, obs, noise, threads, repeats, rate_samples)
    nocache = _exported_uncached(model_dir, obs, noise, threads)
    # Never a single-shot number: one warm-up and at least two timed runs, also at paper size
    # (where one eager fp32 inference takes tens of seconds on a 2-core CPU). A rate sample of
    # each precision right before the eager runs, as for the exported ones.
    policy = load_checkpoint(ckpt).policy.eval()
    for precision in ("fp32", "bf16"):
        r = _rate_sample(precision, threads)
        if r:
            rate_samples.setdefault(precision, []).append(r)
    eager = _eager(policy, obs, noise, threads, repeats=max(2, eager_repeats or 2), warmup=1)
    eager_bf16 = _eager(policy, obs, noise, threads, repeats=max(2, eager_repeats or 2), warmup=1,
                        autocast_bf16=True)
    del policy
    floors = preset_floors(floor_rates(rates), rate_samples)
    for c in configs:
        if c.get("status") == "ok":
            rate = floors.get(c["precision"])
            c["floor_ms"] = flops["inference_cached"] / (rate * 1e9) * 1e3 if rate else None
            c["ratio_to_floor"] = ratio(c["total_ms"], c["floor_ms"])
    torch.set_num_threads(threads)
    ref = eager["action"]
    for c in configs + [eager_bf16]:
        if "action" in c:
            c["max_abs_error"], c["rel_error"] = _rel_error(c.pop("action"), ref)
    eager.pop("action")
    for c in configs:
        if c.get("status") == "ok":
            c["speedup_vs_eager_fp32"] = ratio(eager["total_ms"], c["total_ms"])
            c["speedup_vs_eager_bf16"] = ratio(eager_bf16["total_ms"], c["total_ms"])
            c["passes_gate"] = c["rel_error"] is not None and c["rel_error"] <= GATE
    eager["floor_ms"] = flops["inference_uncached"] / (floors["fp32"] * 1e9) * 1e3 if floors["fp32"] else None
    eager_bf16["floor_ms"] = (flops["inference_uncached"] / (floors["bf16"] * 1e9) * 1e3
                              if floors["bf16"] else None)
    ort = next(c for c in configs if (c["backend"], c["precision"]) == ("onnxruntime", "fp32"))
    row: dict = {"preset": preset, "threads": threads, "backend": "onnxruntime CPUExecutionProvider fp32",
                 "backends": configs, "eager_fp32": eager, "eager_bf16_autocast": eager_bf16,
                 "exported_nocache": nocache, "exported_nocache_ms": nocache["total_ms"],
                 "floor_rates_gflops": floors, "floor_rate_gflops": floors["fp32"],
                 "floor_rate_samples_gflops": rate_samples, "gate_rel_error": GATE}
    # the fp32 reference path under the names benchmarks/common/targets.py and the plots read
    row.update(exported_encoder_ms=ort["encoder_ms"], exported_denoise_ms=ort["denoise_ms"],
               exported_ms=ort["total_ms"], exported_samples_ms=ort["samples_total_ms"],
               eager_ms=eager["total_ms"], eager_timing=eager["timing"], eager_bf16_ms=eager_bf16["total_ms"],
               parity_max_abs_error=ort["max_abs_error"], parity_rel_error=ort["rel_error"],
               speedup_vs_eager=ort["speedup_vs_eager_fp32"], speedup_vs_eager_bf16=ort["speedup_vs_eager_bf16"],
               speedup_cache_alone=ratio(nocache["total_ms"], ort["total_ms"]))
    passing = [c for c in configs if c.get("passes_gate")]
    if passing:
        best = min(passing, key=lambda c: c["total_ms"])
        row["best"] = {k: best.get(k) for k in ("backend", "precision", "total_ms", "rel_error",
                                                 "speedup_vs_eager_fp32", "speedup_vs_eager_bf16")}
        row["best_speedup_vs_eager"] = best["speedup_vs_eager_fp32"]
        row["best_speedup_vs_eager_bf16"] = best["speedup_vs_eager_bf16"]
        row["best_total_ms"] = best["total_ms"]
    row["flops"] = {k: v / 1e9 for k, v in flops.items()}
    row["flops_unit"] = "GFLOP"
    if floors["fp32"]:
        row["floor_ms"] = flops["inference_cached"] / (floors["fp32"] * 1e9) * 1e3
        row["floor_uncached_ms"] = eager["floor_ms"]
        row["ratio_to_floor"] = ratio(row["exported_ms"], row["floor_ms"])
        row["eager_ratio_to_uncached_floor"] = ratio(row["eager_ms"], row["floor_uncached_ms"])
        row["achieved_gflops"] = flops["inference_cached"] / 1e9 / (row["exported_ms"] / 1e3)
    return row


def _f(v, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def table_rows(rows: list[dict]) -> list[list[str]]:
    """Per preset: every backend x precision (measured or why not), no-cache, eager fp32 and bf16."""
    out = []
    for r in rows:
        for c in r["backends"]:
            name = f"{c['backend']} {c['precision']}"
            if c.get("status") != "ok":
                out.append([r["preset"], name, "-", "-", "-", "-", "-", "-", "-", "-",
                            f"not measured: {c.get('reason')}"])
                continue
            out.append([r["preset"], name, _f(c["encoder_ms"], ".0f"), _f(c["denoise_ms"], ".0f"),
                        _f(c["total_ms"], ".0f"), _f(c.get("rel_error"), ".1e"),
                        _f(c.get("speedup_vs_eager_fp32"), ".2f", "x"), _f(c.get("speedup_vs_eager_bf16"), ".2f", "x"),
                        _f(c.get("floor_ms"), ".0f"), _f(c.get("ratio_to_floor"), ".2f", "x"),
                        "passes gate" if c.get("passes_gate") else f"error above {GATE:g} of range"])
        nc = r["exported_nocache"]
        out.append([r["preset"], "onnxruntime fp32, no K/V cache", _f(nc["encoder_ms"], ".0f"),
                    _f(nc["denoise_ms"], ".0f"), _f(nc["total_ms"], ".0f"), "-",
                    _f(ratio(r["eager_ms"], nc["total_ms"]), ".2f", "x"),
                    _f(ratio(r["eager_bf16_ms"], nc["total_ms"]), ".2f", "x"), "-", "-", "what the cache buys"])
        for label, e in (("PyTorch eager fp32", r["eager_fp32"]), ("PyTorch eager bf16 autocast",
                                                                     r["eager_bf16_autocast"])):
            out.append([r["preset"], label, _f(e["encoder_ms"], ".0f"), _f(e["denoise_ms"], ".0f"),
                        _f(e["total_ms"], ".0f"), _f(e.get("rel_error"), ".1e"),
                        _f(ratio(r["eager_ms"], e["total_ms"]), ".2f", "x"),
                        _f(ratio(r["eager_bf16_ms"], e["total_ms"]), ".2f", "x"), _f(e.get("floor_ms"), ".0f"),
                        _f(ratio(e["total_ms"], e.get("floor_ms")), ".2f", "x"), "uncached DiT floor"])
    return out


def declared_targets(rows: list[dict]) -> list[dict]:
    """Issue 16's speed targets, as result["targets"] rows (benchmarks/common/targets.py adds them):
    a verdict only at the preset the target names, else an informational row saying so."""
    by = {r["preset"]: r for r in rows}
    out = []
    paper = by.get("dexgraspvla")
    for name, goal, key, ok in (
            ("fastest gated backend vs eager fp32 (paper sizes)", ">= 5x (goal 10x)", "best_speedup_vs_eager",
             lambda v: v >= 5.0),
            ("fastest gated backend vs eager bf16 autocast (paper sizes)", "> 1x", "best_speedup_vs_eager_bf16",
             lambda v: v > 1.0)):
        v = paper.get(key) if paper else None
        out.append({"name": name, "target": goal, "measured": None if v is None else round(v, 2),
                    "pass": None if v is None else ok(v),
                    "note": (f"{paper['best']['backend']} {paper['best']['precision']}, error "
                             f"{paper['best']['rel_error']:.1e} of range" if paper and paper.get("best")
                             else "paper preset not run" if not paper else f"no backend within {GATE:g}")})
    small = by.get("small")
    v = small.get("best_total_ms") if small else None
    out.append({"name": "small preset per chunk, fastest gated backend", "target": "<= 500 ms",
                "measured": None if v is None else round(v), "pass": None if v is None else v <= 500.0,
                "note": f"{small['best']['backend']} {small['best']['precision']}" if small and small.get("best")
                else "small preset not run or no backend within the gate"})
    return out


COLUMNS = ["preset", "backend precision", "encoder", "denoise (16 steps)", "total", "error / range vs fp32",
           "x eager fp32", "x eager bf16", "compute floor", "x floor", "note"]


def run(quick: bool, out_dir: pathlib.Path, **opts) -> dict:
    """Quick: the small preset only (about a minute). Full: small + dexgraspvla (about 10 minutes,
    plus a one-time ~2-10 minute export of the paper-size model). opts: presets (list or comma string),
    threads (default: usable cores), eager_repeats (timed eager runs per precision, default 2)."""
    from benchmarks.common.machine import load_average, machine_info

    presets = opts.get("presets") or (["small"] if quick else ["small", "dexgraspvla"])
    if isinstance(presets, str):
        presets = [p.strip() for p in presets.split(",") if p.strip()]
    threads = int(opts.get("threads") or len(os.sched_getaffinity(0)))
    load_before = load_average()
    rates = gemm_rates(threads)
    rows = []
    for preset in presets:
        t0 = time.perf_counter()
        rows.append(bench_preset(preset, quick, threads, rates, opts.get("eager_repeats")))
        rows[-1]["bench_wall_s"] = time.perf_counter() - t0
        log.info("controller bench %s: %s", preset,
                 {k: rows[-1].get(k) for k in ("exported_ms", "best_total_ms", "eager_ms", "eager_bf16_ms")})
    bars = [{"label": r["preset"], "exported_ms": r["exported_ms"], "exported_nocache_ms": r["exported_nocache_ms"],
             "eager_ms": r["eager_ms"], "floor_ms": r.get("floor_ms")} for r in rows]
    floors = floor_rates(rates)
    machine = machine_info()
    not_measured = [{"what": f"{c['backend']} {c['precision']} ({r['preset']})", "reason": c.get("reason")}
                    for r in rows for c in r["backends"] if c.get("status") != "ok"]
    not_measured.append({"what": "Jetson Orin latency", "reason": "no Jetson here"})
    return {
        "device": "cpu",
        "threads": threads,
        "isa": machine["cpu"].get("isa"),
        "machine": machine,
        "matmul_rate_gflops": floors["fp32"],
        "matmul_rates": rates,
        "floor_rates_gflops": floors,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "presets": rows,
        "tables": [{
            "title": "Controller latency per inference (ms): every backend x precision vs PyTorch eager fp32 and "
                     "bf16 autocast, same checkpoint and noise, one run",
            "columns": COLUMNS,
            "rows": table_rows(rows),
        }],
        "plot_data": {"controller_bars": bars},
        "targets": declared_targets(rows),
        "not_measured": not_measured,
    }


def main(argv: list[str] | None = None) -> int:
    """Benchmark the exported controller (every backend x precision) against PyTorch eager.

    Example: python -m benchmarks.controller --presets small,dexgraspvla --out bench-out
    """
    p = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small preset only")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out"), help="output directory")
    p.add_argument("--presets", help="comma-separated presets (default: small[,dexgraspvla])")
    p.add_argument("--threads", type=int, help="intra-op threads for the backends and torch")
    p.add_argument("--eager-repeats", type=int, help="timed PyTorch eager runs per preset and precision")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.quick, args.out, presets=args.presets, threads=args.threads, eager_repeats=args.eager_repeats)
    (args.out / "controller.json").write_text(json.dumps(res, indent=2, default=str))
    print(f"# {res['machine']['cpu'].get('model')}, {res['threads']} threads, ISA: {' '.join(res['isa'] or [])}; "
          + ", ".join(f"{k} {_f(v, '.0f')} GFLOP/s" for k, v in res["floor_rates_gflops"].items() if v))
    print(" | ".join(COLUMNS))
    for row in res["tables"][0]["rows"]:
        print(" | ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
