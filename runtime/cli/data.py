"""`dexgrasp data`: recorded episodes for trainers (LeRobot export) and for people (`info`)."""

from __future__ import annotations

import argparse

from runtime.cli.argtypes import number

DESCRIPTION = """\
Work with recorded episodes (the `recording:` section / `--record DIR` of `dexgrasp run`).

  export-lerobot  write a LeRobot dataset (format v3.0, lerobot 0.4): parquet frames, H.264 videos
                  (head, wrist, mask), tasks = the planner's instruction, stats, provenance.
                  Frames are resampled to --fps by sample-and-hold (docs/data.md).
  info            counts, health (every checksum) and provenance of each episode.

Examples:
  dexgrasp data export-lerobot --episodes recordings/ --output datasets/grasp --repo-id me/grasp
  dexgrasp data info recordings/
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="export recorded episodes (LeRobot) and inspect them",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    e = sub.add_parser("export-lerobot", help="write a LeRobot dataset from recorded episodes")
    e.add_argument("--episodes", required=True, metavar="DIR", help="recording directory (or one episode)")
    e.add_argument("--output", required=True, metavar="DIR", help="new dataset directory (must not exist)")
    e.add_argument("--repo-id", default="dexgrasp/recordings", help="dataset name (default dexgrasp/recordings)")
    e.add_argument("--fps", type=number(int, 1, 1000), default=20,
                   help="frame rate of the dataset (default 20: the policy's action spacing)")
    e.add_argument("--config", metavar="CONFIG", help="take joint names/limits from this runtime config's robot "
                   "section instead of the episodes' recorded provenance")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=run_export)
    i = sub.add_parser("info", help="counts, health and provenance of recorded episodes")
    i.add_argument("dir", metavar="DIR", help="recording directory (or one episode)")
    i.add_argument("--json", action="store_true", help="print the full report (with configs) as JSON")
    i.add_argument("--quick", action="store_true", help="sizes only, no checksums")
    i.set_defaults(func=run_info)


def run_export(args: argparse.Namespace) -> int:
    import json

    from runtime.data.lerobot import export_lerobot

    robot = None
    if args.config:
        from runtime.config import load_config

        robot = load_config(args.config).robot.model_dump()
    summary = export_lerobot(args.episodes, args.output, repo_id=args.repo_id, fps=args.fps, robot=robot,
                             progress=not args.no_progress)
    print(f"wrote {summary['output']}: {summary['episodes']} episode(s), {summary['frames']} frames at "
          f"{summary['fps']} Hz, {len(summary['tasks'])} task(s)")
    print(json.dumps(summary))
    return 0


def run_info(args: argparse.Namespace) -> int:
    import json

    from runtime.data.info import directory_info, format_info

    report = directory_info(args.dir, verify=not args.quick)
    print(json.dumps(report, indent=1, default=str) if args.json else format_info(report))
    bad = sum(n for h, n in report["health"].items() if h != "ok")
    return 1 if bad else 0
