"""`dexgrasp data info`: what a recording directory holds, where it came from, and whether it is sound.

Health is the full check (every checksum recomputed), because "info says fine" must mean an export
or a training run will accept the episode. Needs only the `record` extra (zarr).
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.data import DataError


def episode_info(path: Path, verify: bool = True) -> dict:
    from runtime.recording.layout import EPISODE_INFO, MANIFEST, QUARANTINE_NOTE
    from runtime.recording.manifest import verify_manifest

    out: dict = {"name": path.name}
    if (path / QUARANTINE_NOTE).is_file():
        note = json.loads((path / QUARANTINE_NOTE).read_text())
        return {**out, "health": "quarantined", "problems": [note.get("reason", "?")],
                "frames": note.get("journaled_frames")}
    problems = verify_manifest(path, checksums=verify)
    info = {}
    if (path / EPISODE_INFO).is_file():
        try:
            info = json.loads((path / EPISODE_INFO).read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"unreadable {EPISODE_INFO}: {exc}")
    health = "ok" if not problems else ("truncated" if not (path / MANIFEST).is_file() else "corrupt")
    return {**out, "health": health, "problems": problems, "prompt": info.get("prompt"),
            "outcome": info.get("outcome"), "frames": info.get("frames"), "bad_frames": info.get("bad_frames"),
            "duration_s": info.get("duration_s"), "fps": info.get("fps"), "started_wall": info.get("started_wall"),
            "joint_units": info.get("joint_units"), "provenance": info.get("provenance")}


def directory_info(root: str | Path, verify: bool = True) -> dict:
    from runtime.recording.layout import EPISODE_RE, MANIFEST, QUARANTINE_DIR

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"'{root}' is not a directory")
    if EPISODE_RE.match(root.name) or (root / MANIFEST).exists():
        dirs = [root]
    else:
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and EPISODE_RE.match(p.name))
        if (root / QUARANTINE_DIR).is_dir():
            dirs += sorted(p for p in (root / QUARANTINE_DIR).iterdir() if p.is_dir())
    if not dirs:
        raise DataError(f"no recorded episodes under '{root}'")
    episodes = [episode_info(p, verify) for p in dirs]
    counts: dict[str, int] = {}
    for ep in episodes:
        counts[ep["health"]] = counts.get(ep["health"], 0) + 1
    frames = sum(ep["frames"] or 0 for ep in episodes if ep["health"] == "ok")
    return {"dir": str(root), "episodes": len(episodes), "health": counts, "frames_ok": frames, "list": episodes}


def _when(wall) -> str:
    import datetime

    if not isinstance(wall, (int, float)):
        return "?"
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).isoformat(timespec="seconds")


def format_info(report: dict) -> str:
    lines = [f"{report['dir']}: {report['episodes']} episode(s), "
             + ", ".join(f"{n} {h}" for h, n in sorted(report["health"].items())) + f"; {report['frames_ok']} frames ok"]
    for ep in report["list"]:
        dur = f"{ep['duration_s']:.1f} s" if isinstance(ep.get("duration_s"), (int, float)) else "?"
        lines.append(f"  {ep['name']}: {ep['health']}, {ep.get('frames')} frames, {dur}, outcome {ep.get('outcome')}, "
                     f"started {_when(ep.get('started_wall'))}, prompt {ep.get('prompt')!r}")
        for problem in ep["problems"][:3]:
            lines.append(f"    problem: {problem}")
        prov = ep.get("provenance")
        if not prov:
            lines.append("    provenance: none recorded")
            continue
        model = prov.get("model") or {}
        commit = prov.get("commit") or "?"
        lines.append(f"    model {model.get('dir')} (manifest sha256 {str(model.get('manifest_sha256'))[:16]}), "
                     f"backend {prov.get('backend')}, precision {prov.get('precision')}")
        machine = prov.get("machine") or {}
        lines.append(f"    dexgraspvla-runtime {prov.get('project_version')} at {commit[:12]}"
                     f"{' (dirty)' if prov.get('dirty') else ''}, on {machine.get('hostname')} ({machine.get('platform')})")
        if prov.get("config"):
            lines.append(f"    config: {prov['config'].get('name')} (as loaded; `--json` prints it)")
    return "\n".join(lines)
