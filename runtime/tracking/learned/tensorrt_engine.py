"""Run a serialized TensorRT engine with pycuda buffers (TensorRT 10 tensor-address API).

Imported only when the tensorrt backend is chosen (needs the `gpu` extra: tensorrt + pycuda, on
a Jetson from JetPack). Host buffers are page-locked and allocated once; `run` blocks until the
stream has finished (copy in, execute, copy out). Never exercised on the CPU-only CI machine.
"""

from __future__ import annotations

import pathlib

import numpy as np

from runtime.errors import ModelError, require


class TensorRTEngine:
    def __init__(self, engine_path: pathlib.Path, output_names: list[str]) -> None:
        trt = require("tensorrt", "gpu", "the TensorRT tracker backend")
        cuda = require("pycuda.driver", "gpu", "the TensorRT tracker backend")
        require("pycuda.autoinit", "gpu", "the TensorRT tracker backend")
        self._cuda = cuda
        if not pathlib.Path(engine_path).is_file():
            raise ModelError(f"TensorRT engine {engine_path} is missing (build it with --tensorrt on this device)")
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(pathlib.Path(engine_path).read_bytes())
        if self._engine is None:
            raise ModelError(f"cannot deserialize {engine_path} (built for another TensorRT version or GPU?)")
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self._host, self._device, self._inputs = {}, {}, []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            self._host[name] = cuda.pagelocked_empty(shape, dtype)
            self._device[name] = cuda.mem_alloc(self._host[name].nbytes)
            self._context.set_tensor_address(name, int(self._device[name]))
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs.append(name)
        self._outputs = list(output_names)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        for name in self._inputs:
            np.copyto(self._host[name], feeds[name], casting="same_kind")
            cuda.memcpy_htod_async(self._device[name], self._host[name], self._stream)
        if not self._context.execute_async_v3(self._stream.handle):
            raise ModelError("TensorRT execution failed")
        for name in self._outputs:
            cuda.memcpy_dtoh_async(self._host[name], self._device[name], self._stream)
        self._stream.synchronize()
        return {name: self._host[name].copy() for name in self._outputs}
