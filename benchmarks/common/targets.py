"""The headline table: each target of DESIGN.md, what it asks, what was measured, pass or fail.

A target is only "pass"/"FAIL" when the benchmark that measures it ran and reported the number at
the conditions the target names (e.g. the controller targets are defined at the paper's sizes, so a
quick run at the small preset shows its numbers as "not at target conditions", never as a pass).
Anything else is "not measured" with the reason. Benchmarks may also declare their own targets as
`result["targets"] = [{"name", "target", "measured", "pass", "note"}]`; those are added as given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.common.tables import fmt

PASS, FAIL, NOT_MEASURED, OFF_CONDITIONS, INFO = "pass", "FAIL", "not measured", "not at target conditions", "info"


@dataclass(frozen=True)
class Reading:
    """A measured value for a target; `at_conditions` False when measured under other conditions."""

    value: float | None
    text: str
    at_conditions: bool = True
    note: str = ""


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    goal: str
    source: str
    read: Callable[[dict], Reading | None]
    ok: Callable[[float], bool] | None  # None: informational row without a pass/fail


def get(d, *path, default=None):
    """Nested lookup: get(d, "a", "b", 0) -> d["a"]["b"][0], or `default` if any step is missing."""
    cur = d
    for key in path:
        if isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and isinstance(key, int) and -len(cur) <= key < len(cur):
            cur = cur[key]
        else:
            return default
    return cur


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# --- readers: one per target, each tolerant of a benchmark not reporting the value ----------------

def _controller_rows(res: dict) -> list[dict]:
    rows = res.get("presets") or res.get("results") or []
    if isinstance(rows, dict):
        rows = [dict(v, preset=k) if isinstance(v, dict) else {} for k, v in rows.items()]
    return [r for r in rows if isinstance(r, dict)]


def _controller_reading(res: dict, field: str, unit: str) -> Reading | None:
    rows = _controller_rows(res)
    if not rows:
        return None
    paper = [r for r in rows if str(r.get("preset")) == "dexgraspvla"]
    row = paper[0] if paper else rows[-1]
    value = _num(row.get(field))
    if value is None:
        return None
    return Reading(value, f"{fmt(value)}{unit}", at_conditions=bool(paper),
                   note="" if paper else f"measured at preset '{row.get('preset')}', target is at 'dexgraspvla'")


def _read_speedup(res: dict) -> Reading | None:
    return _controller_reading(res, "speedup_vs_eager", "x")


def _read_floor(res: dict) -> Reading | None:
    return _controller_reading(res, "ratio_to_floor", "x")


def _read_parity(res: dict) -> Reading | None:
    return _controller_reading(res, "parity_rel_error", "")


def _loop_rows(res: dict) -> list[dict]:
    rows = res.get("runs") or res.get("results") or []
    return [r for r in rows if isinstance(r, dict)]


def _loaded_rows(res: dict) -> list[dict]:
    return [r for r in _loop_rows(res) if str(r.get("load", "")).lower() not in ("", "idle", "none")]


def _worst(rows: list[dict], fn: Callable[[dict], float | None]) -> tuple[float, dict] | None:
    vals = [(fn(r), r) for r in rows]
    vals = [(v, r) for v, r in vals if v is not None]
    return max(vals, key=lambda x: x[0]) if vals else None


def _label(r: dict) -> str:
    return f"{fmt(r.get('rate_hz_target'))} Hz, {r.get('load', '?')}"


def _read_loop_rate(res: dict) -> Reading | None:
    def err(r):
        t, a = _num(r.get("rate_hz_target")), _num(r.get("rate_hz_achieved"))
        return abs(a - t) / t * 100.0 if t and a is not None else None
    w = _worst(_loaded_rows(res), err)
    return Reading(w[0], f"{fmt(w[0])} % off (worst: {_label(w[1])})") if w else None


def _read_loop_p99(res: dict) -> Reading | None:
    w = _worst(_loaded_rows(res), lambda r: _num(get(r, "lateness_us", "p99")))
    return Reading(w[0], f"{fmt(w[0])} us (worst: {_label(w[1])})") if w else None


def _read_loop_missed(res: dict) -> Reading | None:
    w = _worst(_loaded_rows(res), lambda r: _num(r.get("missed_cycles")))
    return Reading(w[0], f"{int(w[0])} (worst: {_label(w[1])})") if w else None


def _read_bridge(res: dict) -> Reading | None:
    for r in res.get("runs") or res.get("results") or []:
        if isinstance(r, dict) and _num(r.get("rate_hz")) == 500.0:
            v = _num(get(r, "rtt_ms", "p99"))
            if v is not None:
                return Reading(v, f"{fmt(v)} ms")
    return None


def _read_planner(res: dict) -> Reading | None:
    v = _num(get(res, "loop_p99_lateness_increase_us"))
    return Reading(v, f"{fmt(v)} us p99 lateness added") if v is not None else None


def _read_obs_to_act(res: dict) -> Reading | None:
    s = get(res, "observation_to_actuation_ms")
    if not isinstance(s, dict) or _num(s.get("p50")) is None:
        return None
    return Reading(_num(s["p50"]), f"p50 {fmt(s.get('p50'))} / p99 {fmt(s.get('p99'))} / max {fmt(s.get('max'))} ms")


TARGETS: tuple[Target, ...] = (
    Target("controller_speedup", "Controller vs PyTorch eager `predict_action` (paper sizes, same run)",
           ">= 3x faster", "controller", _read_speedup, lambda v: v >= 3.0),
    Target("controller_floor", "Controller latency / compute floor (paper sizes)",
           "<= 1.5x", "controller", _read_floor, lambda v: v <= 1.5),
    Target("controller_parity", "Action chunk max abs error vs PyTorch, relative to its range (fp32)",
           "<= 1e-3", "controller", _read_parity, lambda v: v <= 1e-3),
    Target("loop_rate", "Control loop achieved rate vs target, under inference load",
           "within 0.5 %", "control_loop", _read_loop_rate, lambda v: v <= 0.5),
    Target("loop_p99", "Control loop p99 lateness, under inference load",
           "< 1000 us", "control_loop", _read_loop_p99, lambda v: v < 1000.0),
    Target("loop_missed", "Control loop missed cycles, under inference load",
           "0", "control_loop", _read_loop_missed, lambda v: v == 0),
    Target("bridge_rtt", "Serial command->state round trip p99 at 500 Hz (pseudo-terminal)",
           "< 5 ms", "bridge", _read_bridge, lambda v: v < 5.0),
    Target("planner_nonblocking", "Planner round trips beside the control loop",
           "loop unaffected", "planner", _read_planner, None),
    Target("obs_to_actuation", "Observation-to-actuation (camera timestamp -> first serial write)",
           "(no target; for orientation)", "stages", _read_obs_to_act, None),
)


def _row(t: Target, status: str, measured: str, note: str) -> dict:
    return {"key": t.key, "what": t.what, "goal": t.goal, "measured": measured, "status": status,
            "source": t.source, "note": note}


def evaluate(benchmarks: dict, targets: tuple[Target, ...] = TARGETS) -> list[dict]:
    """Headline rows from the suite's per-benchmark records (name -> {status, result, reason})."""
    rows = []
    for t in targets:
        rec = benchmarks.get(t.source)
        if rec is None:
            rows.append(_row(t, NOT_MEASURED, "—", f"benchmark '{t.source}' was not selected"))
            continue
        if rec.get("status") != "ok":
            rows.append(_row(t, NOT_MEASURED, "—", f"'{t.source}' {rec.get('status')}: {rec.get('reason', '')}"))
            continue
        try:
            reading = t.read(rec.get("result") or {})
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            rows.append(_row(t, NOT_MEASURED, "—", f"could not read '{t.source}' result: {exc}"))
            continue
        if reading is None or (reading.value is None and t.ok is not None):
            rows.append(_row(t, NOT_MEASURED, "—", f"'{t.source}' did not report this value"))
        elif t.ok is None:
            rows.append(_row(t, INFO, reading.text, reading.note))
        elif not reading.at_conditions:
            rows.append(_row(t, OFF_CONDITIONS, reading.text, reading.note))
        else:
            rows.append(_row(t, PASS if t.ok(reading.value) else FAIL, reading.text, reading.note))
    for name, rec in benchmarks.items():
        for decl in get(rec, "result", "targets", default=None) or []:
            if not isinstance(decl, dict) or "name" not in decl:
                continue
            passed = decl.get("pass")
            status = PASS if passed is True else FAIL if passed is False else INFO
            rows.append({"key": f"{name}:{decl['name']}", "what": str(decl["name"]),
                         "goal": str(decl.get("target", "")), "measured": fmt(decl.get("measured")),
                         "status": status, "source": name, "note": str(decl.get("note", ""))})
    return rows
