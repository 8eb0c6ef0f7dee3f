"""Reading recordings back: crash recovery, verified loading, salvage, packing for training.

`load_episode` is the only way episodes should be read: it refuses quarantined or unfinished
episodes and (by default) recomputes every checksum, so a training run never sees half an episode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.recording import zarr_compat as zc
from runtime.recording.episode_writer import RecordingError, quarantine
from runtime.recording.layout import (
    DTYPES,
    EPISODE_INFO,
    EPISODE_RE,
    EVENTS,
    JOURNAL,
    MANIFEST,
    QUARANTINE_DIR,
    QUARANTINE_NOTE,
    ZARR_DIR,
)
from runtime.recording.manifest import sha256_file, verify_manifest

log = logging.getLogger(__name__)


@dataclass
class Episode:
    """One loaded episode. data: key -> numpy array (N, ...); see layout.py for keys and dtypes."""

    name: str
    path: Path
    data: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    salvaged: bool = False

    @property
    def frames(self) -> int:
        return int(self.data["action"].shape[0])


def _episode_dirs(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and EPISODE_RE.match(p.name.split(".")[0]))


def next_episode_index(root: Path) -> int:
    """1 + the highest episode index under root or root/quarantine (indices are never reused)."""
    indices = [int(EPISODE_RE.match(p.name.split(".")[0]).group(1))
               for p in _episode_dirs(root) + _episode_dirs(root / QUARANTINE_DIR)]
    return max(indices, default=0) + 1


def recover_directory(root: Path, fsync: bool = True) -> list[str]:
    """Quarantine every episode under root without a manifest (cut by a crash). Returns their names.

    Call only while holding the recorder lock (EpisodeRecorder.start does), so a live recorder's
    open episode is never mistaken for a crashed one.
    """
    moved = []
    for ep in _episode_dirs(root):
        if not (ep / MANIFEST).is_file():
            quarantine(root, ep, "no manifest: the recorder stopped before the episode finished (crash?)", fsync)
            moved.append(ep.name)
    return moved


def list_episodes(root: Path) -> list[Path]:
    """Finished episode directories (with a manifest), oldest first. Does not verify checksums."""
    return [p for p in _episode_dirs(Path(root)) if (p / MANIFEST).is_file()]


def list_quarantined(root: Path) -> list[Path]:
    return _episode_dirs(Path(root) / QUARANTINE_DIR)


def _read_zarr(zpath: Path, frames: int | None = None) -> dict[str, np.ndarray]:
    group = zc.open_group_for_read(str(zpath))
    data = group["data"]
    n = frames if frames is not None else int(group["meta"]["episode_ends"][-1])
    return {key: np.asarray(data[key][:n]) for key in DTYPES}


def _read_events(path: Path) -> list[dict]:
    out = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


def load_episode(path: str | Path, verify: bool = True) -> Episode:
    """Load a finished episode; raises RecordingError if quarantined, unfinished or corrupt.

    verify=True recomputes every file's sha256 against the manifest (reads everything once).
    """
    path = Path(path)
    if path.parent.name == QUARANTINE_DIR or (path / QUARANTINE_NOTE).exists():
        raise RecordingError(f"{path} is quarantined (cut by a crash or a disk error); use salvage_episode()")
    problems = verify_manifest(path, checksums=verify)
    if problems:
        raise RecordingError(f"{path} failed verification: " + "; ".join(problems[:5]))
    manifest = json.loads((path / MANIFEST).read_text())
    data = _read_zarr(path / ZARR_DIR)
    if data["action"].shape[0] != manifest["frames"]:
        raise RecordingError(f"{path}: {data['action'].shape[0]} frames in data.zarr, manifest says {manifest['frames']}")
    info = json.loads((path / EPISODE_INFO).read_text())
    return Episode(path.name, path, data, info, _read_events(path / EVENTS))


def iter_episodes(root: str | Path, verify: bool = True):
    """Yield every finished, verified episode under root (raises on the first corrupt one)."""
    for path in list_episodes(Path(root)):
        yield load_episode(path, verify)


def salvage_episode(path: str | Path) -> Episode:
    """The intact prefix of a quarantined episode: the frames its journal committed, each chunk's
    checksum re-verified. A crash loses at most the chunk being filled (plus queued frames)."""
    path = Path(path)
    frames = 0
    for entry in _read_events(path / JOURNAL):  # a torn last line ends the list
        intact = all((path / ZARR_DIR / rel).is_file() and sha256_file(path / ZARR_DIR / rel) == digest
                     for rel, digest in entry.get("files", {}).items())
        if not intact:
            log.warning("salvage %s: chunk %s changed or missing; keeping the %d frames before it",
                        path.name, entry.get("chunk"), frames)
            break
        frames = int(entry["frames"])
    if frames == 0:
        raise RecordingError(f"{path.name}: no chunk was committed before the cut (nothing to salvage)")
    data = _read_zarr(path / ZARR_DIR, frames)
    return Episode(path.name, path, data, {"salvaged_from": str(path)}, _read_events(path / EVENTS), salvaged=True)


def pack_dataset(root: str | Path, out: str | Path, verify: bool = True, progress: bool = True,
                 chunk_frames: int = 16) -> dict:
    """Merge every verified episode under root into one zarr (format 2) store at `out`, with
    cumulative meta/episode_ends: MaskImageDataset(zarr_paths=[out]) trains from it directly."""
    import numcodecs
    from tqdm import tqdm

    paths = list_episodes(Path(root))
    if not paths:
        raise RecordingError(f"no finished episodes under {root}")
    out_root = zc.open_group_for_write(str(out), mode="w-")
    data_g, meta_g = out_root.require_group("data"), out_root.require_group("meta")
    comp = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    arrays, ends, prompts = {}, [], []
    for path in tqdm(paths, desc="packing episodes", unit="ep", disable=not progress):
        ep = load_episode(path, verify)
        for key, value in ep.data.items():
            if key not in arrays:
                arrays[key] = zc.create_array(data_g, key, (0, *value.shape[1:]), (chunk_frames, *value.shape[1:]),
                                              value.dtype, comp)
            arr = arrays[key]
            if arr.shape[1:] != value.shape[1:]:
                raise RecordingError(f"{ep.name}: {key} has shape {value.shape[1:]}, earlier episodes {arr.shape[1:]}")
            n0 = arr.shape[0]
            arr.resize((n0 + value.shape[0], *arr.shape[1:]))
            arr[n0:] = value
        ends.append((ends[-1] if ends else 0) + ep.frames)
        prompts.append(ep.info.get("prompt"))
    e = zc.create_array(meta_g, "episode_ends", (len(ends),), (max(1, len(ends)),), np.int64, None)
    e[:] = ends
    out_root.attrs.update({"episodes": [p.name for p in paths], "prompts": prompts})
    return {"episodes": len(paths), "frames": int(ends[-1]), "out": str(out)}
