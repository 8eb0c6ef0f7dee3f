"""Native TensorRT backend (TensorRT 8.6 / 10 Python API + pycuda or cuda-python).

Imported lazily: this module loads without TensorRT, and TensorRTBackend raises MissingExtraError
naming the `gpu` extra when tensorrt or a CUDA binding is absent. Written against the documented
API (deserialize_cuda_engine, set_input_shape, set_tensor_address, execute_async_v3); it has
never run in this project's CI, which has no GPU.
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np

from runtime.controller.manifest import GraphSpec
from runtime.errors import MissingExtraError, ModelError, require

log = logging.getLogger(__name__)


class _Cuda:
    """Minimal device-memory / stream helper over pycuda, or cuda-python when pycuda is missing."""

    def __init__(self) -> None:
        try:
            import pycuda.autoinit  # noqa: F401 - creates the context
            import pycuda.driver as cuda

            self.kind, self.cuda = "pycuda", cuda
            self.stream = cuda.Stream()
        except ImportError:
            try:
                from cuda import cudart
            except ImportError as exc:
                raise MissingExtraError(
                    "the TensorRT backend needs pycuda or cuda-python; "
                    "install them with: pip install 'dexgraspvla-runtime[gpu]'"
                ) from exc
            self.kind, self.cudart = "cuda-python", cudart
            err, self.stream = cudart.cudaStreamCreate()
            self._check(err, "cudaStreamCreate")

    def _check(self, err, what: str) -> None:
        if int(err) != 0:
            raise ModelError(f"CUDA call {what} failed with error {err}")

    @property
    def stream_handle(self) -> int:
        return self.stream.handle if self.kind == "pycuda" else int(self.stream)

    def alloc(self, nbytes: int):
        if self.kind == "pycuda":
            return self.cuda.mem_alloc(max(nbytes, 1))
        err, ptr = self.cudart.cudaMalloc(max(nbytes, 1))
        self._check(err, "cudaMalloc")
        return ptr

    def ptr(self, mem) -> int:
        return int(mem)

    def htod(self, mem, host: np.ndarray) -> None:
        if self.kind == "pycuda":
            self.cuda.memcpy_htod_async(mem, host, self.stream)
        else:
            (err,) = self.cudart.cudaMemcpyAsync(
                int(mem), host.ctypes.data, host.nbytes, self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                self.stream)
            self._check(err, "cudaMemcpyAsync(HtoD)")

    def dtoh(self, host: np.ndarray, mem) -> None:
        if self.kind == "pycuda":
            self.cuda.memcpy_dtoh_async(host, mem, self.stream)
        else:
            (err,) = self.cudart.cudaMemcpyAsync(
                host.ctypes.data, int(mem), host.nbytes, self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                self.stream)
            self._check(err, "cudaMemcpyAsync(DtoH)")

    def synchronize(self) -> None:
        if self.kind == "pycuda":
            self.stream.synchronize()
        else:
            (err,) = self.cudart.cudaStreamSynchronize(self.stream)
            self._check(err, "cudaStreamSynchronize")

    def free(self, mem) -> None:
        if self.kind == "pycuda":
            mem.free()
        else:
            self.cudart.cudaFree(mem)


class TensorRTBackend:
    """One serialized TensorRT engine with static shapes from the manifest.

    `run` copies inputs to the GPU, enqueues the engine and blocks until the outputs are back on
    the host (stream synchronize; no timeout: a hung GPU hangs the caller).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | pathlib.Path, spec: GraphSpec) -> None:
        trt = require("tensorrt", "gpu", "the TensorRT backend")
        engine_path = pathlib.Path(engine_path)
        if not engine_path.is_file():
            raise ModelError(f"TensorRT engine '{engine_path}' not found; build it with `dexgrasp export "
                             "controller --tensorrt` on this machine (engines are device-specific)")
        self.cuda = _Cuda()
        self.logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise ModelError(f"TensorRT could not deserialize '{engine_path}' (built by another TensorRT "
                             "version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        self.spec = spec
        self.buffers: dict[str, tuple[np.ndarray, object]] = {}
        for tensor in list(spec.inputs) + list(spec.outputs):
            shape = tuple(tensor.shape)
            host = np.empty(shape, dtype=np.dtype(tensor.dtype))
            device = self.cuda.alloc(host.nbytes)
            self.buffers[tensor.name] = (host, device)
            if tensor in spec.inputs:
                self.context.set_input_shape(tensor.name, shape)
            self.context.set_tensor_address(tensor.name, self.cuda.ptr(device))
        self.input_names = [t.name for t in spec.inputs]
        self.output_names = [t.name for t in spec.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name in self.input_names:
            host, device = self.buffers[name]
            if name not in inputs:
                raise ModelError(f"TensorRT engine input '{name}' not given")
            np.copyto(host, inputs[name], casting="same_kind")
            self.cuda.htod(device, host)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise ModelError("TensorRT execute_async_v3 failed")
        for name in self.output_names:
            host, device = self.buffers[name]
            self.cuda.dtoh(host, device)
        self.cuda.synchronize()
        return {name: self.buffers[name][0].copy() for name in self.output_names}

    def close(self) -> None:
        for _, device in self.buffers.values():
            self.cuda.free(device)
        self.buffers.clear()
        self.context = None
        self.engine = None
