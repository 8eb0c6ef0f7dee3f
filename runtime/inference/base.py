"""The Backend protocol and the factory that picks an implementation by name."""

from __future__ import annotations

import pathlib
from typing import Protocol, runtime_checkable

import numpy as np

from runtime.controller.manifest import GraphSpec
from runtime.errors import ConfigError

BACKENDS = ("onnxruntime", "openvino", "tensorrt")


@runtime_checkable
class Backend(Protocol):
    """One loaded graph. `run` blocks the calling thread until the outputs are ready (it releases
    the GIL inside the engine) and has no timeout: graphs have a bounded cost.

    Optional method (the controller looks it up with getattr and falls back to passing everything
    to `run` when a backend lacks it):

        bind_static(self, inputs: dict[str, np.ndarray]) -> None
            Bind inputs that stay the same for many `run` calls (the encoder's per-layer K/V for
            the 16 DDIM steps of one inference). Afterwards `run` takes only the remaining inputs
            (sample, timestep); an input given to `run` again overrides its binding. The arrays
            must stay alive and unchanged until the next `bind_static` (backends may read them in
            place: OpenVINO shares them as ov.Tensor, ONNX Runtime as OrtValues in an IOBinding,
            TensorRT keeps them in device buffers). Calling it again rebinds (next inference).
    """

    name: str

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named inputs (shapes/dtypes as in the manifest; minus those bound with bind_static) ->
        named outputs (numpy, host memory)."""
        ...

    def close(self) -> None:
        ...


def open_backend(kind: str, model_dir: str | pathlib.Path, graph: GraphSpec, **options) -> Backend:
    """Open `graph` of an exported model with backend `kind` ("onnxruntime", "openvino" or "tensorrt")."""
    model_dir = pathlib.Path(model_dir)
    if kind == "onnxruntime":
        from runtime.inference.onnxruntime import OrtBackend

        return OrtBackend(model_dir / graph.file, graph, **options)
    if kind == "openvino":
        from runtime.inference.openvino import OpenVinoBackend

        return OpenVinoBackend(model_dir / graph.file, graph, **options)
    if kind == "tensorrt":
        from runtime.inference.tensorrt import TensorRTBackend

        if not graph.engine:
            raise ConfigError(
                f"graph {graph.file} has no TensorRT engine; export with --tensorrt on the target machine"
            )
        return TensorRTBackend(model_dir / graph.engine, graph, **options)
    raise ConfigError(f"unknown inference backend '{kind}'; choose one of {list(BACKENDS)}")
