"""`dexgrasp train`: train the controller on recorded episodes (torch side; imported lazily)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train a DexGraspVLA controller on episodes the runtime recorded (DexGraspVLA's zarr layout) with
upstream's training semantics (epsilon-prediction DDPM loss with noise assignment, 'limits'
normalizer, AdamW + cosine warmup, gradient clip 0.5, optional EMA, frozen DINOv2), and write an
upstream-format checkpoint that `dexgrasp export controller` takes. Pretrained DINOv2 weights
cannot be downloaded: the frozen encoders keep the weights of --init (or a random init).

Joint layout: upstream's 13 joints (7 arm + 6 hand) unless --config names the robot config the
episodes were recorded with; the model then reads and writes that robot's joints, and episodes of
another width are refused.

Example:
  dexgrasp train --episodes rec/ --preset small --output models/trained.ckpt --steps 2000 --cache-features
  dexgrasp train --episodes rec/ --preset small --config configs/my_robot.yaml --output models/my_robot.ckpt
  dexgrasp export controller --checkpoint models/trained.ckpt --output models/trained
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the controller on recorded episodes",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", required=True, metavar="DIR", help="recording directory (episode_*/)")
    p.add_argument("--output", required=True, metavar="CKPT", help="checkpoint to write (.ckpt)")
    p.add_argument("--preset", help="architecture: small or dexgraspvla (optional with --init)")
    p.add_argument("--init", metavar="CKPT", help="start from this checkpoint's weights (e.g. make-checkpoint)")
    p.add_argument("--config", metavar="ROBOT.yaml",
                   help="the robot config whose joint space sizes the model (default: upstream's 7 arm + 6 hand)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8; upstream 48)")
    p.add_argument("--seed", type=int, default=42, help="seed (default 42, upstream's)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4, upstream's)")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="linear warmup steps (default min(2000, steps/10); upstream 2000)")
    p.add_argument("--ema", action="store_true", help="keep EMA weights (upstream EMAModel, power 0.75)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="forward in bf16 autocast (auto: when the CPU has AMX-BF16) or fp32")
    p.add_argument("--cache-features", action="store_true",
                   help="compute DINOv2 features once per frame (turns upstream's colour jitter off)")
    p.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--cache-dir", metavar="DIR", help="keep the feature cache in memory maps here, not in RAM")
    p.add_argument("--action-rate-hz", type=float, default=20.0, metavar="HZ",
                   help="one action step per 1/HZ s: the runtime's control.action_rate_hz (default 20, "
                        "upstream's); episodes are resampled to it whatever their camera rate")
    p.add_argument("--trust-checkpoint", action="store_true", help="full unpickling of --init (trusted files only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from runtime.errors import MissingExtraError

    try:
        from export.train import TrainConfig, train
    except ImportError as exc:
        raise MissingExtraError(f"dexgrasp train needs the train extra (pip install -e '.[train]'): {exc}") from exc
    from runtime.cli.make_checkpoint import joint_layout

    joints = joint_layout(args.config).n if args.config else None
    cfg = TrainConfig(
        episodes=args.episodes, output=args.output, preset=args.preset, init=args.init, joints=joints, steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, lr=args.lr, warmup_steps=args.warmup_steps,
        use_ema=args.ema, precision=args.precision, cache_features=args.cache_features,
        cache_dtype=args.cache_dtype, cache_dir=args.cache_dir, trust_checkpoint=args.trust_checkpoint,
        progress=not args.no_progress,
        action_rate_hz=args.action_rate_hz,
    )
    s = train(cfg)
    print(f"trained {s['arch']}")
    print(f"  data      {s['episodes']} episodes, {s['frames_recorded']} frames recorded at "
          f"{s['recorded_fps'] or 0:.1f} fps (median), {s['frames_used']} used on the {s['action_rate_hz']:g} Hz "
          f"action grid, {s['samples']} windows")
    print(f"  scenes    sim scene seeds {s['scene_seeds']} (recorded in the checkpoint; `dexgrasp eval` refuses them)")
    print(f"  run       {s['steps']} steps x batch {s['batch_size']} ({s['epochs']} epochs), {s['precision']}, "
          f"features cache {s['feature_cache']}, jitter {'on' if s['color_jitter'] else 'off'}, "
          f"EMA {'on' if s['ema'] else 'off'}, warmup {s['warmup_steps']}")
    print(f"  loss      {s['first_loss']:.4f} -> {s['final_loss']:.4f}; action MSE {s['action_mse']:.4f}")
    print(f"  speed     {s['steps_per_s']} steps/s ({s['train_s']} s)")
    print(f"  note      {s['dino_weights']}")
    print(f"  wrote     {s['checkpoint']} (log {s['log']}" + (f", plot {s['plot']})" if "plot" in s else ")"))
    print(json.dumps({k: s[k] for k in ("checkpoint", "steps", "final_loss", "steps_per_s", "action_mse")}))
    return 0
