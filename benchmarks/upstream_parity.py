"""Parity of the exported controller with UPSTREAM's own code (github Psi-Robot/DexGraspVLA).

The parity tests in tests/export compare `dexgrasp infer` (ONNX Runtime, no torch) with our PyTorch
rebuild of the architecture (export/model/*.py). This script closes the chain: it loads the same
checkpoint into upstream's own classes and compares all three on the same observations and the
same initial DDIM noise:

    upstream DexGraspVLAController.predict_action  (your upstream checkout, --upstream-python)
      vs our PyTorch rebuild  (export.checkpoint.load_checkpoint(...).policy.predict_action)
      vs our torch-free export (`dexgrasp infer` on `dexgrasp export controller` output)

Steps (all scratch files under a temporary directory in /tmp, deleted at the end unless --keep):
  1. `dexgrasp make-checkpoint --preset P --seed S` (random weights, upstream workspace format;
     --with-ema when --use-ema), or take --checkpoint;
  2. `dexgrasp export controller` on it;
  3. observations (rgbm (1,1,4,518,518), right_cam_img (1,1,3,518,518), right_state (1,1,13), exactly
     what upstream's inference.py process_obs hands to predict_action) and an initial noise
     (1,64,13), as tests/export/conftest.py makes them;
  4. `dexgrasp infer` (a fresh interpreter that must not import torch);
  5. our rebuild's predict_action(obs, noise), in this interpreter;
  6. upstream, in a subprocess under --upstream-python (this same file, `--child-upstream`):
     `hydra.utils.instantiate(cfg.policy)` from the checkpoint's cfg, `load_state_dict` of
     state_dicts['model'] (or ['ema_model']), eval(), then upstream's own
     `predict_action(obs_dict)` under torch.no_grad(), as upstream's inference.py does.
  Then max |a - b| of the (64, 13) action chunk, relative to the range of upstream's chunk, for each
  pair, plus the same for intermediate outputs (obs encoder tokens; the DiT's noise prediction at
  every DDIM step) so that a mismatch can be located. Writes OUT/results.json and OUT/summary.md.

What is patched inside the upstream subprocess (in process only; no upstream file is edited):
  * torch.hub.load: upstream's ObsEncoder calls torch.hub.load("facebookresearch/dinov2", name,
    pretrained=True, ...), which needs the network (GitHub + the weights download). The patch
    redirects it to the local dinov2 checkout (--dinov2) with source='local' and pretrained=False:
    the DINOv2 module is built by dinov2's own hubconf/code, its weights then come from the
    checkpoint's state dict (as they do in a real checkpoint, which stores dino_head/dino_wrist).
  * torch.randn, for the duration of predict_action only: upstream draws the initial trajectory
    with torch.randn(size=(B, horizon, action_dim)) inside conditional_sample (no generator
    argument). The patch returns our noise for that call (it checks the shape and that it is called
    exactly once); any other torch.randn call is passed through.
  * torch.load(..., weights_only=False) is used to read the checkpoint: upstream's own
    BaseWorkspace.load_checkpoint calls torch.load without it, which fails on a dill payload with
    torch >= 2.6 (upstream pins torch 2.5.1, where weights_only defaulted to False).
  * XFORMERS_DISABLED=1: dinov2 then uses its plain attention path (xformers is GPU-only); this
    is dinov2's own switch, and what it does anyway when xformers is not installed.
  Upstream's workspace class is not instantiated (it imports accelerate/wandb for training); the
  policy is built the way its __init__ builds it: hydra.utils.instantiate(cfg.policy).

Requirements of --upstream-python: torch, torchvision, timm, einops, hydra-core/omegaconf, diffusers,
dill, scipy and zarr (imported by upstream's normalizer). Upstream pins torch 2.5.1, diffusers
0.32.1, timm 1.0.12; any torch that runs them will do, but the timm version matters: timm <= 1.0.12
computes RmsNorm with the unbiased variance (torch.var), timm >= 1.0.13 with mean(x^2), and our
rebuild follows upstream's pin (export/model/layers.py). With timm >= 1.0.13 in --upstream-python,
expect rebuild vs upstream ~2e-2 of the range; results.json records which formula the child's timm
runs (upstream_child.timm_rms_norm). This interpreter (the project's) needs the
`export` extra (torch, diffusers, onnx, onnxruntime).

Examples:
  git clone https://github.com/Psi-Robot/DexGraspVLA up/dexgraspvla
  git clone https://github.com/facebookresearch/dinov2 up/dinov2
  python benchmarks/upstream_parity.py --upstream up/dexgraspvla --dinov2 up/dinov2 \\
      --upstream-python /path/to/upstream-venv/bin/python --preset small --out parity-out
  python benchmarks/upstream_parity.py ... --preset dexgraspvla --use-ema --out parity-full
      (the paper's sizes: minutes on a CPU and ~4 GB of scratch disk)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
REBUILD_TOLERANCE = 1e-4  # of the action range: our rebuild computes the same thing in the same precision
EXPORT_TOLERANCE = 1e-3  # of the action range: ONNX Runtime kernels (same as tests/export/test_parity.py)


# ----------------------------------------------------------------------------------------------
# Upstream side: runs under --upstream-python, imports only upstream's code and its dependencies.
# ----------------------------------------------------------------------------------------------

def child_upstream(argv: list[str]) -> int:
    """`--child-upstream`: build upstream's policy from the checkpoint and run its predict_action."""
    p = argparse.ArgumentParser(prog="upstream_parity.py --child-upstream")
    p.add_argument("--upstream", required=True)
    p.add_argument("--dinov2", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--obs", required=True)
    p.add_argument("--noise", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--weights", choices=("model", "ema_model"), default="model")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--timing-repeats", type=int, default=0)
    a = p.parse_args(argv)

    os.environ.setdefault("XFORMERS_DISABLED", "1")
    # Python put this file's directory (benchmarks/, which has a controller.py) first on sys.path: drop it
    # and our repository so that `controller` is upstream's package.
    ours = {str(pathlib.Path(__file__).resolve().parent), str(REPO)}
    sys.path[:] = [p for p in sys.path if str(pathlib.Path(p or ".").resolve()) not in ours]
    sys.path.insert(0, str(pathlib.Path(a.upstream).resolve()))
    import dill
    import hydra
    import numpy as np
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    dinov2_dir = str(pathlib.Path(a.dinov2).resolve())
    hub_calls = []
    original_hub_load = torch.hub.load

    def local_hub_load(repo_or_dir, model, *args, **kwargs):
        """Patch 1: the dinov2 hub model from the local checkout, without the weights download."""
        if "dinov2" not in str(repo_or_dir):
            return original_hub_load(repo_or_dir, model, *args, **kwargs)
        for key in ("force_reload", "trust_repo", "skip_validation", "source"):
            kwargs.pop(key, None)
        kwargs["pretrained"] = False
        hub_calls.append(model)
        return original_hub_load(dinov2_dir, model, *args, source="local", **kwargs)

    torch.hub.load = local_hub_load
    t0 = time.perf_counter()
    # Patch 3: weights_only=False (upstream's torch.load predates the torch 2.6 default).
    payload = torch.load(a.checkpoint, map_location="cpu", pickle_module=dill, weights_only=False)
    cfg = payload["cfg"]
    policy = hydra.utils.instantiate(cfg.policy)
    state_dict = payload["state_dicts"][a.weights]
    policy.load_state_dict(state_dict)  # strict, like upstream's BaseWorkspace.load_payload
    policy.eval()
    build_s = time.perf_counter() - t0
    torch.hub.load = original_hub_load

    with np.load(a.obs) as f:
        obs = {k: torch.from_numpy(f[k]) for k in f.files}
    with np.load(a.noise) as f:
        noise = torch.from_numpy(f["noise"])

    # Intermediate outputs, recorded with forward hooks (no extra compute, upstream code untouched).
    captured: dict[str, list] = {"cond": [], "eps": []}
    hooks = [policy.obs_encoder.register_forward_hook(lambda m, i, o: captured["cond"].append(o.detach().clone())),
             policy.model.register_forward_hook(lambda m, i, o: captured["eps"].append(o[0].detach().clone()))]

    # Patch 2: the initial trajectory of conditional_sample is our noise.
    randn_calls = []
    original_randn = torch.randn

    def injected_randn(*args, **kwargs):
        size = kwargs.get("size", args[0] if len(args) == 1 else args)
        if tuple(size) == tuple(noise.shape) and not randn_calls:
            randn_calls.append(tuple(size))
            return noise.clone().to(dtype=kwargs.get("dtype") or noise.dtype, device=kwargs.get("device") or "cpu")
        randn_calls.append(("passed through", tuple(size)))
        return original_randn(*args, **kwargs)

    torch.randn = injected_randn
    try:
        t0 = time.perf_counter()
        with torch.no_grad():
            action = policy.predict_action(obs)
        predict_s = time.perf_counter() - t0
    finally:
        torch.randn = original_randn
    if randn_calls != [tuple(noise.shape)]:
        raise RuntimeError(f"expected one torch.randn{tuple(noise.shape)} in predict_action, saw {randn_calls}")
    # Speed: the parity call above was the warm-up; these calls draw their own noise (unpatched).
    for h in hooks:
        h.remove()
    repeat_s = []
    for _ in range(a.timing_repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            policy.predict_action(obs)
        repeat_s.append(time.perf_counter() - t0)

    import inspect

    import diffusers
    import timm
    import timm.layers.fast_norm as fast_norm

    # Which RmsNorm formula this timm runs (timm <= 1.0.12: unbiased variance; >= 1.0.13: mean of squares).
    rms_src = inspect.getsource(fast_norm.rms_norm)
    timm_rms_norm = "torch.var (timm <= 1.0.12)" if "torch.var" in rms_src else "mean(x^2) (timm >= 1.0.13)"

    np.savez(
        a.output,
        action=action.numpy().astype(np.float32),
        cond=captured["cond"][0].numpy(),
        eps=torch.stack(captured["eps"]).numpy(),
    )
    info = {
        "weights": a.weights,
        "policy_class": f"{type(policy).__module__}.{type(policy).__qualname__}",
        "scheduler_class": f"{type(policy.noise_scheduler).__module__}.{type(policy.noise_scheduler).__qualname__}",
        "num_inference_steps": int(policy.num_inference_steps),
        "hub_models": hub_calls,
        "randn_calls": [list(c) for c in randn_calls],
        "build_s": round(build_s, 2),
        "predict_action_s": round(predict_s, 2),
        "predict_action_repeats_s": [round(s, 3) for s in repeat_s],
        "timm_rms_norm": timm_rms_norm,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "timm": timm.__version__,
                     "hydra": hydra.__version__, "python": platform.python_version()},
    }
    pathlib.Path(a.output).with_suffix(".json").write_text(json.dumps(info, indent=2))
    return 0


# ----------------------------------------------------------------------------------------------
# Our side: the project's interpreter.
# ----------------------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(f"[upstream_parity {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], what: str, env: dict | None = None) -> subprocess.CompletedProcess:
    _log(what)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO))
    if r.returncode != 0:
        raise SystemExit(f"{what} failed (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def _dexgrasp(*args: str, torch_free: bool = False) -> list[str]:
    """`dexgrasp ARGS` in a fresh interpreter of this Python; torch_free: fail if it imports torch."""
    code = (
        "import sys\nfrom runtime.cli.main import main\n"
        f"rc = main({list(args)!r})\n"
        + ("if 'torch' in sys.modules:\n    print('TORCH WAS IMPORTED', file=sys.stderr); rc = 99\n"
           if torch_free else "")
        + "sys.exit(rc)\n"
    )
    return [sys.executable, "-c", code]


def _git_head(path: pathlib.Path) -> str | None:
    r = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or None if r.returncode == 0 else None


def _compare(a, b, ref) -> dict:
    import numpy as np

    err = float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
    value_range = float(np.max(ref) - np.min(ref))
    return {"max_abs_err": err, "range": value_range, "rel_err": err / value_range if value_range else float("inf")}


def run_preset(args: argparse.Namespace, preset: str, scratch: pathlib.Path) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    from export.checkpoint import load_checkpoint
    from export.onnx_export import example_inputs

    torch.set_num_threads(args.threads)
    work = scratch / preset
    work.mkdir(parents=True, exist_ok=True)
    weights = "ema_model" if args.use_ema else "model"
    timings: dict[str, float] = {}

    # 1. checkpoint
    if args.checkpoint:
        ckpt = pathlib.Path(args.checkpoint).resolve()
    else:
        ckpt = work / f"{preset}.ckpt"
        t0 = time.perf_counter()
        _run(_dexgrasp("make-checkpoint", "--preset", preset, "--output", str(ckpt), "--seed", str(args.seed),
                       *(["--with-ema"] if args.use_ema else [])), f"dexgrasp make-checkpoint --preset {preset}")
        timings["make_checkpoint_s"] = time.perf_counter() - t0

    # 2. export
    model_dir = work / "model"
    t0 = time.perf_counter()
    _run(_dexgrasp("export", "controller", "--checkpoint", str(ckpt), "--output", str(model_dir), "--no-progress",
                   *(["--use-ema"] if args.use_ema else [])), "dexgrasp export controller")
    timings["export_s"] = time.perf_counter() - t0

    # 3. inputs (as tests/export/conftest.py save_inputs)
    loaded = load_checkpoint(ckpt, use_ema=args.use_ema)
    arch = loaded.arch
    obs = example_inputs(arch, seed=args.obs_seed)
    noise = torch.randn(1, arch.action_horizon, arch.action_dim,
                        generator=torch.Generator().manual_seed(args.noise_seed))
    obs_path, noise_path = work / "obs.npz", work / "noise.npz"
    np.savez(obs_path, **{k: v.numpy() for k, v in obs.items()})
    np.savez(noise_path, noise=noise.numpy())

    # 4. our torch-free export
    onnx_path = work / "onnx_action.npz"
    t0 = time.perf_counter()
    repeat = ("--repeat", str(args.timing_repeats + 1)) if args.timing_repeats else ()
    r = _run(_dexgrasp("infer", "--model", str(model_dir), "--obs", str(obs_path), "--noise", str(noise_path),
                       "--output", str(onnx_path), "--threads", str(args.threads), *repeat, torch_free=True),
             "dexgrasp infer (torch-free)")
    timings["onnx_infer_process_s"] = time.perf_counter() - t0
    onnx_timing = json.loads(r.stdout.strip().splitlines()[-1])
    onnx_action = np.load(onnx_path)["action"]

    # 5. our PyTorch rebuild, with the same hooks as the upstream child
    captured: dict[str, list] = {"cond": [], "eps": []}
    policy = loaded.policy
    h1 = policy.obs_encoder.register_forward_hook(lambda m, i, o: captured["cond"].append(o.detach().clone()))
    h2 = policy.model.register_forward_hook(lambda m, i, o: captured["eps"].append(o.detach().clone()))
    t0 = time.perf_counter()
    rebuild_action = policy.predict_action(obs, noise).numpy()
    timings["rebuild_predict_action_s"] = time.perf_counter() - t0
    h1.remove()
    h2.remove()
    rebuild_repeats = []
    for _ in range(args.timing_repeats):
        t0 = time.perf_counter()
        policy.predict_action(obs, noise)
        rebuild_repeats.append(time.perf_counter() - t0)
    rebuild_cond = captured["cond"][0].numpy()
    rebuild_eps = torch.stack(captured["eps"]).numpy()
    del policy, loaded

    # 6. upstream's own code
    up_path = work / "upstream.npz"
    env = dict(os.environ, XFORMERS_DISABLED="1", PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    _run([args.upstream_python, str(pathlib.Path(__file__).resolve()), "--child-upstream",
          "--upstream", str(args.upstream), "--dinov2", str(args.dinov2), "--checkpoint", str(ckpt),
          "--obs", str(obs_path), "--noise", str(noise_path), "--output", str(up_path),
          "--weights", weights, "--threads", str(args.threads), "--timing-repeats", str(args.timing_repeats)],
         "upstream predict_action (subprocess)", env=env)
    timings["upstream_process_s"] = time.perf_counter() - t0
    with np.load(up_path) as f:
        up = {k: f[k] for k in f.files}
    up_info = json.loads(up_path.with_suffix(".json").read_text())

    ref = up["action"]
    if ref.shape != onnx_action.shape or ref.shape != rebuild_action.shape:
        raise SystemExit(f"shape mismatch: upstream {ref.shape}, rebuild {rebuild_action.shape}, "
                         f"onnx {onnx_action.shape}")
    per_step = [_compare(rebuild_eps[i], up["eps"][i], up["eps"][i]) for i in range(len(up["eps"]))]
    result = {
        "preset": preset,
        "weights": weights,
        "checkpoint": str(ckpt) if args.checkpoint else f"dexgrasp make-checkpoint --preset {preset} --seed {args.seed}",
        "arch": arch.to_dict(),
        "action_shape": list(ref.shape),
        "comparisons": {
            "rebuild_vs_upstream": _compare(rebuild_action, ref, ref),
            "onnx_vs_upstream": _compare(onnx_action, ref, ref),
            "onnx_vs_rebuild": _compare(onnx_action, rebuild_action, rebuild_action),
        },
        "intermediate_rebuild_vs_upstream": {
            "obs_encoder_tokens": {**_compare(rebuild_cond, up["cond"], up["cond"]), "shape": list(up["cond"].shape)},
            "dit_eps_first_step": per_step[0],
            "dit_eps_worst_step": max(per_step, key=lambda c: c["rel_err"]),
            "dit_steps": len(per_step),
        },
        "upstream_child": up_info,
        "onnx_timing_ms": onnx_timing,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    if args.timing_repeats:
        up_s = float(np.median(up_info["predict_action_repeats_s"]))
        onnx_s = onnx_timing["total_ms"] / 1e3
        result["speed"] = {
            "repeats_after_warmup": args.timing_repeats,
            "upstream_predict_action_s_median": round(up_s, 3),
            "rebuild_predict_action_s_median": round(float(np.median(rebuild_repeats)), 3),
            "onnx_total_s_median": round(onnx_s, 3),
            "onnx_encoder_s_median": round(onnx_timing["encoder_ms"] / 1e3, 3),
            "onnx_denoise_s_median": round(onnx_timing["denoise_ms"] / 1e3, 3),
            "speedup_onnx_vs_upstream": round(up_s / onnx_s, 2),
            "speedup_onnx_vs_rebuild": round(float(np.median(rebuild_repeats)) / onnx_s, 2),
        }
    c = result["comparisons"]
    result["pass"] = {
        "rebuild_vs_upstream": c["rebuild_vs_upstream"]["rel_err"] <= args.rebuild_tolerance,
        "onnx_vs_upstream": c["onnx_vs_upstream"]["rel_err"] <= args.export_tolerance,
    }
    return result


def _summary(results: dict) -> str:
    lines = [
        "# Parity with upstream's own code",
        "",
        f"{results['date']} on {results['machine_text']}, "
        f"{results['threads']} threads. Upstream {results['upstream']['commit'] or '?'}, "
        f"dinov2 {results['dinov2']['commit'] or '?'}.",
        "",
        "Max |a - b| over the (1, 64, 13) action chunk; range = max - min of the reference chunk "
        "(upstream's, or the rebuild's for the last row).",
        "",
        "| preset | weights | comparison | max abs err | range | err / range | pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["presets"]:
        for name, comp in r["comparisons"].items():
            ok = r["pass"].get(name)
            lines.append(f"| {r['preset']} | {r['weights']} | {name.replace('_', ' ')} | {comp['max_abs_err']:.3g} | "
                         f"{comp['range']:.4g} | {comp['rel_err']:.3g} | {'' if ok is None else ('yes' if ok else 'NO')} |")
    lines += ["", "Intermediate outputs, our rebuild vs upstream:", "",
              "| preset | output | max abs err | range | err / range |", "|---|---|---|---|---|"]
    for r in results["presets"]:
        for name, comp in r["intermediate_rebuild_vs_upstream"].items():
            if isinstance(comp, dict):
                lines.append(f"| {r['preset']} | {name} | {comp['max_abs_err']:.3g} | {comp['range']:.4g} | "
                             f"{comp['rel_err']:.3g} |")
    timed = [r for r in results["presets"] if "speed" in r]
    if timed:
        lines += ["", "Speed, same run, medians after a warm-up (seconds per predict_action / inference):", "",
                  "| preset | upstream predict_action | our rebuild (eager) | exported (ONNX Runtime) | "
                  "speed-up vs upstream | vs rebuild |", "|---|---|---|---|---|---|"]
        for r in timed:
            s = r["speed"]
            lines.append(f"| {r['preset']} | {s['upstream_predict_action_s_median']:.2f} | "
                         f"{s['rebuild_predict_action_s_median']:.2f} | {s['onnx_total_s_median']:.2f} "
                         f"(encoder {s['onnx_encoder_s_median']:.2f} + denoise {s['onnx_denoise_s_median']:.2f}) | "
                         f"{s['speedup_onnx_vs_upstream']:.2f}x | {s['speedup_onnx_vs_rebuild']:.2f}x |")
    lines += ["", "Upstream child: " + "; ".join(
        f"{r['preset']}: {r['upstream_child']['policy_class']}, {r['upstream_child']['scheduler_class']}, "
        f"hub models {r['upstream_child']['hub_models']}, timm RmsNorm {r['upstream_child']['timm_rms_norm']}, "
        f"predict_action {r['upstream_child']['predict_action_s']} s, "
        f"versions {r['upstream_child']['versions']}" for r in results["presets"]), ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog="python benchmarks/upstream_parity.py",
        description=doc.split("\n\n")[0] + "\n\n" + doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--upstream", required=True, type=pathlib.Path, metavar="DIR",
                   help="work tree of github Psi-Robot/DexGraspVLA (holds controller/ and inference.py)")
    p.add_argument("--dinov2", required=True, type=pathlib.Path, metavar="DIR",
                   help="work tree of github facebookresearch/dinov2 (holds hubconf.py); used instead of torch.hub's "
                        "download, weights are not downloaded")
    p.add_argument("--upstream-python", required=True, metavar="PY",
                   help="Python interpreter with upstream's dependencies (torch, torchvision, timm, einops, hydra-core, "
                        "diffusers, dill, scipy, zarr)")
    p.add_argument("--preset", action="append", choices=("small", "dexgraspvla"),
                   help="architecture of the generated checkpoint; repeat for several (default: small)")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="use this upstream workspace checkpoint instead of generating one (its cfg defines the "
                        "architecture; --preset is then ignored)")
    p.add_argument("--use-ema", action="store_true",
                   help="compare the EMA weights (state_dicts.ema_model); generated checkpoints get --with-ema")
    p.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR",
                   help="where to write results.json and summary.md")
    p.add_argument("--seed", type=int, default=7, help="weights seed of the generated checkpoint (default 7)")
    p.add_argument("--obs-seed", type=int, default=5, help="seed of the observations (default 5)")
    p.add_argument("--noise-seed", type=int, default=3, help="seed of the initial DDIM noise (default 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch / ONNX Runtime threads")
    p.add_argument("--rebuild-tolerance", type=float, default=REBUILD_TOLERANCE,
                   help=f"pass if rebuild vs upstream err / range <= this (default {REBUILD_TOLERANCE:g})")
    p.add_argument("--export-tolerance", type=float, default=EXPORT_TOLERANCE,
                   help=f"pass if onnx vs upstream err / range <= this (default {EXPORT_TOLERANCE:g})")
    p.add_argument("--timing-repeats", type=int, default=0, metavar="N",
                   help="also time N more calls of each side after the parity call (the warm-up) and report "
                        "medians and the speed-up of the export over upstream's own predict_action (default 0: "
                        "parity only). Run it on an otherwise idle machine.")
    p.add_argument("--scratch", type=pathlib.Path, metavar="DIR",
                   help="parent of the scratch directory (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (checkpoints, models, npz)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-upstream"]:
        return child_upstream(argv[1:])
    args = build_parser().parse_args(argv)
    for name in ("upstream", "dinov2"):
        path = getattr(args, name).resolve()
        must = "controller/policy/dexgraspvla_controller.py" if name == "upstream" else "hubconf.py"
        if not (path / must).is_file():
            raise SystemExit(f"--{name} {path}: no {must} there")
        setattr(args, name, path)
    presets = ["checkpoint"] if args.checkpoint else (args.preset or ["small"])
    args.out.mkdir(parents=True, exist_ok=True)
    from benchmarks.common.machine import describe, machine_info

    results = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(REPO),
        "machine_text": "",
        "threads": args.threads,
        "upstream": {"path": str(args.upstream), "commit": _git_head(args.upstream)},
        "dinov2": {"path": str(args.dinov2), "commit": _git_head(args.dinov2)},
        "tolerances": {"rebuild_vs_upstream": args.rebuild_tolerance, "onnx_vs_upstream": args.export_tolerance},
        "presets": [],
    }
    results["machine_text"] = describe(results["machine"])
    for preset in presets:
        scratch = pathlib.Path(tempfile.mkdtemp(prefix=f"upstream-parity-{preset}-", dir=args.scratch))
        try:
            _log(f"preset {preset}: scratch {scratch}")
            results["presets"].append(run_preset(args, preset, scratch))
        finally:
            if args.keep:
                _log(f"kept {scratch}")
            else:
                shutil.rmtree(scratch, ignore_errors=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        (args.out / "summary.md").write_text(_summary(results))
    print(_summary(results))
    ok = all(all(r["pass"].values()) for r in results["presets"])
    return 0 if ok else 1


if __name__ == "__main__":
    if str(REPO) not in sys.path and sys.argv[1:2] != ["--child-upstream"]:
        sys.path.insert(0, str(REPO))
    sys.exit(main())
