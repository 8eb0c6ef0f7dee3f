"""Build TensorRT engines from the exported ONNX graphs (TensorRT 8.6 / 10 Python API).

Static shapes come from the manifest (one optimization profile per graph pinned to them), FP16 or
FP32, an optional timing cache file reused across builds, and a progress monitor shown as tqdm bars.
Engines are device-specific: build them on the robot's computer. Never run here (no GPU).
"""

from __future__ import annotations

import logging
import pathlib

from runtime.controller.manifest import DENOISER, ENCODER, GraphSpec, Manifest
from runtime.errors import ModelError, require

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 4 << 30


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


def build_engine(onnx_path: pathlib.Path, spec: GraphSpec, engine_path: pathlib.Path, fp16: bool,
                 timing_cache: pathlib.Path | None, progress: bool = True) -> None:
    trt = require("tensorrt", "gpu", "building TensorRT engines")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # resolves external data next to the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; building anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for tensor in spec.inputs:
        shape = tuple(tensor.shape)
        profile.set_shape(tensor.name, shape, shape, shape)
    config.add_optimization_profile(profile)
    cache = None
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    monitor = _progress_monitor(trt, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine for {onnx_path.name} (see the log above)")
    engine_path.write_bytes(bytes(serialized))
    if cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


def build_engines(model_dir: str | pathlib.Path, manifest: Manifest, fp16: bool = False,
                  timing_cache: str | None = None, progress: bool = True) -> Manifest:
    """Build `<graph>.engine` for the encoder and denoiser and record them in manifest.json."""
    model_dir = pathlib.Path(model_dir)
    cache = pathlib.Path(timing_cache) if timing_cache else model_dir / "timing.cache"
    for name in (ENCODER, DENOISER):
        spec = manifest.graph(name)
        engine = pathlib.Path(spec.file).with_suffix(".fp16.engine" if fp16 else ".engine").name
        log.info("building TensorRT engine %s", engine)
        build_engine(model_dir / spec.file, spec, model_dir / engine, fp16, cache, progress)
        spec.engine = engine
    manifest.save(model_dir)
    return manifest
