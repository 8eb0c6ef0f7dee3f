"""Build TensorRT engines from the exported ONNX graphs (TensorRT 10 Python API; 8.6 mostly works).

Static shapes come from the manifest (one optimization profile per graph pinned to them). Precision:
- fp32: exact;
- fp16: the FP16 builder flag plus a recipe that pins the accuracy-sensitive layers to fp32
  (layer.precision + set_output_type, honoured under OBEY_PRECISION_CONSTRAINTS): LayerNorm
  (TensorRT's own docs warn its fp16 variance overflows), the decomposed RmsNorm/k-norm (its mean of
  squares), softmax (fused or as ReduceMax/Exp/ReduceSum/Div), exp/sqrt/sin/cos, and the DiT's
  timestep embedding. See `Fp32Rules` and `fp32_layers`; tests run it on a fake network;
- int8: INT8 + FP16 flags with the same pins, calibrated by an entropy calibrator on observations
  from recorded episodes (export/calibration.py), synthetic ones when none are given.
In fp16/int8 builds the K/V cache tensors (encoder outputs, denoiser inputs) are stored in fp16,
the dtype the denoiser computes in, so the runtime shares them without a per-step conversion.

A timing cache file next to the engines (`timing.cache`) is reused and updated by every build
(a cache from another GPU/TensorRT is discarded, never trusted), and tqdm bars follow the build
phases. Each engine gets a `<engine>.json` sidecar (TensorRT version, GPU, compute capability,
precision, source graph hash) that the runtime checks before loading (runtime/inference/tensorrt.py).
Engines are device-specific: build them on the robot's computer. Never run here (no GPU).
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from runtime.controller.manifest import DENOISER, ENCODER, OBS_K, OBS_V, GraphSpec, Manifest
from runtime.errors import ConfigError, MissingExtraError, ModelError, require
from runtime.inference.tensorrt import engine_file_name, engine_meta_path

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 4 << 30
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Fp32Rules:
    """Which layers of an fp16/int8 build stay fp32. Matched on TensorRT layer types and ops, and
    on ONNX scope names (the parser names layers after the nodes, e.g. '/blocks.0/norm1/...')."""

    layer_types: tuple[str, ...] = ("NORMALIZATION", "SOFTMAX", "REDUCE")
    unary_ops: tuple[str, ...] = ("EXP", "LOG", "SQRT", "RECIP", "SIN", "COS")
    elementwise_ops: tuple[str, ...] = ("POW",)
    # a path component containing "norm" (norm1, q_norm, k_norm, LayerNormalization), softmax, the
    # sinusoidal timestep embedding of the DiT (time_emb's own ops, not the MLP after it)
    name_patterns: tuple[str, ...] = (r"(^|/)[^/]*norm[^/]*(/|$)", r"softmax", r"(^|/)time_emb/[^/]+$")
    # elementwise layers fed by a pinned reduce/unary layer (x - max, x / sum, var + eps, ...)
    epilogue: bool = True
    extra_patterns: tuple[str, ...] = ()  # e.g. from measurement: per-layer regexes to keep fp32

    def with_extra(self, patterns: Iterable[str]) -> Fp32Rules:
        return Fp32Rules(self.layer_types, self.unary_ops, self.elementwise_ops, self.name_patterns,
                         self.epilogue, tuple(self.extra_patterns) + tuple(patterns))


DEFAULT_RULES = Fp32Rules()


def _enum_name(value) -> str:
    name = getattr(value, "name", None) or str(value)
    return str(name).rsplit(".", 1)[-1].upper()


def _layer_op(layer, trt) -> str | None:
    """The op of a unary / elementwise / reduce layer. TensorRT's Python API returns plain ILayer
    objects from network.get_layer; the op is read after downcasting (the documented idiom)."""
    kind = _enum_name(layer.type)
    cls = {"UNARY": "IUnaryLayer", "ELEMENTWISE": "IElementWiseLayer", "REDUCE": "IReduceLayer"}.get(kind)
    if cls is None:
        return None
    if hasattr(trt, cls) and not isinstance(layer, getattr(trt, cls)):
        layer.__class__ = getattr(trt, cls)
    op = getattr(layer, "op", None)
    return _enum_name(op) if op is not None else None


def _float_outputs(layer, trt) -> list[int]:
    """Indices of the layer's floating-point outputs (trt.float32 is DataType.FLOAT, float16 HALF)."""
    out = []
    for j in range(layer.num_outputs):
        dtype = getattr(layer.get_output(j), "dtype", None)
        if dtype is not None and _enum_name(dtype) in ("FLOAT", "HALF", "BF16"):
            out.append(j)
    return out


def fp32_layers(network, trt, rules: Fp32Rules = DEFAULT_RULES) -> dict[str, str]:
    """{layer name: why} for the layers of `network` the recipe keeps in fp32. Layers without
    float outputs (shape arithmetic on int64) are never pinned: precision does not apply to them."""
    patterns = [re.compile(p, re.IGNORECASE) for p in (*rules.name_patterns, *rules.extra_patterns)]
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    pinned: dict[str, str] = {}
    sources: set[str] = set()  # output tensor names of pinned reduce/unary layers (epilogue roots)
    for layer in layers:
        if not _float_outputs(layer, trt):
            continue
        kind, op = _enum_name(layer.type), _layer_op(layer, trt)
        why = None
        if kind in rules.layer_types:
            why = f"type {kind}"
        elif kind == "UNARY" and op in rules.unary_ops:
            why = f"unary {op}"
        elif kind == "ELEMENTWISE" and op in rules.elementwise_ops:
            why = f"elementwise {op}"
        else:
            hit = next((p.pattern for p in patterns if p.search(layer.name or "")), None)
            if hit:
                why = f"name ~ {hit}"
        if why:
            pinned[layer.name] = why
            if kind in ("REDUCE", "UNARY"):
                sources.update(layer.get_output(j).name for j in range(layer.num_outputs))
    if rules.epilogue:
        for layer in layers:
            if layer.name in pinned or _enum_name(layer.type) != "ELEMENTWISE" or not _float_outputs(layer, trt):
                continue
            inputs = [layer.get_input(j) for j in range(layer.num_inputs)]
            if any(t is not None and t.name in sources for t in inputs):
                pinned[layer.name] = "epilogue of a pinned reduce/unary"
    return pinned


def apply_precision_recipe(network, config, trt, precision: str, rules: Fp32Rules = DEFAULT_RULES,
                           half_io: Iterable[str] = ()) -> dict[str, str]:
    """Set the builder flags for `precision` and pin the recipe's layers to fp32; network I/O
    tensors named in `half_io` are stored in fp16. Returns the pinned layers (name -> reason)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"TensorRT precision must be one of {list(PRECISIONS)}, got '{precision}'")
    if precision == "fp32":
        return {}
    config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    pinned = fp32_layers(network, trt, rules)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in pinned:
            layer.precision = trt.float32
            for j in _float_outputs(layer, trt):
                layer.set_output_type(j, trt.float32)
    half = set(half_io)
    for tensors in ([network.get_input(i) for i in range(network.num_inputs)],
                    [network.get_output(i) for i in range(network.num_outputs)]):
        for t in tensors:
            if t.name in half:
                t.dtype = trt.float16
    log.info("%s recipe: %d of %d layers kept fp32, %d I/O tensors in fp16", precision, len(pinned),
             network.num_layers, len(half & {t.name for t in _io_tensors(network)}))
    return pinned


def _io_tensors(network) -> list:
    return ([network.get_input(i) for i in range(network.num_inputs)]
            + [network.get_output(i) for i in range(network.num_outputs)])


def kv_io_names(spec: GraphSpec) -> list[str]:
    """The K/V cache tensors among a graph's inputs and outputs."""
    return [t.name for t in list(spec.inputs) + list(spec.outputs) if t.name.startswith((OBS_K + "_", OBS_V + "_"))]


# --- progress / timing cache / calibration -------------------------------------------------------


def _progress_monitor(trt, enabled: bool):
    """A trt.IProgressMonitor that mirrors TensorRT's build phases into tqdm bars (TRT >= 10)."""
    if not enabled or not hasattr(trt, "IProgressMonitor"):
        return None
    from tqdm.auto import tqdm

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=False)

        def step_complete(self, phase_name, step):
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.n = step + 1
                bar.refresh()
            return True  # keep building

        def phase_finish(self, phase_name):
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return Monitor()


def load_timing_cache(config, path: pathlib.Path | None):
    """The builder's timing cache, seeded from `path` when it holds one TensorRT accepts; a cache
    it rejects (other GPU/TensorRT, truncated file) is logged and replaced by an empty one."""
    if path is None:
        return None
    blob = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(blob)
        if cache is None:
            raise ValueError("create_timing_cache returned None")
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise ValueError("set_timing_cache refused it")
    except (ValueError, RuntimeError, TypeError) as exc:
        if not blob:
            raise
        log.warning("timing cache %s not usable here (%s); starting a new one", path, exc)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def save_timing_cache(config, path: pathlib.Path | None) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    tmp.replace(path)


def make_calibrator(trt, batches: list[dict], spec: GraphSpec, cache_path: pathlib.Path, device=None):
    """An IInt8EntropyCalibrator2 feeding `batches` (dicts of host arrays shaped as `spec.inputs`)
    through device buffers; its cache file makes rebuilds skip the calibration runs."""
    import numpy as np

    if device is None:
        from runtime.inference.tensorrt import default_device

        device = default_device()

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches, self.index = batches, 0
            self.ptrs = {t.name: device.alloc(int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize) for t in spec.inputs}

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            if self.index >= len(self.batches):
                return None
            batch = self.batches[self.index]
            self.index += 1
            for name in names:
                spec_t = spec.input(name)
                device.memcpy_htod(self.ptrs[name], np.ascontiguousarray(batch[name], dtype=spec_t.dtype))
            device.synchronize()
            return [self.ptrs[name] for name in names]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache):
            cache_path.write_bytes(bytes(cache))

    return Calibrator()


def _device_meta() -> dict:
    try:
        from runtime.inference.tensorrt import default_device

        return default_device().describe()
    except (MissingExtraError, ModelError, ImportError) as exc:
        log.warning("cannot query the GPU for the engine metadata (%s)", exc)
        return {}


def write_engine_meta(engine_path: pathlib.Path, trt_version: str, device: dict, precision: str,
                      spec: GraphSpec, pinned: dict[str, str]) -> pathlib.Path:
    """The sidecar the runtime checks before loading the engine."""
    meta = {"tensorrt_version": trt_version, "device_name": device.get("name"),
            "compute_capability": device.get("compute_capability"), "precision": precision,
            "onnx_file": spec.file, "onnx_sha256": spec.sha256, "fp32_layers": len(pinned)}
    path = engine_meta_path(engine_path)
    path.write_text(json.dumps(meta, indent=2))
    return path


# --- build ----------------------------------------------------------------------------------------


def build_engine(onnx_path: pathlib.Path, spec: GraphSpec, engine_path: pathlib.Path, fp16: bool = False,
                 timing_cache: pathlib.Path | None = None, progress: bool = True, precision: str | None = None,
                 calibration: list[dict] | None = None, rules: Fp32Rules = DEFAULT_RULES,
                 half_io: Iterable[str] | None = None) -> dict[str, str]:
    """Build one engine. `precision` (fp32/fp16/int8) wins over the legacy `fp16` flag; `half_io`
    defaults to the graph's K/V tensors in fp16/int8 builds. Returns the layers kept fp32."""
    precision = precision or ("fp16" if fp16 else "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"TensorRT precision must be one of {list(PRECISIONS)}, got '{precision}'")
    trt = require("tensorrt", "gpu", "building TensorRT engines")
    from tqdm.auto import tqdm

    phases = tqdm(total=4, desc=f"{engine_path.name}", unit="phase", disable=not progress)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    phases.set_postfix_str("parse")
    if not parser.parse_from_file(str(onnx_path)):  # resolves external data next to the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    phases.update()
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision != "fp32" and not builder.platform_has_fast_fp16:
        log.warning("this GPU has no fast FP16; building %s anyway", precision)
    phases.set_postfix_str("precision recipe")
    half = kv_io_names(spec) if half_io is None and precision != "fp32" else list(half_io or ())
    pinned = apply_precision_recipe(network, config, trt, precision, rules, half)
    if precision == "int8":
        if not calibration:
            raise ModelError(f"int8 needs calibration data for {onnx_path.name} (pass --calibration EPISODES_DIR)")
        config.int8_calibrator = make_calibrator(trt, calibration, spec,
                                                 engine_path.with_name(engine_path.name + ".calib"))
    profile = builder.create_optimization_profile()
    for tensor in spec.inputs:
        shape = tuple(tensor.shape)
        profile.set_shape(tensor.name, shape, shape, shape)
    config.add_optimization_profile(profile)
    if precision == "int8":
        config.set_calibration_profile(profile)
    cache = load_timing_cache(config, timing_cache)
    monitor = _progress_monitor(trt, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    phases.update()
    phases.set_postfix_str("build (timing tactics)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine for {onnx_path.name} (see the log above)")
    phases.update()
    phases.set_postfix_str("write")
    tmp = engine_path.with_name(engine_path.name + ".partial")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)
    if cache is not None:
        save_timing_cache(config, timing_cache)
    write_engine_meta(engine_path, str(trt.__version__), _device_meta(), precision, spec, pinned)
    phases.update()
    phases.close()
    return pinned


def build_engines(model_dir: str | pathlib.Path, manifest: Manifest, fp16: bool = False,
                  timing_cache: str | None = None, progress: bool = True, precision: str | None = None,
                  calibration: str | pathlib.Path | None = None, max_calibration: int = 32) -> Manifest:
    """Build the encoder and denoiser engines and record them in manifest.json. `precision`
    (fp32/fp16/int8) wins over the legacy `fp16` flag; int8 calibrates on `calibration`
    (recorded episodes directory, or synthetic observations when None)."""
    model_dir = pathlib.Path(model_dir)
    precision = precision or ("fp16" if fp16 else "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"TensorRT precision must be one of {list(PRECISIONS)}, got '{precision}'")
    if precision != "fp32" and manifest.precision != "fp32":
        log.warning("the graphs were exported in %s: the recipe's fp32 layers cannot restore what the export "
                    "rounded away; build %s engines from an fp32 export", manifest.precision, precision)
    cache = pathlib.Path(timing_cache) if timing_cache else model_dir / "timing.cache"
    batches: dict[str, list[dict]] = {}
    if precision == "int8":
        from export.calibration import controller_calibration

        batches = controller_calibration(model_dir, manifest, calibration, max_calibration)
    for name in (ENCODER, DENOISER):
        spec = manifest.graph(name)
        engine = engine_file_name(spec.file, precision)
        log.info("building TensorRT engine %s", engine)
        build_engine(model_dir / spec.file, spec, model_dir / engine, timing_cache=cache, progress=progress,
                     precision=precision, calibration=batches.get(name))
        spec.engine = engine
    manifest.save(model_dir)
    return manifest
