"""`dexgrasp demo`: the whole pipeline on the simulated robot, for a bounded time."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

DESCRIPTION = """\
Run the embedded default end to end: make a small random-weight checkpoint (unless --checkpoint is
given), export it to ONNX, start the firmware emulator on a pseudo-terminal, and run
configs/sim.yaml (synthetic cameras, classical tracker, local planner, 200 Hz control loop) for a
bounded time. Prints a summary of what ran and how fast. The exported model is cached, so only the
first demo needs torch and takes a minute or two longer.

Examples:
  dexgrasp demo
  dexgrasp demo --duration 20 --report demo.json
  dexgrasp demo --checkpoint models/my_policy.ckpt
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the simulated robot end to end (start here)", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=40.0, metavar="S", help="how long to run (default 40 s)")
    p.add_argument("--checkpoint", metavar="CKPT", help="use this checkpoint instead of a random-weight one")
    p.add_argument("--config", default="sim", metavar="CONFIG", help="config to run (default: sim)")
    p.add_argument("--report", metavar="FILE", help="also write the JSON report here")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Example: dexgrasp demo --duration 30"""
    from runtime.cli.run import format_summary, run_app, write_report
    from runtime.config import load_config
    from runtime.config.models import cache_root, ensure_model
    from runtime.errors import ConfigError

    if not args.duration > 0:
        raise ConfigError(f"--duration must be positive, got {args.duration}")
    cfg = load_config(args.config)
    model_dir = None
    if cfg.policy.backend != "fake" and not cfg.policy.model_dir:
        if args.checkpoint:
            ckpt = Path(args.checkpoint)
            if not ckpt.is_file():
                raise ConfigError(f"--checkpoint {ckpt}: no such file")
            key = hashlib.sha256(f"{ckpt.resolve()}:{ckpt.stat().st_mtime_ns}:{ckpt.stat().st_size}".encode()).hexdigest()[:12]
            model_dir = ensure_model(checkpoint=ckpt, out_dir=cache_root() / f"{ckpt.stem}-{key}")
        else:
            model_dir = ensure_model(cfg.policy.preset, cfg.policy.seed, robot=cfg.robot)
        print(f"dexgrasp demo: controller {model_dir}", file=sys.stderr)
    report = run_app(cfg, duration_s=args.duration, quiet=args.quiet, model_dir=model_dir)
    if args.report:
        write_report(report, args.report)
    print(format_summary(report))
    return 0
