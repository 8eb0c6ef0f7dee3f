"""Planner link latency, and proof that planner traffic does not disturb a 200 Hz control loop.

What it measures (loopback TCP, CPU only):
  * round trip: client submit -> ZeroMQ -> PlannerServer -> HTTP -> a local stand-in VLM that
    answers a valid box after a configurable delay -> validation -> client, p50/p99/max, for each
    delay; the link's own overhead is the round trip minus the stand-in's delay. Also the local
    OpenCV backend behind the same server (no HTTP).
  * control loop isolation: a `runtime.rate.Rate` loop at 200 Hz in this process (its thread under
    SCHED_FIFO 80 and a 0.5 ms GIL switch interval when permitted, like configs/sim.yaml), alternately alone
    and while the planner client in the same process keeps requests in flight (JPEG encoding of
    640x480 head frames, msgpack, ZeroMQ I/O thread). The server and stand-in VLM run in a child
    process, as on a robot (the server sits beside the VLM). Phases alternate (alone, traffic,
    alone, traffic, ...) so machine noise hits both alike; lateness p50/p99/max and missed cycles.
What it cannot measure here: a real VLM (Qwen2.5-VL on a GPU server), a real network (Wi-Fi / LAN
latency and loss), and CURVE's crypto cost on a Jetson CPU.

    python benchmarks/planner.py --quick --out bench-out/planner
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import pathlib
import socket
import sys
import threading
import time

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common.timing import summarize

BOX_REPLY = '{"bbox_2d": [100, 200, 150, 250], "label": "red cube"}'


class StandInVLM:
    """An OpenAI chat-completions endpoint on 127.0.0.1 answering BOX_REPLY after `delay_s`."""

    def __init__(self, delay_s: float = 0.0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.delay_s = delay_s
        body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": BOX_REPLY},
                                        "finish_reason": "stop"}]}).encode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out as separate writes: without TCP_NODELAY, Nagle plus the
                # client's delayed ACK adds ~40 ms to every reply (a stand-in artefact, not the link's).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server naming
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.delay_s > 0:
                    time.sleep(outer.delay_s)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="stand-in-vlm",
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> StandInVLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _vlm_server(url: str, workers: int = 2):
    from runtime.planner.server import PlannerServer
    from runtime.planner.vlm_backend import VLMBackend
    from runtime.planner.vlm_http import OpenAIChatClient

    return PlannerServer(VLMBackend(OpenAIChatClient(url, model="stand-in")), "tcp://127.0.0.1:*", workers=workers)


def head_frame() -> np.ndarray:
    """The synthetic scene's head view (realistic JPEG size), or a drawn stand-in."""
    try:
        from runtime.cameras.scene import HeadRenderer, TabletopScene

        return HeadRenderer().render(TabletopScene().snapshot())
    except ImportError:
        import cv2

        img = np.full((480, 640, 3), (120, 140, 150), np.uint8)
        cv2.rectangle(img, (100, 200), (150, 250), (30, 30, 220), -1)
        return img


def round_trips(client, image: np.ndarray, n: int, timeout_s: float = 10.0) -> dict:
    rtts, server_s, vlm_s, failures = [], [], [], []
    for i in range(n + 2):  # 2 warm-ups
        call = client.submit("bbox", {"head": image}, episode_id="bench", timeout_s=timeout_s, instruction="the red cube")
        reply = call.wait(timeout_s + 1.0)
        if i < 2:
            continue
        if reply is None or not reply.ok:
            failures.append(None if reply is None else f"{reply.error_code}: {reply.error_message}")
            continue
        rtts.append(reply.rtt_s)
        t = reply.timing
        server_s.append(t["t_server_send"] - t["t_server_recv"])
        if "vlm_latency_s" in t:
            vlm_s.append(t["vlm_latency_s"])
    return {"rtt_ms": summarize(rtts), "server_ms": summarize(server_s), "vlm_http_ms": summarize(vlm_s),
            "failures": len(failures), "first_failure": failures[0] if failures else None}


def bench_round_trip(delays_s, n: int) -> dict:
    from runtime.planner.client import PlannerClient
    from runtime.planner.local_backend import LocalBackend
    from runtime.planner.server import PlannerServer

    image = head_frame()
    out = {}
    for delay in delays_s:
        with StandInVLM(delay) as vlm, _vlm_server(vlm.url) as server, PlannerClient(server.endpoint) as client:
            client.wait_connected(5.0)
            r = round_trips(client, image, n)
            r["stand_in_delay_ms"] = delay * 1e3
            if r["rtt_ms"]["p50"] is not None:
                r["link_overhead_p50_ms"] = r["rtt_ms"]["p50"] - delay * 1e3
            out[f"vlm_delay_{int(delay * 1e3)}ms"] = r
    with PlannerServer(LocalBackend(), "tcp://127.0.0.1:*") as server, PlannerClient(server.endpoint) as client:
        client.wait_connected(5.0)
        out["local_backend"] = round_trips(client, image, n)
    return out


def _child_server(delay_s: float, endpoint_q, stop_evt) -> None:
    """Child process: stand-in VLM + planner server until `stop_evt`."""
    with StandInVLM(delay_s) as vlm, _vlm_server(vlm.url) as server:
        endpoint_q.put(server.endpoint)
        stop_evt.wait(600)


def _loop_phase(duration_s: float, traffic: bool, client, image, fifo_priority: int | None) -> dict:
    from runtime.clock import Clock
    from runtime.rate import Rate
    from runtime.realtime import apply_thread_realtime

    stop = threading.Event()
    sent = {"ok": 0, "failed": 0}

    def pump() -> None:
        # Keep 2 requests in flight: far more planner traffic than an episode makes (~1 request / s).
        inflight = []
        while not stop.is_set():
            while len(inflight) < 2:
                inflight.append(client.submit("bbox", {"head": image}, episode_id="bench", timeout_s=5.0,
                                              instruction="the red cube"))
            for c in list(inflight):
                r = c.reply()
                if r is not None:
                    inflight.remove(c)
                    sent["ok" if r.ok else "failed"] += 1
            stop.wait(0.002)

    pumper = threading.Thread(target=pump, name="bench-planner-traffic", daemon=True) if traffic else None
    if pumper:
        pumper.start()
    result: dict = {}

    def loop() -> None:
        # Scheduled like the runtime's control loop (configs/sim.yaml: SCHED_FIFO 80 when permitted).
        result["realtime"] = apply_thread_realtime(fifo_priority) if fifo_priority else {"sched_fifo": "off"}
        rate = Rate(200.0, Clock(), name="bench-control")
        state = np.zeros(13)
        t_end = time.monotonic() + duration_s
        while time.monotonic() < t_end:
            rate.sleep()
            state = np.clip(state + 1e-3, -1, 1)  # a control step's worth of numpy work
        result["rate"] = rate

    looper = threading.Thread(target=loop, name="bench-control-loop", daemon=True)
    looper.start()
    looper.join(duration_s + 30)
    stop.set()
    if pumper:
        pumper.join(5)
    rate = result["rate"]
    lateness = rate.lateness.samples()[1:]
    return {"lateness_s": lateness, "missed": rate.missed_cycles, "cycles": rate.cycles,
            "planner_replies": sent["ok"], "planner_failures": sent["failed"], "realtime": result["realtime"]}


def bench_loop_isolation(phase_s: float, repeats: int, vlm_delay_s: float, fifo_priority: int | None = 80,
                         switch_interval_ms: float | None = 0.5) -> dict:
    from runtime.planner.client import PlannerClient
    from runtime.realtime import SwitchInterval

    ctx = mp.get_context("spawn")
    endpoint_q, stop_evt = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_child_server, args=(vlm_delay_s, endpoint_q, stop_evt), name="planner-server")
    child.start()
    try:
        endpoint = endpoint_q.get(timeout=60)
        image = head_frame()
        switch = SwitchInterval(switch_interval_ms)
        with PlannerClient(endpoint) as client, switch:
            if not client.wait_connected(10.0):
                raise RuntimeError(f"planner server in the child process did not answer at {endpoint}")
            phases = {"alone": [], "planner_traffic": []}
            for _ in range(repeats):
                phases["alone"].append(_loop_phase(phase_s, False, client, image, fifo_priority))
                phases["planner_traffic"].append(_loop_phase(phase_s, True, client, image, fifo_priority))
            switch_desc = switch.describe()
    finally:
        stop_evt.set()
        child.join(10)
        if child.is_alive():
            child.kill()
    out = {}
    for name, runs in phases.items():
        lat = np.concatenate([r["lateness_s"] for r in runs])
        out[name] = {"lateness_us": summarize(lat, unit="us"), "missed_cycles": sum(r["missed"] for r in runs),
                     "cycles": sum(r["cycles"] for r in runs),
                     "planner_replies": sum(r["planner_replies"] for r in runs),
                     "planner_failures": sum(r["planner_failures"] for r in runs),
                     "_samples_us": (lat * 1e6).tolist()}
    dur = phase_s * repeats
    out["planner_traffic"]["planner_requests_per_s"] = out["planner_traffic"]["planner_replies"] / dur
    out["phase_s"], out["repeats"], out["stand_in_delay_ms"] = phase_s, repeats, vlm_delay_s * 1e3
    out["loop_thread_realtime"] = phases["alone"][0]["realtime"]
    out["switch_interval"] = switch_desc
    return out


def run(quick: bool, out_dir: pathlib.Path, delays_ms=None, n: int | None = None, phase_s: float | None = None,
        repeats: int | None = None, fifo_priority: int | None = 80, switch_interval_ms: float | None = 0.5,
        **opts) -> dict:
    """Round trips and loop isolation; JSON-ready results (also written to out_dir/planner.json)."""
    import platform

    import zmq

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    delays_ms = delays_ms or ([0, 50] if quick else [0, 50, 200])
    n = n or (30 if quick else 200)
    phase_s = phase_s or (2.0 if quick else 5.0)
    repeats = repeats or (2 if quick else 4)
    t0 = time.monotonic()
    rt = bench_round_trip([d / 1e3 for d in delays_ms], n)
    iso = bench_loop_isolation(phase_s, repeats, vlm_delay_s=0.02, fifo_priority=fifo_priority,
                               switch_interval_ms=switch_interval_ms)
    samples = {f"200 Hz loop lateness, {k} [us]": iso[k].pop("_samples_us") for k in ("alone", "planner_traffic")}
    result = {
        "benchmark": "planner",
        "quick": quick,
        "device": f"CPU {platform.machine()}, loopback TCP, ZeroMQ {zmq.zmq_version()} / pyzmq {zmq.__version__}",
        "round_trip": rt,
        "loop_isolation": iso,
        "not_measured": ["a real VLM (Qwen2.5-VL via vLLM on a GPU): the stand-in answers after a fixed delay",
                         "a real network (Wi-Fi / LAN latency, loss): loopback only",
                         "CURVE encryption cost on a Jetson CPU"],
        "plot_data": {"histograms": samples},
    }
    result["wall_s"] = time.monotonic() - t0
    (out_dir / "planner.json").write_text(json.dumps({k: v for k, v in result.items() if k != "plot_data"}, indent=2))
    return result


def _print_summary(r: dict) -> None:
    print(f"planner benchmark ({'quick' if r['quick'] else 'full'}) on {r['device']}")
    for name, x in r["round_trip"].items():
        s = x["rtt_ms"]
        extra = f", link overhead p50 {x['link_overhead_p50_ms']:.2f} ms" if "link_overhead_p50_ms" in x else ""
        print(f"  round trip {name:18s} p50 {s['p50']:.2f} / p99 {s['p99']:.2f} / max {s['max']:.2f} ms "
              f"({s['count']} requests, {x['failures']} failed){extra}")
    iso = r["loop_isolation"]
    for name in ("alone", "planner_traffic"):
        x = iso[name]
        s = x["lateness_us"]
        print(f"  200 Hz loop, {name:15s} lateness p50 {s['p50']:.0f} / p99 {s['p99']:.0f} / max {s['max']:.0f} us, "
              f"missed {x['missed_cycles']} of {x['cycles']} cycles")
    print(f"    (planner traffic: {iso['planner_traffic']['planner_requests_per_s']:.1f} replies/s in the same process; "
          f"loop thread {iso['loop_thread_realtime']}, {iso['switch_interval']})")


def main(argv: list[str] | None = None) -> int:
    """python benchmarks/planner.py --quick --out bench-out/planner

    Prints a summary and writes planner.json into --out.
    """
    p = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer requests and shorter loop phases (~20 s)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out/planner"), metavar="DIR")
    p.add_argument("--delays-ms", type=float, nargs="+", help="stand-in VLM delays (default 0 50 [200])")
    p.add_argument("--requests", type=int, help="timed round trips per delay")
    p.add_argument("--phase-s", type=float, help="seconds per loop phase")
    p.add_argument("--repeats", type=int, help="alone/traffic phase pairs")
    p.add_argument("--fifo", type=int, default=80, help="SCHED_FIFO priority of the loop thread (0 = default scheduler)")
    p.add_argument("--switch-ms", type=float, default=0.5, help="sys.setswitchinterval for the run (0 = leave it)")
    args = p.parse_args(argv)
    r = run(args.quick, args.out, delays_ms=args.delays_ms, n=args.requests, phase_s=args.phase_s,
            repeats=args.repeats, fifo_priority=args.fifo or None, switch_interval_ms=args.switch_ms or None)
    _print_summary(r)
    print(f"wrote {args.out / 'planner.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
