"""`dexgrasp run`: start the onboard runtime from a config and run until stopped."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading

DESCRIPTION = """\
Run the onboard runtime: cameras -> tracker -> policy -> fixed-rate control loop -> robot.

CONFIG is a YAML file or the name of a shipped preset (configs/<name>.yaml). The sim preset starts
everything it needs: the firmware emulator on a pseudo-terminal, synthetic cameras, the classical
tracker, a small random-weight controller (made and cached on first use; needs torch once).
Ctrl-C or SIGTERM stops safely: hold, disarm, close devices, flush telemetry and recording.

Examples:
  dexgrasp run --config configs/sim.yaml --duration 30 --report run.json
  dexgrasp run --config configs/robot_example.yaml
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the onboard runtime (Ctrl-C stops safely)", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="CONFIG", help="YAML file or preset name (e.g. sim)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--report", metavar="FILE", help="write the run report (JSON) here")
    p.add_argument("--model-dir", metavar="DIR", help="exported controller directory (overrides policy.model_dir)")
    p.add_argument("--record", metavar="DIR",
                   help="record every episode here in DexGraspVLA's training layout (zarr + video); "
                        "overrides recording.dir")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Example: dexgrasp run --config sim --duration 30 --report run.json"""
    from runtime.config import load_config

    overrides = {}
    if args.model_dir:
        overrides["policy"] = {"model_dir": args.model_dir}
    if args.record:
        overrides["recording"] = {"dir": args.record}
    cfg = load_config(args.config, overrides or None)
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        from runtime.errors import ConfigError

        raise ConfigError(f"--duration must be a positive number of seconds, got {args.duration}")
    report = run_app(cfg, duration_s=args.duration, quiet=args.quiet)
    if args.report:
        write_report(report, args.report)
    print(format_summary(report))
    if args.report:
        print(f"report written to {args.report}")
    if report.get("fatal"):
        # A supervisor (systemd, a test rig) must see that the run did not end as asked.
        print(f"dexgrasp run: error: {report['fatal']}", file=sys.stderr)
        return 1
    return 0


def run_app(cfg, duration_s: float | None, quiet: bool = False, model_dir=None) -> dict:
    """Start an App for `cfg`, run it with SIGINT/SIGTERM mapped to a safe stop, return the report."""
    from runtime.app import App

    stop = threading.Event()
    previous = {}

    def on_signal(signum, frame):
        if stop.is_set():  # a second Ctrl-C while stopping: let the default handler act
            signal.signal(signum, previous.get(signum, signal.SIG_DFL))
        print(f"\ndexgrasp run: {signal.Signals(signum).name}: stopping safely (hold, disarm, close) ...",
              file=sys.stderr, flush=True)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    app = App(cfg, model_dir=model_dir)
    try:
        print(f"dexgrasp run: starting '{cfg.name}' ({cfg.control.rate_hz:g} Hz control, bridge {cfg.bridge.kind}, "
              f"cameras {cfg.cameras.kind}, policy {cfg.policy.backend}) ...", file=sys.stderr, flush=True)
        app.start()
        print("dexgrasp run: running" + (f" for {duration_s:g} s" if duration_s else " (Ctrl-C to stop)")
              + f"; telemetry {_watch_line(cfg)}", file=sys.stderr, flush=True)
        progress = None if quiet or not sys.stderr.isatty() else _progress_line
        report = app.run(duration_s=duration_s, stop_event=stop, on_progress=progress)
        if progress is not None:
            print(file=sys.stderr)
        report["telemetry_watch"] = _watch_line(cfg)
        return report
    finally:
        app.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch_line(cfg) -> str:
    """How to watch this run over DDS, or why telemetry is off and how to turn it on (summary line)."""
    from runtime.telemetry.config import watch_summary

    if cfg.telemetry is None:
        return "off (no telemetry section in the config)"
    return watch_summary(cfg.telemetry)


def _progress_line(app) -> None:
    p = app.loop.progress()
    pw = app.policy_worker
    hold = p["hold_reason"] or "executing"
    line = (f"\r  t={app.clock.now() - app._t_start:6.1f} s  loop {p['achieved_hz']:7.2f} Hz  missed {p['missed_cycles']:4d}  "
            f"chunks {p['chunks_accepted']:3d}  inferences {pw.inferences:3d}  state: {hold:<20}")
    print(line, end="", file=sys.stderr, flush=True)


def write_report(report: dict, path: str) -> None:
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if hasattr(x, "tolist"):
            return x.tolist()
        return x

    with open(path, "w") as f:
        # default=repr: an unexpected object in a diagnostic field must not lose the whole report
        json.dump(clean(report), f, indent=2, default=repr)


def _ms(x) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.1f} ms"


def _us(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.0f} us" if x < 1000 else f"{x / 1000:.2f} ms"


def format_summary(report: dict) -> str:
    """A readable table of the report (what `dexgrasp run` and `dexgrasp demo` print at the end)."""
    c = report.get("control", {})
    lat = c.get("lateness_us") or {}
    p = report.get("policy", {})
    pl = p.get("latency_ms") or {}
    t = report.get("tracker", {})
    tl = t.get("latency_ms") or {}
    cam = report.get("camera", {})
    ex = c.get("executor", {})
    sf = c.get("safety", {})
    holds = c.get("hold_cycles", {})
    o2a = c.get("obs_to_actuation_ms") or {}
    cycles = max(1, c.get("cycles") or 1)
    achieved = c.get("rate_hz_achieved")
    target = c.get("rate_hz_target") or 0
    dev = (achieved / target - 1) * 100 if achieved and target and math.isfinite(achieved) else float("nan")
    hold_txt = ", ".join(f"{k} {v / cycles * 100:.0f}%" for k, v in sorted(holds.items(), key=lambda kv: -kv[1])) or "none"
    rt = report.get("realtime", {})
    ct = rt.get("control_thread") or {}
    rows = [
        ("control loop", f"{target:g} Hz target, {achieved or float('nan'):.2f} Hz achieved ({dev:+.2f} %), "
                         f"lateness p50 {_us(lat.get('p50'))}, p99 {_us(lat.get('p99'))}, max {_us(lat.get('max'))}, "
                         f"missed cycles {c.get('missed_cycles')}"),
        ("commands", f"{c.get('commands_sent', 0)} sent; holding: {hold_txt}"),
        ("policy", f"{p.get('engine') or '-'}; {p.get('inferences', 0)} inferences, latency p50 {_ms(pl.get('p50'))}, p99 {_ms(pl.get('p99'))}; "
                   f"observation -> actuation p50 {_ms(o2a.get('p50'))}, max {_ms(o2a.get('max'))}; "
                   f"chunks accepted {ex.get('chunks_accepted', 0)}, rejected stale {ex.get('chunks_rejected_stale', 0)}, "
                   f"non-finite {ex.get('chunks_rejected_nonfinite', 0)}; actions dropped late {ex.get('actions_dropped_late', 0)}"),
        ("tracker", f"{t.get('frames', 0)} frames, latency p50 {_ms(tl.get('p50'))}, p99 {_ms(tl.get('p99'))}, "
                    f"lost {t.get('lost_frames', 0)}"),
        ("cameras", f"{cam.get('frames', 0)} frames, {cam.get('dropped', 0)} dropped"),
        ("safety", f"position clamps {sf.get('clamped_position', 0)}, velocity-limited {sf.get('limited_velocity', 0)}, "
                   f"acceleration-limited {sf.get('limited_acceleration', 0)}, non-finite rejected "
                   f"{sf.get('rejected_nonfinite', 0)}, largest step {max(sf.get('largest_step') or [0]):.5f}"),
        ("bridge", ", ".join(f"{k} {v}" for k, v in list((report.get('bridge', {}).get('counters') or {}).items())[:8]) or "-"),
        ("realtime", f"SCHED_FIFO {ct.get('sched_fifo')}; affinity {ct.get('cpu_affinity')}; mlockall "
                     f"{rt.get('mlockall', 'off')}; GIL switch interval {rt.get('switch_interval', '-')}"),
        ("errors", "; ".join(report.get("errors") or []) or "none"),
    ]
    if report.get("telemetry_watch"):
        rows.insert(-1, ("telemetry", report["telemetry_watch"]))
    if report.get("warnings"):
        rows.append(("WARNINGS", "; ".join(report["warnings"])))
    rec = report.get("recording")
    if isinstance(rec, dict):
        dropped = {k[len("dropped_"):]: v for k, v in rec.items() if k.startswith("dropped_") and v}
        rows.insert(-2, ("recording", f"{rec.get('episodes_finished', 0)} episode(s) finished in {rec.get('dir', '?')}, "
                                      f"frames written {rec.get('frames_written', 0)} of {rec.get('frames_offered', 0)} "
                                      f"offered; dropped: " + (", ".join(f"{k} {v}" for k, v in dropped.items()) or "none")
                                      + f"; write errors {rec.get('write_errors', 0)}; writer on "
                                      + (f"CPUs {rec['writer_cpu_affinity']}" if rec.get("writer_cpu_affinity") else "any CPU")))
    ep = report.get("episode")
    if isinstance(ep, dict):
        keys = ("phase", "instruction", "attempts", "successes", "last_error", "planner_link")
        shown = ", ".join(f"{k} {ep[k]!r}" if isinstance(ep[k], str) else f"{k} {ep[k]}"
                          for k in keys if ep.get(k) not in (None, ""))
        rows.insert(4, ("episode", shown or "-"))
    width = max(len(k) for k, _ in rows)
    head = (f"dexgrasp: {report.get('config', '?')} ran {report.get('duration_s') or 0:.1f} s "
            f"(start-up {report.get('startup_s') or 0:.1f} s, shutdown {report.get('shutdown_s') or 0:.1f} s)")
    return "\n".join([head, "-" * len(head)] + [f"  {k:<{width}}  {v}" for k, v in rows])
