"""Chunk hand-off delay across the control-process boundary (control.process: separate).

What is measured: from the parent putting a chunk into its chunks mailbox (what the policy worker
does) to the child's control loop first seeing it (its per-cycle `chunks.peek()` returning the new
chunk). That is the whole boundary: the parent's forwarder noticing the chunk, pickling, the pipe,
the child's reader, its mailbox and the wait for the loop's next cycle. The child is the real
`child_main` (fake bridge, 200 Hz) with one change: its chunks mailbox records when the loop first
peeks each chunk, written to a JSON file when the child ends. Chunks are submitted at irregular
intervals (so their phase against any polling period is random), each stamped t_obs = submit time,
so delay = t_first_peek - t_obs on the one CLOCK_MONOTONIC of the machine.

Also reports the child loop's own timing (lateness p50/p99/max, missed cycles) and the load average,
since the figures depend on what else the machine runs. Usage:

    python benchmarks/process_boundary.py --chunks 200 --out bench-out/process_boundary
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SEEN_ENV = "DEXGRASP_BENCH_SEEN_FILE"


def _config(rate_hz: float):
    from runtime.config import config_from_dict

    return config_from_dict({
        "control": {"rate_hz": rate_hz, "process": "separate"},
        "bridge": {"kind": "fake"}, "tracker": {"kind": "none"}, "policy": {"backend": "fake"},
        "planner": {"enabled": False, "autostart": False},
    }, "process_boundary benchmark")


def _instrumented_child(cfg_dict: dict, conn) -> None:
    """The real child_main, with a chunks mailbox that records the loop's first peek of each chunk."""
    from runtime.execution import loop_process
    from runtime.mailbox import Mailbox

    seen: dict[float, float] = {}

    class SeenMailbox(Mailbox):
        def peek(self):
            item = super().peek()
            if item is not None and item.value.t_obs not in seen:
                seen[item.value.t_obs] = self.clock.now()
            return item

    real = loop_process.child_main
    loop_process.Mailbox = SeenMailbox
    try:
        real(cfg_dict, conn)
    finally:
        pathlib.Path(os.environ[SEEN_ENV]).write_text(json.dumps(sorted(seen.items())))


def _pct(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"n": 0}
    return {"n": int(x.size), "p50_ms": float(np.percentile(x, 50) * 1e3), "p99_ms": float(np.percentile(x, 99) * 1e3),
            "max_ms": float(x.max() * 1e3), "mean_ms": float(x.mean() * 1e3)}


def run(quick: bool, out_dir: pathlib.Path, n_chunks: int = 200, rate_hz: float = 200.0, seed: int = 0) -> dict:
    from runtime.clock import Clock
    from runtime.execution import loop_process
    from runtime.execution.chunk import TimedChunk
    from runtime.execution.requests import ChunkRequests
    from runtime.mailbox import Mailbox

    if quick:
        n_chunks = min(n_chunks, 40)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen_file = pathlib.Path(tempfile.mkdtemp(prefix="pb-")) / "seen.json"
    os.environ[SEEN_ENV] = str(seen_file)  # inherited by the spawned child
    clock = Clock()
    cfg = _config(rate_hz)
    chunks, frames = Mailbox("chunks", clock), Mailbox("head", clock)
    original = loop_process.child_main
    loop_process.child_main = _instrumented_child
    proc = loop_process.ControlLoopProcess(cfg, ChunkRequests(), chunks, frames, clock=clock)
    load_before = os.getloadavg()
    try:
        proc.start()
        time.sleep(1.0)  # the loop arms and resyncs before the first chunk
        rng = np.random.default_rng(seed)
        submitted = []
        for i in range(n_chunks):
            t = clock.now()
            chunks.put(TimedChunk(np.zeros((8, 13)), t, t, 0.05, seq=i + 1, t_ready=t), t)
            submitted.append(t)
            time.sleep(0.03 + 0.04 * rng.random())  # 30-70 ms apart: random phase
        time.sleep(0.2)
    finally:
        proc.stop()
        loop_process.child_main = original
    seen = dict(map(tuple, json.loads(seen_file.read_text()))) if seen_file.exists() else {}
    shutil.rmtree(seen_file.parent, ignore_errors=True)  # one scratch dir per run, not left in /tmp
    delays = np.array([seen[t] - t for t in submitted if t in seen])
    rep = proc.report()
    result = {
        "n_submitted": n_chunks, "n_seen": int(delays.size), "handoff": _pct(delays),
        "rate_hz_target": rate_hz, "rate_hz_achieved": rep.get("rate_hz_achieved"),
        "lateness_us": rep.get("lateness_us"), "missed_cycles": rep.get("missed_cycles"),
        "loadavg_1_5_15": [round(v, 2) for v in (load_before if not quick else os.getloadavg())],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(),
        "errors": rep.get("errors", []),
    }
    (out_dir / "process_boundary.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--rate-hz", type=float, default=200.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out/process_boundary"))
    a = p.parse_args(argv)
    r = run(a.quick, a.out, a.chunks, a.rate_hz)
    print(json.dumps(r, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
