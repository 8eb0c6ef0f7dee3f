"""`dexgrasp export tracker` arguments and entry point (standard library only at module level).

runtime/cli/export.py registers this lazily: `add_arguments(parser)` then `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import pathlib

DESCRIPTION = """\
Export upstream's learned tracker: Cutie (mask tracking, rf-cutie package) split into three
fixed-shape per-frame graphs, and optionally SAM (box -> mask) as encoder + decoder graphs,
with a manifest.json the onboard runtime verifies. Needs the `export` extra plus rf-cutie
(and segment-anything for SAM).

examples:
  dexgrasp export tracker --cutie-checkpoint cutie-base-mega.pth \\
      --sam-checkpoint sam_vit_h_4b8939.pth --sam-type vit_h --output models/tracker
  dexgrasp export tracker --random-init --cutie-config small --with-sam --sam-type vit_b \\
      --output /tmp/tracker-demo          # random weights, for tests and demos
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    src = parser.add_argument_group("weights")
    src.add_argument("--cutie-checkpoint", type=pathlib.Path, help="Cutie state dict (e.g. cutie-base-mega.pth)")
    src.add_argument("--cutie-config", choices=("base", "small"), default="base",
                     help="Cutie model config the checkpoint was trained with (default: base, as upstream)")
    src.add_argument("--sam-checkpoint", type=pathlib.Path, help="SAM checkpoint (e.g. sam_vit_h_4b8939.pth)")
    src.add_argument("--sam-type", choices=("vit_h", "vit_l", "vit_b"), default="vit_h",
                     help="SAM architecture of --sam-checkpoint (default: vit_h)")
    src.add_argument("--random-init", action="store_true",
                     help="random weights instead of checkpoints (saved beside the graphs for parity checks)")
    src.add_argument("--with-sam", action="store_true", help="with --random-init: also export a random SAM")
    src.add_argument("--seed", type=int, default=0, help="seed for --random-init (default: 0)")
    shape = parser.add_argument_group("shapes")
    shape.add_argument("--height", type=int, default=480, help="camera frame height (default: 480)")
    shape.add_argument("--width", type=int, default=640, help="camera frame width (default: 640)")
    shape.add_argument("--objects", choices=("target", "target-and-background"), default="target",
                       help="target: the target only (object id 1), as upstream's inference.py does "
                            "(default); target-and-background: also background as object 0 (twice the work)")
    parser.add_argument("--output", type=pathlib.Path, required=True, help="export directory")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="TensorRT engine precision (ONNX graphs stay fp32; default: fp32)")
    parser.add_argument("--tensorrt", action="store_true",
                        help="also build TensorRT engines (on the target: Jetson / NVIDIA GPU)")


def run(args: argparse.Namespace) -> int:
    from export.tracker.exporter import TrackerExportRequest, export_tracker, summary

    req = TrackerExportRequest(
        output=args.output, cutie_checkpoint=args.cutie_checkpoint, cutie_config=args.cutie_config,
        sam_checkpoint=args.sam_checkpoint, sam_type=args.sam_type, random_init=args.random_init,
        with_sam=args.with_sam, seed=args.seed, height=args.height, width=args.width, objects=args.objects,
        precision=args.precision, tensorrt=args.tensorrt)
    print(summary(export_tracker(req)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: python -m export.tracker.cli --random-init --cutie-config small --output /tmp/t"""
    parser = argparse.ArgumentParser(prog="dexgrasp export tracker")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
