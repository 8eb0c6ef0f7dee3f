"""PNG plots of benchmark results (matplotlib, Agg backend: no display needed).

Four kinds, each from plain data so any benchmark can feed them:
- latency histograms with p50 / p99 / max marked,
- control-loop lateness over time (one panel per run, missed cycles marked),
- a Gantt-style timeline of one control cycle (which stage ran when, on which thread),
- controller latency bars: exported vs PyTorch eager vs compute floor.
matplotlib is imported inside `_pyplot()` so importing this module stays cheap.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, max_cols: int = 2) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


def _unit_in(label: str) -> str | None:
    """The unit a label names in brackets ("rtt [us]" -> "us"), so series in us are not called ms."""
    if label.endswith("]") and "[" in label:
        unit = label[label.rindex("[") + 1:-1].strip()
        return unit or None
    return None


def latency_histograms(series: dict[str, list[float]], path: pathlib.Path, title: str, unit: str = "ms") -> pathlib.Path:
    """One histogram per series (values in `unit`, or the unit a label names in brackets), p50 / p99 /
    max as vertical lines; a log count axis when the tail is long; a strip of dots under 20 samples."""
    plt = _pyplot()
    items = [(k, np.asarray(v, dtype=float)) for k, v in series.items() if len(v)]
    if not items:
        raise ValueError(f"no samples to plot for {title!r}")
    rows, cols = _grid(len(items))
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 3.2 * rows), squeeze=False)
    for ax, (label, x) in zip(axes.flat, items, strict=False):
        x = x[np.isfinite(x)]
        unit_here = _unit_in(label) or unit
        if x.size < 20:  # too few for a histogram: show every sample
            ax.plot(x, np.zeros_like(x), "o", color=COLORS[0], alpha=0.8, markersize=7)
            ax.set_yticks([])
        else:
            ax.hist(x, bins=min(60, max(10, x.size // 5)), color=COLORS[0], alpha=0.85)
            if x.max() > 5 * max(float(np.median(x)), 1e-12):
                ax.set_yscale("log")  # long tail: keep the rare slow samples visible
        for q, style, name in ((50, "-", "p50"), (99, "--", "p99")):
            v = float(np.percentile(x, q))
            ax.axvline(v, color="k", linestyle=style, linewidth=1, label=f"{name} {v:.3g} {unit_here}")
        ax.axvline(float(x.max()), color=COLORS[3], linestyle=":", linewidth=1,
                   label=f"max {x.max():.3g} {unit_here}")
        ax.set_title(f"{label} (n={x.size})", fontsize=10)
        ax.set_xlabel(f"latency [{unit_here}]")
        ax.set_ylabel("count" if x.size >= 20 else "samples")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(items):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lateness_over_time(runs: dict[str, dict], path: pathlib.Path, title: str) -> pathlib.Path:
    """`runs`: label -> {"t_s": [...], "lateness_us": [...], "missed_t_s": [...] (optional)}."""
    plt = _pyplot()
    items = [(k, v) for k, v in runs.items() if len(v.get("t_s", []))]
    if not items:
        raise ValueError(f"no lateness series to plot for {title!r}")
    fig, axes = plt.subplots(len(items), 1, figsize=(10, 2.1 * len(items) + 0.6), squeeze=False, sharex=False)
    for i, (ax, (label, run)) in enumerate(zip(axes[:, 0], items, strict=True)):
        t = np.asarray(run["t_s"], dtype=float)
        late = np.asarray(run["lateness_us"], dtype=float)
        ax.plot(t, late, linewidth=0.6, color=COLORS[i % len(COLORS)])
        p99 = float(np.percentile(late, 99)) if late.size else float("nan")
        ax.axhline(p99, color="k", linestyle="--", linewidth=0.8, label=f"p99 {p99:.0f} us")
        missed = run.get("missed_t_s") or []
        if missed:
            ax.plot(missed, [late.max() if late.size else 0] * len(missed), "x", color=COLORS[3],
                    label=f"missed cycles ({len(missed)})")
        ax.set_ylabel("lateness [us]")
        ax.set_title(label, fontsize=9, loc="left")
        if late.size and late.max() > 20 * max(p99, 1.0):
            ax.set_yscale("symlog", linthresh=max(p99, 10.0))
        ax.legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("time since loop start [s]")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _gantt(ax, spans: list[dict], lanes: list[str], color: dict, lo: float, hi: float, labels: bool) -> None:
    for s in spans:
        if s["end_ms"] < lo or s["start_ms"] > hi:
            continue
        y = lanes.index(s["lane"])
        width = max(s["end_ms"] - s["start_ms"], (hi - lo) * 0.003)  # keep instantaneous events visible
        ax.barh(y, width, left=s["start_ms"], height=0.6, color=color[s["stage"]], edgecolor="k", linewidth=0.4)
        if labels and lo <= s["start_ms"] and s["end_ms"] <= hi:  # label only spans fully in view
            ax.annotate(f"{s['end_ms'] - s['start_ms']:.3g} ms", (s["end_ms"], y), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7)
    ax.set_xlim(lo, hi)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(lanes, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def _zoom_windows(spans: list[dict], end: float) -> list[tuple[str, float, float]]:
    """Windows around the short stages at the start and at the end of a cycle dominated by long ones."""
    short = [s for s in spans if s["end_ms"] - s["start_ms"] < 0.02 * end]
    head = [s for s in short if s["end_ms"] <= 0.1 * end]
    tail = [s for s in short if s["start_ms"] >= 0.9 * end]
    out = []
    if head:
        hi = max(s["end_ms"] for s in head)
        out.append(("start of the cycle (zoom)", -0.05 * hi, hi * 1.35))
    if tail:
        lo = min(s["start_ms"] for s in tail)
        span = max(end - lo, 0.5)
        out.append(("end of the cycle (zoom)", lo - 2.0 * span, end + 0.6 * span))
    return out


def stage_timeline(spans: list[dict], path: pathlib.Path, title: str) -> pathlib.Path:
    """Gantt chart. `spans`: [{"stage", "lane", "start_ms", "end_ms"}] relative to the capture time.

    When a few long stages dominate (inference on a CPU), two zoomed panels show the short stages
    at the start (capture, tracker) and at the end (postprocess, serial write) of the cycle."""
    plt = _pyplot()
    if not spans:
        raise ValueError(f"no spans to plot for {title!r}")
    lanes = list(dict.fromkeys(s["lane"] for s in spans))
    stages = list(dict.fromkeys(s["stage"] for s in spans))
    color = {name: COLORS[i % len(COLORS)] for i, name in enumerate(stages)}
    end = max(s["end_ms"] for s in spans)
    zooms = _zoom_windows(spans, end)
    height = 0.9 + 0.55 * len(lanes)
    fig = plt.figure(figsize=(11, height * (2 if zooms else 1) + 0.9))
    grid = fig.add_gridspec(2 if zooms else 1, max(1, len(zooms)))
    ax = fig.add_subplot(grid[0, :])
    _gantt(ax, spans, lanes, color, -0.01 * end, end * 1.08, labels=False)
    ax.set_xlabel("time since camera capture [ms]")
    ax.set_title(title)
    for i, (name, lo, hi) in enumerate(zooms):
        zax = fig.add_subplot(grid[1, i])
        _gantt(zax, spans, lanes, color, lo, hi, labels=True)
        zax.set_title(name, fontsize=9)
        zax.set_xlabel("ms since camera capture", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=color[n]) for n in stages]
    labels = [f"{n} ({sum(s['end_ms'] - s['start_ms'] for s in spans if s['stage'] == n):.3g} ms)" for n in stages]
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(4, len(stages)))
    fig.tight_layout(rect=(0, 0.09 if len(stages) <= 4 else 0.13, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def controller_bars(rows: list[dict], path: pathlib.Path, title: str) -> pathlib.Path:
    """Grouped bars per row label: any of exported_ms / exported_nocache_ms / eager_ms / floor_ms."""
    plt = _pyplot()
    series = [("floor_ms", "compute floor"), ("exported_ms", "exported (K/V cached)"),
              ("exported_nocache_ms", "exported (no K/V cache)"), ("eager_ms", "PyTorch eager")]
    series = [(k, name) for k, name in series if any(r.get(k) for r in rows)]
    if not rows or not series:
        raise ValueError(f"no controller latencies to plot for {title!r}")
    fig, ax = plt.subplots(figsize=(max(8, 2.6 * len(rows) + 3), 4.4))
    width = 0.8 / len(series)
    for j, (key, name) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(rows))]
        vals = [r.get(key) or 0.0 for r in rows]
        bars = ax.bar(xs, vals, width, label=name, color=COLORS[j])
        for b, v in zip(bars, vals, strict=True):
            if v:
                ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["label"] for r in rows])
    ax.set_ylabel("latency per inference [ms] (log)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
