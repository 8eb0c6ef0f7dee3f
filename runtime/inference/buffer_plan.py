"""Where each tensor of one controller inference lives, and what crosses the host<->device bus.

Why a plan: on a GPU the controller's cost is not only the engines. The 24 cached K/V tensors
(269 MB at paper size) are written once by the encoder and read by each of the 16 DDIM steps;
copying them host->device per step moves ~4.3 GB per inference, more than the engines compute
with. The plan names, per graph and tensor, one placement:

- HOST_IN: copied host->device on every run() call (observations, the 64x13 sample, the timestep);
- STATIC_IN: copied host->device once per inference by bind_static() (K/V that came from a host);
- DEVICE_IN: read in place from another engine's output buffer (no copy at all);
- HOST_OUT: copied device->host after every run() (epsilon);
- DEVICE_OUT: stays on the device (the K/V the denoiser reads, outputs nobody reads on the host).

and from that the bytes moved per inference, which tests check against a counting fake device,
and the dtype each shared tensor is stored in: the one the consuming engine takes (fp16 in an fp16
engine), so the K/V are never converted per step. Pure Python, no CUDA: the device interface
(`Device`) and a host-memory `FakeDevice` that counts bytes live here too, so the TensorRT
backend's buffer logic is testable without a GPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from runtime.errors import ModelError

HOST_IN, STATIC_IN, DEVICE_IN = "host_in", "static_in", "device_in"
HOST_OUT, DEVICE_OUT = "host_out", "device_out"
INPUT_PLACEMENTS = (HOST_IN, STATIC_IN, DEVICE_IN)
OUTPUT_PLACEMENTS = (HOST_OUT, DEVICE_OUT)

#: How K/V get from the encoder to the denoiser: "device" (shared device buffers, the plan),
#: "static" (host round trip once per inference: encoder -> host -> bind_static), "per_step"
#: (the old behaviour: every denoiser call copies every K/V input).
KV_MODES = ("device", "static", "per_step")


@dataclass(frozen=True)
class Slot:
    """One engine I/O tensor: its shape, the dtype the engine stores it in, and where it lives."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    placement: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def is_input(self) -> bool:
        return self.placement in INPUT_PLACEMENTS


@dataclass(frozen=True)
class GraphPlan:
    """Placements of one engine's tensors."""

    graph: str
    slots: tuple[Slot, ...]

    def slot(self, name: str) -> Slot:
        for s in self.slots:
            if s.name == name:
                return s
        raise ModelError(f"graph {self.graph} has no tensor '{name}'")

    def names(self, *placements: str) -> list[str]:
        return [s.name for s in self.slots if s.placement in placements]

    def bytes(self, *placements: str) -> int:
        return sum(s.nbytes for s in self.slots if s.placement in placements)

    @property
    def htod_per_call(self) -> int:
        return self.bytes(HOST_IN)

    @property
    def dtoh_per_call(self) -> int:
        return self.bytes(HOST_OUT)

    @property
    def static_bytes(self) -> int:
        return self.bytes(STATIC_IN)


@dataclass(frozen=True)
class ControllerPlan:
    """Encoder once + `steps` denoiser calls: the whole inference's traffic."""

    encoder: GraphPlan
    denoiser: GraphPlan
    steps: int
    kv_mode: str
    kv_names: tuple[str, ...] = field(default=())

    def bytes_moved(self) -> dict[str, int]:
        """Host->device and device->host bytes of one inference (copies the engines do themselves
        inside the device are not bus traffic and are not counted)."""
        htod = self.encoder.htod_per_call + self.denoiser.static_bytes + self.steps * self.denoiser.htod_per_call
        dtoh = self.encoder.dtoh_per_call + self.steps * self.denoiser.dtoh_per_call
        return {"htod": htod, "dtoh": dtoh, "total": htod + dtoh}

    def device_resident(self) -> list[str]:
        """Tensors that never leave the device during an inference."""
        return self.encoder.names(DEVICE_OUT)

    @property
    def kv_dtype(self) -> str | None:
        """The dtype the K/V are stored in (the denoiser's input dtype)."""
        return self.denoiser.slot(self.kv_names[0]).dtype if self.kv_names else None

    def summary(self) -> dict:
        """JSON-ready: bytes per inference, per step, what stays on the device."""
        moved = self.bytes_moved()
        return {"kv_mode": self.kv_mode, "steps": self.steps, "kv_dtype": self.kv_dtype,
                "bytes_per_inference": moved, "denoiser_bytes_per_step":
                self.denoiser.htod_per_call + self.denoiser.dtoh_per_call,
                "device_resident": self.device_resident()}


def _io(spec_like) -> tuple[list[tuple[str, tuple[int, ...], str]], list[tuple[str, tuple[int, ...], str]]]:
    """(inputs, outputs) as (name, shape, dtype) from a GraphSpec or a {'inputs': [...], 'outputs': [...]}."""
    def rows(items) -> list[tuple[str, tuple[int, ...], str]]:
        return [(t.name, tuple(int(x) for x in t.shape), str(t.dtype)) for t in items]

    if isinstance(spec_like, Mapping):
        return rows(spec_like["inputs"]), rows(spec_like["outputs"])
    return rows(spec_like.inputs), rows(spec_like.outputs)


def graph_plan(graph: str, inputs: Iterable[tuple[str, tuple[int, ...], str]],
               outputs: Iterable[tuple[str, tuple[int, ...], str]], static: Iterable[str] = (),
               device_in: Iterable[str] = (), device_out: Iterable[str] = ()) -> GraphPlan:
    """Placements of one graph's tensors; names not listed default to HOST_IN / HOST_OUT."""
    static, device_in, device_out = set(static), set(device_in), set(device_out)
    in_names = {n for n, _, _ in inputs}
    out_names = {n for n, _, _ in outputs}
    for label, names, pool in (("bound", static | device_in, in_names), ("device-kept", device_out, out_names)):
        unknown = sorted(names - pool)
        if unknown:
            raise ModelError(f"graph {graph} has no {label} tensor(s) {unknown}")
    if static & device_in:
        raise ModelError(f"graph {graph}: {sorted(static & device_in)} cannot be both bound from host and device")
    slots = [Slot(n, s, d, DEVICE_IN if n in device_in else STATIC_IN if n in static else HOST_IN)
             for n, s, d in inputs]
    slots += [Slot(n, s, d, DEVICE_OUT if n in device_out else HOST_OUT) for n, s, d in outputs]
    return GraphPlan(graph, tuple(slots))


def check_shared(producer: GraphPlan, consumer: GraphPlan, names: Iterable[str]) -> None:
    """Shared tensors need the same shape and dtype on both sides (else: rebuild both engines with
    the same precision), since the consumer reads the producer's bytes as they are."""
    for name in names:
        out, inp = producer.slot(name), consumer.slot(name)
        if out.shape != inp.shape or out.dtype != inp.dtype:
            raise ModelError(
                f"'{name}' is {out.dtype}{list(out.shape)} out of {producer.graph} but {inp.dtype}{list(inp.shape)} "
                f"into {consumer.graph}; rebuild both engines with the same --precision")


def plan_controller(encoder, denoiser, kv_names: Iterable[str], steps: int, kv_mode: str = "device",
                    host_outputs: Iterable[str] = ()) -> ControllerPlan:
    """The plan for one inference. `encoder`/`denoiser` are GraphSpecs (or {'inputs','outputs'}
    dicts) with the dtypes the engines use; `host_outputs`: encoder outputs the caller wants on
    the host even when K/V stay on the device (none by default: obs_tokens stays there too)."""
    if kv_mode not in KV_MODES:
        raise ModelError(f"kv_mode must be one of {list(KV_MODES)}, got '{kv_mode}'")
    if steps < 1:
        raise ModelError(f"steps must be >= 1, got {steps}")
    kv = tuple(kv_names)
    enc_in, enc_out = _io(encoder)
    den_in, den_out = _io(denoiser)
    if kv_mode == "device":
        keep = [n for n, _, _ in enc_out if n not in set(host_outputs)]
        enc = graph_plan("encoder", enc_in, enc_out, device_out=keep)
        den = graph_plan("denoiser", den_in, den_out, device_in=kv)
    else:
        enc = graph_plan("encoder", enc_in, enc_out)
        den = graph_plan("denoiser", den_in, den_out, static=kv if kv_mode == "static" else ())
    missing = [n for n in kv if n not in enc.names(HOST_OUT, DEVICE_OUT)]
    if missing:
        raise ModelError(f"the encoder does not output the K/V tensor(s) {missing} the denoiser reads")
    check_shared(enc, den, kv)
    return ControllerPlan(enc, den, steps, kv_mode, kv)


# --- the device interface ---------------------------------------------------------------------


class Device(Protocol):
    """The few device calls the TensorRT backend makes. Real: runtime.inference.tensorrt.CudaDevice
    (pycuda or cuda-python); tests: FakeDevice. Copies are enqueued on `stream` and complete by
    synchronize()."""

    stream_handle: int

    def alloc(self, nbytes: int) -> int: ...  # device pointer
    def free(self, ptr: int) -> None: ...
    def memcpy_htod(self, ptr: int, host: np.ndarray) -> None: ...
    def memcpy_dtoh(self, host: np.ndarray, ptr: int) -> None: ...
    def synchronize(self) -> None: ...
    def describe(self) -> dict: ...  # {"name": ..., "compute_capability": "9.0"}


class FakeDevice:
    """Host memory posing as a device: buffers are bytearrays keyed by a fake pointer, and every
    copy is counted, so tests assert bytes moved and what a fake engine reads at an address."""

    def __init__(self, name: str = "Fake GPU", compute_capability: str = "9.0") -> None:
        self._mem: dict[int, bytearray] = {}
        self._next = itertools.count(0x10000, 0x10000)
        self.stream_handle = 7
        self.name, self.compute_capability = name, compute_capability
        self.htod_bytes = self.dtoh_bytes = 0
        self.htod_calls = self.dtoh_calls = self.syncs = 0
        self.copies: list[tuple[str, int]] = []  # ("htod"|"dtoh", nbytes), in order

    def alloc(self, nbytes: int) -> int:
        ptr = next(self._next)
        self._mem[ptr] = bytearray(max(int(nbytes), 1))
        return ptr

    def free(self, ptr: int) -> None:
        self._mem.pop(ptr, None)

    def view(self, ptr: int, shape, dtype) -> np.ndarray:
        """The device bytes at `ptr` as an array (what a fake engine reads and writes)."""
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return np.frombuffer(memoryview(self._mem[ptr])[:n], dtype=dtype).reshape(shape)

    def memcpy_htod(self, ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        self._mem[ptr][: host.nbytes] = host.tobytes()
        self.htod_bytes += host.nbytes
        self.htod_calls += 1
        self.copies.append(("htod", host.nbytes))

    def memcpy_dtoh(self, host: np.ndarray, ptr: int) -> None:
        host[...] = np.frombuffer(memoryview(self._mem[ptr])[: host.nbytes], dtype=host.dtype).reshape(host.shape)
        self.dtoh_bytes += host.nbytes
        self.dtoh_calls += 1
        self.copies.append(("dtoh", host.nbytes))

    def synchronize(self) -> None:
        self.syncs += 1

    def describe(self) -> dict:
        return {"name": self.name, "compute_capability": self.compute_capability}

    @property
    def live_buffers(self) -> int:
        return len(self._mem)
