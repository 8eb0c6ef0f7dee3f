"""Where each millisecond of a control cycle goes: per-stage latency and observation-to-actuation.

Measured through the running runtime (runtime.app.App, all its threads: cameras, tracker, policy
worker, the fixed-rate control loop, the bridge) with instrumented stand-ins around the real
components (benchmarks.common.pipeline_probe), so the numbers include the contention between
threads a robot sees:

    capture -> tracker -> preprocess -> encoder -> denoise -> postprocess -> command sent

per stage p50 / p99 / max, and observation-to-actuation: the chunk's observation timestamp (the
older of the head and wrist capture times) to the end of the first serial write carrying an
action computed from it. The first inference is a warm-up and not counted.

Benchmark-only overrides (recorded in the result): the control loop as a thread of the runtime
process (`control.process: thread`), so its serial writes can be timed; no planner (the tracker
starts on the target's box from the synthetic scene's ground truth); execution mode "upstream" with
a 60 s action age limit, so every chunk is executed however slow this CPU's inference is (the stage
latencies do not depend on these settings). Everything else comes from the config (default
configs/sim.yaml).

    python benchmarks/stages.py --quick --out bench-out/stages
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
import time

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.common.timing import summarize

log = logging.getLogger(__name__)

TARGET_OBJECT = "red cube"
OVERRIDES = {
    # The loop runs as a thread of this process so its serial writes can be timed here; with
    # `control.process: separate` (the sim default) the same loop runs in a child process and a
    # chunk crosses one more pipe (parent -> loop process) before its first write.
    "control": {"process": "thread"},
    "planner": {"enabled": False, "autostart": False},
    "execution": {"mode": "upstream"},
    "safety": {"max_action_age_s": 60.0},
    "telemetry": None,
    "recording": None,
}


def _target_box(cfg) -> list[float]:
    """The target's box in the first head frame, from the synthetic scene's ground truth."""
    from runtime.cameras.scene import mask_box
    from runtime.cameras.synthetic import ground_truth_mask, make_synthetic_cameras

    scene, head, _ = make_synthetic_cameras(lambda: __import__("numpy").asarray(cfg.robot.home_positions),
                                            ground_truth=True, seed=cfg.cameras.seed)
    box = mask_box(ground_truth_mask(head.render_frame(0, 0.0), TARGET_OBJECT))
    if box is None:
        raise RuntimeError(f"the synthetic scene does not show '{TARGET_OBJECT}' in the head view")
    return [float(v) for v in box]


def _make_bridge(cfg, clock, notes: list):
    """The config's bridge (the firmware emulator over a pseudo-terminal in sim); the in-process
    fake only if the firmware bridge cannot start here, said so in the result."""
    from runtime.config import components

    try:
        return components.make_bridge(cfg, clock), cfg.bridge.kind
    except (ImportError, OSError, RuntimeError) as exc:
        if cfg.bridge.kind == "fake":
            raise
        notes.append({"what": "command sent over the serial link (firmware bridge + emulator)",
                      "reason": f"bridge '{cfg.bridge.kind}' could not start here ({type(exc).__name__}: {exc}); "
                                "the in-process fake bridge stood in, so 'command sent' has no serial write"})
        fake = cfg.model_copy(update={"bridge": cfg.bridge.model_copy(update={"kind": "fake"})})
        return components.make_bridge(fake, clock), "fake"


def _load(config: str | None, model_dir: str | None):
    from runtime.config.loading import load_config
    from runtime.config.models import resolve_model_dir

    cfg = load_config(config or "sim", OVERRIDES)
    model = pathlib.Path(model_dir) if model_dir else resolve_model_dir(cfg.policy, progress=False, robot=cfg.robot)
    return cfg, model


def _timeline(rec, cycle: dict) -> list[dict]:
    from benchmarks.common.pipeline_probe import LANE

    key = cycle["key"]
    spans = rec.spans_of(key) if key is not None else {}
    return [{"stage": stage, "lane": LANE[stage], "start_ms": (t0 - key) * 1e3, "end_ms": (t1 - key) * 1e3}
            for stage, (t0, t1) in sorted(spans.items(), key=lambda kv: kv[1][0])]


def run(quick: bool, out_dir: pathlib.Path, config: str | None = None, model_dir: str | None = None,
        cycles: int | None = None, **_opts) -> dict:
    """Run the App until `cycles` chunks (plus one warm-up) have reached the serial link.

    Blocks for the whole run: about 30 s in quick mode on 2 cores with the small preset (each
    inference takes seconds there). Stops at a deadline even if fewer chunks arrived.
    """
    import numpy as np

    from benchmarks.common import pipeline_probe as probe
    from runtime.app import App
    from runtime.clock import Clock
    from runtime.config import components
    from runtime.controller import Controller
    from runtime.errors import StaleDataError

    cycles = cycles or (3 if quick else 20)
    deadline_s = 100.0 if quick else 900.0
    cfg, model = _load(config, model_dir)
    cfg = cfg.model_copy(update={"tracker": cfg.tracker.model_copy(update={"manual_box_xyxy": _target_box(cfg)})})
    clock = Clock()
    rec = probe.StageRecorder(clock)
    notes: list = []
    handle, bridge_kind = _make_bridge(cfg, clock, notes)
    timed_bridge = probe.TimedBridge(handle.bridge, rec)
    handle.bridge = timed_bridge
    p = cfg.policy
    controller = Controller.from_dir(model, backend=p.backend, providers=p.providers, threads=p.threads)
    policy = probe.TimedPolicy(controller, rec)
    state_fn = {}
    head, wrist, scene = components.make_cameras(cfg, clock, lambda: state_fn["f"]())
    cams = (probe.TimedCamera(head, rec, "capture"), probe.TimedCamera(wrist, rec, None), scene)
    tracker = components.make_tracker(cfg)
    app = App(cfg, clock=clock, bridge_handle=handle, cameras=cams, policy=policy,
              tracker=probe.TimedTracker(tracker, rec) if tracker is not None else None, model_dir=model)
    home = np.asarray(cfg.robot.home_positions, dtype=np.float64)

    def robot_positions() -> np.ndarray:
        """What the synthetic scene draws: the measured joints, the home pose until the first state."""
        try:
            return np.asarray(timed_bridge.latest_state(None).positions, dtype=np.float64)
        except StaleDataError:
            return home

    state_fn["f"] = robot_positions
    app.chunks = probe.ChunkMailbox("chunks", clock, rec)
    t_start = time.monotonic()
    try:
        app.start()
        timed_bridge.executor = app.loop.executor
        while len(rec.cycles) < cycles + 1 and time.monotonic() - t_start < deadline_s:
            if not app.loop.alive:
                break
            time.sleep(0.2)
    finally:
        app.stop()
    report = app.report()
    wall_s = time.monotonic() - t_start

    done = rec.cycles[1:]  # the first chunk is the warm-up (first ONNX Runtime runs are slower)
    stage_samples = {}
    for stage, _lane in probe.STAGES:
        s = list(rec.samples.get(stage, []))
        if stage in ("preprocess", "encoder", "denoise", "postprocess") and s:
            s = s[1:]  # drop the warm-up inference
        stage_samples[stage] = s
    stages_ms = {stage: summarize(s, unit="ms") for stage, s in stage_samples.items()}
    o2a = [c["obs_to_actuation_s"] for c in done]
    result: dict = {
        "device": "cpu",
        "measured_through": "runtime.app.App (all runtime threads) with instrumented components",
        "backend": f"{p.backend} {p.providers or ['CPUExecutionProvider']}, {p.threads} thread(s)",
        "model_dir": str(model),
        "model": _model_summary(model),
        "bridge": f"{bridge_kind}: {handle.description}",
        "camera": f"synthetic {cfg.cameras.head.width}x{cfg.cameras.head.height} @ {cfg.cameras.head.fps} fps",
        "tracker": cfg.tracker.kind,
        "config": config or "sim",
        "overrides": OVERRIDES,
        "cycles_measured": len(done),
        "cycles_requested": cycles,
        "warmup_cycles": 1 if rec.cycles else 0,
        "wall_time_s": wall_s,
        "stages_ms": stages_ms,
        "observation_to_actuation_ms": summarize(o2a, unit="ms"),
        "control_loop": {k: report["control"].get(k) for k in
                         ("rate_hz_target", "rate_hz_achieved", "lateness_us", "missed_cycles", "cycle_work_us")},
        "policy": report.get("policy"),
        "camera_counts": {k: report["camera"].get(k) for k in ("frames", "dropped")},
        "realtime": report.get("realtime"),
        "errors": report.get("errors", [])[:10],
        "not_measured": notes,
    }
    if len(done) < cycles:
        result["shortfall"] = (f"only {len(done)} of {cycles} chunks reached the serial link within "
                               f"{deadline_s:.0f} s (policy inferences: {report['policy'].get('inferences')})")
    result["tables"] = [_stage_table(stages_ms, result["observation_to_actuation_ms"])]
    timeline = []
    if done:
        median = sorted(done, key=lambda c: c["obs_to_actuation_s"])[len(done) // 2]
        timeline = _timeline(rec, median)
        result["timeline_cycle"] = {"obs_to_actuation_ms": median["obs_to_actuation_s"] * 1e3, "spans": timeline}
    lateness = app.loop.rate.lateness.samples() * 1e6
    result["plot_data"] = {
        "histograms": {**{f"{k} [ms]": [x * 1e3 for x in v] for k, v in stage_samples.items() if len(v) >= 3},
                       **({"observation-to-actuation [ms]": [x * 1e3 for x in o2a]} if len(o2a) >= 2 else {})},
        "lateness_series": {
            f"{cfg.control.rate_hz:.0f} Hz control loop inside the App, beside inference":
                {"t_s": (np.arange(lateness.size) / cfg.control.rate_hz).tolist(), "lateness_us": lateness.tolist()}},
        "timeline": timeline,
    }
    return result


def _model_summary(model: pathlib.Path) -> str | None:
    """'dinov2_vits14 head / dinov2_vits14 wrist, 4-layer DiT, 16 steps' from the manifest."""
    try:
        manifest = json.loads((model / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    arch = manifest.get("arch") or {}
    return (f"{arch.get('head_model_type')} head / {arch.get('wrist_model_type')} wrist, "
            f"{arch.get('n_layer')}-layer DiT, {manifest.get('num_inference_steps')} DDIM steps, "
            f"{manifest.get('precision')}")


def _stage_table(stages_ms: dict, o2a: dict) -> dict:
    from benchmarks.common.pipeline_probe import LANE

    def share(p50):
        total = o2a.get("p50")
        if p50 is None or not total:
            return None
        pct = 100.0 * p50 / total
        return f"{pct:.1f} %" if pct >= 1 else f"{pct:.3f} %"

    rows = [[stage, LANE[stage], s["count"], s["p50"], s["p99"], s["max"], share(s["p50"])]
            for stage, s in stages_ms.items()]
    rows.append(["observation -> actuation", "end to end", o2a["count"], o2a["p50"], o2a["p99"], o2a["max"],
                 "100 %" if o2a.get("p50") else None])
    return {"title": "Per-stage latency in the running App [ms]",
            "columns": ["stage", "thread", "count", "p50", "p99", "max", "share of obs->act p50"], "rows": rows,
            "note": "capture: frame timestamp -> frame delivered; command sent: one control cycle's "
                    "send_targets (serial write); observation -> actuation: chunk observation time -> "
                    "end of the first serial write of an action computed from it. The shares do not "
                    "add up to 100 %: the rest is waiting (for the next frame, the tracker, a control tick)."}


def main(argv: list[str] | None = None) -> int:
    """Per-stage latency and observation-to-actuation through the running App.

    Example: python benchmarks/stages.py --quick --out bench-out/stages
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 measured cycles instead of 20")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out/stages"))
    parser.add_argument("--config", default=None, help="runtime config (default: sim)")
    parser.add_argument("--model", default=None, help="exported controller dir (default: cached small model)")
    parser.add_argument("--cycles", type=int, default=None, help="measured control cycles (chunks)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    from benchmarks.common.child import to_jsonable

    res = to_jsonable(run(args.quick, args.out, config=args.config, model_dir=args.model, cycles=args.cycles))
    res.pop("plot_data", None)
    (args.out / "stages.json").write_text(json.dumps(res, indent=2))
    for row in res["tables"][0]["rows"]:
        print("  ".join(str(round(v, 3)) if isinstance(v, float) else str(v) for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
