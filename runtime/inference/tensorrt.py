"""Native TensorRT backend (TensorRT 10 Python API + pycuda or cuda-python), with device-resident K/V.

Imported lazily: this module loads without TensorRT, and TensorRTBackend raises MissingExtraError
naming the `gpu` extra when tensorrt or a CUDA binding is absent. Written against the documented
API (Runtime.deserialize_cuda_engine, ICudaEngine.num_io_tensors / get_tensor_name /
get_tensor_mode / get_tensor_dtype, IExecutionContext.set_input_shape / set_tensor_address /
execute_async_v3); it has never run in this project's CI, which has no GPU. Every CUDA call goes
through the small `Device` interface (runtime/inference/buffer_plan.py), so the buffer logic is
tested on CPU with a counting fake device and a fake engine.

Where tensors live (the buffer plan): inputs are copied host->device per run() unless bound once
with `bind_static` (host arrays: one copy per inference) or linked with `bind_device_outputs` to
another engine's output buffers (no copy at all: the denoiser reads the K/V the encoder engine
wrote). Outputs a consumer reads on the device are not copied back; run() returns DeviceTensor
handles for them. Shared tensors are stored in the dtype the engines were built with (fp16 K/V
in an fp16 build), read from the engine, not the manifest.
"""

from __future__ import annotations

import ctypes
import json
import logging
import pathlib
from dataclasses import dataclass

import numpy as np

from runtime.controller.manifest import GraphSpec
from runtime.errors import MissingExtraError, ModelError, require
from runtime.inference.buffer_plan import (
    DEVICE_IN,
    DEVICE_OUT,
    HOST_IN,
    HOST_OUT,
    STATIC_IN,
    Device,
    GraphPlan,
    Slot,
)

log = logging.getLogger(__name__)

REBUILD_HINT = "rebuild it on this machine with `dexgrasp engine build --model DIR --backend tensorrt`"


# --- engine metadata (written by export/tensorrt_build.py next to each engine) -------------------


ENGINE_SUFFIX = {"fp32": ".engine", "fp16": ".fp16.engine", "int8": ".int8.engine"}


def engine_file_name(graph_file: str, precision: str) -> str:
    """`encoder.onnx`, fp16 -> `encoder.fp16.engine`: where the builder writes, the runtime looks."""
    if precision not in ENGINE_SUFFIX:
        raise ModelError(f"TensorRT precision must be one of {list(ENGINE_SUFFIX)}, got '{precision}'")
    return pathlib.Path(graph_file).with_suffix(ENGINE_SUFFIX[precision]).name


def engine_meta_path(engine_path: pathlib.Path) -> pathlib.Path:
    """`encoder.fp16.engine` -> `encoder.fp16.engine.json`."""
    return engine_path.with_name(engine_path.name + ".json")


def check_engine_meta(engine_path: pathlib.Path, trt_version: str, device: dict, onnx_sha256: str | None) -> dict:
    """Refuse an engine built by another TensorRT version, for another GPU architecture, or from
    other graphs than the manifest's, with one line saying so, before TensorRT fails on it less
    clearly. Engines without metadata (built by older code) are left to the deserializer."""
    path = engine_meta_path(engine_path)
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"TensorRT engine metadata {path} is unreadable ({exc}); {REBUILD_HINT}") from exc
    built_trt, built_cc = meta.get("tensorrt_version"), meta.get("compute_capability")
    here_cc = device.get("compute_capability")
    if built_trt and built_trt != trt_version:
        raise ModelError(f"TensorRT engine {engine_path.name} was built with TensorRT {built_trt}, this machine "
                         f"has {trt_version}; {REBUILD_HINT}")
    if built_cc and here_cc and str(built_cc) != str(here_cc):
        raise ModelError(f"TensorRT engine {engine_path.name} was built for {meta.get('device_name')} "
                         f"(sm {built_cc}), this GPU is {device.get('name')} (sm {here_cc}); {REBUILD_HINT}")
    if onnx_sha256 and meta.get("onnx_sha256") and meta["onnx_sha256"] != onnx_sha256:
        raise ModelError(f"TensorRT engine {engine_path.name} was built from another export of its graph "
                         f"(sha256 {meta['onnx_sha256'][:12]} vs manifest {onnx_sha256[:12]}); {REBUILD_HINT}")
    return meta


# --- CUDA ------------------------------------------------------------------------------------------


class CudaDevice:
    """The `Device` interface over cuda-python (CUDA runtime API: the primary context, usable from
    any thread, the one TensorRT itself uses), or pycuda when cuda-python is missing (its autoinit
    context is current only in the thread that imported it: use the engines from that thread).
    One stream; host staging buffers are page-locked so the async copies really are async."""

    def __init__(self) -> None:
        self._allocs: dict[int, object] = {}
        self._pinned: dict[int, int] = {}  # id(host array) -> cudaMallocHost pointer
        cudart = None
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
        except ImportError:
            try:
                from cuda import cudart
            except ImportError:
                cudart = None
        if cudart is not None:
            self.kind, self.cudart = "cuda-python", cudart
            err, self.stream = cudart.cudaStreamCreate()
            self._check(err, "cudaStreamCreate")
            self.stream_handle = int(self.stream)
            return
        try:
            import pycuda.autoinit as autoinit  # creates the context
            import pycuda.driver as cuda
        except ImportError as exc:
            raise MissingExtraError(
                "the TensorRT backend needs cuda-python or pycuda; "
                "install them with: pip install 'dexgraspvla-runtime[gpu]'"
            ) from exc
        self.kind, self.cuda = "pycuda", cuda
        self._dev = autoinit.device
        self.stream = cuda.Stream()
        self.stream_handle = int(self.stream.handle)

    def _check(self, err, what: str) -> None:
        if int(err) != 0:
            raise ModelError(f"CUDA call {what} failed with error {err}")

    def describe(self) -> dict:
        if self.kind == "pycuda":
            major, minor = self._dev.compute_capability()
            return {"name": self._dev.name(), "compute_capability": f"{major}.{minor}"}
        err, prop = self.cudart.cudaGetDeviceProperties(0)
        self._check(err, "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        return {"name": name, "compute_capability": f"{prop.major}.{prop.minor}"}

    def alloc(self, nbytes: int) -> int:
        if self.kind == "pycuda":
            mem = self.cuda.mem_alloc(max(int(nbytes), 1))
            self._allocs[int(mem)] = mem
            return int(mem)
        err, ptr = self.cudart.cudaMalloc(max(int(nbytes), 1))
        self._check(err, "cudaMalloc")
        return int(ptr)

    def free(self, ptr: int) -> None:
        if self.kind == "pycuda":
            mem = self._allocs.pop(int(ptr), None)
            if mem is not None:
                mem.free()
        else:
            self.cudart.cudaFree(ptr)

    def host_empty(self, shape, dtype) -> np.ndarray:
        if self.kind == "pycuda":
            return self.cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1)
        err, ptr = self.cudart.cudaMallocHost(nbytes)
        self._check(err, "cudaMallocHost")
        buf = (ctypes.c_byte * nbytes).from_address(int(ptr))
        arr = np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)
        self._pinned[id(arr)] = int(ptr)
        return arr

    def free_host(self, arr: np.ndarray) -> None:
        """Release a host_empty() buffer (pycuda frees its own when garbage-collected)."""
        ptr = self._pinned.pop(id(arr), None)
        if ptr is not None:
            self.cudart.cudaFreeHost(ptr)

    def memcpy_htod(self, ptr: int, host: np.ndarray) -> None:
        if self.kind == "pycuda":
            self.cuda.memcpy_htod_async(ptr, host, self.stream)
            return
        (err,) = self.cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes,
                                             self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream)
        self._check(err, "cudaMemcpyAsync(HtoD)")

    def memcpy_dtoh(self, host: np.ndarray, ptr: int) -> None:
        if self.kind == "pycuda":
            self.cuda.memcpy_dtoh_async(host, ptr, self.stream)
            return
        (err,) = self.cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes,
                                             self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream)
        self._check(err, "cudaMemcpyAsync(DtoH)")

    def synchronize(self) -> None:
        if self.kind == "pycuda":
            self.stream.synchronize()
            return
        (err,) = self.cudart.cudaStreamSynchronize(self.stream)
        self._check(err, "cudaStreamSynchronize")


_DEFAULT_DEVICE: list[CudaDevice] = []


def default_device() -> CudaDevice:
    """One CudaDevice (one stream) per process, shared by every engine, so engines can read each
    other's buffers in stream order."""
    if not _DEFAULT_DEVICE:
        _DEFAULT_DEVICE.append(CudaDevice())
    return _DEFAULT_DEVICE[0]


def _host_empty(device, shape, dtype) -> np.ndarray:
    maker = getattr(device, "host_empty", None)
    return maker(shape, dtype) if maker else np.empty(tuple(shape), dtype=dtype)


# --- the backend -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceTensor:
    """An engine output left on the device: pass it to another TensorRT backend's bind_static
    (read in place) or call to_host() (one counted device->host copy)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    ptr: int
    owner: TensorRTBackend

    def to_host(self) -> np.ndarray:
        host = np.empty(self.shape, self.dtype)
        self.owner.device.memcpy_dtoh(host, self.ptr)
        self.owner.device.synchronize()
        return host

    def __array__(self, dtype=None, copy=None):
        host = self.to_host()
        return host if dtype is None else host.astype(dtype)


class _RecordingLogger:
    """Wraps a trt.ILogger subclass that keeps TensorRT's error lines, so a failed deserialize can
    say why (the library only returns None)."""

    def __new__(cls, trt):
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, msg):
                if int(severity) <= int(trt.ILogger.Severity.ERROR):
                    self.errors.append(str(msg))
                    log.error("TensorRT: %s", msg)
                elif int(severity) <= int(trt.ILogger.Severity.WARNING):
                    log.warning("TensorRT: %s", msg)

        return Logger()


class TensorRTBackend:
    """One serialized TensorRT engine with static shapes from the manifest.

    `run` copies the per-call inputs to the GPU, enqueues the engine and blocks until the host
    outputs are back (stream synchronize; no timeout: a hung GPU hangs the caller).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | pathlib.Path, spec: GraphSpec, device: Device | None = None,
                 trt_module=None, precision: str | None = None, threads: int | None = None) -> None:
        """`precision`, when given, must be what the engine was built with (its metadata says);
        `threads` is accepted for a uniform backend signature and unused (the GPU computes)."""
        trt = trt_module or require("tensorrt", "gpu", "the TensorRT backend")
        engine_path = pathlib.Path(engine_path)
        if not engine_path.is_file():
            raise ModelError(f"TensorRT engine '{engine_path}' not found; build it with `dexgrasp engine build "
                             "--model DIR --backend tensorrt` on this machine (engines are device-specific)")
        self.device = device if device is not None else default_device()
        self.meta = check_engine_meta(engine_path, str(getattr(trt, "__version__", "")), self.device.describe(),
                                      spec.sha256)
        built = self.meta.get("precision")
        if precision and built and precision != built:
            raise ModelError(f"TensorRT engine {engine_path.name} was built for {built}, not {precision}; build a "
                             f"{precision} one with `dexgrasp engine build --model DIR --backend tensorrt "
                             f"--precision {precision}`")
        self.precision = built or precision
        self.logger = _RecordingLogger(trt)
        self.runtime = trt.Runtime(self.logger)  # kept: the runtime must outlive its engines
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            why = self.logger.errors[-1] if self.logger.errors else "built by another TensorRT version or for another GPU?"
            raise ModelError(f"TensorRT could not load '{engine_path.name}': {why}; {REBUILD_HINT}")
        self.context = self.engine.create_execution_context()
        self.spec = spec
        self.graph = pathlib.Path(spec.file).stem
        engine_io = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            engine_io[name] = (is_input, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
        self.slots: dict[str, Slot] = {}
        for tensor, is_input in [(t, True) for t in spec.inputs] + [(t, False) for t in spec.outputs]:
            if tensor.name not in engine_io or engine_io[tensor.name][0] != is_input:
                raise ModelError(f"TensorRT engine {engine_path.name} has no {'input' if is_input else 'output'} "
                                 f"'{tensor.name}' (built from another graph?); {REBUILD_HINT}")
            dtype = engine_io[tensor.name][1]
            self.slots[tensor.name] = Slot(tensor.name, tuple(tensor.shape), dtype.name, HOST_IN if is_input else HOST_OUT)
        self.input_names = [t.name for t in spec.inputs]
        self.output_names = [t.name for t in spec.outputs]
        self.ptrs: dict[str, int] = {}
        self.owned: set[str] = set()  # buffers this backend allocated (and frees)
        self.hosts: dict[str, np.ndarray] = {}
        for name, slot in self.slots.items():
            self.ptrs[name] = self.device.alloc(slot.nbytes)
            self.owned.add(name)
            if slot.is_input:
                self.context.set_input_shape(name, slot.shape)
            self.context.set_tensor_address(name, self.ptrs[name])

    # -- placements

    def _set(self, name: str, placement: str) -> None:
        s = self.slots[name]
        self.slots[name] = Slot(s.name, s.shape, s.dtype, placement)

    def _host(self, name: str) -> np.ndarray:
        if name not in self.hosts:
            slot = self.slots[name]
            self.hosts[name] = _host_empty(self.device, slot.shape, slot.dtype)
        return self.hosts[name]

    def _copy_in(self, name: str, value) -> None:
        slot = self.slots[name]
        value = np.asarray(value)
        if value.shape != slot.shape and value.size != int(np.prod(slot.shape, dtype=np.int64)):
            raise ModelError(f"TensorRT input '{name}' has shape {value.shape}, the engine takes {slot.shape}")
        host = self._host(name)
        np.copyto(host, value.reshape(slot.shape), casting="same_kind")
        self.device.memcpy_htod(self.ptrs[name], host)

    def plan(self) -> GraphPlan:
        """Where this engine's tensors live now (see runtime/inference/buffer_plan.py)."""
        return GraphPlan(self.graph, tuple(self.slots.values()))

    def keep_on_device(self, names) -> None:
        """These outputs stay in device memory; run() returns DeviceTensor handles for them."""
        for name in names:
            if name not in self.output_names:
                raise ModelError(f"TensorRT engine {self.graph} has no output '{name}'")
            self._set(name, DEVICE_OUT)

    def device_tensor(self, name: str) -> DeviceTensor:
        slot = self.slots[name]
        return DeviceTensor(name, slot.shape, np.dtype(slot.dtype), self.ptrs[name], self)

    def _link(self, name: str, source: DeviceTensor) -> None:
        slot = self.slots[name]
        if source.shape != slot.shape or np.dtype(source.dtype) != np.dtype(slot.dtype):
            raise ModelError(
                f"'{name}' is {np.dtype(source.dtype).name}{list(source.shape)} out of {source.owner.graph} but "
                f"{slot.dtype}{list(slot.shape)} into {self.graph}; rebuild both engines with the same --precision")
        if source.owner.device is not self.device:
            raise ModelError(f"'{name}': the two TensorRT engines must share one device/stream to share buffers")
        if name in self.owned:
            self.device.free(self.ptrs[name])
            self.owned.discard(name)
        self.ptrs[name] = source.ptr
        self.context.set_tensor_address(name, source.ptr)
        self._set(name, DEVICE_IN)

    def bind_device_outputs(self, producer: TensorRTBackend, names, host_outputs=()) -> None:
        """Read `names` in place from `producer`'s output buffers (no host round trip, no copy):
        the producer keeps them on the device and this engine's inputs point at them. Done once
        at load; every later producer.run() refreshes what this engine reads. The producer's other
        outputs (the encoder's obs_tokens, which nothing reads at runtime) stay on the device too,
        except `host_outputs`; np.asarray() on a returned DeviceTensor copies it when wanted."""
        names = list(names)
        for name in names:
            if name not in self.input_names:
                raise ModelError(f"TensorRT engine {self.graph} has no input '{name}'")
        for name in names:
            slot = producer.slots.get(name)
            if slot is None or slot.is_input:
                raise ModelError(f"TensorRT engine {producer.graph} has no output '{name}'")
            self._link(name, DeviceTensor(name, slot.shape, np.dtype(slot.dtype), producer.ptrs[name], producer))
        keep = set(host_outputs)
        producer.keep_on_device([n for n in producer.output_names if n not in keep])

    def bind_static(self, inputs: dict) -> None:
        """Bind inputs that stay fixed for the rest of the inference: host arrays are copied once
        (STATIC_IN); DeviceTensors are read in place (a no-op when already linked)."""
        for name, value in inputs.items():
            if name not in self.input_names:
                raise ModelError(f"TensorRT engine {self.graph} has no input '{name}'")
            if isinstance(value, DeviceTensor):
                if self.ptrs[name] != value.ptr:
                    self._link(name, value)
                continue
            if self.slots[name].placement == DEVICE_IN:
                # a host array for a linked input: write it into the shared buffer (counted)
                self._copy_in(name, value)
                continue
            self._copy_in(name, value)
            self._set(name, STATIC_IN)

    def run(self, inputs: dict) -> dict:
        """Per-call inputs in, host outputs (numpy) plus DeviceTensors for device-kept outputs out.
        Inputs already bound (static or linked) may be omitted; given again, they are re-bound."""
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise ModelError(f"TensorRT engine {self.graph} has no input(s) {unknown}")
        for name in self.input_names:
            placement = self.slots[name].placement
            if name in inputs:
                value = inputs[name]
                if placement == HOST_IN and not isinstance(value, DeviceTensor):
                    self._copy_in(name, value)
                else:
                    self.bind_static({name: value})
            elif placement == HOST_IN:
                raise ModelError(f"TensorRT engine input '{name}' not given (nor bound with bind_static)")
        if not self.context.execute_async_v3(self.device.stream_handle):
            raise ModelError(f"TensorRT execute_async_v3 failed for {self.graph}")
        host_out = [n for n in self.output_names if self.slots[n].placement == HOST_OUT]
        for name in host_out:
            self.device.memcpy_dtoh(self._host(name), self.ptrs[name])
        self.device.synchronize()
        out: dict = {name: self.hosts[name].copy() for name in host_out}
        out.update({n: self.device_tensor(n) for n in self.output_names if self.slots[n].placement == DEVICE_OUT})
        return out

    def close(self) -> None:
        for name in list(self.owned):
            self.device.free(self.ptrs[name])
        self.owned.clear()
        self.ptrs.clear()
        free_host = getattr(self.device, "free_host", None)
        for host in self.hosts.values():
            if free_host is not None:
                free_host(host)
        self.hosts.clear()
        self.context = None
        self.engine = None


def share_device_outputs(producer, consumer, names, host_outputs=()) -> bool:
    """Link `consumer`'s inputs `names` to `producer`'s output buffers when both are TensorRT
    engines on one device; returns whether it did. Call once after loading: the producer's run()
    then returns DeviceTensors for its outputs (all but `host_outputs`: the encoder's obs_tokens,
    read by nobody at runtime, stays on the device too), which consumer.bind_static() takes
    without a copy and np.asarray() copies to the host on demand."""
    if not (isinstance(producer, TensorRTBackend) and isinstance(consumer, TensorRTBackend)):
        return False
    if producer.device is not consumer.device:
        return False
    consumer.bind_device_outputs(producer, names, host_outputs)
    return True
