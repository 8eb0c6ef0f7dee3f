"""Turns the suite's results into the report's PNG plots.

Each benchmark can hand plot data over as `result["plot_data"]` (the suite moves it out of
results.json into `<out>/<name>/plot_data.json`):
    histograms:       {label: [latency_ms, ...]}
    lateness_series:  {label: {"t_s": [...], "lateness_us": [...], "missed_t_s": [...]}}
    timeline:         [{"stage", "lane", "start_ms", "end_ms"}]   (one control cycle)
    controller_bars:  [{"label", "exported_ms", "exported_nocache_ms", "eager_ms", "floor_ms"}]
A plot that cannot be drawn is listed with the reason instead of failing the suite.
"""

from __future__ import annotations

import os
import pathlib

from benchmarks.common import plots


def _merge(plot_data: dict) -> dict:
    merged: dict = {"histograms": {}, "lateness_series": {}, "timeline": [], "controller_bars": []}
    for name, data in plot_data.items():
        if not isinstance(data, dict):
            continue
        if data.get("histograms"):
            merged["histograms"][name] = dict(data["histograms"])
        for label, run in (data.get("lateness_series") or {}).items():
            merged["lateness_series"][f"{name}: {label}"] = run
        if data.get("timeline") and not merged["timeline"]:
            merged["timeline"] = data["timeline"]
        merged["controller_bars"] += data.get("controller_bars") or []
    return merged


def make_plots(plot_data: dict, out_dir: pathlib.Path, max_panels: int = 8) -> list[dict]:
    """Draw every plot the data allows into `out_dir`; returns [{title, path (relative) | reason}]."""
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = _merge(plot_data)
    hist_jobs = [(f"{name}: latency histograms", f"latency_histograms_{name}.png", series,
                  lambda d, p, t: plots.latency_histograms(dict(list(d.items())[:max_panels]), p, t))
                 for name, series in merged["histograms"].items()]
    if not hist_jobs:
        hist_jobs = [("Latency histograms", "latency_histograms.png", {}, None)]
    jobs = [
        *hist_jobs,
        ("Control loop lateness over time", "loop_lateness.png", merged["lateness_series"],
         lambda d, p, t: plots.lateness_over_time(dict(list(d.items())[:max_panels]), p, t)),
        ("One control cycle, stage by stage", "stage_timeline.png", merged["timeline"], plots.stage_timeline),
        ("Controller latency: exported vs PyTorch eager vs compute floor", "controller_latency.png",
         merged["controller_bars"], plots.controller_bars),
    ]
    made = []
    for title, filename, data, draw in jobs:
        if not data:
            made.append({"title": title, "path": None, "reason": "no benchmark reported data for it"})
            continue
        path = out_dir / filename
        try:
            draw(data, path, title)
        except (ValueError, TypeError, KeyError) as exc:
            made.append({"title": title, "path": None, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        made.append({"title": title, "path": f"{out_dir.name}/{filename}"})
    return made


def module_plots(records: dict, out_dir: pathlib.Path) -> list[dict]:
    """PNGs a benchmark drew itself (`result["plots"]`: paths), linked relative to `out_dir`."""
    found = []
    for name, rec in records.items():
        for p in (rec.get("result") or {}).get("plots") or []:
            path = pathlib.Path(str(p))
            if path.suffix.lower() == ".png" and path.is_file():
                found.append({"title": f"{name}: {path.stem.replace('_', ' ')}",
                              "path": os.path.relpath(path, out_dir)})
    return found
