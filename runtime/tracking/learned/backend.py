"""Run one exported graph: ONNX Runtime (CPU/CUDA) or a TensorRT engine, with per-graph latency stats.

A thin local wrapper until the shared runtime.inference backends land; every call blocks the calling
(tracker) thread for one inference and releases the GIL inside the engine.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from runtime.errors import ModelError, require
from runtime.stats import LatencyStats
from runtime.tracking.learned.manifest import GraphSpec

BACKENDS = ("onnxruntime", "tensorrt")


class GraphRunner:
    """One graph: `run(feeds) -> {output name: array}`. Checks input shapes against the manifest."""

    def __init__(self, directory: pathlib.Path, name: str, spec: GraphSpec, backend: str = "onnxruntime",
                 threads: int = 2) -> None:
        if backend not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.name = name
        self.spec = spec
        self.stats = LatencyStats(capacity=10_000)
        self._input_shapes = {t.name: tuple(t.shape) for t in spec.inputs}
        self._output_names = [t.name for t in spec.outputs]
        if backend == "tensorrt":
            from runtime.tracking.learned.tensorrt_engine import TensorRTEngine

            if not spec.engine:
                raise ModelError(f"graph '{name}' has no TensorRT engine; export with --tensorrt on the target")
            self._engine = TensorRTEngine(pathlib.Path(directory) / spec.engine, self._output_names)
            self._run = self._engine.run
        else:
            ort = require("onnxruntime", "ort", "running the exported tracker")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                self._session = ort.InferenceSession(str(pathlib.Path(directory) / spec.file), options,
                                                     providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelError(f"cannot load graph '{name}' ({spec.file}): {exc}") from exc
            self._run = lambda feeds: dict(zip(self._output_names, self._session.run(self._output_names, feeds), strict=False))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for key, shape in self._input_shapes.items():
            value = feeds.get(key)
            if value is None or tuple(value.shape) != shape:
                got = None if value is None else tuple(value.shape)
                raise ModelError(f"graph '{self.name}' input '{key}' must have shape {shape}, got {got}")
        t0 = time.perf_counter()
        out = self._run(feeds)
        self.stats.add(time.perf_counter() - t0)
        return out
