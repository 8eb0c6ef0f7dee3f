"""`dexgrasp make-checkpoint`: a random-weight controller checkpoint in upstream's format."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write a randomly initialised DexGraspVLA controller checkpoint in the upstream workspace format
(torch.save with dill: cfg + state_dicts.model, upstream parameter names, a fitted action
normalizer). Use it to try the export and runtime without a trained model.

Presets: dexgraspvla (the paper's sizes: ViT-B/14 head, ViT-L/14 wrist, 12-layer DiT, ~1.7 GB)
         small       (ViT-S/14 head and wrist, 4-layer DiT; quick on a CPU)

Example:
  dexgrasp make-checkpoint --preset small --output models/small.ckpt --seed 0
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-checkpoint", help="write a random-weight checkpoint in upstream format",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", required=True, help="architecture preset: dexgraspvla or small")
    p.add_argument("--output", required=True, metavar="CKPT", help="checkpoint file to write (.ckpt)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    p.add_argument("--with-ema", action="store_true",
                   help="also store (slightly perturbed) EMA weights, as a run with training.use_ema does")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pathlib
    import time

    from export.model.arch import get_preset
    from export.random_init import make_checkpoint

    arch = get_preset(args.preset)
    t0 = time.perf_counter()
    path = make_checkpoint(arch, args.output, seed=args.seed, with_ema=args.with_ema)
    size_mb = pathlib.Path(path).stat().st_size / 1e6
    print(f"wrote {path} ({size_mb:.1f} MB, preset {args.preset}, seed {args.seed}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0
