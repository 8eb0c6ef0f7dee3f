"""`dexgrasp make-checkpoint`: a random-weight controller checkpoint in upstream's format."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write a randomly initialised DexGraspVLA controller checkpoint in the upstream workspace format
(torch.save with dill: cfg + state_dicts.model, upstream parameter names, a fitted action
normalizer). Use it to try the export and runtime without a trained model.

Presets: dexgraspvla (the paper's sizes: ViT-B/14 head, ViT-L/14 wrist, 12-layer DiT, ~1.7 GB)
         small       (ViT-S/14 head and wrist, 4-layer DiT; quick on a CPU)

Joint layout: upstream's 13 joints (7 arm + 6 hand) unless --config names a robot config; then the
model reads and writes that robot's joints (robot.arm_joint_names + robot.hand_joint_names, in
that order), the same joint space `dexgrasp run --config` checks the model against. A model for
another layout than upstream's cannot be loaded by upstream's own code (it hard-codes 13).

Examples:
  dexgrasp make-checkpoint --preset small --output models/small.ckpt --seed 0
  dexgrasp make-checkpoint --preset small --config configs/my_robot.yaml --output models/my_robot.ckpt
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-checkpoint", help="write a random-weight checkpoint in upstream format",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", required=True, help="architecture preset: dexgraspvla or small")
    p.add_argument("--output", required=True, metavar="CKPT", help="checkpoint file to write (.ckpt)")
    p.add_argument("--config", metavar="ROBOT.yaml",
                   help="size the model for this config's robot joint space (default: upstream's 7 arm + 6 hand)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    p.add_argument("--with-ema", action="store_true",
                   help="also store (slightly perturbed) EMA weights, as a run with training.use_ema does")
    p.set_defaults(func=run)


def joint_layout(config: str | None):
    """The JointSpace of `config`'s robot section (the upstream default without one)."""
    from runtime.joint_space import JointSpace

    if config is None:
        return JointSpace.from_config({})
    from runtime.config import load_config

    return load_config(config).robot.joint_space()


def describe_layout(space) -> str:
    return f"{space.n} joints ({space.n_arm} arm + {space.n_hand} hand)"


def run(args: argparse.Namespace) -> int:
    import pathlib
    import time

    from export.model.arch import get_preset
    from export.random_init import make_checkpoint

    space = joint_layout(args.config)
    arch = get_preset(args.preset, space.n)
    t0 = time.perf_counter()
    path = make_checkpoint(arch, args.output, seed=args.seed, with_ema=args.with_ema, n_hand=space.n_hand)
    size_mb = pathlib.Path(path).stat().st_size / 1e6
    print(f"wrote {path} ({size_mb:.1f} MB, preset {args.preset}, {describe_layout(space)}, seed {args.seed}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0
