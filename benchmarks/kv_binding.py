"""Controller per backend x precision, with and without the K/V bound once per inference.

For one exported model: ONNX Runtime fp32, OpenVINO fp32 and OpenVINO bf16 (the recipe: encoder
bf16, denoiser fp32), each with `bind_kv` on (encoder outputs bound once with bind_static, each
DDIM step passes only sample + timestep) and off (all 2*n_layer K/V arrays passed every step).
Prints one JSON line per configuration: median encoder / denoise / total ms over --repeat runs
(and their minimum, the least disturbed run on a shared machine)
after one warm-up, and the action error / range against ORT fp32 for the same observation and noise.

    python -m benchmarks.kv_binding --model /tmp/models/small --threads 2 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def measure(model: str, backend: str, precision: str, bind: bool, obs, noise, threads: int, repeat: int, ref):
    from runtime.controller import Controller

    t0 = time.perf_counter()
    ctl = Controller.from_dir(model, backend, precision, threads=threads, allow_unverified=True)
    load_s = time.perf_counter() - t0
    ctl.bind_kv = bind
    action = ctl.predict(obs, noise=noise)  # warm-up
    timings = []
    for _ in range(repeat):
        action = ctl.predict(obs, noise=noise)
        timings.append(ctl.last_timing)
    ctl.close()
    med = {k: round(statistics.median(t[k] for t in timings)) for k in ("encoder_ms", "denoise_ms", "total_ms")}
    # the minimum too: on a shared machine it is the run least disturbed by other processes
    med.update({f"min_{k}": round(min(t[k] for t in timings)) for k in ("encoder_ms", "denoise_ms", "total_ms")})
    err = None if ref is None else float(np.abs(action - ref).max() / (ref.max() - ref.min()))
    return action, {"backend": backend, "precision": precision, "bind_kv": bind, **med,
                    "error_of_range": err, "load_s": round(load_s, 1)}


def main() -> None:
    """Example: python -m benchmarks.kv_binding --model models/small --threads 2"""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--configs", default="onnxruntime:fp32,openvino:fp32,openvino:bf16")
    args = p.parse_args()
    from runtime.controller.manifest import Manifest
    from runtime.controller.verify import synthetic_obs

    obs = synthetic_obs(Manifest.load(args.model), 1)[0]
    noise = np.random.default_rng(1).standard_normal((1, 64, 13)).astype(np.float32)
    print(json.dumps({"model": args.model, "threads": args.threads, "loadavg": os.getloadavg()}), flush=True)
    ref = None
    for config in args.configs.split(","):
        backend, precision = config.split(":")
        for bind in (True, False):
            action, row = measure(args.model, backend, precision, bind, obs, noise, args.threads, args.repeat, ref)
            if ref is None:
                ref, row["error_of_range"] = action, 0.0
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
