"""Measured fp32 matrix-multiply rate: the denominator of every "compute floor".

The compute floor of a model is its counted FLOPs divided by the rate this machine actually
multiplies fp32 matrices at. We measure that rate two ways, because they differ: numpy (whatever
BLAS it links) and ONNX Runtime's MatMul kernel (what the exported controller runs on). Both use
every core this process may use. Two shapes: a large square GEMM (near peak) and the controller's
condition-token K/V projection shape (2739 x 1024 @ 1024 x 1024, the shape the DiT multiplies most).

Run alone: python -m benchmarks.common.matmul --quick
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

import numpy as np

from benchmarks.common.timing import measure, summarize

#: (rows, inner, cols) of the measured products.
SHAPES = {"square_2048": (2048, 2048, 2048), "kv_projection": (2739, 1024, 1024)}


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _rate(flops: float, samples_s: np.ndarray) -> dict:
    """GFLOP/s at the median and at the fastest sample, plus the time distribution in ms."""
    t = summarize(samples_s, unit="ms")
    return {
        "gflops_median": flops / (float(np.median(samples_s)) * 1e9),
        "gflops_best": flops / (float(samples_s.min()) * 1e9),
        "time_ms": t,
    }


def numpy_rate(m: int, k: int, n: int, repeats: int = 5, warmup: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    timing = measure(lambda: np.matmul(a, b, out=out), name="numpy matmul", repeats=repeats, warmup=warmup)
    return {"backend": "numpy", "shape": [m, k, n], **_rate(2.0 * m * k * n, timing.samples_s)}


def onnxruntime_rate(m: int, k: int, n: int, repeats: int = 5, warmup: int = 2, seed: int = 0) -> dict:
    """ONNX Runtime CPU MatMul with the weight as an initializer (as in an exported graph)."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        return {"backend": "onnxruntime", "shape": [m, k, n], "not_measured": f"needs onnx + onnxruntime ({exc})"}
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((k, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        "matmul_rate",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _usable_cores()
    opts.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "matmul.onnx"
        onnx.save(model, str(path))
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"a": rng.standard_normal((m, k), dtype=np.float32)}
    timing = measure(lambda: sess.run(None, feed), name="ort matmul", repeats=repeats, warmup=warmup)
    return {
        "backend": "onnxruntime",
        "provider": "CPUExecutionProvider",
        "threads": opts.intra_op_num_threads,
        "shape": [m, k, n],
        **_rate(2.0 * m * k * n, timing.samples_s),
    }


def torch_rate(m: int, k: int, n: int, dtype: str = "float32", repeats: int = 5, warmup: int = 2,
               threads: int | None = None, seed: int = 0) -> dict:
    """torch.matmul in `dtype` (float32 or bfloat16: oneDNN, AMX / AVX512-BF16 where the CPU has them)
    on `threads` threads: the rate eager PyTorch and a bf16 engine can reach, the denominator of the
    per-precision compute floor."""
    try:
        import torch
    except ImportError as exc:
        return {"backend": "torch", "dtype": dtype, "shape": [m, k, n], "not_measured": f"needs torch ({exc})"}
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads or _usable_cores()))
    try:
        g = torch.Generator().manual_seed(seed)
        tdtype = getattr(torch, dtype)
        a = torch.randn(m, k, generator=g).to(tdtype)
        b = torch.randn(k, n, generator=g).to(tdtype)
        out = torch.empty(m, n, dtype=tdtype)
        with torch.inference_mode():
            timing = measure(lambda: torch.matmul(a, b, out=out), name=f"torch matmul {dtype}",
                             repeats=repeats, warmup=warmup)
        return {"backend": "torch", "dtype": dtype, "threads": torch.get_num_threads(), "shape": [m, k, n],
                **_rate(2.0 * m * k * n, timing.samples_s)}
    finally:
        torch.set_num_threads(previous)


def run(quick: bool, out_dir: pathlib.Path, **opts) -> dict:
    """Measure both backends on both shapes. Quick: 3 timed repeats each (about 10 s here)."""
    repeats = 3 if quick else 10
    results: dict = {"device": "cpu", "threads": _usable_cores(), "dtype": "float32", "rates": {}}
    for label, (m, k, n) in SHAPES.items():
        results["rates"][label] = {
            "numpy": numpy_rate(m, k, n, repeats=repeats),
            "onnxruntime": onnxruntime_rate(m, k, n, repeats=repeats),
        }
    best = [
        r["gflops_median"]
        for per_shape in results["rates"].values()
        for r in per_shape.values()
        if "gflops_median" in r
    ]
    # The floor uses the best median rate any backend reached on any shape: the fastest this
    # machine is shown to multiply fp32 matrices, so "x times the floor" is never flattering.
    results["floor_rate_gflops"] = max(best) if best else None
    results["floor_rate_definition"] = "max over backends and shapes of FLOPs / median time"
    results["not_measured"] = [{"what": "fp16 / TF32 matmul rate on GPU", "reason": "no GPU on this machine"}]
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure the fp32 matmul rate.

    Example: python -m benchmarks.common.matmul --quick --out bench-out
    """
    p = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out"), help="output directory")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.quick, args.out)
    (args.out / "matmul.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({"floor_rate_gflops": res["floor_rate_gflops"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
