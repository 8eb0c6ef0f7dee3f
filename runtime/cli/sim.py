"""`dexgrasp sim collect`: scripted-expert demonstrations on the MuJoCo tabletop (docs/sim.md)."""

from __future__ import annotations

import argparse

from runtime.cli.argtypes import number

DESCRIPTION = """\
Record demonstrations of the scripted expert (privileged object pose, IK: approach, pre-shape,
close, lift) running as the policy inside the whole runtime on configs/mujoco.yaml: planner (local
backend) -> box -> tracker -> expert -> timed chunks -> safety -> the simulated robot. Episodes go
through the runtime's recorder into DexGraspVLA's zarr layout (tracker masks in rgbm). Success is
judged by physics (the target lifted and held). Episode k uses scene seed --seed + k. Writes
DIR/collect.json; the last printed line is one JSON object (episodes, success_rate, ...).

Example:
  dexgrasp sim collect --episodes 20 --output demos/
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("sim", help="the MuJoCo tabletop: collect expert demonstrations",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    c = sub.add_parser("collect", help="record scripted-expert episodes", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--episodes", type=number(int, 1, 100000), required=True)
    c.add_argument("--output", required=True, metavar="DIR", help="recording directory")
    c.add_argument("--config", default="mujoco", help="a config with bridge/cameras kind mujoco: a YAML file or a shipped preset name (default: the mujoco preset)")
    c.add_argument("--seed", type=number(int, 0), default=0, help="scene seed of the first episode")
    c.add_argument("--timeout-s", type=number(float, 1.0, 3600.0), default=40.0, help="per episode")
    c.set_defaults(func=run_collect)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_collect(args: argparse.Namespace) -> int:
    import json

    from runtime.sim.collect import collect

    def show(r) -> None:
        print(f"episode {r.episode} (seed {r.seed}, {r.target}): {'success' if r.success else 'FAIL'} "
              f"({r.outcome}, max lift {r.max_lift_m * 100:.1f} cm)", flush=True)

    summary = collect(args.config, args.episodes, args.output, first_seed=args.seed, timeout_s=args.timeout_s,
                      on_episode=show)
    print(json.dumps({k: v for k, v in summary.items() if k != "per_episode"}))
    return 0
