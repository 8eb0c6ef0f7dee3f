"""`dexgrasp bench`: the latency benchmark suite (same as `python benchmarks/run_all.py`).

The suite lives in the source checkout's `benchmarks/` directory (it is not part of the installed
onboard package). This command finds it beside the `runtime` package (an editable install or a
checkout on PYTHONPATH), or at --bench-dir. Only the standard library is imported here; the suite
itself is loaded when the command runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

DESCRIPTION = """\
Run the latency benchmarks and write DIR/results.json, DIR/report.md and DIR/plots/*.png.

examples:
  dexgrasp bench --quick --out bench-out                 # short runs of every benchmark (minutes)
  dexgrasp bench --out bench-full                        # full run, paper-size controller comparison
  dexgrasp bench --only stages,bridge --out bench-out    # a subset (see --list)
  dexgrasp bench --quick --model exported/ --config configs/sim.yaml --out bench-out

Each benchmark runs in its own process with a timeout; a failing or missing one is reported with
its reason and the others still run. Targets from DESIGN.md are shown as pass / FAIL / not measured.
"""


def find_bench_dir(explicit: pathlib.Path | None = None) -> pathlib.Path | None:
    """The `benchmarks/` directory holding run_all.py: --bench-dir, beside the runtime package, or ./benchmarks."""
    candidates = []
    if explicit is not None:
        candidates.append(explicit)
    candidates.append(pathlib.Path(__file__).resolve().parents[2] / "benchmarks")
    candidates.append(pathlib.Path.cwd() / "benchmarks")
    for c in candidates:
        if (c / "run_all.py").is_file():
            return c.resolve()
    return None


def _load_run_all(bench_dir: pathlib.Path):
    root = str(bench_dir.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location("benchmarks.run_all", bench_dir / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _add_fallback_arguments(parser: argparse.ArgumentParser) -> None:
    """Without a checkout the options cannot be read from run_all.py; accept anything and explain."""
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="profile latency: run the benchmark suite, write JSON + Markdown + plots",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bench-dir", type=pathlib.Path, default=None, metavar="DIR",
                        help="the checkout's benchmarks/ directory (default: found beside the runtime package)")
    bench_dir = find_bench_dir()
    if bench_dir is not None:
        _load_run_all(bench_dir).add_arguments(parser)
    else:
        _add_fallback_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from runtime.errors import ConfigError

    bench_dir = find_bench_dir(args.bench_dir)
    if bench_dir is None:
        raise ConfigError(
            "dexgrasp bench: no benchmarks/run_all.py found (looked beside the runtime package and in "
            "./benchmarks). The suite ships with the source checkout: clone the repository, "
            "`pip install -e .`, or pass --bench-dir PATH/benchmarks."
        )
    if not hasattr(args, "quick"):  # parsed with the fallback arguments: re-parse with the real ones
        run_all = _load_run_all(bench_dir)
        return run_all.main(list(getattr(args, "rest", [])))
    run_all = _load_run_all(bench_dir)
    argv = sys.argv[sys.argv.index("bench") + 1:] if "bench" in sys.argv else []
    command = "dexgrasp bench " + " ".join(argv)
    try:
        results, rc = run_all.run_suite(args, command)
    except SystemExit as exc:  # run_all reports bad arguments this way
        if isinstance(exc.code, str):
            raise ConfigError(exc.code.replace("run_all: error: ", "")) from None
        raise
    if results:
        run_all.print_summary(results, args.out)
    return rc
