"""Episode recorder and DDS telemetry costs: what the runtime pays per step, and what the disk needs.

Measures (all on this machine's CPU and disk):
- producer step: the observer calls one recorded step costs the runtime's dispatcher thread
  (on_joint_state + on_frames + on_command, 640x480 head and wrist), paced like a camera;
- producer step while the disk is stuck (writer held inside a chunk write): still microseconds,
  drops counted;
- writer throughput (frames/s and MB/s of raw image data) for lz4 / no compression, with and without
  video, fsync on;
- verified load speed (sha256 of every file + zarr decode);
- DDS joint-state latency on loopback (publish call -> sample taken by a reader in the same process).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.common.timing import summarize  # noqa: E402

H, W = 480, 640


def _frames(n: int, rng: np.random.Generator):
    """Camera-like content (smooth gradient + noise) so compression ratios are not flattering."""
    base = np.linspace(0, 255, W, dtype=np.float32)[None, :, None].repeat(H, 0).repeat(3, 2)
    for i in range(n):
        noise = rng.integers(0, 24, size=(H, W, 3), dtype=np.uint8)
        head = (base + i).astype(np.uint8) + noise
        mask = np.zeros((H, W), np.uint8)
        mask[100 + i % 50:200 + i % 50, 200:300] = 1
        yield head, np.ascontiguousarray(head[:, ::-1]), mask


def _step(rec, i, head, wrist, mask, t):
    t0 = time.perf_counter()
    rec.on_joint_state(np.full(13, 0.001 * i))
    rec.on_frames(head, wrist, mask, t)
    rec.on_command(np.full(13, -0.001 * i), t + 1e-3)
    return time.perf_counter() - t0


def bench_producer(root: pathlib.Path, n: int, hz: float) -> dict:
    from runtime.recording import EpisodeRecorder, RecordingConfig

    rec = EpisodeRecorder(RecordingConfig(dir=str(root), min_free_mb=0)).start()
    frames = list(_frames(min(n, 60), np.random.default_rng(0)))
    lat = []
    rec.begin_episode("bench")
    t_next = time.monotonic()
    for i in range(n):
        head, wrist, mask = frames[i % len(frames)]
        lat.append(_step(rec, i, head, wrist, mask, time.monotonic()))
        t_next += 1.0 / hz
        time.sleep(max(0.0, t_next - time.monotonic()))
    rec.end_episode("success")
    rec.stop(timeout_s=120)
    return {"paced_hz": hz, "frames": n, "step_us": summarize(lat, "us"),
            "dropped_queue_full": rec.counters["dropped_queue_full"], "frames_written": rec.counters["frames_written"]}


GATE_ENV = "DEXGRASP_BENCH_GATE_DIR"


def hold_first_chunk(chunk_index: int) -> None:
    """Chunk hook run inside the writer process: park in chunk 0 until GATE/release exists."""
    import os

    if chunk_index != 0:
        return
    gate = pathlib.Path(os.environ[GATE_ENV])
    (gate / "entered").touch()
    deadline = time.monotonic() + 120
    while not (gate / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def bench_stuck_disk(root: pathlib.Path, n: int) -> dict:
    """Producer step cost while the writer process is parked inside a chunk write."""
    import os

    from runtime.recording import EpisodeRecorder, RecordingConfig

    gate = root / "gate"
    gate.mkdir(parents=True)
    os.environ[GATE_ENV] = str(gate)
    repo = str(pathlib.Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    cfg = RecordingConfig(dir=str(root / "rec"), min_free_mb=0, video=False, chunk_frames=4, queue_frames=16)
    rec = EpisodeRecorder(cfg, chunk_hook="benchmarks.recording:hold_first_chunk").start()
    frames = list(_frames(8, np.random.default_rng(1)))
    rec.begin_episode("stuck disk")
    for i in range(4):
        _step(rec, i, *frames[i], float(i))
    deadline = time.monotonic() + 60
    while not (gate / "entered").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    lat = [_step(rec, i, *frames[i % 8], float(i)) for i in range(4, 4 + n)]
    held = not (gate / "release").exists()
    (gate / "release").touch()
    counters = rec.counters
    rec.stop(timeout_s=120)
    return {"writer": "process", "writer_held_during_all_puts": held, "step_us": summarize(lat, "us"),
            "dropped_queue_full": counters["dropped_queue_full"], "queue_frames": cfg.queue_frames}


def bench_writer(root: pathlib.Path, n: int, compressor: str, video: bool) -> dict:
    from runtime.recording import EpisodeRecorder, RecordingConfig, list_episodes

    cfg = RecordingConfig(dir=str(root), min_free_mb=0, compressor=compressor, video=video, queue_frames=n + 8)
    frames = list(_frames(min(n, 60), np.random.default_rng(2)))
    rec = EpisodeRecorder(cfg).start()
    rec.begin_episode("throughput")
    t0 = time.perf_counter()
    for i in range(n):
        _step(rec, i, *frames[i % len(frames)], float(i))
    rec.end_episode("success")
    while rec.counters["episodes_finished"] < 1 and rec.counters["write_errors"] == 0:
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    rec.stop()
    path = list_episodes(root)[0]
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    raw = n * (H * W * 4 + H * W * 3)
    return {"compressor": compressor, "video": video, "frames": n, "wall_s": wall, "frames_per_s": n / wall,
            "raw_image_MB_per_s": raw / wall / 2**20, "disk_MB": disk / 2**20, "raw_MB": raw / 2**20,
            "write_errors": rec.counters["write_errors"], "path": path}


def bench_load(path: pathlib.Path) -> dict:
    from runtime.recording import load_episode

    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    t0 = time.perf_counter()
    ep = load_episode(path, verify=True)
    wall = time.perf_counter() - t0
    return {"frames": ep.frames, "wall_s": wall, "disk_MB_per_s": disk / wall / 2**20}


def bench_dds(n: int, hz: float) -> dict:
    try:
        import cyclonedds  # noqa: F401
    except ImportError:
        return {"measured": False, "reason": "cyclonedds (the dds extra) is not installed"}
    from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
    from cyclonedds.util import duration

    from runtime.telemetry.client import DdsClient
    from runtime.telemetry.config import DdsConfig
    from runtime.telemetry.node import TelemetryNode

    cfg = DdsConfig(enabled=True, domain_id=211, interface="lo", allow_multicast=False, peers=("127.0.0.1",))
    lat, call = [], []
    with TelemetryNode(cfg) as node:
        client = DdsClient(cfg)
        reader = client.joint_reader()
        ws = WaitSet(client._dp)
        cond = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        ws.attach(cond)
        deadline = time.monotonic() + 10
        while not node._w_states.get_matched_subscriptions() and time.monotonic() < deadline:
            time.sleep(0.01)
        sent_at: dict[int, float] = {}
        done = threading.Event()

        def receive():
            while not done.is_set():
                ws.wait(duration(milliseconds=50))
                now = time.perf_counter()
                for s in reader.take(N=64):
                    k = int(s.position[0])
                    if k in sent_at:
                        lat.append(now - sent_at[k])

        th = threading.Thread(target=receive, name="bench-dds-reader")
        th.start()
        for k in range(n):
            sent_at[k] = time.perf_counter()
            t0 = time.perf_counter()
            node.on_joint_state(np.array([float(k)] + [0.0] * 12))
            call.append(time.perf_counter() - t0)
            time.sleep(1.0 / hz)
        time.sleep(0.2)
        done.set()
        th.join(2)
        client.close()
    return {"measured": True, "transport": "UDP loopback (lo), unicast discovery", "rate_hz": hz, "sent": n,
            "received": len(lat), "observer_call_us": summarize(call, "us"), "publish_to_take_ms": summarize(lat, "ms")}


def _loop_lateness(duration_s: float, hz: float = 200.0, cpu: int | None = None) -> dict:
    """A 200 Hz loop on the shared Rate helper, in its own thread (like the control loop), on `cpu`
    when given (like control.realtime.cpu_affinity)."""
    from runtime.rate import Rate

    rate = Rate(hz, name="bench-loop", warn_interval_s=1e9)
    end = time.monotonic() + duration_s
    out: dict = {}

    def loop():
        import os

        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
            out["loop_sched"] = "SCHED_FIFO 50"
        except (PermissionError, OSError) as exc:
            out["loop_sched"] = f"default (SCHED_FIFO not permitted: {exc})"
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
            out["loop_cpu"] = cpu
        while time.monotonic() < end:
            rate.sleep()
        out.update(rate.report())

    th = threading.Thread(target=loop, name="bench-control-loop")
    th.start()
    return {"thread": th, "out": out}


def bench_loop_side_effect(root: pathlib.Path, duration_s: float) -> dict:
    """Lateness of a 200 Hz Rate loop alone, then while the recorder records 640x480 at 20 Hz with
    video, with the thread writer and with the process writer. The loop thread gets SCHED_FIFO when
    permitted (as `dexgrasp run` does on the robot; reported as loop_sched); the GIL switch interval
    is the runtime's default (control.realtime.switch_interval_ms = 0.5)."""
    from runtime.realtime import SwitchInterval

    with SwitchInterval(0.5):
        return _loop_side_effect(root, duration_s)


def _loop_side_effect(root: pathlib.Path, duration_s: float) -> dict:
    alone = _loop_lateness(duration_s)
    alone["thread"].join()
    out = {"loop_hz": 200.0, "duration_s": duration_s, "switch_interval_ms": 0.5, "alone": alone["out"]}
    for writer in ("thread", "process"):
        out[f"recording_{writer}_writer"] = _loop_while_recording(root / writer, duration_s, writer)
    import os

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:  # the runtime's default when the loop is pinned: the writer keeps off its CPU
        out["recording_process_writer_apart"] = _loop_while_recording(root / "apart", duration_s, "process",
                                                                      loop_cpu=cpus[-1], writer_cpus=cpus[:-1])
    return out


def _loop_while_recording(root: pathlib.Path, duration_s: float, writer: str, loop_cpu: int | None = None,
                          writer_cpus: list[int] | None = None) -> dict:
    from runtime.recording import EpisodeRecorder, RecordingConfig

    frames = list(_frames(30, np.random.default_rng(3)))
    rec = EpisodeRecorder(RecordingConfig(dir=str(root), min_free_mb=0, writer=writer,
                                          writer_cpu_affinity=writer_cpus)).start()
    rec.begin_episode("side effect")
    busy = _loop_lateness(duration_s, cpu=loop_cpu)
    i = 0
    t_next = time.monotonic()
    while busy["thread"].is_alive():
        _step(rec, i, *frames[i % len(frames)], time.monotonic())
        i += 1
        t_next += 1 / 20.0
        time.sleep(max(0.0, t_next - time.monotonic()))
    rec.end_episode("success")
    rec.stop(timeout_s=120)
    return {**busy["out"], "writer_cpus": writer_cpus, "frames_recorded": rec.counters["frames_written"],
            "dropped": rec.counters["dropped_queue_full"]}


def run(quick: bool, out_dir: pathlib.Path, **opts) -> dict:
    """All recording/telemetry measurements; JSON-ready (also written to out_dir/recording.json)."""
    import cv2

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = pathlib.Path(opts.get("scratch_dir") or tempfile.mkdtemp(prefix="bench-recording-"))
    t0 = time.monotonic()
    n = 60 if quick else 400
    try:
        writers = []
        for i, (comp, video) in enumerate((("lz4", False), ("none", False), ("lz4", True))):
            writers.append(bench_writer(scratch / f"w{i}", n, comp, video))
        load = bench_load(writers[0].pop("path"))
        for w in writers[1:]:
            w.pop("path")
        result = {
            "benchmark": "recording",
            "quick": quick,
            "device": f"CPU + the disk under {scratch} (OpenCV {cv2.__version__})",
            "frame": f"head {W}x{H}x4 (rgbm) + wrist {W}x{H}x3, uint8",
            "producer": bench_producer(scratch / "p", 60 if quick else 600, 30.0),
            "stuck_disk": bench_stuck_disk(scratch / "s", 200 if quick else 2000),
            "writer": writers,
            "load_verified": load,
            "dds": bench_dds(100 if quick else 1000, 100.0),
            "control_loop_side_effect": bench_loop_side_effect(scratch / "l", 3.0 if quick else 15.0),
            "not_measured": ["SD card / eMMC on a Jetson (this is the CI machine's disk)",
                             "DDS across a real network (loopback only here)",
                             "DDS-Security overhead (no certificates on this machine)"],
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["wall_s"] = time.monotonic() - t0
    (out_dir / "recording.json").write_text(json.dumps(result, indent=2))
    return result


def _print_summary(r: dict) -> None:
    p, s = r["producer"], r["stuck_disk"]
    print(f"recording benchmark ({'quick' if r['quick'] else 'full'}) on {r['device']}; {r['frame']}")
    print(f"  producer step      p50 {p['step_us']['p50']:.0f} / p99 {p['step_us']['p99']:.0f} / max "
          f"{p['step_us']['max']:.0f} us at {p['paced_hz']:.0f} Hz, dropped {p['dropped_queue_full']} of {p['frames']}")
    print(f"  disk stuck         p50 {s['step_us']['p50']:.0f} / p99 {s['step_us']['p99']:.0f} / max "
          f"{s['step_us']['max']:.0f} us, writer held throughout: {s['writer_held_during_all_puts']}, "
          f"dropped {s['dropped_queue_full']}")
    for w in r["writer"]:
        print(f"  writer {w['compressor']:4s} video={'on ' if w['video'] else 'off'} {w['frames_per_s']:.1f} frames/s, "
              f"{w['raw_image_MB_per_s']:.0f} MB/s raw, {w['disk_MB']:.0f} of {w['raw_MB']:.0f} MB on disk")
    print(f"  verified load      {r['load_verified']['disk_MB_per_s']:.0f} MB/s of episode files")
    le = r["control_loop_side_effect"]
    for name in ("alone", "recording_thread_writer", "recording_process_writer", "recording_process_writer_apart"):
        if name not in le:
            continue
        lat = le[name]["lateness_us"]
        print(f"  200 Hz loop {name:30s} lateness p50 {lat['p50']:.0f} / p99 {lat['p99']:.0f} / max {lat['max']:.0f} us, "
              f"missed {le[name]['missed_cycles']}")
    d = r["dds"]
    if d.get("measured"):
        print(f"  DDS joint state    publish->take p50 {d['publish_to_take_ms']['p50']:.2f} / p99 "
              f"{d['publish_to_take_ms']['p99']:.2f} ms ({d['received']}/{d['sent']}), observer call p99 "
              f"{d['observer_call_us']['p99']:.0f} us")
    else:
        print(f"  DDS not measured: {d['reason']}")


def main(argv: list[str] | None = None) -> int:
    """python benchmarks/recording.py --quick --out bench-out/recording

    Prints a summary and writes recording.json into --out.
    """
    p = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short runs (about 20 s)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out/recording"), metavar="DIR")
    p.add_argument("--scratch-dir", default=None, help="where to write the test episodes (default: a temp dir)")
    args = p.parse_args(argv)
    r = run(args.quick, args.out, scratch_dir=args.scratch_dir)
    _print_summary(r)
    print(f"wrote {args.out / 'recording.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
