"""Latency benchmarks for dexgraspvla-runtime.

Each component benchmark is a module `benchmarks/<name>.py` exposing
`run(quick: bool, out_dir: pathlib.Path, **opts) -> dict` and a `main()` CLI; `benchmarks/run_all.py`
(also `dexgrasp bench`) runs them each in its own process and writes results.json, report.md and
plots. Shared helpers (timing statistics, machine description, matmul rate, writers, plots) live in
`benchmarks.common`.
"""
