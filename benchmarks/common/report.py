"""results.json and report.md: the suite's two written outputs.

report.md is what a person reads first: the machine and how the run was made, the headline table
(each DESIGN.md target: goal, measured, pass/FAIL/not measured), which benchmarks ran, the plots,
per-benchmark tables, and a "Not measured here" section listing every path this machine could not
run (TensorRT, CUDA, Jetson, real devices) with the reason. Nothing in that section is estimated.
"""

from __future__ import annotations

import json
import pathlib

from benchmarks.common.machine import describe
from benchmarks.common.tables import fmt, markdown_table, render_result

SCHEMA = "dexgrasp-bench/1"


def write_json(path: pathlib.Path, data: dict) -> pathlib.Path:
    """Strict JSON (no NaN: the suite converts non-finite numbers to null before this)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def platform_not_measured(machine: dict) -> list[dict]:
    """Paths the project supports that this machine cannot run, decided from its description."""
    gpu = machine.get("gpu") or {}
    pkgs = machine.get("packages") or {}
    providers = machine.get("onnxruntime_providers") or []
    no_gpu = "no GPU on this machine" if not gpu.get("present") else ""
    out = []
    if not gpu.get("present") or not pkgs.get("tensorrt"):
        out.append({"what": "TensorRT engines (FP32 / FP16), native TensorRT backend",
                    "reason": no_gpu or "tensorrt is not installed"})
    for provider, label in (("CUDAExecutionProvider", "ONNX Runtime CUDA execution provider"),
                            ("TensorrtExecutionProvider", "ONNX Runtime TensorRT execution provider")):
        if provider not in providers:
            out.append({"what": label, "reason": no_gpu or f"this onnxruntime build lacks {provider}"})
    if gpu.get("kind") != "jetson":
        cpu = machine.get("cpu") or {}
        out.append({"what": "Jetson Orin onboard computer (aarch64, JetPack)",
                    "reason": f"this machine is {cpu.get('arch')} ({cpu.get('model')})"})
    out += [
        {"what": "RealSense cameras (capture latency, USB transfer)",
         "reason": "no camera attached; the synthetic camera stands in"},
        {"what": "Real microcontroller over USB-CDC / UART",
         "reason": "no MCU attached; the firmware emulator on a pseudo-terminal stands in"},
        {"what": "The real planner VLM (Qwen2.5-VL-72B on vLLM, remote GPU)",
         "reason": "no GPU server; a local stand-in with a configured delay stands in"},
    ]
    return out


def collect_not_measured(obj, source: str) -> list[dict]:
    """Every `not_measured` entry a benchmark reported, at any depth: a string, a list of strings or
    {what, reason} dicts, or a {what: reason} mapping."""
    found: list[dict] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("not_measured", "not_run"):
                found += _normalise(value, source)
            else:
                found += collect_not_measured(value, source)
    elif isinstance(obj, list):
        for item in obj:
            found += collect_not_measured(item, source)
    return found


def _normalise(value, source: str) -> list[dict]:
    if isinstance(value, str):
        return [{"what": value, "reason": "", "source": source}]
    if isinstance(value, dict):
        if "what" in value:
            return [{"what": str(value["what"]), "reason": str(value.get("reason", "")), "source": source}]
        return [{"what": str(k), "reason": str(v), "source": source} for k, v in value.items()]
    if isinstance(value, list):
        out = []
        for v in value:
            out += _normalise(v, source)
        return out
    return []


def not_measured_rows(results: dict) -> list[dict]:
    rows = [dict(r, source="machine") for r in platform_not_measured(results.get("machine") or {})]
    for name, rec in (results.get("benchmarks") or {}).items():
        if rec.get("status") == "ok":
            rows += collect_not_measured(rec.get("result") or {}, name)
        else:
            rows.append({"what": f"benchmark '{name}' (all of it)",
                         "reason": f"{rec.get('status')}: {_first_line(rec.get('reason', ''))}", "source": "suite"})
    seen, unique = set(), []
    for r in rows:
        key = (r["what"], r["source"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def _ran_on(record: dict) -> str:
    """What a benchmark says it ran on (its `device` and `backend` fields), or a dash."""
    res = record.get("result") or {}
    parts = [str(res[k]) for k in ("device", "backend") if res.get(k)]
    return "; ".join(parts)[:120] if parts else "—"


def _setup(setup: dict) -> str:
    m = setup.get("model") or {}
    if m.get("status") == "ok":
        return f"`{m.get('model_dir')}` ready in {fmt(m.get('duration_s'))} s (made once, then cached; not part of any timing)"
    return f"not ready: {m.get('status')}: {_first_line(m.get('reason', ''))}"


def _load(values) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "—"


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def render_markdown(results: dict) -> str:
    m = results.get("machine") or {}
    git = m.get("git") or {}
    lines = [
        "# Latency benchmark report",
        "",
        f"- **Machine:** {describe(m)}",
        f"- **Mode:** {'quick' if results.get('quick') else 'full'}; started {results.get('started_utc')} UTC; "
        f"wall time {fmt(results.get('wall_time_s'))} s",
        f"- **Commit:** {git.get('commit') or '—'}{' (uncommitted changes)' if git.get('dirty') else ''}",
        f"- **Config:** {(results.get('config') or {}).get('path') or 'none given (configs/sim.yaml where one is needed)'}; "
        f"model: {(results.get('options') or {}).get('model_dir') or 'made by the benchmarks'}",
        f"- **Load average** (1 / 5 / 15 min) before: {_load(results.get('load_before'))}; after: "
        f"{_load(results.get('load_after'))} (on a {(m.get('cpu') or {}).get('usable_cores')}-core machine; "
        "other load makes tails longer)",
        *([f"- **Setup:** controller model {_setup(results['setup'])}"] if results.get("setup") else []),
        f"- **Reproduce:** `{results.get('command', '')}`",
        "",
        "## Targets (DESIGN.md)",
        "",
        markdown_table(["what", "goal", "measured", "status", "note"],
                       [[h["what"], h["goal"], h["measured"], h["status"], h["note"]]
                        for h in results.get("headline", [])]),
        "_pass/FAIL only when measured at the target's conditions; 'not at target conditions' shows the "
        "number measured under other conditions (e.g. the small preset in a quick run)._",
        "",
        "## Benchmarks",
        "",
        markdown_table(["benchmark", "status", "duration [s]", "ran on", "reason"],
                       [[n, r.get("status"), r.get("duration_s"), _ran_on(r), _first_line(r.get("reason", ""))]
                        for n, r in (results.get("benchmarks") or {}).items()]),
    ]
    plots = results.get("plots") or []
    if plots:
        lines += ["## Plots", ""]
        for p in plots:
            if p.get("path"):
                lines += [f"**{p['title']}**", "", f"![{p['title']}]({p['path']})", ""]
            else:
                lines += [f"- {p['title']}: not drawn ({p.get('reason')})"]
        lines.append("")
    for name, rec in (results.get("benchmarks") or {}).items():
        if rec.get("status") == "not_run":
            continue  # the Benchmarks table above says why
        lines += [f"## {name}", ""]
        if rec.get("status") != "ok":
            lines += [f"**{rec.get('status')}**: {fmt(rec.get('reason', ''))}", ""]
            if rec.get("log"):
                lines += [f"Log: `{rec['log']}`", ""]
            continue
        lines += [render_result(rec.get("result") or {}), ""]
    lines += ["## Not measured here", "",
              "These paths exist in the project but could not run on this machine; no number in this "
              "report stands for them.", "",
              markdown_table(["what", "why not", "reported by"],
                             [[r["what"], r["reason"], r["source"]] for r in results.get("not_measured", [])])]
    return "\n".join(lines) + "\n"


def render_summary(results: dict) -> str:
    """A short, paste-ready block for a README: machine, how to reproduce, the targets, and the
    per-stage and controller tables when those benchmarks ran."""
    m = results.get("machine") or {}
    git = (m.get("git") or {}).get("commit") or "—"
    lines = [
        f"Measured {results.get('started_utc')} UTC on {describe(m)}, commit `{git[:10]}`, "
        f"{'quick' if results.get('quick') else 'full'} run ({fmt(results.get('wall_time_s'))} s; load average "
        f"before {_load(results.get('load_before'))}). Reproduce: `{results.get('command', '')}`",
        "",
        markdown_table(["what", "goal", "measured", "status"],
                       [[h["what"], h["goal"], h["measured"], h["status"]] for h in results.get("headline", [])]),
    ]
    for name in ("stages", "controller"):
        rec = (results.get("benchmarks") or {}).get(name) or {}
        for table in (rec.get("result") or {}).get("tables") or []:
            if isinstance(table, dict) and table.get("rows"):
                lines += [f"**{fmt(table.get('title', name))}**", "",
                          markdown_table(list(table.get("columns", [])), [list(r) for r in table["rows"]])]
                break
    return "\n".join(lines) + "\n"
