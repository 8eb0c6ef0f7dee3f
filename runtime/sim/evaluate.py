"""`dexgrasp eval`: an exported controller grasping on the MuJoCo tabletop, judged by physics.

Each episode is one run of the whole runtime (`collect.run_episode`) on a held-out scene: local
planner on the rendered head image -> box -> tracker -> the exported controller (the config's
`policy:` section with `model_dir` = --model) -> timed or upstream chunk execution -> safety -> the
simulated robot. Nothing is scripted or privileged on the robot's side; the evaluator only watches
the simulator's shared memory (target pose, measured joints) to judge the episode:

- success: the target's centre `lift_m` above its rest for `hold_s` (collect's judge);
- otherwise a failure cause, from what physics saw (first that applies): `runtime_error` (the
  control loop died or the policy raised), `planner_failed` (the episode ended without the planner
  giving a target), `no_inference` (no chunk before the time limit), `never_reached` (the grasp site
  never came within `reach_m` of the target), `never_closed` (reached, the hand never closed),
  `closed_empty` (closed near it, the target never rose `LIFTED_M`), `dropped` (lifted, then lost
  before the hold), `timeout` (still lifted when the time ran out, the hold cut short).

Why these seeds are checked: a model evaluated on its own training scenes measures memory, not
grasping. `dexgrasp train` records the scene seeds of its episodes in the checkpoint and the export
copies them into manifest.json (`source_checkpoint.training.scene_seeds`); overlapping seeds are
refused unless the caller allows them.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import ConfigError, ModelError
from runtime.sim.collect import describe_seeds, episode_target, run_episode

log = logging.getLogger(__name__)

REACH_M = 0.05      # grasp site within 5 cm of the target's centre (objects are 4-6 cm across)
HAND_CLOSED = 0.3   # mean hand joint (0 open .. 1 closed); the planner's default hand_closed_delta
LIFTED_M = 0.02     # the target rose 2 cm: it was picked up, whatever happened next
CAUSES = ("runtime_error", "planner_failed", "no_inference", "never_reached", "never_closed",
          "closed_empty", "dropped", "timeout")


@dataclass
class EvalOptions:
    model_dir: str
    episodes: int
    seed: int
    config: str = "mujoco"  # a YAML file or a shipped preset name
    backend: str | None = None         # None: the config's policy.backend
    precision: str | None = None       # None: the config's policy.precision
    execution_mode: str | None = None  # None: the config's execution.mode
    timeout_s: float = 40.0
    report: str | None = None
    video_dir: str | None = None
    allow_seed_overlap: bool = False
    allow_unverified: bool = False
    lift_m: float = 0.06
    hold_s: float = 1.0
    config_overrides: dict = field(default_factory=dict)  # nested, merged into the config (tests: tiny cameras)


@dataclass
class EvalEpisode:
    episode: int
    seed: int
    target: str
    success: bool
    time_to_grasp_s: float | None
    max_lift_m: float
    final_lift_m: float
    min_reach_m: float | None     # closest grasp site - target centre distance
    max_hand_closure: float       # max over time of the mean measured hand joint
    failure: str | None           # one of CAUSES, None on success
    failure_detail: str
    episode_outcome: str | None   # the episode manager's outcome (None: still running at the stop)
    planner_verdict: str | None   # "grasped" / "not grasped" (wrist-image verification) / None
    control_p99_lateness_us: float | None
    missed_cycles: int | None
    inference_ms: dict
    inferences: int
    engine: str | None
    errors: list
    video: str | None = None


class PhysicsProbe:
    """Samples, at every physics poll, the hand's closure and the grasp site's distance to the target
    (forward kinematics of the measured arm joints on a private copy of the sim's own model)."""

    def __init__(self, cfg, target: int) -> None:
        from runtime.sim.kinematics import ArmKinematics
        from runtime.sim.process import build, settings_from_config

        model, _, addr = build(settings_from_config(cfg))
        n_arm = len(cfg.robot.arm_joint_names)
        self.kin = ArmKinematics(model, addr, np.asarray(cfg.robot.lower), np.asarray(cfg.robot.upper))
        self.arm = slice(0, n_arm)
        self.hand = slice(n_arm, len(cfg.robot.joint_names))
        self.target = target
        self.min_reach_m = math.inf
        self.max_closure = 0.0

    def __call__(self, t: float, mem) -> None:
        from runtime.sim import shm

        state = shm.read(mem["state"])
        q = state[4:4 + self.hand.stop]
        obj = shm.read(mem["obj"])[1 + 7 * self.target: 4 + 7 * self.target]
        pos, _ = self.kin.fk(q[self.arm])
        self.min_reach_m = min(self.min_reach_m, float(np.linalg.norm(pos - obj)))
        self.max_closure = max(self.max_closure, float(np.mean(q[self.hand])))


def classify(success: bool, report: dict, probe: PhysicsProbe, max_lift: float, final_lift: float,
             lift_m: float) -> tuple[str | None, str]:
    """(cause, detail) of a failed episode from the runtime's report and what physics saw."""
    if success:
        return None, "lifted and held"
    policy = report.get("policy") or {}
    episode = report.get("episode") or {}
    if report.get("fatal") or policy.get("errors"):
        return "runtime_error", str(report.get("fatal") or policy.get("last_error"))
    if episode.get("outcome") == "planner_failed" or (episode.get("outcome") and not episode.get("box")):
        return "planner_failed", str(episode.get("reason") or episode.get("last_error") or "no target box")
    reach = probe.min_reach_m
    if not policy.get("inferences"):
        return "no_inference", "no action chunk arrived before the time limit"
    if not reach <= REACH_M:
        return "never_reached", f"closest approach {reach * 100:.1f} cm (needs <= {REACH_M * 100:.0f} cm)"
    if probe.max_closure < HAND_CLOSED:
        return "never_closed", f"hand closed to {probe.max_closure:.2f} at most (closed >= {HAND_CLOSED})"
    if max_lift < LIFTED_M:
        return "closed_empty", f"hand closed to {probe.max_closure:.2f} but the target rose {max_lift * 100:.1f} cm"
    if final_lift >= lift_m:
        return "timeout", f"lifted {final_lift * 100:.1f} cm when the time ran out (hold not complete)"
    return "dropped", f"lifted {max_lift * 100:.1f} cm, then lost (ended at {final_lift * 100:.1f} cm)"


def planner_verdict(episode_status: dict) -> str | None:
    """What the planner's verification (the VLM task on the rendered wrist image) concluded."""
    if (episode_status or {}).get("successes"):
        return "grasped"
    if (episode_status or {}).get("verify_failures"):
        return "not grasped"
    return None


# ---- checks before anything starts ---------------------------------------------------------------
def training_seeds(manifest) -> tuple[list[int] | None, str | None]:
    """(scene seeds, episodes dir) the model was trained on, from its manifest; (None, None) if not recorded."""
    training = (manifest.source_checkpoint or {}).get("training") or {}
    seeds = training.get("scene_seeds")
    if not isinstance(seeds, list):
        return None, None
    return sorted(int(s) for s in seeds), training.get("episodes_dir")


def check_seeds(eval_seeds: list[int], manifest, model_dir, allow_overlap: bool) -> str:
    """Refuse evaluation seeds the model was trained on (ConfigError); returns a line for the report."""
    seeds, where = training_seeds(manifest)
    if seeds is None:
        return "training seeds not recorded in the model (not trained by dexgrasp train): overlap unchecked"
    overlap = sorted(set(eval_seeds) & set(seeds))
    if overlap and not allow_overlap:
        first_free = max(seeds) + 1
        raise ConfigError(
            f"evaluation seeds {describe_seeds(eval_seeds)} overlap the training scene seeds of {model_dir} "
            f"({describe_seeds(overlap)}; trained on {describe_seeds(seeds)} from {where}): use --seed {first_free} "
            "or higher, or --allow-seed-overlap to evaluate on training scenes")
    if overlap:
        return f"OVERLAP allowed: seeds {describe_seeds(overlap)} are training scenes"
    return f"no overlap with the training scene seeds ({describe_seeds(seeds)})"


def eval_config(opts: EvalOptions):
    """The base config with the model, backend, precision and execution mode of `opts`."""
    from runtime.config import load_config
    from runtime.config.loading import deep_merge

    policy = {"model_dir": str(opts.model_dir)}
    for key, value in (("backend", opts.backend), ("precision", opts.precision)):
        if value is not None:
            policy[key] = value
    if opts.allow_unverified:
        policy["allow_unverified"] = True
    overrides = deep_merge(dict(opts.config_overrides), {"policy": policy})
    if opts.execution_mode is not None:
        overrides = deep_merge(overrides, {"execution": {"mode": opts.execution_mode}})
    cfg = load_config(opts.config, overrides)
    if cfg.bridge.kind != "mujoco" or cfg.cameras.kind != "mujoco":
        raise ConfigError(f"{opts.config}: dexgrasp eval needs bridge.kind and cameras.kind 'mujoco' "
                          f"(got {cfg.bridge.kind!r}, {cfg.cameras.kind!r})")
    return cfg


def check_model(cfg, model_dir) -> object:
    """The model's manifest after the checks a run would do, before any process starts: it exists,
    its action/state size is the robot's joint space, and a reduced precision is verified."""
    from runtime.config.components import check_action_rate
    from runtime.controller.controller import require_verified
    from runtime.controller.manifest import Manifest
    from runtime.joint_space import JointSpace

    path = Path(model_dir)
    if not path.is_dir():
        raise ModelError(f"--model '{model_dir}' is not a directory (an exported controller: dexgrasp export controller)")
    manifest = Manifest.load(path)
    JointSpace.from_config(cfg.robot).check_model(manifest, where=f"--model {model_dir}")
    check_action_rate(cfg.control.action_rate_hz, path)
    p = cfg.policy
    if p.backend not in ("auto", "fake") and p.precision != "fp32":
        require_verified(manifest, path, p.backend, p.precision, p.allow_unverified)
    return manifest


# ---- the evaluation -------------------------------------------------------------------------------
def evaluate(opts: EvalOptions, on_episode=None) -> dict:
    """Run `opts.episodes` episodes; returns the report (also written to opts.report)."""
    if opts.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {opts.episodes}")
    if opts.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {opts.seed}")
    cfg = eval_config(opts)
    manifest = check_model(cfg, opts.model_dir)
    seeds = [opts.seed + k for k in range(opts.episodes)]
    seed_check = check_seeds(seeds, manifest, opts.model_dir, opts.allow_seed_overlap)
    if opts.video_dir:
        _check_video()
        Path(opts.video_dir).mkdir(parents=True, exist_ok=True)
    from runtime.config import components

    policy = components.make_policy(cfg)  # once: every episode runs the same loaded controller
    engine = getattr(policy, "engine_choice", None)
    results: list[EvalEpisode] = []
    t_start = time.monotonic()
    try:
        for k, seed in enumerate(seeds):
            r = _episode(cfg, opts, k, seed, policy, first=not results)
            results.append(r)
            if on_episode is not None:
                on_episode(r)
    finally:
        close = getattr(getattr(policy, "controller", None), "close", None)
        if close is not None:
            close()
    report = {
        "summary": summarize(results, cfg, engine),
        "model": {"dir": str(opts.model_dir), "source_checkpoint": manifest.source_checkpoint.get("path"),
                  "action_dim": manifest.action_dim, "precision_exported": manifest.precision},
        "seed_check": seed_check,
        "options": {k: v for k, v in asdict(opts).items() if k != "config_overrides"},
        "judge": {"lift_m": opts.lift_m, "hold_s": opts.hold_s, "reach_m": REACH_M, "hand_closed": HAND_CLOSED,
                  "lifted_m": LIFTED_M, "causes": list(CAUSES)},
        "wall_s": round(time.monotonic() - t_start, 1),
        "per_episode": [asdict(r) for r in results],
    }
    if opts.report:
        Path(opts.report).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.report).write_text(json.dumps(report, indent=2, default=str))
    return report


def summarize(results: list[EvalEpisode], cfg, engine: str | None) -> dict:
    """The summary (the CLI's last line): success, time to grasp, failures by cause, loop figures."""
    ok = [r for r in results if r.success]
    times = sorted(r.time_to_grasp_s for r in ok if r.time_to_grasp_s is not None)
    p99s = [r.control_p99_lateness_us for r in results if r.control_p99_lateness_us is not None]
    causes: dict[str, int] = {}
    for r in results:
        if r.failure:
            causes[r.failure] = causes.get(r.failure, 0) + 1
    p50s = [r.inference_ms.get("p50") for r in results if r.inference_ms.get("p50") is not None]
    verdicts = [(r.planner_verdict == "grasped", r.success) for r in results if r.planner_verdict is not None]
    backend, precision = cfg.policy.backend, cfg.policy.precision
    if engine and cfg.policy.backend == "auto":
        backend, precision = engine.split()[:2]
    return {
        "episodes": len(results),
        "successes": len(ok),
        "success_rate": len(ok) / len(results) if results else 0.0,
        "median_time_to_grasp_s": float(np.median(times)) if times else None,
        "failures_by_cause": dict(sorted(causes.items())),
        "control_p99_lateness_us_max": max(p99s) if p99s else None,
        "missed_cycles_total": sum(r.missed_cycles or 0 for r in results),
        "inference_p50_ms_median": float(np.median(p50s)) if p50s else None,
        "planner_agrees_with_physics": f"{sum(a == b for a, b in verdicts)}/{len(verdicts)}" if verdicts else None,
        "seeds": [results[0].seed, results[-1].seed] if results else [],
        "backend": backend,
        "precision": precision,
        "execution_mode": cfg.execution.mode,
        "engine": engine,
    }


def _episode(cfg, opts: EvalOptions, k: int, seed: int, policy, first: bool) -> EvalEpisode:
    from runtime.sim.scene import random_scene

    target = episode_target(seed)
    obj = random_scene(seed).objects[target]
    probe = PhysicsProbe(cfg, target)
    heights: list[float] = []

    def sample(t, mem) -> None:
        from runtime.sim import shm

        heights.append(float(shm.read(mem["obj"])[3 + 7 * target]) - obj.rest_z)
        probe(t, mem)

    def factory(episode_cfg, _target):
        policy.seed = seed * 1000  # the same initial noise sequence for the same scene
        return policy

    record_dir = Path(tempfile.mkdtemp(prefix="dexgrasp-eval-")) if opts.video_dir else None
    reports: list[dict] = []
    try:
        try:
            r = run_episode(cfg, k, seed, record_dir, opts.timeout_s, opts.lift_m, opts.hold_s,
                            policy_factory=factory, probe=sample, reports=reports,
                            overrides={"recording": {"video": False}} if record_dir else None)
        except Exception as exc:  # noqa: BLE001 - a later broken episode is a result, not the end
            if first:
                raise  # the setup is broken (model, config, devices): nothing to evaluate
            return _crashed(k, seed, f"{obj.colour} {obj.shape}", f"{type(exc).__name__}: {exc}")
        report = reports[-1] if reports else {}
        final = heights[-1] if heights else 0.0
        cause, detail = classify(r.success, report, probe, r.max_lift_m, final, opts.lift_m)
        policy_report = report.get("policy") or {}
        episode_status = report.get("episode") or {}
        out = EvalEpisode(
            k, seed, r.target, r.success, r.time_to_grasp_s, r.max_lift_m, final,
            None if math.isinf(probe.min_reach_m) else probe.min_reach_m, probe.max_closure, cause, detail,
            episode_status.get("outcome"), planner_verdict(episode_status), r.control_p99_lateness_us,
            r.missed_cycles, dict(policy_report.get("latency_ms") or {}), int(policy_report.get("inferences") or 0),
            policy_report.get("engine"), r.errors)
        if record_dir is not None:
            out.video = episode_video(record_dir, Path(opts.video_dir), out)
        return out
    finally:
        if record_dir is not None:
            shutil.rmtree(record_dir, ignore_errors=True)


def _crashed(k: int, seed: int, target: str, text: str) -> EvalEpisode:
    return EvalEpisode(k, seed, target, False, None, 0.0, 0.0, None, 0.0, "runtime_error", text, None, None,
                       None, None, {}, 0, None, [text])


# ---- videos ---------------------------------------------------------------------------------------
def _check_video() -> None:
    from runtime.data import h264

    if not h264.available():
        raise ConfigError("--video-dir needs PyAV with libx264 (pip install av)")


def outcome_label(r: EvalEpisode) -> str:
    return "GRASPED" if r.success else f"FAIL: {r.failure}"


def episode_video(record_dir: Path, video_dir: Path, r: EvalEpisode) -> str | None:
    """The episode the runtime recorded into `record_dir` as video_dir/episode_KKK_seed_S.mp4 (H.264):
    head | wrist | mask overlay, each frame labelled with the episode phase and the outcome."""
    from runtime.data.h264 import H264Writer
    from runtime.recording import list_episodes, load_episode
    from runtime.recording.video import compose_frame

    paths = list_episodes(record_dir)
    if not paths:
        log.warning("eval: episode %d recorded no frames; no video", r.episode)
        return None
    ep = load_episode(paths[-1], verify=False)
    d = ep.data
    if ep.frames == 0:
        return None
    ts = np.asarray(d["timestamp"], dtype=np.float64)
    gaps = np.diff(ts)
    fps = float(1.0 / np.median(gaps)) if gaps.size and np.median(gaps) > 0 else 20.0
    marks = sorted((float(e["t"]), e.get("phase"), e.get("box")) for e in ep.events
                   if isinstance(e.get("t"), (int, float)) and ("phase" in e or "box" in e))
    path = video_dir / f"episode_{r.episode:03d}_seed_{r.seed}.mp4"
    label = outcome_label(r)
    phase, box, m = None, None, 0
    with H264Writer(path, fps, bgr=True) as writer:
        for i in range(ep.frames):
            while m < len(marks) and marks[m][0] <= ts[i]:
                phase = marks[m][1] or phase
                box = marks[m][2] if marks[m][2] is not None else box
                m += 1
            rgbm = d["rgbm"][i]
            text = f"seed {r.seed} t {ts[i] - ts[0]:.1f}s {phase or ''} | {label}"
            writer.write(compose_frame(rgbm[..., :3], d["right_cam_img"][i], rgbm[..., 3], 240, phase=text, box=box))
    return str(path)
