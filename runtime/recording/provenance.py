"""Provenance of a recording: which model, config, code and machine produced an episode.

An episode that cannot say which controller drove the robot cannot be compared with a new engine
later, nor traced back when a dataset turns out bad. `build_provenance` is computed once when the
recorder starts (the git call and the model hash are not per-episode work) and copied into every
episode's episode.json under "provenance"; `dexgrasp data info` prints it back. Torch-free and
cheap: the model is identified by the sha256 of its manifest.json, which itself lists the sha256
of every graph, so it pins the whole directory without reading the graphs.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from pathlib import Path

from runtime.hashing import sha256_file

PROVENANCE_FORMAT = "dexgrasp-provenance/1"
MODEL_MANIFEST = "manifest.json"


def git_commit(start: Path | None = None) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the checkout holding this package."""
    here = Path(start or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                capture_output=True, text=True, timeout=5, check=True).stdout
        return {"commit": sha or None, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}  # an installed wheel: no checkout to ask


def model_summary(model_dir: str | Path | None) -> dict:
    """Where the exported controller is and what it is: manifest hash, schema, graph hashes."""
    if model_dir is None:
        return {"dir": None}
    path = Path(model_dir).expanduser()
    out: dict = {"dir": str(path.resolve()) if path.exists() else str(path)}
    manifest = path / MODEL_MANIFEST
    if not manifest.is_file():
        out["error"] = f"no {MODEL_MANIFEST}"
        return out
    out["manifest_sha256"] = sha256_file(manifest)
    try:
        data = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        out["error"] = f"unreadable {MODEL_MANIFEST}: {exc}"
        return out
    graphs = data.get("graphs") if isinstance(data, dict) else None
    out["manifest"] = {
        "schema_version": data.get("schema_version"),
        "arch": data.get("arch"),
        "precision": data.get("precision"),
        "graphs": {name: {"file": g.get("file"), "sha256": g.get("sha256")}
                   for name, g in (graphs or {}).items() if isinstance(g, dict)},
        "source_checkpoint": data.get("source_checkpoint"),
    }
    return out


def machine_summary() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "cpus": os.cpu_count()}


def build_provenance(context=None, model_dir: str | Path | None = None) -> dict:
    """Provenance for episodes recorded under `context` (a RuntimeConfig, or None).

    The config is stored as loaded (after overrides, defaults filled in) so a later reader sees the
    exact settings, not the YAML file that may have changed since. An unresolvable model directory
    (null = the cached auto-made model) is recorded as its cache path when that exists."""
    from runtime import __version__

    out: dict = {"format": PROVENANCE_FORMAT, "project_version": __version__, **git_commit(),
                 "machine": machine_summary()}
    policy = getattr(context, "policy", None)
    if policy is not None:
        out["backend"] = getattr(policy, "backend", None)
        out["precision"] = getattr(policy, "precision", None)
        if model_dir is None:
            model_dir = getattr(policy, "model_dir", None)
            if model_dir is None and getattr(policy, "backend", None) != "fake":
                try:
                    from runtime.config.models import cached_model_dir

                    model_dir = cached_model_dir(policy.preset, policy.seed, getattr(context, "robot", None))
                except (ImportError, AttributeError, TypeError):
                    model_dir = None
    out["model"] = model_summary(model_dir)
    if context is not None and hasattr(context, "model_dump"):
        out["config"] = context.model_dump(mode="json")
    return out
