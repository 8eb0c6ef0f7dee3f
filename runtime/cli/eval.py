"""`dexgrasp eval`: closed-loop evaluation of an exported controller on the MuJoCo tabletop (docs/sim.md)."""

from __future__ import annotations

import argparse

from runtime.cli.argtypes import number

DESCRIPTION = """\
Run K episodes of the whole runtime on the MuJoCo tabletop with the exported controller at --model
driving the robot: planner (local backend, rendered head image) -> box -> tracker -> controller ->
chunk execution -> safety -> the simulated robot. Episode k uses scene seed --seed + k and the
target collect would prompt for it. Success is judged by physics (the target lifted 6 cm and held
1 s); a failure gets a cause from what physics saw: runtime_error, planner_failed, no_inference,
never_reached, never_closed, closed_empty, dropped, timeout.

Evaluation seeds must not be training scenes: `dexgrasp train` records its episodes' scene seeds
and the export carries them in manifest.json; overlapping seeds are refused (--allow-seed-overlap
to evaluate on them anyway). A reduced precision (--backend openvino --precision bf16) starts only
after a passing `dexgrasp engine verify --model DIR --backend openvino --precision bf16
--episodes DEMOS/` is recorded in the manifest, as for `dexgrasp run`.

--report FILE: JSON with every episode (seed, target, success, time to grasp, max lift, closest
approach, hand closure, failure cause, episode outcome, the planner's verdict, loop p99 lateness and
missed cycles, inference latency) and the summary. --video-dir DIR: one H.264 video per episode
(head | wrist | mask, labelled with phase and outcome). The last printed line is one JSON object:
episodes, successes, success_rate, median_time_to_grasp_s, failures_by_cause,
control_p99_lateness_us_max, missed_cycles_total, seeds, backend, precision, execution_mode.

Examples:
  dexgrasp eval --model models/trained --episodes 10 --seed 10000 --report eval.json
  dexgrasp eval --model models/trained --episodes 10 --seed 10000 --execution-mode upstream --video-dir videos/
  dexgrasp engine verify --model models/trained --backend openvino --precision bf16 --episodes demos/
  dexgrasp eval --model models/trained --episodes 10 --seed 10000 --backend openvino --precision bf16
"""


# The config schema's values (policy.backend / policy.precision / execution.mode); literal here
# because command modules import only the standard library when the parser is built.
BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
EXECUTION_MODES = ("timed", "upstream", "auto")


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate an exported controller on the MuJoCo tabletop",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR", help="exported controller (dexgrasp export controller)")
    p.add_argument("--episodes", type=number(int, 1, 100000), required=True, metavar="K")
    p.add_argument("--seed", type=number(int, 0), required=True, metavar="S",
                   help="scene seed of the first episode (held out: not a training seed)")
    p.add_argument("--config", default="mujoco", help="a config with bridge/cameras kind mujoco: a YAML file or a shipped preset name (default: the mujoco preset)")
    p.add_argument("--backend", choices=BACKENDS, help="policy backend (default: the config's)")
    p.add_argument("--precision", choices=PRECISIONS, help="policy precision (default: the config's)")
    p.add_argument("--allow-unverified", action="store_true",
                   help="run a reduced precision without a recorded `dexgrasp engine verify` pass")
    p.add_argument("--execution-mode", choices=EXECUTION_MODES,
                   help="timed (stamped chunks, blending), upstream (first 6 of 64) or auto (default: the config's)")
    p.add_argument("--timeout-s", type=number(float, 1.0, 3600.0), default=40.0, help="per episode (default 40)")
    p.add_argument("--report", metavar="FILE", help="write the per-episode report (JSON)")
    p.add_argument("--video-dir", metavar="DIR", help="write one H.264 video per episode")
    p.add_argument("--allow-seed-overlap", action="store_true",
                   help="evaluate on seeds the model was trained on (reported as such)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from runtime.sim.evaluate import EvalOptions, evaluate

    def show(r) -> None:
        t = f", grasped at {r.time_to_grasp_s:.1f} s" if r.time_to_grasp_s is not None else ""
        print(f"episode {r.episode} (seed {r.seed}, {r.target}): "
              f"{'success' + t if r.success else 'FAIL ' + str(r.failure) + ' (' + r.failure_detail + ')'}; "
              f"{r.inferences} inferences, p50 {r.inference_ms.get('p50') or 0:.0f} ms", flush=True)

    opts = EvalOptions(model_dir=args.model, episodes=args.episodes, seed=args.seed, config=args.config,
                       backend=args.backend, precision=args.precision, execution_mode=args.execution_mode,
                       timeout_s=args.timeout_s, report=args.report, video_dir=args.video_dir,
                       allow_seed_overlap=args.allow_seed_overlap, allow_unverified=args.allow_unverified)
    report = evaluate(opts, on_episode=show)
    s = report["summary"]
    print(f"{report['seed_check']}; engine {s['engine']}")
    if args.report:
        print(f"wrote {args.report}")
    print(json.dumps({k: s[k] for k in ("episodes", "successes", "success_rate", "median_time_to_grasp_s",
                                        "failures_by_cause", "control_p99_lateness_us_max", "missed_cycles_total",
                                        "seeds", "backend", "precision", "execution_mode")}))
    return 0
