"""Closed loop on the MuJoCo tabletop: collect -> train -> export -> eval, end to end, with one report.

    python benchmarks/closed_loop.py --out closed-loop            # the default sizing (see docs/sim.md)
    python benchmarks/closed_loop.py --quick --out /tmp/cl-quick  # minutes: tiny preset, 1 episode each
    python benchmarks/closed_loop.py --skip-collect demos/ --skip-train models/t.ckpt --out DIR  # resume

Stages (each with a progress bar and its wall time in the report):
  1. collect: `dexgrasp sim collect` of the scripted expert, scene seeds 0..N-1, with the config as
     it is (cameras at their own rate: the recording is what the robot sees when it is evaluated);
  2. train: `dexgrasp train` (small preset, --steps, DINOv2 feature cache) on the config's
     control.action_rate_hz grid: every episode is resampled to the spacing the runtime plays a
     chunk's actions at, whatever the camera rate (export/train/timeline.py);
  3. export: `dexgrasp export controller`;
  4. verify: openvino bf16 against onnxruntime fp32 on frames of the collected episodes
     (`dexgrasp engine verify --episodes`), recorded in the manifest when it passes;
  5. eval: `dexgrasp eval` on held-out scene seeds (from 10000; the model's manifest carries its
     training seeds and eval refuses any overlap) under fp32 timed, fp32 upstream (first 6 of 64)
     and openvino bf16 timed (skipped, with the reason, when openvino, a bf16 CPU or the
     verification is missing).
The report directory gets results.json, report.md (expert success; per condition success, median
time to grasp, failures by cause, loop p99, inference p50; stage timings against the 45-minute
budget) and plots (success per condition, training loss, time to grasp). The last printed line is
one JSON object: the fp32-timed condition's summary plus expert_success_rate and every condition.

Not part of `run_all.py` (that suite has no place for opt-in long benchmarks, and its --quick must
stay short): this file runs by itself.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

BUDGET_S = 45 * 60
EVAL_FIRST_SEED = 10000
SUMMARY_KEYS = ("episodes", "successes", "success_rate", "median_time_to_grasp_s", "failures_by_cause",
                "control_p99_lateness_us_max", "missed_cycles_total", "seeds", "backend", "precision",
                "execution_mode")
#: (name, backend, precision, execution mode); the reduced-precision one needs a passing verification.
CONDITIONS = (("fp32 timed", "onnxruntime", "fp32", "timed"),
              ("fp32 upstream", "onnxruntime", "fp32", "upstream"),
              ("openvino bf16 timed", "openvino", "bf16", "timed"))
DEFAULTS = {"collect_episodes": 2, "collect_timeout_s": 40.0, "preset": "small", "train_steps": 20,
            "batch_size": 4, "eval_episodes": 3, "eval_timeout_s": 40.0}
QUICK = {"collect_episodes": 1, "collect_timeout_s": 30.0, "preset": "_test_tiny", "train_steps": 2,
         "batch_size": 2, "eval_episodes": 1, "eval_timeout_s": 15.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR", help="report directory")
    p.add_argument("--config", default="mujoco", help="the MuJoCo runtime config (a YAML file or a shipped preset name)")
    p.add_argument("--quick", action="store_true",
                   help="minutes, not the full budget: tiny preset, 1 collect episode, 2 steps, 1 eval episode each")
    p.add_argument("--collect-episodes", type=int, help=f"expert episodes (default {DEFAULTS['collect_episodes']})")
    p.add_argument("--collect-timeout-s", type=float, help="per collect episode (default 40)")
    p.add_argument("--preset", help="controller architecture (default small; --quick: _test_tiny)")
    p.add_argument("--train-steps", type=int, help=f"optimizer steps (default {DEFAULTS['train_steps']})")
    p.add_argument("--batch-size", type=int, help=f"training batch (default {DEFAULTS['batch_size']})")
    p.add_argument("--eval-episodes", type=int, help=f"episodes per condition (default {DEFAULTS['eval_episodes']})")
    p.add_argument("--eval-timeout-s", type=float, help="per eval episode (default 40)")
    p.add_argument("--eval-seed", type=int, default=EVAL_FIRST_SEED, help="first held-out scene seed (default 10000)")
    p.add_argument("--skip-collect", metavar="DIR", help="use these recorded episodes instead of collecting")
    p.add_argument("--skip-train", metavar="CKPT", help="use this checkpoint instead of training")
    p.add_argument("--videos", action="store_true", help="per-episode eval videos under OUT/videos/<condition>/")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def sizing(args: argparse.Namespace) -> dict:
    """The run's sizes: --quick or the defaults, each overridden by its explicit option."""
    base = dict(QUICK if args.quick else DEFAULTS)
    for key in base:
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    for key in ("collect_episodes", "train_steps", "batch_size", "eval_episodes"):
        if base[key] < 1:
            raise SystemExit(f"closed_loop: error: --{key.replace('_', '-')} must be >= 1, got {base[key]}")
    return base


# ---- stages ---------------------------------------------------------------------------------------
def _stage(results: dict, name: str, t0: float, **info) -> dict:
    from benchmarks.common.machine import load_average

    rec = {"wall_s": round(time.monotonic() - t0, 1), "load_average_after": load_average(), **info}
    results["stages"][name] = rec
    return rec


def action_rate_hz(config: str) -> float:
    """The config's control.action_rate_hz: the grid the trainer resamples every episode to, so the
    trained chunks play back at the speed they were demonstrated in this config's runtime."""
    from runtime.config import load_config

    return float(load_config(config).control.action_rate_hz)


def stage_collect(args, size: dict, out: pathlib.Path, results: dict, progress: bool) -> pathlib.Path:
    from tqdm import tqdm

    from runtime.sim.collect import collect

    if args.skip_collect:
        demos = pathlib.Path(args.skip_collect)
        summary = _read_json(demos / "collect.json")
        _stage(results, "collect", time.monotonic(), skipped=f"--skip-collect {demos}",
               summary=_without(summary, "per_episode"))
        return demos
    t0 = time.monotonic()
    demos = out / "demos"
    with tqdm(total=size["collect_episodes"], desc="collect (expert)", unit="episode", disable=not progress) as bar:
        def step(r) -> None:
            bar.set_postfix(ok=f"{r.success}", seed=r.seed, refresh=False)
            bar.update(1)

        summary = collect(str(args.config), size["collect_episodes"], demos, first_seed=0,
                          timeout_s=size["collect_timeout_s"], on_episode=step)
    _stage(results, "collect", t0, summary=_without(summary, "per_episode"), config=str(args.config))
    return demos


def stage_train(args, size: dict, out: pathlib.Path, demos: pathlib.Path, results: dict, progress: bool) -> pathlib.Path:
    if args.skip_train:
        ckpt = pathlib.Path(args.skip_train)
        log = _read_json(ckpt.with_name(ckpt.name + ".train.json"))
        _stage(results, "train", time.monotonic(), skipped=f"--skip-train {ckpt}",
               summary=(log or {}).get("summary"), loss=(log or {}).get("loss"))
        return ckpt
    from export.train import TrainConfig, train

    t0 = time.monotonic()
    ckpt = out / "model.ckpt"
    summary = train(TrainConfig(episodes=str(demos), output=str(ckpt), preset=size["preset"],
                                steps=size["train_steps"], batch_size=size["batch_size"], cache_features=True,
                                action_rate_hz=action_rate_hz(args.config), progress=progress))
    log = _read_json(ckpt.with_name(ckpt.name + ".train.json")) or {}
    _stage(results, "train", t0, summary=summary, loss=log.get("loss"))
    return ckpt


def stage_export(ckpt: pathlib.Path, out: pathlib.Path, results: dict, progress: bool) -> pathlib.Path:
    from export.checkpoint import load_checkpoint
    from export.onnx_export import export_controller

    t0 = time.monotonic()
    model = out / "model"
    manifest = export_controller(load_checkpoint(ckpt), model, progress=progress)
    training = manifest.source_checkpoint.get("training") or {}
    _stage(results, "export", t0, model_dir=str(model), training_scene_seeds=training.get("scene_seeds"))
    return model


def stage_verify(model: pathlib.Path, demos: pathlib.Path | None, results: dict) -> str | None:
    """Verify openvino bf16 on recorded frames; None when it passed, else why the condition is skipped."""
    import importlib.util

    t0 = time.monotonic()
    if importlib.util.find_spec("openvino") is None:
        _stage(results, "verify", t0, passed=False, reason="openvino not installed")
        return "openvino not installed"
    from runtime.inference.openvino import bf16_support

    if bf16_support() is None:
        _stage(results, "verify", t0, passed=False, reason="CPU without AMX-BF16/AVX512-BF16")
        return "CPU without AMX-BF16/AVX512-BF16"
    from runtime.controller import Controller
    from runtime.controller.manifest import Manifest
    from runtime.controller.verify import compare, episode_obs, record, synthetic_obs

    manifest = Manifest.load(model)
    if demos is not None and demos.is_dir():
        obs, source = episode_obs(demos, manifest, 4), str(demos)
    else:
        obs, source = synthetic_obs(manifest, 2), "synthetic seed 0"
    reference = Controller.from_dir(model, "onnxruntime")
    candidate = Controller.from_dir(model, "openvino", "bf16", allow_unverified=True)
    try:
        result = compare(reference, candidate, obs)
    finally:
        reference.close()
        candidate.close()
    if result["passed"]:
        record(model, "openvino", "bf16", result, source)
    reason = None if result["passed"] else (f"bf16 error {result['max_error_of_range']:.2e} of range is above "
                                            f"the gate {result['gate']:g}")
    _stage(results, "verify", t0, passed=bool(result["passed"]), source=source,
           max_error_of_range=result["max_error_of_range"], gate=result["gate"], reason=reason)
    return reason


def stage_eval(args, size: dict, model: pathlib.Path, out: pathlib.Path, bf16_skip: str | None,
               results: dict, progress: bool) -> None:
    from tqdm import tqdm

    from runtime.sim.evaluate import EvalOptions, evaluate

    t0 = time.monotonic()
    for name, backend, precision, mode in CONDITIONS:
        row = {"name": name, "backend": backend, "precision": precision, "execution_mode": mode}
        results["conditions"].append(row)
        if precision != "fp32" and bf16_skip:
            row["skipped"] = bf16_skip
            continue
        tc = time.monotonic()
        slug = name.replace(" ", "_")
        with tqdm(total=size["eval_episodes"], desc=f"eval {name}", unit="episode", disable=not progress) as bar:
            def step(r) -> None:
                bar.set_postfix(ok=f"{r.success}", cause=r.failure or "-", refresh=False)
                bar.update(1)

            report = evaluate(EvalOptions(
                model_dir=str(model), episodes=size["eval_episodes"], seed=args.eval_seed, config=args.config,
                backend=backend, precision=precision, execution_mode=mode, timeout_s=size["eval_timeout_s"],
                report=str(out / f"eval_{slug}.json"),
                video_dir=str(out / "videos" / slug) if args.videos else None), on_episode=step)
        row.update(summary=report["summary"], seed_check=report["seed_check"], wall_s=round(time.monotonic() - tc, 1),
                   per_episode=report["per_episode"])
    _stage(results, "eval", t0)


def new_results(args: argparse.Namespace, size: dict) -> dict:
    from benchmarks.common.machine import machine_info

    return {"command": " ".join(sys.argv), "options": {**size, "config": args.config, "eval_seed": args.eval_seed,
                                                      "quick": args.quick, "skip_collect": args.skip_collect,
                                                      "skip_train": args.skip_train},
            "machine": machine_info(REPO_ROOT), "budget_s": BUDGET_S, "stages": {}, "conditions": []}


def pipeline(args: argparse.Namespace, size: dict, results: dict) -> dict:
    """Every stage in order, filling `results` as they finish (a failed stage leaves the earlier ones)."""
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    t0 = time.monotonic()
    demos = stage_collect(args, size, out, results, progress)
    if args.skip_train and not args.skip_collect:
        demos = _training_dir(pathlib.Path(args.skip_train)) or demos
    ckpt = stage_train(args, size, out, demos, results, progress)
    model = stage_export(ckpt, out, results, progress)
    bf16_skip = stage_verify(model, demos, results)
    stage_eval(args, size, model, out, bf16_skip, results, progress)
    results["total_s"] = round(time.monotonic() - t0, 1)
    return results


def _training_dir(ckpt: pathlib.Path) -> pathlib.Path | None:
    from export.checkpoint import load_checkpoint

    where = load_checkpoint(ckpt).training.get("episodes_dir")
    return pathlib.Path(where) if where and pathlib.Path(where).is_dir() else None


def _read_json(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _without(d: dict | None, key: str) -> dict | None:
    return None if d is None else {k: v for k, v in d.items() if k != key}


# ---- the report -----------------------------------------------------------------------------------
def final_line(results: dict) -> dict:
    """The fp32-timed condition's summary plus expert_success_rate, every condition and the budget."""
    conds = results.get("conditions") or []
    primary = next((c for c in conds if c.get("summary") and c["name"] == CONDITIONS[0][0]), None)
    primary = primary or next((c for c in conds if c.get("summary")), None)
    summary = (primary or {}).get("summary") or {}
    collect = (results.get("stages", {}).get("collect") or {}).get("summary") or {}
    out = {k: summary.get(k) for k in SUMMARY_KEYS}
    out["expert_success_rate"] = collect.get("success_rate")
    out["conditions"] = {c["name"]: ({k: c["summary"].get(k) for k in ("success_rate", "median_time_to_grasp_s",
                                                                        "failures_by_cause")}
                                     if c.get("summary") else {"skipped": c.get("skipped")}) for c in conds}
    out["total_s"] = results.get("total_s")
    out["within_budget"] = results.get("total_s") is not None and results["total_s"] <= results.get("budget_s", BUDGET_S)
    return out


def build_report(results: dict, out: pathlib.Path) -> dict:
    """Write OUT/results.json, OUT/report.md and OUT/plots/*.png from `results`; returns the final line."""
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(results, out / "plots")
    results["plots"] = {k: str(v.relative_to(out)) for k, v in plots.items()}
    line = final_line(results)
    results["final"] = line
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "report.md").write_text(report_markdown(results, line))
    return line


def report_markdown(results: dict, line: dict) -> str:
    from benchmarks.common.machine import describe
    from benchmarks.common.tables import fmt, markdown_table

    stages = results.get("stages", {})
    collect = stages.get("collect") or {}
    cs = collect.get("summary") or {}
    train = (stages.get("train") or {}).get("summary") or {}
    budget = results.get("budget_s", BUDGET_S)
    md = ["# Closed loop: collect -> train -> export -> eval on the MuJoCo tabletop", ""]
    if results.get("machine"):
        load = results["machine"].get("load_average")
        md += [f"Machine: {describe(results['machine'])}; load average at the start {load}.", ""]
    md += [f"Command: `{results.get('command', '')}`", ""]
    if results.get("error"):
        md += [f"**The run stopped with an error:** {results['error']}", ""]
    md += ["## Expert (scripted, privileged object pose)", "",
           markdown_table(["episodes", "successes", "success rate", "median time to grasp (s)", "seeds"],
                          [[cs.get("episodes"), cs.get("successes"), cs.get("success_rate"),
                            cs.get("median_time_to_grasp_s"), _seeds(cs.get("seeds"))]])]
    if collect.get("skipped"):
        md += [f"Collection skipped: {collect['skipped']}.", ""]
    if train:
        md += ["## Training", "",
               markdown_table(["arch", "episodes / frames", "steps x batch", "loss first -> final", "action MSE",
                               "recorded -> action grid", "train s", "scene seeds"],
                              [[train.get("arch"), f"{train.get('episodes')} / {train.get('frames')}",
                                f"{train.get('steps')} x {train.get('batch_size')}",
                                f"{fmt(train.get('first_loss'))} -> {fmt(train.get('final_loss'))}",
                                train.get("action_mse"), _grid(train), train.get("train_s"),
                                train.get("scene_seeds")]])]
    rows = []
    for c in results.get("conditions") or []:
        s = c.get("summary")
        if not s:
            rows.append([c["name"], c["backend"], c["precision"], c["execution_mode"], "skipped: " + str(c.get("skipped")),
                         None, None, None, None, None])
            continue
        rows.append([c["name"], c["backend"], c["precision"], c["execution_mode"],
                     f"{s['successes']}/{s['episodes']} ({s['success_rate'] * 100:.0f} %)", s.get("median_time_to_grasp_s"),
                     _causes(s.get("failures_by_cause")), s.get("control_p99_lateness_us_max"),
                     s.get("missed_cycles_total"), s.get("inference_p50_ms_median")])
    md += ["## Evaluation on held-out scenes (same trained model)", "",
           markdown_table(["condition", "backend", "precision", "execution", "success", "median time to grasp (s)",
                           "failures by cause", "loop p99 lateness max (us)", "missed cycles", "inference p50 (ms)"], rows)]
    md += _losses(results)
    seed_checks = {c.get("seed_check") for c in results.get("conditions") or [] if c.get("seed_check")}
    if seed_checks:
        md += ["Seed check: " + "; ".join(sorted(seed_checks)) + ".", ""]
    md += ["## Stages", "",
           markdown_table(["stage", "wall s", "load average after", "note"],
                          [[name, st.get("wall_s"), st.get("load_average_after"), _stage_note(name, st)]
                           for name, st in stages.items()])]
    total = results.get("total_s")
    verdict = "within" if line.get("within_budget") else "OVER"
    md += [f"Total {fmt(total)} s: {verdict} the {budget / 60:.0f}-minute budget.", ""]
    if results.get("plots"):
        md += ["## Plots", ""] + [f"![{k}]({v})" for k, v in results["plots"].items()] + [""]
    return "\n".join(md)


def _losses(results: dict) -> list[str]:
    """One line per condition whose success is below the fp32-timed one's: a mode or precision that loses grasps."""
    conds = [c for c in results.get("conditions") or [] if c.get("summary")]
    ref = next((c for c in conds if c["name"] == CONDITIONS[0][0]), None)
    if ref is None:
        return []
    lines = []
    for c in conds:
        if c is ref:
            continue
        lost = ref["summary"]["successes"] - c["summary"]["successes"]
        if lost > 0:
            lines.append(f"- **{c['name']} loses {lost} grasp(s)** against {ref['name']} "
                         f"({c['summary']['successes']}/{c['summary']['episodes']} vs "
                         f"{ref['summary']['successes']}/{ref['summary']['episodes']}).")
    return (lines + [""]) if lines else ["No condition lost grasps against " + ref["name"] + ".", ""]


def _grid(train: dict) -> str | None:
    """'15 fps -> 20 Hz (52 repeated steps)': the recording's rate, the action grid it was trained on."""
    fps, rate = train.get("recorded_fps"), train.get("action_rate_hz")
    if fps is None or rate is None:
        interval = train.get("median_frame_interval_s")
        return None if interval is None else f"frame interval {interval:g} s"
    repeated = train.get("repeated_steps") or 0
    return f"{round(fps, 1):g} fps -> {rate:g} Hz" + (f" ({repeated} repeated steps)" if repeated else "")


def _causes(causes: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((causes or {}).items())) or "none"


def _seeds(seeds) -> str | None:
    if not seeds:
        return None
    return f"{seeds[0]}" if seeds[0] == seeds[-1] else f"{seeds[0]}-{seeds[-1]}"


def _count(summary: dict) -> str:
    return f"{summary.get('successes')}/{summary.get('episodes')}"


def _stage_note(name: str, st: dict) -> str | None:
    if st.get("skipped") or st.get("reason"):
        return st.get("skipped") or st.get("reason")
    if name == "verify" and st.get("passed"):
        return (f"openvino bf16 passed: error {st['max_error_of_range']:.1e} of range <= gate {st['gate']:g} "
                f"({st.get('source')})")
    return None


def make_plots(results: dict, plots_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Success per condition, training loss, time-to-grasp histogram; {} without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    from benchmarks.common.plots import COLORS

    plots_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, pathlib.Path] = {}
    conds = results.get("conditions") or []
    expert = ((results.get("stages", {}).get("collect") or {}).get("summary") or {}).get("success_rate")
    names = (["expert"] if expert is not None else []) + [c["name"] for c in conds]
    values = ([expert] if expert is not None else []) + [c["summary"]["success_rate"] if c.get("summary") else 0.0
                                                          for c in conds]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.bar(names, [v * 100 for v in values], color=COLORS[:len(names)])
    counts = ([f"{_count(results['stages']['collect']['summary'])}"] if expert is not None else []) + [
        _count(c["summary"]) if c.get("summary") else "skipped" for c in conds]
    for bar, text in zip(bars, counts, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, text, ha="center", fontsize=8)
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 105)
    ax.set_title("grasp success per condition (physics)")
    fig.tight_layout()
    out["success"] = plots_dir / "success.png"
    fig.savefig(out["success"], dpi=100)
    plt.close(fig)
    loss = (results.get("stages", {}).get("train") or {}).get("loss")
    if loss:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(range(1, len(loss) + 1), loss, lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (epsilon MSE)")
        ax.set_title("training loss")
        fig.tight_layout()
        out["loss"] = plots_dir / "loss.png"
        fig.savefig(out["loss"], dpi=100)
        plt.close(fig)
    times = {c["name"]: [e["time_to_grasp_s"] for e in c.get("per_episode") or [] if e.get("time_to_grasp_s") is not None]
             for c in conds}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    any_times = False
    for i, (name, ts) in enumerate(times.items()):
        if ts:
            any_times = True
            ax.hist(ts, bins=10, alpha=0.6, label=name, color=COLORS[i % len(COLORS)])
    if not any_times:
        ax.text(0.5, 0.5, "no successful grasp", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend()
    ax.set_xlabel("time to grasp (s)")
    ax.set_ylabel("episodes")
    ax.set_title("time to grasp (successful episodes)")
    fig.tight_layout()
    out["time_to_grasp"] = plots_dir / "time_to_grasp.png"
    fig.savefig(out["time_to_grasp"], dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    from runtime.errors import DexGraspError

    size = sizing(args)
    results = new_results(args, size)
    rc = 0
    try:
        pipeline(args, size, results)
    except DexGraspError as exc:  # bad input or a broken stage: the report keeps what finished
        results["error"] = str(exc)
        print(f"closed_loop: error: {exc}", file=sys.stderr)
        rc = 2
    line = build_report(results, args.out)
    total = results.get("total_s")
    print(f"wrote {args.out / 'report.md'} and results.json"
          + (f" ({total:.0f} s, {'within' if line['within_budget'] else 'over'} the {BUDGET_S // 60}-minute budget)"
             if total is not None else " (incomplete)"))
    print(json.dumps(line))
    return rc


if __name__ == "__main__":
    sys.exit(main())
