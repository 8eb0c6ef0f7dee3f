"""`dexgrasp sim collect`: scripted-expert demonstrations recorded by the runtime's own recorder.

Each episode is one run of the whole runtime (App) on a fresh scene (seed = first seed + episode
number): planner (local backend, on the rendered head image) -> box -> tracker -> the expert as
the policy -> timed chunks -> safety -> the simulated robot, with `recording.dir` = the output
directory, so the files are the DexGraspVLA zarr layout with the tracker's masks in `rgbm`.

Success is judged by physics alone: the target's centre rose `lift_m` above where it rested and
stayed there for `hold_s` (the hand holds it by friction; nothing is attached or teleported).
The run ends at success (after the hold), when the episode manager ends the attempt, or at
`timeout_s`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    target: str
    success: bool
    time_to_grasp_s: float | None  # from the run's start to the moment the hold began
    max_lift_m: float
    outcome: str
    control_p99_lateness_us: float | None
    missed_cycles: int | None
    errors: list


def judge(heights: list[tuple[float, float]], lift_m: float, hold_s: float) -> float | None:
    """Time the target started a hold of `hold_s` at >= `lift_m` above its rest, or None.
    `heights`: (t, lift above rest) samples in time order."""
    since = None
    for t, h in heights:
        if h >= lift_m:
            since = t if since is None else since
            if t - since >= hold_s:
                return since
        else:
            since = None
    return None


def describe_seeds(seeds) -> str:
    """'0-9, 12' for the seeds 0..9 and 12 (sorted, duplicates dropped); 'none' for no seeds."""
    seeds = sorted({int(s) for s in seeds})
    if not seeds:
        return "none"
    runs = [[seeds[0], seeds[0]]]
    for s in seeds[1:]:
        if s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def episode_target(seed: int) -> int:
    """Index of the object an episode on scene `seed` asks for (seeded, so collect and any later
    evaluation of the same seed prompt the same object)."""
    from runtime.sim.scene import random_scene

    spec = random_scene(seed)
    return int(np.random.default_rng(seed + 7919).integers(len(spec.objects)))


def episode_config(base, seed: int, prompt: str, output: Path | None, overrides: dict | None = None):
    """`base` for one episode: scene seed, prompt, autostart, recording into `output` (None: none)."""
    from runtime.config.loading import config_from_dict

    data = base.model_dump()
    data["cameras"]["seed"] = int(seed)
    data["planner"]["prompt"] = prompt
    data["planner"]["autostart"] = True
    data["recording"] = {**(data.get("recording") or {}), "dir": str(output)} if output is not None else None
    for k, v in (overrides or {}).items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return config_from_dict(data, f"{base.name} (episode seed {seed})")


def run_episode(base, episode: int, seed: int, output: Path | None, timeout_s: float = 40.0,
                lift_m: float = 0.06, hold_s: float = 1.0, policy_factory=None, probe=None,
                reports: list | None = None, overrides: dict | None = None) -> EpisodeResult:
    """One run of the runtime on scene `seed`, judged by physics. `policy_factory(cfg, target)`
    makes the policy (default: the scripted expert); it returns None to let the config's
    `policy:` section build it (an exported controller). `probe(t, sim_memory)` is called at every
    physics poll (`dexgrasp eval` samples the hand there); the runtime's full report is appended to
    `reports` when given; `overrides` are merged into the episode's config sections."""
    from runtime.app import App
    from runtime.sim import link, shm
    from runtime.sim.expert import ScriptedExpert
    from runtime.sim.scene import random_scene

    spec = random_scene(seed)
    target = episode_target(seed)
    obj = spec.objects[target]
    cfg = episode_config(base, seed, f"grasp the {obj.colour} object", output, overrides)
    policy = (policy_factory or ScriptedExpert)(cfg, target)
    app = App(cfg, policy=policy)
    heights: list[tuple[float, float]] = []
    t_hold = None
    app.start()
    try:
        sim = link.current()
        t0 = time.monotonic()
        end = t0 + timeout_s
        while time.monotonic() < end and app.loop.alive:
            time.sleep(0.02)
            v = shm.read(sim.mem["obj"])
            z = float(v[3 + 7 * target])
            heights.append((time.monotonic() - t0, z - obj.rest_z))
            if probe is not None:
                probe(heights[-1][0], sim.mem)
            t_hold = judge(heights, lift_m, hold_s)
            if t_hold is not None:
                break
            status = app._episode_status() or {}
            if status.get("phase") == "ended":
                break
        report = app.run(duration_s=0.2)  # stops safely and closes the recording
    finally:
        app.stop()
    if reports is not None:
        reports.append(report)
    control = report.get("control") or {}
    lat = control.get("lateness_us") or {}
    episode_status = report.get("episode") or {}
    return EpisodeResult(episode, seed, f"{obj.colour} {obj.shape}", t_hold is not None, t_hold,
                         max((h for _, h in heights), default=0.0),
                         "lifted and held" if t_hold is not None else (episode_status.get("outcome") or "timeout"),
                         lat.get("p99"), control.get("missed_cycles"), list(report.get("errors") or []))


def collect(config: str, episodes: int, output: str | Path, first_seed: int = 0, timeout_s: float = 40.0,
            on_episode=None) -> dict:
    """Record `episodes` expert episodes into `output`; returns the summary (also written as collect.json)."""
    from runtime.config import load_config

    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    base = load_config(config)
    if base.bridge.kind != "mujoco" or base.cameras.kind != "mujoco":
        raise ConfigError(f"{config}: sim collect needs bridge.kind and cameras.kind 'mujoco' "
                          f"(got {base.bridge.kind!r}, {base.cameras.kind!r})")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for k in range(episodes):
        r = run_episode(base, k, first_seed + k, out, timeout_s)
        results.append(r)
        if on_episode is not None:
            on_episode(r)
    ok = [r for r in results if r.success]
    times = sorted(r.time_to_grasp_s for r in ok)
    p99s = [r.control_p99_lateness_us for r in results if r.control_p99_lateness_us is not None]
    summary = {
        "episodes": len(results),
        "successes": len(ok),
        "success_rate": len(ok) / len(results),
        "median_time_to_grasp_s": float(np.median(times)) if times else None,
        "control_p99_lateness_us_max": max(p99s) if p99s else None,
        "missed_cycles_total": sum(r.missed_cycles or 0 for r in results),
        "seeds": [first_seed, first_seed + episodes - 1],
        "per_episode": [asdict(r) for r in results],
    }
    (out / "collect.json").write_text(json.dumps(summary, indent=2))
    return summary
