"""Perception latency: synthetic capture cost, capture-thread delivery, classical tracker, playback.

What it measures (all on the CPU, OpenCV only):
  * synthetic rendering: one head frame, one wrist frame, the pair (640x480, noise on), p50/p99/max;
  * capture thread: a synthetic camera at its fps through `CameraWorker` on the real clock, the
    delay from a frame's capture time to its publication in the mailbox (what consumers see);
  * classical tracker: init latency (GrabCut and colour init), per-frame latency p50/p99/max and
    IoU against the scene's ground truth over sequences where the arm sweeps across the table,
    occludes objects and one object slides;
  * RealSense playback: per-frame read cost of a recording played as fast as possible (when
    pyrealsense2 is installed), written from synthetic frames by librealsense's recorder.
What it cannot measure here: live RealSense capture latency and USB transfer (no camera).

    python benchmarks/perception.py --quick --out bench-out/perception
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common.timing import measure, summarize

SEQUENCE_OBJECTS = ("red cube", "green ball", "blue cube", "yellow cylinder")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def bench_rendering(quick: bool) -> dict:
    from runtime.cameras.synthetic import make_synthetic_cameras
    from runtime.clock import FakeClock

    _, head, wrist = make_synthetic_cameras(clock=FakeClock(), noise_std=2.0)
    reps = 100 if quick else 1000
    k = iter(range(10**9))
    out = {}
    for label, fn in (("head", lambda: head.render_frame(next(k), 0.0)),
                      ("wrist", lambda: wrist.render_frame(next(k), 0.0)),
                      ("pair", lambda: (head.render_frame(next(k), 0.0), wrist.render_frame(next(k), 0.0)))):
        out[label] = measure(fn, name=label, repeats=reps, warmup=10).to_dict("ms")
    return out


def bench_capture_thread(quick: bool) -> dict:
    """Real clock: a 30 fps synthetic camera through CameraWorker; capture -> publish delay."""
    from runtime.cameras.synthetic import make_synthetic_cameras
    from runtime.cameras.worker import CameraWorker
    from runtime.clock import Clock

    duration_s = 2.0 if quick else 10.0
    _, head, _ = make_synthetic_cameras(clock=Clock(), noise_std=2.0, fps=30.0)
    worker = CameraWorker(head)
    worker.start()
    time.sleep(duration_s)
    worker.stop()
    s = worker.stats()
    return {"duration_s": duration_s, "fps_target": 30.0, "frames": s["frames"], "dropped": s["dropped"],
            "stalls": s["stalls"], "fps_achieved": s["frames"] / duration_s,
            "publish_delay_ms": summarize(worker.delivery_latency.samples(), "ms")}


def _sequence(rig_q, scene, k: int, name: str) -> None:
    from runtime.cameras.scene import default_state

    q0 = default_state()
    rig_q[0] = q0[0] + 0.4 * np.sin(k / 10)
    rig_q[3] = q0[3] - 0.25 * np.sin(k / 7)
    if name == "red cube":
        scene.place(name, -0.16 + 0.08 * np.sin(k / 15), 0.32 + 0.05 * np.sin(k / 20))


def bench_tracker(quick: bool) -> dict:
    from runtime.cameras.scene import default_state, mask_box
    from runtime.cameras.synthetic import ground_truth_mask, make_synthetic_cameras
    from runtime.clock import FakeClock
    from runtime.tracking.classical import ClassicalTracker, ClassicalTrackerConfig

    n_frames = 60 if quick else 300
    objects = SEQUENCE_OBJECTS[:2] if quick else SEQUENCE_OBJECTS
    methods = ("grabcut",) if quick else ("grabcut", "color")
    per_run, track_all, cpu_all, init_all = [], [], [], {m: [] for m in methods}
    for method in methods:
        for name in objects:
            q = default_state()
            scene, head, _ = make_synthetic_cameras(lambda q=q: q, clock=FakeClock(), noise_std=2.0,
                                                    ground_truth=True)
            tracker = ClassicalTracker(ClassicalTrackerConfig(init_method=method))
            f = head.render_frame(0, 0.0)
            box = mask_box(ground_truth_mask(f, name)) + np.array([-4, -4, 4, 4])
            for _ in range(3):  # warm-up inits (also the measured ones below re-init from scratch)
                tracker.init(f.image, box)
            t0 = time.perf_counter()
            tracker.init(f.image, box)
            init_all[method].append(time.perf_counter() - t0)
            lat, cpu, ious, lost, occluded = [], [], [], 0, 0
            full = ground_truth_mask(f, name).sum()
            for k in range(1, n_frames + 1):
                _sequence(q, scene, k, name)
                f = head.render_frame(k, k / 30)
                t0, c0 = time.perf_counter(), time.process_time()
                res = tracker.track(f.image)
                lat.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                truth = ground_truth_mask(f, name)
                ious.append(_iou(res.mask, truth))
                lost += bool(res.lost)
                occluded += bool(truth.sum() < 0.5 * full)
            track_all += lat
            cpu_all += cpu
            per_run.append({"object": name, "init_method": method, "frames": n_frames,
                            "iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious)),
                            "iou_p10": float(np.percentile(ious, 10)), "lost_frames": lost,
                            "heavily_occluded_frames": occluded, "track_ms": summarize(lat, "ms")})
    return {"frames_per_sequence": n_frames, "resolution": "640x480",
            "init_ms": {m: summarize(v, "ms") for m, v in init_all.items()},
            "track_ms": summarize(track_all, "ms"),
            # process CPU time per frame (only the tracker runs here; includes OpenCV worker threads):
            # (on a shared, loaded machine the wall-clock tail is mostly scheduling)
            "track_cpu_ms": summarize(cpu_all, "ms"),
            "iou_mean": float(np.mean([r["iou_mean"] for r in per_run])),
            "sequences": per_run, "_track_samples_s": track_all}


def bench_playback(quick: bool) -> dict:
    try:
        import pyrealsense2  # noqa: F401
    except ImportError as exc:
        return {"measured": False, "reason": f"pyrealsense2 not importable ({exc})"}
    from runtime.cameras.realsense import RealSenseCamera
    from runtime.cameras.rs_recording import recording_suffix, write_recording
    from runtime.cameras.synthetic import make_synthetic_cameras
    from runtime.clock import FakeClock
    from runtime.errors import DeviceNotConnectedError

    n = 60 if quick else 300
    _, head, _ = make_synthetic_cameras(clock=FakeClock(), noise_std=2.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / f"bench{recording_suffix()}"
        write_recording(path, (head.render_frame(i, 0.0).image for i in range(n)), fps=30)
        cam = RealSenseCamera("third", bag_path=path, real_time=False)
        lat = []
        with cam:
            while True:
                t0 = time.perf_counter()
                try:
                    cam.read(timeout_ms=2000)
                except DeviceNotConnectedError:
                    break
                lat.append(time.perf_counter() - t0)
    return {"measured": True, "frames_recorded": n, "frames_read": len(lat), "format": recording_suffix(),
            "read_ms": summarize(lat, "ms"),
            "fps_as_fast_as_possible": len(lat) / sum(lat) if lat else None}


def run(quick: bool, out_dir: pathlib.Path, **opts) -> dict:
    """Run every perception measurement; JSON-ready results (also written to out_dir/perception.json)."""
    import cv2

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    load_before = os.getloadavg()
    tracker = bench_tracker(quick)
    samples = tracker.pop("_track_samples_s")
    result = {
        "benchmark": "perception",
        "quick": quick,
        "device": f"CPU (OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads)",
        "rendering_ms": bench_rendering(quick),
        "capture_thread": bench_capture_thread(quick),
        "tracker": tracker,
        "realsense_playback": bench_playback(quick),
        "not_measured": ["live RealSense capture latency and USB transfer: no camera on this machine",
                         "learned trackers (Cutie / SAM 2): another benchmark"],
        "plot_data": {"histograms": {"classical tracker per frame [ms]": [x * 1e3 for x in samples]}},
    }
    result["wall_s"] = time.monotonic() - t0
    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg()), "cpus": os.cpu_count()}
    (out_dir / "perception.json").write_text(json.dumps({k: v for k, v in result.items() if k != "plot_data"},
                                                        indent=2))
    return result


def _print_summary(r: dict) -> None:
    rd, tr, cap, pb = r["rendering_ms"], r["tracker"], r["capture_thread"], r["realsense_playback"]
    la = r["load_average"]
    print(f"perception benchmark ({'quick' if r['quick'] else 'full'}) on {r['device']}, "
          f"load average {la['before'][0]:.1f} -> {la['after'][0]:.1f} on {la['cpus']} CPUs")
    print(f"  synthetic render   head p50 {rd['head']['p50']:.2f} ms, wrist {rd['wrist']['p50']:.2f} ms, "
          f"pair p50 {rd['pair']['p50']:.2f} / p99 {rd['pair']['p99']:.2f} ms")
    print(f"  capture thread     {cap['fps_achieved']:.1f} fps, publish delay p50 "
          f"{cap['publish_delay_ms']['p50']:.2f} / p99 {cap['publish_delay_ms']['p99']:.2f} ms, dropped {cap['dropped']}")
    for m, s in tr["init_ms"].items():
        print(f"  tracker init       {m}: p50 {s['p50']:.2f} ms, max {s['max']:.2f} ms")
    t = tr["track_ms"]
    c = tr["track_cpu_ms"]
    print(f"  tracker per frame  p50 {t['p50']:.2f} / p99 {t['p99']:.2f} / max {t['max']:.2f} ms wall; "
          f"CPU p50 {c['p50']:.2f} / p99 {c['p99']:.2f} ms ({t['count']} frames), IoU mean {tr['iou_mean']:.3f}")
    for s in tr["sequences"]:
        print(f"    {s['object']:16s} {s['init_method']:8s} IoU mean {s['iou_mean']:.3f} p10 {s['iou_p10']:.3f} "
              f"lost {s['lost_frames']} (heavily occluded {s['heavily_occluded_frames']})")
    if pb.get("measured"):
        print(f"  RealSense playback read p50 {pb['read_ms']['p50']:.2f} ms ({pb['frames_read']} frames, {pb['format']})")
    else:
        print(f"  RealSense playback not measured: {pb['reason']}")


def main(argv: list[str] | None = None) -> int:
    """python benchmarks/perception.py --quick --out bench-out/perception

    Prints a summary and writes perception.json into --out.
    """
    p = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short sequences (under ~20 s)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out/perception"), metavar="DIR")
    args = p.parse_args(argv)
    r = run(args.quick, args.out)
    _print_summary(r)
    print(f"wrote {args.out / 'perception.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
