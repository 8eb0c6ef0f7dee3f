"""The GPU checks of issue 16 in one prepared script: TensorRT fp32 and fp16 engines of both
controller presets, built, verified against ONNX Runtime fp32 on the same observations and
noise, and timed, with the K/V shared on the device (buffer plan) and the bytes moved counted.

On a machine without TensorRT (like the one this was written on) it reports every check as not
measured with the reason and returns at once, so the suite can always include it.

    python -m benchmarks.gpu_engines --out bench-out            # small + paper size
    python -m benchmarks.gpu_engines --quick --out bench-out    # small only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time

GATE = 1e-2  # fp16 action error gate, fraction of the fp32 action range


def _plan_summary(controller) -> dict | None:
    from runtime.inference.buffer_plan import ControllerPlan
    from runtime.inference.tensorrt import TensorRTBackend

    enc, den = controller.encoder, controller.denoiser
    if not (isinstance(enc, TensorRTBackend) and isinstance(den, TensorRTBackend)):
        return None
    kv = tuple(controller.kv_names)
    mode = "device" if all(den.slots[n].placement == "device_in" for n in kv) else "static"
    return ControllerPlan(enc.plan(), den.plan(), controller.manifest.num_inference_steps, mode, kv).summary()


def check_preset(preset: str, repeats: int) -> list[dict]:
    """Build, verify and time fp32 and fp16 engines of `preset` (ORT fp32 on CPU is the reference)."""
    import numpy as np

    from benchmarks.controller import _ensure_model, _inputs, _timed_controller
    from export.tensorrt_build import build_engines
    from runtime.controller import Controller
    from runtime.controller.manifest import Manifest
    from runtime.inference.tensorrt import share_device_outputs

    _, model_dir = _ensure_model(preset)
    obs, noise = _inputs()
    reference = Controller.from_dir(model_dir).predict(obs, noise=noise)
    value_range = float(reference.max() - reference.min())
    rows = []
    for precision in ("fp32", "fp16"):
        row: dict = {"preset": preset, "precision": precision}
        try:
            t0 = time.perf_counter()
            build_engines(model_dir, Manifest.load(model_dir), precision=precision, progress=False)
            row["build_s"] = time.perf_counter() - t0
            controller = Controller.from_dir(model_dir, backend="tensorrt", precision=precision,
                                             allow_unverified=True)  # this check is the verification
            share_device_outputs(controller.encoder, controller.denoiser, controller.kv_names)  # idempotent
            row["kv_shared_on_device"] = all(controller.denoiser.slots[n].placement == "device_in"
                                             for n in controller.kv_names)
            timed = _timed_controller(controller, obs, noise, repeats)
            err = float(np.abs(timed["action"] - reference).max())
            row.update(status="ok", encoder_ms=timed["encoder_ms"], denoise_ms=timed["denoise_ms"],
                       total_ms=timed["total_ms"], max_abs_error=err, rel_error=err / value_range,
                       passes_gate=err / value_range <= (1e-3 if precision == "fp32" else GATE),
                       buffer_plan=_plan_summary(controller))
            controller.close()
        except Exception as exc:  # noqa: BLE001 - every failure is a reported result on the GPU machine
            row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return rows


def run(quick: bool, out_dir: pathlib.Path, **opts) -> dict:
    """quick: the small preset; full: small + dexgraspvla. Without TensorRT: all not measured."""
    presets = ["small"] if quick else ["small", "dexgraspvla"]
    what = [f"TensorRT {p} engines, preset {s}: build, verify vs fp32, time" for s in presets for p in ("fp32", "fp16")]
    if importlib.util.find_spec("tensorrt") is None:
        return {"device": "cpu", "rows": [],
                "not_measured": [{"what": w, "reason": "TensorRT is not installed (no NVIDIA GPU here)"} for w in what]}
    rows = [r for preset in presets for r in check_preset(preset, 3 if quick else 10)]
    return {"device": "cuda", "rows": rows,
            "not_measured": [{"what": f"TensorRT {r['precision']} {r['preset']}", "reason": r["reason"]}
                             for r in rows if r["status"] != "ok"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small preset only")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.quick, args.out)
    (args.out / "gpu_engines.json").write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res, default=str))
    return 0 if all(r.get("status") == "ok" and r.get("passes_gate") for r in res["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
