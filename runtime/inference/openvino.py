"""OpenVINO backend (CPU): the exported ONNX graphs on x86 robot computers, using the CPU's bf16
units (AMX-BF16 or AVX512-BF16) when asked to.

Imported lazily (`openvino` extra). Precision is per graph: "fp32" compiles with
INFERENCE_PRECISION_HINT f32 (exact, no silent bf16 on AMX machines, where OpenVINO's default is
bf16); "bf16" compiles with the bf16 hint. Which graphs of a model may run in bf16 is a measured
recipe (`precision_for`): see docs/inference.md for the numbers behind it.

Compiled models are cached under the project's cache root (runtime/cache.py): one folder per key
(graph hash, precision, OpenVINO version, CPU flags, threads) used as OpenVINO's CACHE_DIR (blobs
read by mmap on the next start), with the sha256 of every file in it recorded after the compile.
An entry whose files do not match (truncated, a flipped byte, extra files) is deleted and rebuilt,
never imported: OpenVINO itself does not checksum its blobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import shutil

import numpy as np

from runtime.cache import cache_dir as project_cache_dir
from runtime.controller.manifest import DENOISER, GraphSpec
from runtime.errors import ModelError, require

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
_HINT = {"fp32": "f32", "bf16": "bf16"}
BF16_FLAGS = ("amx_bf16", "avx512_bf16")

# Graphs kept in fp32 by the bf16 recipe (measured: docs/inference.md). The denoiser is the
# DDIM-sensitive part: its bf16 error is amplified by 16 sampling steps and by the action
# normalizer, and OpenVINO 2026.4's CPU plugin does not honour per-node fp32 marks on most of its
# MatMul/FullyConnected nodes, so it stays fp32 as a whole; it gains little from bf16 anyway.
FP32_GRAPHS_IN_BF16 = (DENOISER,)


def precision_for(precision: str, graph: str) -> str:
    """The compute precision `graph` gets under the model-level `precision` recipe."""
    if precision == "bf16" and graph in FP32_GRAPHS_IN_BF16:
        return "fp32"
    return precision


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's ISA flags (empty where /proc/cpuinfo is unreadable, e.g. not Linux)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support(core=None) -> str | None:
    """Name of what gives this CPU fast bf16 ("amx_bf16", "avx512_bf16", or OpenVINO's "BF16"
    capability), or None."""
    flags = cpu_flags()
    for flag in BF16_FLAGS:
        if flag in flags:
            return flag
    if core is not None:
        try:
            if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                return "BF16"
        except Exception:  # noqa: BLE001 - a property OpenVINO may not report
            pass
    return None


def cpu_summary() -> str:
    """Short ISA summary recorded with verifications and cache keys (bf16/AMX/AVX-512 flags)."""
    flags = cpu_flags()
    keep = sorted(f for f in flags if f.startswith(("amx", "avx512")) or f in ("avx2", "fma"))
    return ",".join(keep) or "unknown"


def check_precision(precision: str, core=None) -> None:
    """One-line ModelError when `precision` is not something this backend can do here."""
    if precision not in PRECISIONS:
        raise ModelError(f"the openvino backend supports precision {list(PRECISIONS)}, not '{precision}' "
                         "(fp16 is for TensorRT; on this CPU use fp32 or bf16)")
    if precision == "bf16" and bf16_support(core) is None:
        raise ModelError("precision bf16 needs a CPU with AMX-BF16 or AVX512-BF16 (neither is in /proc/cpuinfo "
                         "here); use --precision fp32 / policy.precision: fp32")


def file_sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


SUMS = "sha256.json"


def _check_entry(entry: pathlib.Path, sums: pathlib.Path) -> str | None:
    """Why the cache entry cannot be trusted (None: every file matches its recorded sha256)."""
    try:
        recorded = json.loads(sums.read_text())
    except (OSError, ValueError) as exc:
        return f"no readable {SUMS}: {exc}"
    present = {f.name for f in entry.iterdir() if f.name != SUMS}
    if present != set(recorded):
        return f"files {sorted(present ^ set(recorded))} differ from the record"
    for name, digest in recorded.items():
        if file_sha256(entry / name) != digest:
            return f"{name} does not match its sha256"
    return None


def _write_sums(entry: pathlib.Path, sums: pathlib.Path) -> None:
    try:
        record = {f.name: file_sha256(f) for f in sorted(entry.iterdir()) if f.is_file() and f.name != SUMS}
        tmp = sums.with_name(f"{SUMS}.{os.getpid()}.partial")
        tmp.write_text(json.dumps(record))
        tmp.replace(sums)
    except OSError as exc:
        log.warning("cannot record the compiled-model cache %s: %s", entry, exc)


def _port_name(port, wanted: set[str]) -> str:
    """The manifest's name of a port (OpenVINO's ONNX reader gives ports several names)."""
    names = port.get_names()
    for name in sorted(names):
        if name in wanted:
            return name
    return port.get_any_name()


class OpenVinoBackend:
    """One ONNX graph compiled by OpenVINO for the CPU, with one infer request.

    precision: "fp32" or "bf16" (this graph's compute precision; inputs/outputs stay float32).
    threads:   INFERENCE_NUM_THREADS (None: OpenVINO's default, all cores).
    cache_dir: where compiled blobs go; None = <cache root>/openvino, False = no cache.
    `run` blocks (the GIL is released inside infer); not thread-safe (one request).
    """

    name = "openvino"

    def __init__(self, path: str | pathlib.Path, spec: GraphSpec | None = None, precision: str = "fp32",
                 threads: int | None = None, cache_dir: str | pathlib.Path | bool | None = None,
                 device: str = "CPU") -> None:
        self.ov = ov = require("openvino", "openvino", "the OpenVINO backend")
        path = pathlib.Path(path)
        if not path.is_file():
            raise ModelError(f"ONNX graph '{path}' not found")
        core = ov.Core()
        check_precision(precision, core)
        self.path, self.spec, self.precision = path, spec, precision
        self.config = {"INFERENCE_PRECISION_HINT": _HINT[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self.cache_hit = False
        self.blob: pathlib.Path | None = None
        if cache_dir is not False:
            root = pathlib.Path(cache_dir) if cache_dir else project_cache_dir("openvino")
            self.blob = root / self._cache_key(ov, spec, threads) / "model.blob"  # the real name: after compile
        self.compiled = self._load(core, device)
        self.request = self.compiled.create_infer_request()
        wanted = {t.name for t in (spec.inputs + spec.outputs)} if spec is not None else set()
        self.input_names = [_port_name(p, wanted) for p in self.compiled.inputs]
        self.output_names = [_port_name(p, wanted) for p in self.compiled.outputs]
        if spec is not None:
            declared = [t.name for t in spec.inputs]
            if sorted(declared) != sorted(self.input_names):
                raise ModelError(f"{path}: graph inputs {self.input_names} differ from the manifest's {declared}")
        self._bound: dict[str, np.ndarray] = {}

    # -- compiled-model cache

    def _cache_key(self, ov, spec: GraphSpec | None, threads) -> str:
        graph_hash = spec.sha256 if spec is not None and spec.sha256 else file_sha256(self.path)
        parts = [graph_hash, self.precision, ov.get_version(), cpu_summary(), str(threads or "default")]
        return f"{self.path.stem}-{self.precision}-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def _load(self, core, device: str):
        """Compile, or import from our cache entry (OpenVINO's CACHE_DIR, one folder per key, read
        by mmap) after checking every file in it against the sha256s recorded when it was made."""
        if self.blob is None:
            return self._compile(core, device, self.config)
        entry = self.blob.parent
        sums = entry / SUMS
        if entry.is_dir():
            problem = _check_entry(entry, sums)
            if problem:
                log.warning("compiled-model cache %s is unusable (%s); rebuilding it", entry, problem)
                shutil.rmtree(entry, ignore_errors=True)
        trusted = sums.is_file()
        if not trusted:
            shutil.rmtree(entry, ignore_errors=True)  # files without a sums record: never trusted
        try:
            entry.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create the compiled-model cache %s: %s", entry, exc)
            return self._compile(core, device, self.config)
        compiled = self._compile(core, device, {**self.config, "CACHE_DIR": str(entry)})
        try:
            self.cache_hit = bool(compiled.get_property("LOADED_FROM_CACHE"))
        except Exception:  # noqa: BLE001 - older OpenVINO without the property
            self.cache_hit = trusted
        if not self.cache_hit:  # OpenVINO (re)wrote the entry: record what it wrote
            _write_sums(entry, sums)
        blobs = sorted(entry.glob("*.blob"))
        self.blob = blobs[0] if blobs else self.blob
        return compiled

    def _compile(self, core, device: str, config: dict):
        try:
            return core.compile_model(str(self.path), device, config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError with its own text
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            raise ModelError(f"OpenVINO cannot compile '{self.path}': {first}") from exc

    # -- inference

    def _tensor(self, name: str, value) -> object:
        arr = np.ascontiguousarray(value)
        return self.ov.Tensor(arr, shared_memory=True), arr

    def bind_static(self, inputs: dict[str, np.ndarray]) -> None:
        """Share these arrays with the infer request once (set_tensor, no copy); later runs take
        only the other inputs. See runtime/inference/base.py."""
        for name, value in inputs.items():
            if name not in self.input_names:
                raise ModelError(f"{self.path.name} has no input '{name}'")
            tensor, arr = self._tensor(name, value)
            self.request.set_tensor(name, tensor)
            self._bound[name] = arr  # keeps the shared memory alive

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name in self.input_names:
            if name in inputs:
                tensor, _ = self._tensor(name, inputs[name])
                try:
                    self.request.set_tensor(name, tensor)
                except RuntimeError as exc:
                    raise ModelError(f"{self.path.name}: input '{name}' rejected: "
                                     f"{str(exc).strip().splitlines()[-1]}") from exc
                self._bound.pop(name, None)  # overridden: must be given again next time
            elif name not in self._bound:
                raise ModelError(f"{self.path.name}: input '{name}' not given (nor bound with bind_static)")
        self.request.infer()
        return {name: self.request.get_tensor(name).data.copy() for name in self.output_names}

    def close(self) -> None:
        self._bound.clear()
        self.request = None
        self.compiled = None
