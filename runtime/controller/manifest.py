"""manifest.json of an exported controller: the one source of truth for graph names and shapes.

The exporter writes it (export/onnx_export.py) and the runtime reads it (Controller, backends,
TensorRT builder): tensor names, shapes and dtypes, the normalizer, the DDIM schedule, hashes.
Torch-free.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import asdict, dataclass, field

from runtime.errors import ModelError

SCHEMA_VERSION = 2  # 2: per-layer obs_k_i / obs_vt_i (V transposed)
MANIFEST_NAME = "manifest.json"

ENCODER = "encoder"
DENOISER = "denoiser"
DENOISER_UNCACHED = "denoiser_uncached"  # optional: benchmark variant re-projecting obs K/V each step

# Tensor names (shared by exporter and runtime).
OBS_INPUTS = ("rgbm", "right_cam_img", "right_state")
# Per layer: obs_k_i (1, heads, tokens, head_dim), k-normed, and obs_vt_i = V transposed
# (1, heads, head_dim, tokens), the layouts the denoiser reads in place (see kv_names).
OBS_K, OBS_V = "obs_k", "obs_vt"
OBS_TOKENS = "obs_tokens"
SAMPLE, TIMESTEP, EPSILON = "sample", "timestep", "epsilon"


@dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str  # numpy dtype name: float32, float16, int64

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        return cls(name=str(d["name"]), shape=[int(x) for x in d["shape"]], dtype=str(d["dtype"]))


@dataclass
class GraphSpec:
    file: str
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    external_data: bool = False
    engine: str | None = None  # TensorRT engine file, when built

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise ModelError(f"graph {self.file} has no input '{name}'")

    def input_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.input(name).shape)

    @classmethod
    def from_dict(cls, d: dict) -> GraphSpec:
        return cls(
            file=str(d["file"]),
            sha256=str(d["sha256"]),
            inputs=[TensorSpec.from_dict(x) for x in d["inputs"]],
            outputs=[TensorSpec.from_dict(x) for x in d["outputs"]],
            external_data=bool(d.get("external_data", False)),
            engine=d.get("engine"),
        )


@dataclass
class Manifest:
    """Everything the runtime needs besides the graphs themselves."""

    arch: dict  # head/wrist model types, n_layer, n_head, widths, token counts
    action_horizon: int
    action_dim: int
    num_obs_tokens: int
    num_inference_steps: int
    scheduler: dict  # diffusers DDIMScheduler config (num_train_timesteps, beta_schedule, ...)
    timesteps: list[int]  # the DDIM timesteps, for reference (the sampler recomputes them)
    normalizer: dict  # {"scale": [...], "offset": [...]} of the action; x = (y - offset) / scale
    graphs: dict[str, GraphSpec]
    precision: str = "fp32"
    opset: int = 17
    source_checkpoint: dict = field(default_factory=dict)  # path, sha256, weights ("model"/"ema_model")
    exporter: dict = field(default_factory=dict)  # versions of torch / onnx used
    # timm RmsNorm formula baked into the graphs: "timm-1.0.12" (upstream's pin, unbiased variance) or
    # "mean-square" (timm >= 1.0.13). Recorded because the weights cannot tell which one trained them.
    rmsnorm: str = "timm-1.0.12"
    # Passing `dexgrasp engine verify` runs: backend, precision, max_error_of_range, gate, graph
    # sha256s, backend version, cpu flags, timestamp. A reduced-precision model starts only with a
    # record matching its backend, precision and current graph hashes (see `verification`).
    verifications: list[dict] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def graph(self, name: str) -> GraphSpec:
        if name not in self.graphs:
            raise ModelError(f"the exported model has no '{name}' graph (it has: {sorted(self.graphs)})")
        return self.graphs[name]

    def graph_hashes(self) -> dict[str, str]:
        return {name: g.sha256 for name, g in sorted(self.graphs.items())}

    def verification(self, backend: str, precision: str) -> dict | None:
        """The latest passing verification for backend+precision of these very graphs, or None."""
        hashes = self.graph_hashes()
        for record in reversed(self.verifications):
            if (record.get("backend") == backend and record.get("precision") == precision and record.get("passed")
                    and all(record.get("graph_sha256", {}).get(k) == v for k, v in hashes.items()
                            if k in record.get("graph_sha256", {})) and record.get("graph_sha256")):
                return record
        return None

    def record_verification(self, record: dict) -> None:
        """Keep one record per backend+precision: the newest replaces the older one."""
        self.verifications = [r for r in self.verifications
                              if (r.get("backend"), r.get("precision")) != (record["backend"], record["precision"])]
        self.verifications.append(record)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, model_dir: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(model_dir) / MANIFEST_NAME
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ModelError(
                f"manifest schema_version {version!r} is not supported (this runtime reads {SCHEMA_VERSION}); "
                "re-export the model with this version of dexgrasp"
            )
        try:
            graphs = {name: GraphSpec.from_dict(g) for name, g in d["graphs"].items()}
            fields = {k: d[k] for k in (
                "arch", "action_horizon", "action_dim", "num_obs_tokens", "num_inference_steps",
                "scheduler", "timesteps", "normalizer")}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"manifest is missing or has a malformed field: {exc!r}") from exc
        return cls(
            graphs=graphs,
            precision=d.get("precision", "fp32"),
            opset=int(d.get("opset", 17)),
            source_checkpoint=d.get("source_checkpoint", {}),
            exporter=d.get("exporter", {}),
            rmsnorm=str(d.get("rmsnorm", "timm-1.0.12")),
            verifications=[r for r in d.get("verifications", []) if isinstance(r, dict)],
            schema_version=version,
            **fields,
        )

    @classmethod
    def load(cls, model_dir: str | pathlib.Path) -> Manifest:
        path = pathlib.Path(model_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ModelError(
                f"'{model_dir}' is not an exported controller: {MANIFEST_NAME} not found "
                "(create one with `dexgrasp export controller --checkpoint CKPT --output DIR`)"
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{path} does not hold a JSON object")
        return cls.from_dict(data)


def kv_names(n_layer: int) -> list[str]:
    """Per-layer cached cross-attention tensors, in graph order: obs_k_0, obs_vt_0, obs_k_1, ..."""
    return [f"{kind}_{i}" for i in range(n_layer) for kind in (OBS_K, OBS_V)]


def obs_specs(image_size: int, state_dim: int) -> list[TensorSpec]:
    """Encoder inputs, as upstream's process_obs hands them to predict_action (B=1, T=1).

    Both sizes are the model's own (the exporter passes its encoder's image size and state width;
    upstream's are 518 and 13): no default, so a model of another joint layout never gets a
    manifest that claims upstream's."""
    return [
        TensorSpec("rgbm", [1, 1, 4, image_size, image_size], "float32"),
        TensorSpec("right_cam_img", [1, 1, 3, image_size, image_size], "float32"),
        TensorSpec("right_state", [1, 1, state_dim], "float32"),
    ]
