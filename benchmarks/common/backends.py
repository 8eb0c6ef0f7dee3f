"""Which backend x precision combinations a benchmark can run here, and opening them.

Every combination the project supports is listed, so a results file says for each one either its
numbers or why it was not measured (no GPU, `openvino` not installed, the backend refusing the
precision, ...), instead of silently leaving rows out. Opening goes through the runtime's own
entry points (Controller.from_dir, CutieTracker) with the options the benchmark needs: the
reduced-precision models are timed unverified on purpose (the benchmark measures their error).
"""

from __future__ import annotations

import importlib.util

#: (backend, precision), in table order. fp32 on ONNX Runtime is the exact reference path.
CONTROLLER_CONFIGS = (
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("tensorrt", "fp32"),
    ("tensorrt", "fp16"),
)
TRACKER_CONFIGS = CONTROLLER_CONFIGS


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def unavailable_reason(backend: str, precision: str) -> str | None:
    """None when (backend, precision) can be tried here, else why not (one line)."""
    if backend == "onnxruntime":
        return None if precision == "fp32" else f"onnxruntime {precision}: not a recipe of this project"
    if backend == "openvino":
        if not _has("openvino"):
            return "the `openvino` package is not installed (pip install 'dexgraspvla-runtime[openvino]')"
        if not _has("runtime.inference.openvino"):
            return "runtime/inference/openvino.py is not in this checkout yet"
        return None
    if backend == "tensorrt":
        if not _has("tensorrt"):
            return "TensorRT is not installed (no NVIDIA GPU on this machine)"
        return None
    return f"unknown backend {backend}"


def _error_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def open_controller(model_dir, backend: str, precision: str, threads: int):
    """(controller, None) or (None, reason). Reduced precision is opened unverified when the
    runtime asks for a verification (the benchmark measures the error itself)."""
    from runtime.controller import Controller

    if precision == "fp32" and backend == "onnxruntime":
        return Controller.from_dir(model_dir, threads=threads), None
    attempts = [dict(backend=backend, precision=precision, threads=threads, allow_unverified=True),
                dict(backend=backend, precision=precision, threads=threads)]
    reason = None
    for kwargs in attempts:
        try:
            return Controller.from_dir(model_dir, **kwargs), None
        except TypeError as exc:  # an older signature without one of the options
            reason = _error_line(exc)
        except Exception as exc:  # noqa: BLE001 - any refusal becomes a "not measured" row
            return None, _error_line(exc)
    return None, reason


def open_tracker(model_dir, backend: str, precision: str, threads: int = 2):
    """(CutieTracker, None) or (None, reason), like open_controller."""
    from runtime.tracking.cutie import CutieTracker

    if precision == "fp32" and backend == "onnxruntime":
        return CutieTracker(model_dir, threads=threads), None
    attempts = [dict(backend=backend, precision=precision, threads=threads, allow_unverified=True),
                dict(backend=backend, precision=precision, threads=threads)]
    reason = None
    for kwargs in attempts:
        try:
            return CutieTracker(model_dir, **kwargs), None
        except TypeError as exc:
            reason = _error_line(exc)
        except Exception as exc:  # noqa: BLE001
            return None, _error_line(exc)
    return None, reason
