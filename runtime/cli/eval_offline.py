"""`dexgrasp eval-offline`: an exported controller on recorded observations vs the executed commands."""

from __future__ import annotations

import argparse

from runtime.cli.argtypes import number

DESCRIPTION = """\
Run an exported controller open-loop on recorded episodes and compare its action chunks with the
commands the robot executed (same noise seed per step for every engine). Prints per episode and
overall MAE / RMSE / max error (model space: arm [-1, 1], hand 0..1); with two precisions
(--precision fp32,bf16) also how closely they agree. Does not import torch.

Example:
  dexgrasp eval-offline --model models/small --episodes recordings/ --stride 20 --plot eval-plots
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("eval-offline", help="compare a controller's actions with recorded episodes",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR", help="exported model directory (manifest.json)")
    p.add_argument("--episodes", required=True, metavar="DIR", help="recording directory (or one episode)")
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt"), default="onnxruntime")
    p.add_argument("--precision", default="fp32",
                   help="one precision, or two comma separated to compare (fp32, bf16, fp16, int8)")
    p.add_argument("--allow-unverified", action="store_true",
                   help="run a reduced precision without a passing `dexgrasp engine verify`")
    p.add_argument("--stride", type=number(int, 1, 100000), default=10, help="evaluate every Nth frame (default 10)")
    p.add_argument("--max-steps", type=number(int, 1, 10**7), help="at most N evaluated frames per episode")
    p.add_argument("--seed", type=number(int, 0), default=0, help="noise seed base: step k uses seed+k")
    p.add_argument("--output", metavar="REPORT.json", help="write the full report (with traces) as JSON")
    p.add_argument("--plot", metavar="DIR", help="one PNG per episode with a panel per joint (matplotlib)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from runtime.data import DataError
    from runtime.data.offline_eval import evaluate, plot

    precisions = tuple(x.strip() for x in args.precision.split(",") if x.strip())
    bad = [p for p in precisions if p not in ("fp32", "bf16", "fp16", "int8")]
    if bad or not 1 <= len(precisions) <= 2:
        raise DataError(f"--precision: expected one or two of fp32, bf16, fp16, int8, got {args.precision!r}")
    report = evaluate(args.model, args.episodes, backend=args.backend, precisions=precisions, stride=args.stride,
                      seed=args.seed, max_steps=args.max_steps, allow_unverified=args.allow_unverified,
                      progress=not args.no_progress)
    for row in report["episodes"] + [{"episode": "overall", **report["overall"]}]:
        parts = []
        for p in precisions:
            s = row.get(p, {})
            if s.get("n"):
                parts.append(f"{p}: MAE {s['mae']:.4f} RMSE {s['rmse']:.4f} max {s['max_abs']:.4f} ({s['n']} actions)")
        if "agreement" in row:
            parts.append(f"agreement max {row['agreement']['max_abs']:.2e} mean {row['agreement']['mean_abs']:.2e}")
        print(f"{row['episode']}: " + "; ".join(parts))
    if args.output:
        try:
            with open(args.output, "w") as f:
                json.dump(report, f, indent=1)
        except OSError as exc:
            raise DataError(f"--output '{args.output}': cannot write: {exc.strerror or exc}") from exc
    if args.plot:
        for path in plot(report, args.plot):
            print(f"wrote {path}")
    print(json.dumps({"overall": report["overall"]}))
    return 0
