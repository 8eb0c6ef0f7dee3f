"""manifest.json of an exported tracker: graph files, tensor shapes, hashes and Cutie's settings.

Written by `export.tracker` and read by CutieTracker / SamBoxSegmenter, so shapes are stated once.
Torch-free.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import asdict, dataclass, field

# One graph/tensor description for every exported model: the inference backends take it as is.
from runtime.controller.manifest import GraphSpec, Manifest, TensorSpec
from runtime.errors import ModelError
from runtime.hashing import sha256_file

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
KIND = "tracker"


__all__ = ["GraphSpec", "TensorSpec", "CutieSettings", "SamSettings", "TrackerManifest", "load_manifest",
           "sha256_file"]


@dataclass
class CutieSettings:
    """Cutie's model dimensions and InferenceCore settings (upstream: eval_config + d17-val)."""

    model_config: str  # base | small
    height: int  # frame size the graphs were exported for (full resolution: max_internal_size=-1)
    width: int
    object_ids: list[int]  # ids tracked; upstream passes np.unique(mask) = [0, 1]
    target_id: int  # the id whose mask/probability is the tracker's output
    mem_every: int
    max_mem_frames: int
    top_k: int
    stagger_updates: int
    key_dim: int
    value_dim: int
    sensory_dim: int
    embed_dim: int
    num_queries: int


@dataclass
class SamSettings:
    model_type: str  # vit_h | vit_l | vit_b
    image_size: int  # encoder input (1024)
    pixel_mean: list[float]
    pixel_std: list[float]
    mask_threshold: float


@dataclass
class TrackerManifest:
    precision: str
    cutie: CutieSettings
    graphs: dict[str, GraphSpec]
    sam: SamSettings | None = None
    source: dict = field(default_factory=dict)  # checkpoints, package versions, seed
    # Passing reduced-precision verifications (`dexgrasp track --verify`): backend, precision (the
    # per-graph key of runtime/tracking/learned/precision.py), mask IoU vs fp32, gate, graph sha256s.
    # Matched and replaced exactly as the controller's (same methods, below).
    verifications: list[dict] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    kind: str = KIND

    # The controller's rules, shared: a record counts only for the graph hashes it was made on.
    verification = Manifest.verification
    record_verification = Manifest.record_verification

    def graph_hashes(self) -> dict[str, str]:
        return {name: g.sha256 for name, g in sorted(self.graphs.items())}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, directory: pathlib.Path) -> pathlib.Path:
        """Write manifest.json atomically (a cut write never leaves a half manifest)."""
        path = pathlib.Path(directory) / MANIFEST_NAME
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    def graph(self, name: str) -> GraphSpec:
        if name not in self.graphs:
            raise ModelError(f"tracker manifest has no graph '{name}' (has: {', '.join(sorted(self.graphs))})")
        return self.graphs[name]


def load_manifest(directory: str | pathlib.Path, verify_hashes: bool = True) -> TrackerManifest:
    """Read and validate `<directory>/manifest.json`; raise ModelError naming what is wrong."""
    directory = pathlib.Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ModelError(f"{directory} is not an exported tracker: {MANIFEST_NAME} is missing "
                         f"(make one with `dexgrasp export tracker`)")
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(d, dict) or d.get("kind") != KIND:
        raise ModelError(f"{path} is not a tracker manifest (kind={d.get('kind') if isinstance(d, dict) else d!r})")
    if d.get("schema_version") != SCHEMA_VERSION:
        raise ModelError(f"{path} has schema_version {d.get('schema_version')}, this runtime reads {SCHEMA_VERSION}")
    try:
        manifest = TrackerManifest(
            precision=str(d["precision"]),
            cutie=CutieSettings(**d["cutie"]),
            graphs={k: GraphSpec.from_dict(v) for k, v in d["graphs"].items()},
            sam=SamSettings(**d["sam"]) if d.get("sam") else None,
            source=dict(d.get("source", {})),
            verifications=[r for r in d.get("verifications", []) if isinstance(r, dict)],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} is malformed: {exc!r}") from exc
    for name, spec in manifest.graphs.items():
        file = directory / spec.file
        if not file.is_file():
            raise ModelError(f"{path}: graph '{name}' file {file} is missing")
        if verify_hashes and sha256_file(file) != spec.sha256:
            raise ModelError(f"{file} does not match the sha256 in {path} (re-export or copy it again)")
    return manifest
