"""`dexgrasp export controller|tracker`: turn trained checkpoints into onboard model directories."""

from __future__ import annotations

import argparse
import importlib
import logging

DESCRIPTION = """\
Export trained models for the onboard runtime.

  dexgrasp export controller --checkpoint CKPT --output DIR [--precision fp32|fp16] [--tensorrt]

writes DIR/encoder.onnx, DIR/denoiser.onnx and DIR/manifest.json (names, shapes, normalizer,
DDIM schedule, hashes). Run `dexgrasp export controller --help` for the details.
"""

CONTROLLER_DESCRIPTION = """\
Export a DexGraspVLA controller checkpoint to ONNX (and optionally TensorRT engines).

CKPT is an upstream workspace checkpoint (.ckpt: cfg + state_dicts.model / ema_model), whose cfg
defines the architecture, or a plain state dict plus --preset. The observation K/V of the DiT's
cross-attention is computed once per inference by the encoder graph, not at each DDIM step.

Examples:
  dexgrasp export controller --checkpoint models/small.ckpt --output models/small
  dexgrasp export controller --checkpoint epoch=0100.ckpt --use-ema --output models/robot --tensorrt --precision fp16
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export checkpoints to ONNX / TensorRT", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="export_target", metavar="TARGET")
    c = sub.add_parser("controller", help="export a controller checkpoint", description=CONTROLLER_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--checkpoint", required=True, metavar="CKPT", help="upstream .ckpt or plain state dict")
    c.add_argument("--output", required=True, metavar="DIR", help="model directory to write")
    c.add_argument("--preset", help="architecture of a plain state dict (dexgraspvla or small)")
    c.add_argument("--use-ema", action="store_true", help="export the EMA weights (state_dicts.ema_model)")
    c.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="graph precision (fp16 is for GPUs; inputs and outputs stay float32)")
    c.add_argument("--tensorrt", action="store_true",
                   help="also build TensorRT engines (needs TensorRT and a GPU: the `gpu` extra)")
    c.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache to reuse and update")
    c.add_argument("--with-uncached", action="store_true",
                   help="also export denoiser_uncached.onnx (upstream's per-step K/V; for benchmarks)")
    c.add_argument("--rmsnorm", choices=("timm-1.0.12", "mean-square"), default="timm-1.0.12",
                   help="RmsNorm formula the checkpoint was trained with: timm-1.0.12 (upstream's pin: "
                        "unbiased variance) or mean-square (timm >= 1.0.13); recorded in the manifest")
    c.add_argument("--trust-checkpoint", action="store_true",
                   help="fully unpickle CKPT (can run arbitrary code): only for files you trust")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.set_defaults(func=run_controller)
    _register_tracker(sub)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _register_tracker(sub) -> None:
    """`export tracker` lives in export/tracker/cli.py (stdlib-only at import); omitted if absent."""
    try:
        tracker_cli = importlib.import_module("export.tracker.cli")
    except ModuleNotFoundError as exc:
        if exc.name in ("export.tracker", "export.tracker.cli"):
            return
        raise
    if not (callable(getattr(tracker_cli, "add_arguments", None)) and callable(getattr(tracker_cli, "run", None))):
        logging.getLogger(__name__).warning("export.tracker.cli lacks add_arguments()/run(); `export tracker` omitted")
        return
    t = sub.add_parser("tracker", help="export the mask tracker",
                       description=getattr(tracker_cli, "DESCRIPTION", None),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    tracker_cli.add_arguments(t)
    t.set_defaults(func=tracker_cli.run)


def run_controller(args: argparse.Namespace) -> int:
    import json
    import time

    from export.checkpoint import load_checkpoint
    from export.onnx_export import export_controller

    t0 = time.perf_counter()
    print(f"loading {args.checkpoint} ...", flush=True)
    ckpt = load_checkpoint(args.checkpoint, preset=args.preset, use_ema=args.use_ema,
                           trust_checkpoint=args.trust_checkpoint)
    a = ckpt.arch
    print(f"architecture: head {a.head_model_type}, wrist {a.wrist_model_type}, DiT {a.n_layer} layers x "
          f"{a.n_head} heads (width {a.feature_dim}), action {a.action_horizon}x{a.action_dim}, "
          f"{a.num_inference_steps} DDIM steps; weights: {ckpt.weights}", flush=True)
    manifest = export_controller(ckpt, args.output, precision=args.precision,
                                 with_uncached=args.with_uncached, progress=not args.no_progress,
                                 rmsnorm=args.rmsnorm)
    if args.tensorrt:
        from export.tensorrt_build import build_engines

        manifest = build_engines(args.output, manifest, fp16=args.precision == "fp16",
                                 timing_cache=args.timing_cache, progress=not args.no_progress)
    summary = {name: g.file for name, g in manifest.graphs.items()}
    print(f"wrote {args.output}: {json.dumps(summary)} + manifest.json "
          f"({args.precision}) in {time.perf_counter() - t0:.1f} s")
    return 0
