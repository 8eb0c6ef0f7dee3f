"""Run every latency benchmark and write results.json, report.md and PNG plots.

    python benchmarks/run_all.py --quick --out bench-out          # short runs of every benchmark
    python benchmarks/run_all.py --out bench-full                 # full run (see docs/benchmarks.md)
    python benchmarks/run_all.py --only stages,bridge --out DIR   # a subset
    dexgrasp bench --quick --out bench-out                        # the same, via the CLI

Each benchmark module runs in its own process with a timeout: one that fails, hangs or is missing
is reported with its reason and the suite continues. Exit status: 0 when every selected benchmark
that exists ran, 1 when one errored or timed out, 2 for bad arguments. A target that is missed
(FAIL in the report) is a measurement, not an error, and does not change the exit status.

Only the standard library is imported at module level (`dexgrasp bench` loads this file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import pathlib
import shlex
import sys
import time

BENCH_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The suite's options; shared with `dexgrasp bench`."""
    parser.add_argument("--quick", action="store_true",
                        help="short runs of every benchmark (small controller preset): minutes, not the "
                             "half hour of a full run")
    parser.add_argument("--out", type=pathlib.Path, default=None, metavar="DIR",
                        help="output directory for results.json, report.md, plots/ and logs/")
    parser.add_argument("--config", type=pathlib.Path, default=None, metavar="CONFIG",
                        help="runtime config (YAML) handed to every benchmark, e.g. configs/sim.yaml")
    parser.add_argument("--model", type=pathlib.Path, default=None, metavar="DIR",
                        help="exported controller directory (manifest.json + ONNX graphs); default: "
                             "each benchmark makes and caches a small random-weight model")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None, metavar="CKPT",
                        help="checkpoint the model was exported from (for the PyTorch eager comparison)")
    parser.add_argument("--only", default=None, metavar="NAME,...",
                        help="comma-separated benchmarks to run (default: all); see --list")
    parser.add_argument("--list", action="store_true", help="list the benchmarks found and exit")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="per-benchmark timeout in seconds (default 300 quick, 10800 full)")


def _load_config(path: pathlib.Path | None) -> dict:
    if path is None:
        return {"path": None}
    if not path.is_file():
        raise SystemExit(f"run_all: error: --config {path}: no such file")
    text = path.read_text()
    try:
        import yaml

        return {"path": str(path), "content": yaml.safe_load(text)}
    except ImportError:
        return {"path": str(path), "text": text}
    except yaml.YAMLError as exc:
        raise SystemExit(f"run_all: error: --config {path} is not valid YAML: {exc}") from exc


def run_suite(args: argparse.Namespace, command: str, bench_dir: pathlib.Path = BENCH_DIR,
              package: str = "benchmarks") -> tuple[dict, int]:
    """Run the selected benchmarks and write the outputs; returns (results, exit status)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tqdm import tqdm

    from benchmarks.common import figures, machine, report, suite, targets
    from benchmarks.common.child import to_jsonable

    specs = suite.discover(bench_dir, package)
    if args.list:
        for s in specs:
            print(f"{s.name:14s} {s.module:32s} {'present' if s.present else 'missing'}")
        return {}, 0
    if args.out is None:
        raise SystemExit("run_all: error: --out DIR is required (where results.json and report.md go)")
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    selected, unknown = suite.select(specs, only)
    if unknown:
        names = ", ".join(s.name for s in specs)
        raise SystemExit(f"run_all: error: --only names unknown benchmark(s) {unknown}; known: {names}")
    config = _load_config(args.config)
    if args.model is not None and not (args.model / "manifest.json").is_file():
        raise SystemExit(f"run_all: error: --model {args.model}: no manifest.json there (export a model with "
                         f"`dexgrasp export controller`)")
    out: pathlib.Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    opts = {k: str(v.resolve()) for k, v in
            (("config", args.config), ("model_dir", args.model), ("checkpoint", args.checkpoint)) if v is not None}
    timeout_s = args.timeout or suite.DEFAULT_TIMEOUT_S["quick" if args.quick else "full"]
    pythonpath = list(dict.fromkeys([bench_dir.parent.resolve(), REPO_ROOT]))

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    results: dict = {
        "schema": report.SCHEMA,
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": command,
        "quick": bool(args.quick),
        "options": {"only": only, "timeout_s": timeout_s, **opts,
                    "quick_overrides": suite.QUICK_OPTS if args.quick else {}},
        "config": config,
        "machine": machine.machine_info(REPO_ROOT),
    }
    results["load_before"] = results["machine"].get("load_average")
    if args.model is None and any(s.name in suite.NEEDS_MODEL and s.present for s in selected):
        print("preparing the config's controller model (made once, then cached) ...", file=sys.stderr)
        results["setup"] = {"model": suite.prepare_model(
            opts.get("config"), timeout_s=3600.0, pythonpath=pythonpath, log_path=out / "logs" / "setup_model.log")}
    records: dict = {}
    plot_data: dict = {}
    bar = tqdm(selected, desc="benchmarks", unit="bench", file=sys.stderr, dynamic_ncols=True)
    interrupted = False
    for spec in bar:
        bar.set_postfix_str(spec.name)
        if interrupted:
            records[spec.name] = {"name": spec.name, "module": spec.module, "status": "not_run",
                                  "reason": "the suite was interrupted (Ctrl-C) before it", "duration_s": 0.0}
            continue
        try:
            spec_opts = {**opts, **(suite.QUICK_OPTS.get(spec.name, {}) if args.quick else {})}
            rec = suite.run_one(spec, quick=args.quick, out_dir=out, opts=spec_opts, timeout_s=timeout_s,
                                pythonpath=pythonpath)
        except KeyboardInterrupt:  # the child was killed; still write what the others measured
            interrupted = True
            rec = {"name": spec.name, "module": spec.module, "status": "error",
                   "reason": "interrupted (Ctrl-C) while running", "duration_s": 0.0}
        result = rec.get("result")
        if isinstance(result, dict) and "plot_data" in result:
            plot_data[spec.name] = result.pop("plot_data")
            report.write_json(out / spec.name / "plot_data.json", to_jsonable(plot_data[spec.name]))
        records[spec.name] = rec
        tqdm.write(f"  {spec.name:14s} {rec['status']:8s} {rec.get('duration_s', 0.0):7.1f} s"
                   f"{'  ' + report._first_line(rec.get('reason', '')) if rec['status'] != 'ok' else ''}",
                   file=sys.stderr)
    bar.close()
    results["benchmarks"] = records
    results["headline"] = targets.evaluate(records)
    results["plots"] = figures.make_plots(plot_data, out / "plots") + figures.module_plots(records, out)
    results["not_measured"] = report.not_measured_rows(results)
    results["load_after"] = machine.load_average()
    results["wall_time_s"] = time.monotonic() - t0
    results = to_jsonable(results)
    report.write_json(out / "results.json", results)
    (out / "report.md").write_text(report.render_markdown(results))
    (out / "summary.md").write_text(report.render_summary(results))
    failed = [n for n, r in records.items() if r["status"] in ("error", "timeout")]
    return results, 130 if interrupted else 1 if failed else 0


def print_summary(results: dict, out: pathlib.Path) -> None:
    for h in results.get("headline", []):
        print(f"  {h['status']:>24s}  {h['what']}: {h['measured']}  (goal {h['goal']})")
    print(f"report: {out / 'report.md'}\nresults: {out / 'results.json'}\n"
          f"summary for a README: {out / 'summary.md'}\n"
          f"wall time: {results.get('wall_time_s', 0.0):.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Run the latency benchmark suite.

    Example: python benchmarks/run_all.py --quick --out bench-out
    """
    parser = argparse.ArgumentParser(prog="run_all.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    command = "python benchmarks/run_all.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    results, rc = run_suite(args, command)
    if results:
        print_summary(results, args.out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
