"""Checksums and atomic writes: how a finished episode proves it is complete.

The manifest is written last, through a temporary file, fsync and rename, so its presence means
every file it lists was fully written before it; a reader recomputes the checksums.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from runtime.hashing import sha256_file
from runtime.recording.layout import FORMAT, MANIFEST

__all__ = ["sha256_file", "build_manifest", "write_manifest", "verify_manifest", "write_atomic", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def episode_files(episode_dir: Path) -> list[str]:
    """Every file of an episode except the manifest and temporaries, as sorted relative paths."""
    out = []
    for root, _, files in os.walk(episode_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), episode_dir)
            if rel == MANIFEST or name.startswith(".") and name.endswith(".tmp"):
                continue
            out.append(rel)
    return sorted(out)


def build_manifest(episode_dir: Path, frames: int, extra: dict | None = None,
                   known: dict[str, tuple[int, str]] | None = None) -> dict:
    """The manifest of every file under episode_dir. `known` maps relative paths to (size, sha256)
    computed when the file was written (the journaled chunks); a file whose size changed since is
    hashed again, so reuse never vouches for a file that was rewritten."""
    known = known or {}
    files = {}
    for rel in episode_files(episode_dir):
        size = (episode_dir / rel).stat().st_size
        if rel in known and known[rel][0] == size:
            digest = known[rel][1]
        else:
            digest = sha256_file(episode_dir / rel)
        files[rel] = {"size": size, "sha256": digest}
    return {"format": FORMAT, "frames": frames, "files": files, **(extra or {})}


def write_manifest(episode_dir: Path, manifest: dict, fsync: bool = True) -> None:
    write_atomic(episode_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(), fsync)


def verify_manifest(episode_dir: Path, checksums: bool = True) -> list[str]:
    """Problems found (empty list = verified). checksums=False only compares the file list and sizes."""
    path = episode_dir / MANIFEST
    if not path.is_file():
        return [f"{episode_dir.name}: no {MANIFEST} (the episode never finished)"]
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return [f"{episode_dir.name}: unreadable {MANIFEST} ({exc})"]
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"{episode_dir.name}: manifest format {manifest.get('format')!r}, expected {FORMAT!r}")
    present = set(episode_files(episode_dir))
    for rel in sorted(set(files) - present):
        problems.append(f"{episode_dir.name}/{rel}: listed in the manifest but missing")
    for rel in sorted(present - set(files)):
        problems.append(f"{episode_dir.name}/{rel}: not listed in the manifest")
    for rel in sorted(set(files) & present):
        size = (episode_dir / rel).stat().st_size
        if size != files[rel]["size"]:
            problems.append(f"{episode_dir.name}/{rel}: size {size} bytes, manifest says {files[rel]['size']}")
        elif checksums and sha256_file(episode_dir / rel) != files[rel]["sha256"]:
            problems.append(f"{episode_dir.name}/{rel}: sha256 mismatch (the file changed after recording)")
    return problems
