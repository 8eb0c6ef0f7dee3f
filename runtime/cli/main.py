"""Entry point of the `dexgrasp` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from runtime import __version__
from runtime.errors import DexGraspError

# name -> module with `register(subparsers)`; order is the order shown in --help.
COMMANDS = {
    "demo": "runtime.cli.demo",
    "run": "runtime.cli.run",
    "check": "runtime.cli.check",
    "export": "runtime.cli.export",
    "infer": "runtime.cli.infer",
    "engine": "runtime.cli.engine",
    "make-checkpoint": "runtime.cli.make_checkpoint",
    "bridge": "runtime.cli.bridge",
    "planner": "runtime.cli.planner",
    "ctl": "runtime.cli.ctl",
    "track": "runtime.cli.track",
    "bench": "runtime.cli.bench",
    "data": "runtime.cli.data",
    "eval-offline": "runtime.cli.eval_offline",
    "train": "runtime.cli.train",
    "sim": "runtime.cli.sim",
    "eval": "runtime.cli.eval",
}

DESCRIPTION = """\
dexgraspvla-runtime: export DexGraspVLA checkpoints, run them on the robot, profile latency.

The three things you do with it:
  1. export a trained checkpoint:   dexgrasp export controller --checkpoint CKPT --output DIR
  2. run the onboard runtime:       dexgrasp run --config configs/sim.yaml
  3. profile latency:               dexgrasp bench --quick --out bench-out

Start with `dexgrasp demo`: it makes a small random-weight checkpoint, exports it, starts the
firmware emulator and runs the simulated robot for a bounded time.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dexgrasp", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        # command modules import only the standard library at module level (no torch, no numpy)
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a `dexgrasp` subcommand.

    Example: dexgrasp demo --duration 20
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except DexGraspError as exc:
        print(f"dexgrasp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dexgrasp {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
