"""Export recorded episodes as a LeRobot dataset (format v3.0, what lerobot 0.4.x reads).

Layout written (one data file and one video file per episode, so no file is ever rewritten):
    meta/info.json                      codebase_version v3.0, fps, features with shapes and names
    meta/tasks.parquet                  index = task string (the planner's instruction), task_index
    meta/episodes/chunk-000/file-000.parquet   per episode: tasks, length, data/video locations
    meta/stats.json                     min/max/mean/std/count/q01..q99 per feature (images in [0, 1])
    meta/dexgrasp_provenance.json       per episode: source name, manifest sha256, recorded provenance
    data/chunk-CCC/file-FFF.parquet     frames of episode CCC*1000+FFF
    videos/<key>/chunk-CCC/file-FFF.mp4 H.264 yuv420p, frame k at k / fps

Features: observation.state / action in robot units (arm rad, hand 0..1) named after the robot's
joints, observation.state_upstream / action_upstream in the model's space (arm [-1, 1]), head and
wrist images (RGB) and the tracked mask (white on black) as videos, source_frame_index (the
recorded frame each exported frame holds). Frames are resampled to `fps` by sample-and-hold
(source.resample_indices). The whole dataset is written to a temporary directory beside the output
and renamed at the end: a refused episode or a crash leaves no output at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from runtime.data import DataError
from runtime.data.source import episode_dirs, joint_space, load_verified, resample_indices
from runtime.hashing import sha256_file
from runtime.recording.layout import MANIFEST

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
VIDEO_KEYS = ("observation.images.head", "observation.images.wrist", "observation.images.mask")
NO_TASK = "(no instruction recorded)"


def _require_deps():
    try:
        import av  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        from runtime.errors import MissingExtraError

        raise MissingExtraError(f"LeRobot export needs PyAV and pyarrow ({exc.name} is missing): "
                                "pip install 'dexgraspvla-runtime[data]'") from exc


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": x.std(0).tolist(), "count": [int(x.shape[0])],
            **{f"q{int(q * 100):02d}": np.quantile(x, q, axis=0).tolist() for q in QUANTILES}}


def _image_stats(frames: np.ndarray, max_samples: int = 100) -> dict:
    """Per-channel stats of (N, H, W, 3) uint8 frames in [0, 1], shaped (3, 1, 1) like LeRobot's."""
    step = max(1, len(frames) // max_samples)
    px = frames[::step].reshape(-1, 3).astype(np.float64) / 255.0
    out = {}
    for name, value in (("min", px.min(0)), ("max", px.max(0)), ("mean", px.mean(0)), ("std", px.std(0)),
                        *((f"q{int(q * 100):02d}", np.quantile(px, q, axis=0)) for q in QUANTILES)):
        out[name] = value.reshape(3, 1, 1).tolist()
    out["count"] = [int(len(frames[::step]))]
    return out


def _merge_stats(parts: list[dict]) -> dict:
    """Dataset stats from per-episode stats: exact min/max/mean/std/count; quantiles count-weighted."""
    counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
    w = counts / counts.sum()
    mean = sum(wi * np.asarray(p["mean"]) for wi, p in zip(w, parts, strict=True))
    var = sum(wi * (np.asarray(p["std"]) ** 2 + (np.asarray(p["mean"]) - mean) ** 2) for wi, p in zip(w, parts, strict=True))
    out = {"min": np.min([p["min"] for p in parts], axis=0).tolist(), "max": np.max([p["max"] for p in parts], axis=0).tolist(),
           "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(counts.sum())]}
    for key in parts[0]:
        if key.startswith("q"):
            out[key] = sum(wi * np.asarray(p[key]) for wi, p in zip(w, parts, strict=True)).tolist()
    return out


def _vector_feature(names) -> dict:
    return {"dtype": "float32", "shape": [len(names)], "names": list(names)}


def _video_feature(height: int, width: int, fps: int) -> dict:
    return {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": height, "video.width": width, "video.codec": "h264",
                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                     "video.channels": 3, "has_audio": False}}


def _write_parquet(path: Path, columns: dict, dims: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for key, value in columns.items():
        if key in dims:
            flat = pa.array(np.ascontiguousarray(value, dtype=np.float32).reshape(-1))
            arrays[key] = pa.FixedSizeListArray.from_arrays(flat, dims[key])
        else:
            arrays[key] = pa.array(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path, compression="snappy")


def _encode(path: Path, frames: np.ndarray, fps: int) -> None:
    from runtime.data.h264 import H264Writer

    path.parent.mkdir(parents=True, exist_ok=True)
    with H264Writer(path, fps, gop=2 * fps) as writer:  # a keyframe every 2 s: quick seeks for loaders
        for frame in frames:
            writer.write(frame)


def export_lerobot(episodes: str | Path, output: str | Path, repo_id: str = "dexgrasp/recordings",
                   fps: int = 20, robot: dict | None = None, progress: bool = True) -> dict:
    """Export every finished episode under `episodes` to a new LeRobot dataset at `output`.
    Refuses (DataError, nothing written) if any episode is tampered, truncated or quarantined."""
    from tqdm import tqdm

    from runtime.data.h264 import even_size

    _require_deps()
    if not isinstance(fps, int) or isinstance(fps, bool) or fps < 1:
        raise DataError(f"--fps: LeRobot datasets have an integer frame rate >= 1, got {fps!r}")
    output = Path(output)
    if output.exists():
        raise DataError(f"--output '{output}' already exists; give a new directory")
    if not output.parent.is_dir():
        raise DataError(f"--output '{output}': directory '{output.parent}' does not exist")
    paths = episode_dirs(episodes)  # refuses truncated/quarantined ones before anything is written
    tmp = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = _export(paths, tmp, repo_id, fps, robot, progress, tqdm, even_size)
        os.rename(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["output"] = str(output)
    return summary


def _export(paths, root: Path, repo_id, fps, robot, progress, tqdm, even_size) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tasks: dict[str, int] = {}
    ep_rows, stats_parts, provenance = [], [], []
    features = None
    total = 0
    for ep_index, path in enumerate(tqdm(paths, desc="exporting episodes", unit="ep", disable=not progress)):
        ep = load_verified(path)
        space, normalized, how = joint_space(ep.info, robot)
        idx = resample_indices(ep.data["timestamp"], fps)
        n = int(idx.size)
        state_rec, action_rec = ep.data["right_state"][idx], ep.data["action"][idx]
        if normalized:
            state_up, action_up = state_rec.astype(np.float32), action_rec.astype(np.float32)
            state_rad, action_rad = space.arm_to_rad(state_rec), space.arm_to_rad(action_rec)
        else:
            state_rad, action_rad = state_rec.astype(np.float32), action_rec.astype(np.float32)
            state_up, action_up = space.arm_to_normalized(state_rec), space.arm_to_normalized(action_rec)
        rgbm = ep.data["rgbm"]
        images = {
            "observation.images.head": rgbm[idx, :, :, 2::-1],  # BGR as captured -> RGB
            "observation.images.wrist": ep.data["right_cam_img"][idx, :, :, ::-1],
            "observation.images.mask": np.repeat((rgbm[idx, :, :, 3:4] > 0).astype(np.uint8) * 255, 3, axis=-1),
        }
        shapes = {k: even_size(*v.shape[1:3]) for k, v in images.items()}
        names = list(space.names)
        ep_features = {
            "observation.state": _vector_feature(names), "observation.state_upstream": _vector_feature(names),
            "action": _vector_feature(names), "action_upstream": _vector_feature(names),
            **{k: _video_feature(*shapes[k], fps) for k in VIDEO_KEYS},
            "source_frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        }
        if features is None:
            features = ep_features
        elif ep_features != features:
            raise DataError(f"{path.name} refused: its camera sizes or joint names differ from the first episode's "
                            "(one LeRobot dataset has one shape per feature)")
        task = str(ep.info.get("prompt") or NO_TASK)
        task_index = tasks.setdefault(task, len(tasks))
        chunk, file = divmod(ep_index, CHUNKS_SIZE)
        timestamps = (np.arange(n) / fps).astype(np.float32)
        columns = {
            "observation.state": state_rad, "observation.state_upstream": state_up,
            "action": action_rad, "action_upstream": action_up,
            "source_frame_index": idx.astype(np.int64), "timestamp": timestamps,
            "frame_index": np.arange(n, dtype=np.int64), "episode_index": np.full(n, ep_index, dtype=np.int64),
            "index": np.arange(total, total + n, dtype=np.int64), "task_index": np.full(n, task_index, dtype=np.int64),
        }
        _write_parquet(root / DATA_PATH.format(chunk_index=chunk, file_index=file), columns,
                       dims={k: len(names) for k in ("observation.state", "observation.state_upstream", "action", "action_upstream")})
        row = {"episode_index": ep_index, "tasks": [task], "length": n,
               "data/chunk_index": chunk, "data/file_index": file,
               "dataset_from_index": total, "dataset_to_index": total + n,
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for key, frames in images.items():
            _encode(root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file), frames, fps)
            row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                        f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": n / fps})
        ep_rows.append(row)
        stats_parts.append({
            **{k: _stats(v) for k, v in columns.items() if k != "task_index"},
            "task_index": _stats(columns["task_index"]),
            **{k: _image_stats(v) for k, v in images.items()},
        })
        manifest_sha = sha256_file(path / MANIFEST)
        provenance.append({"episode_index": ep_index, "source": path.name, "source_manifest_sha256": manifest_sha,
                           "recorded_frames": ep.frames, "exported_frames": n, "joint_units": how,
                           "outcome": ep.info.get("outcome"), "started_wall": ep.info.get("started_wall"),
                           "provenance": ep.info.get("provenance")})
        total += n
        del images, rgbm, ep
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    _write_tasks(meta / "tasks.parquet", tasks)
    (meta / "episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), root / EPISODES_PATH, compression="snappy")
    keys = stats_parts[0].keys()
    stats = {k: _merge_stats([p[k] for p in stats_parts]) for k in keys}
    (meta / "stats.json").write_text(json.dumps(stats, indent=1))
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": "dexgraspvla", "total_episodes": len(ep_rows),
            "total_frames": total, "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
            "splits": {"train": f"0:{len(ep_rows)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
            "features": features, "repo_id": repo_id,
            "resampling": f"sample-and-hold onto {fps} Hz: frame k (t = k/{fps} s) holds the last recorded "
                          "frame captured at or before it (source_frame_index)"}
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    (meta / "dexgrasp_provenance.json").write_text(json.dumps({"episodes": provenance}, indent=1, default=str))
    return {"episodes": len(ep_rows), "frames": total, "tasks": list(tasks), "fps": fps, "repo_id": repo_id}


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """tasks.parquet as LeRobot reads it: a pandas index of task strings, column task_index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()), "__index_level_0__": list(tasks)})
    pandas_meta = {"index_columns": ["__index_level_0__"], "column_indexes": [], "columns": [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
        {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
    ], "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.0.0"}
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(table, path)
