"""Runs one benchmark module's `run()` in a fresh process and writes its result as JSON.

Why a process per benchmark: a benchmark that crashes (even a segfault in a native library), hangs,
or leaves threads behind must not take the suite down or perturb the next measurement (a leftover
inference thread would show up as control-loop lateness). The parent (benchmarks/run_all.py) waits
with a timeout and reads the JSON file this writes.

Usage (by the suite, not by people):
    python -m benchmarks.common.child --module benchmarks.bridge --out-dir DIR --result FILE \
        [--quick] [--opts-json '{"config": "configs/sim.yaml"}']
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import pathlib
import sys
import time
import traceback


def accepted_opts(fn, opts: dict) -> tuple[dict, list[str]]:
    """The subset of `opts` that `fn` accepts (all of them if it takes **kwargs), and the dropped names."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(opts), []
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in opts.items() if k in names}, sorted(k for k in opts if k not in names)


def to_jsonable(obj, path: str = "result"):
    """Convert numpy scalars/arrays, paths, tuples and sets; NaN/Inf become None (JSON has no NaN)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if np is not None and isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), path)
    if np is not None and isinstance(obj, np.generic):
        return to_jsonable(obj.item(), path)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    return repr(obj)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", required=True, help="dotted module name with a run() function")
    p.add_argument("--out-dir", type=pathlib.Path, required=True)
    p.add_argument("--result", type=pathlib.Path, required=True, help="where to write the JSON result")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--opts-json", default="{}")
    args = p.parse_args(argv)
    record: dict = {"module": args.module}
    t0 = time.monotonic()
    try:
        module = importlib.import_module(args.module)
        run = getattr(module, "run", None)
        if not callable(run):
            raise AttributeError(f"module {args.module} has no callable run(quick, out_dir, **opts)")
        opts, dropped = accepted_opts(run, json.loads(args.opts_json))
        args.out_dir.mkdir(parents=True, exist_ok=True)
        result = run(args.quick, args.out_dir, **opts)
        if not isinstance(result, dict):
            raise TypeError(f"{args.module}.run() returned {type(result).__name__}, expected dict")
        record.update(status="ok", result=to_jsonable(result), opts_passed=sorted(opts), opts_dropped=dropped)
        rc = 0
    except BaseException as exc:  # noqa: BLE001 - the whole point: record any failure, then exit non-zero
        record.update(
            status="error",
            reason=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
        traceback.print_exc()
        rc = 1
    record["duration_s"] = time.monotonic() - t0
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(record, indent=2, allow_nan=False))
    return rc


if __name__ == "__main__":
    sys.exit(main())
