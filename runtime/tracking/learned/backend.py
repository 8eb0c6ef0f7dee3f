"""Run one exported tracker graph through the shared inference backends, with per-graph latency stats.

The backends (runtime.inference: ONNX Runtime with CPU/CUDA/TensorRT providers, native TensorRT)
are shared with the controller; this adds the tracker's shape check (a frame-sized mistake is a
clear ModelError, not an engine crash) and a LatencyStats per graph. `run` blocks the calling
(tracker) thread for one inference; the engines release the GIL while they compute.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from runtime.errors import ModelError
from runtime.inference import open_backend
from runtime.stats import LatencyStats
from runtime.tracking.learned.manifest import GraphSpec

BACKENDS = ("onnxruntime", "openvino", "tensorrt")


class GraphRunner:
    """One graph: `run(feeds) -> {output name: array}`. Checks input shapes against the manifest."""

    def __init__(self, directory: pathlib.Path, name: str, spec: GraphSpec, backend: str = "onnxruntime",
                 threads: int = 2, precision: str = "fp32") -> None:
        if backend not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.name = name
        self.spec = spec
        self.stats = LatencyStats(capacity=10_000)
        self._input_shapes = {t.name: tuple(t.shape) for t in spec.inputs}
        options = {"threads": threads} if backend == "onnxruntime" else {}
        if backend == "openvino":
            options = {"threads": threads, "precision": precision}
        elif precision != "fp32":
            raise ModelError(f"tracker precision '{precision}' needs backend openvino (bf16); {backend} runs fp32")
        self._backend = open_backend(backend, directory, spec, **options)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for key, shape in self._input_shapes.items():
            value = feeds.get(key)
            if value is None or tuple(value.shape) != shape:
                got = None if value is None else tuple(value.shape)
                raise ModelError(f"graph '{self.name}' input '{key}' must have shape {shape}, got {got}")
        t0 = time.perf_counter()
        out = self._backend.run(feeds)
        self.stats.add(time.perf_counter() - t0)
        return out

    def close(self) -> None:
        self._backend.close()
