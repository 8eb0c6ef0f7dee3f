"""ONNX Runtime backend (CPU, CUDA or TensorRT execution providers)."""

from __future__ import annotations

import logging
import pathlib

import numpy as np

from runtime.controller.manifest import GraphSpec
from runtime.errors import ModelError, require

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
OPT_LEVELS = ("disable", "basic", "extended", "all")


def resolve_providers(providers: list | None) -> list:
    """Names like 'cpu'/'cuda'/'tensorrt' or full provider names (or (name, options) tuples)."""
    if not providers:
        return ["CPUExecutionProvider"]
    return [PROVIDER_ALIASES.get(p, p) if isinstance(p, str) else p for p in providers]


class OrtBackend:
    """One ONNX graph in an onnxruntime.InferenceSession.

    threads: intra-op threads (None = ORT default, all cores). opt_level: graph optimisation level.
    optimized_model_path: where ORT writes the optimised graph (a cache to inspect or reload).
    """

    name = "onnxruntime"

    def __init__(self, path: str | pathlib.Path, spec: GraphSpec | None = None, providers: list | None = None,
                 threads: int | None = None, opt_level: str = "all",
                 optimized_model_path: str | None = None) -> None:
        ort = require("onnxruntime", "ort", "the ONNX Runtime backend")
        path = pathlib.Path(path)
        if not path.is_file():
            raise ModelError(f"ONNX graph '{path}' not found")
        if opt_level not in OPT_LEVELS:
            raise ModelError(f"opt_level must be one of {OPT_LEVELS}, got '{opt_level}'")
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[opt_level]
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        if optimized_model_path:
            so.optimized_model_filepath = str(optimized_model_path)
        wanted = resolve_providers(providers)
        available = set(ort.get_available_providers())
        names = [p if isinstance(p, str) else p[0] for p in wanted]
        missing = [n for n in names if n not in available]
        if missing:
            raise ModelError(
                f"ONNX Runtime execution providers {missing} are not available here "
                f"(available: {sorted(available)}); on a Jetson install NVIDIA's onnxruntime-gpu wheel"
            )
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=wanted)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"ONNX Runtime cannot load '{path}': {exc}") from exc
        self.path = path
        self.spec = spec
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if spec is not None:
            declared = [t.name for t in spec.inputs]
            if sorted(declared) != sorted(self.input_names):
                raise ModelError(f"{path}: graph inputs {self.input_names} differ from the manifest's {declared}")
        self._ort = ort
        self._binding = None  # IOBinding holding the bind_static inputs (None: nothing bound)
        self._bound: dict[str, object] = {}
        log.debug("loaded %s with %s", path, self.session.get_providers())

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _device(self) -> tuple[str, int]:
        """Where bound inputs live: the first execution provider's device (CUDA or CPU)."""
        first = self.session.get_providers()[0]
        return ("cuda", 0) if first in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else ("cpu", 0)

    def bind_static(self, inputs: dict[str, np.ndarray]) -> None:
        """Bind inputs once as OrtValues in an IOBinding (on CPU they share the numpy memory; on
        CUDA they are copied to the device once); later runs pass only the other inputs."""
        if self._binding is None:
            self._binding = self.session.io_binding()
        kind, index = self._device()
        for name, value in inputs.items():
            if name not in self.input_names:
                raise ModelError(f"{self.path.name} has no input '{name}'")
            value = self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), kind, index)
            self._binding.bind_ortvalue_input(name, value)
            self._bound[name] = value  # the binding does not own it

    def _run_bound(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self._binding
        for name in self.input_names:
            if name in inputs:
                binding.bind_cpu_input(name, np.ascontiguousarray(inputs[name]))
                self._bound.pop(name, None)  # overridden: must be given again next time
            elif name not in self._bound:
                raise ModelError(f"{self.path.name}: input '{name}' not given (nor bound with bind_static)")
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"{self.path.name}: ONNX Runtime failed: {str(exc).splitlines()[0]}") from exc
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu(), strict=True))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._binding is not None:
            return self._run_bound(inputs)
        try:
            outputs = self.session.run(self.output_names, {n: inputs[n] for n in self.input_names})
        except KeyError as exc:
            raise ModelError(f"{self.path.name}: input {exc} not given") from exc
        return dict(zip(self.output_names, outputs, strict=True))

    def close(self) -> None:
        self._binding = None
        self._bound.clear()
        self.session = None
