"""Find or make the controller model a config asks for.

`policy.model_dir: null` (the sim default) means: a small random-weight controller for the config's
joint space, made once with `dexgrasp make-checkpoint --config` + `dexgrasp export controller` and
cached under ~/.cache/dexgrasp/models/<preset>-seed<seed>[-<A>arm<H>hand]-<exporter>/. The layout part
is absent for upstream's 7 arm + 6 hand joints (the key such caches always had, so they are reused)
and present for any other layout, so models of different joint counts never share a directory.
Making it needs the `export` extra (torch); it runs in a subprocess so the onboard process itself
never imports torch. Later runs only read the cache.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime.cache import cache_dir
from runtime.errors import MissingExtraError, ModelError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def cache_root() -> Path:
    return cache_dir("models")


def exporter_fingerprint() -> str:
    """Hash of the export code and the manifest schema: a cached model made by other export code
    (other graph names, other layout) is never reused; a new one is made instead."""
    import hashlib

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "export").rglob("*.py")) + [root / "runtime" / "controller" / "manifest.py"]
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:10]


def joint_layout(robot=None):
    """The JointSpace a random-weight model is made for: `robot` is a config's robot section
    (RobotConfig or dict), a JointSpace, or None for upstream's 7 arm + 6 hand joints."""
    from runtime.joint_space import JointSpace

    if isinstance(robot, JointSpace):
        return robot
    return JointSpace.from_config({} if robot is None else robot)


def layout_key(robot=None) -> str:
    """The cache key's joint-layout part: '' for upstream's 7 + 6 (unchanged from before layouts
    were keyed), '-<A>arm<H>hand' otherwise. Only the counts shape a random-weight model (joint
    names and limits are not in it), so two robots with the same counts share one model."""
    from runtime.joint_space import UPSTREAM_ARM_JOINTS, UPSTREAM_HAND_JOINTS

    space = joint_layout(robot)
    if (space.n_arm, space.n_hand) == (UPSTREAM_ARM_JOINTS, UPSTREAM_HAND_JOINTS):
        return ""
    return f"-{space.n_arm}arm{space.n_hand}hand"


def cached_model_dir(preset: str = "small", seed: int = 0, robot=None) -> Path:
    """Where the random-weight model for (preset, seed, robot's joint layout) is cached."""
    return cache_root() / f"{preset}-seed{seed}{layout_key(robot)}-{exporter_fingerprint()}"


def resolve_model_dir(policy_cfg, progress: bool = True, robot=None) -> Path:
    """The exported model directory for `policy_cfg` (made and cached for `robot`'s joint space,
    see joint_layout, if it is null)."""
    if policy_cfg.model_dir:
        path = Path(policy_cfg.model_dir).expanduser()
        if not (path / MANIFEST).is_file():
            raise ModelError(
                f"policy.model_dir '{path}' is not an exported controller ({MANIFEST} missing); "
                "export one with `dexgrasp export controller --checkpoint CKPT --output DIR`"
            )
        return path
    return ensure_model(policy_cfg.preset, policy_cfg.seed, progress=progress, robot=robot)


def ensure_model(preset: str = "small", seed: int = 0, checkpoint: str | Path | None = None,
                 out_dir: Path | None = None, progress: bool = True, timeout_s: float = 1800.0,
                 robot=None) -> Path:
    """Return a cached exported model, making it first if needed. Blocks for the export (minutes
    at most for the small preset). Raises MissingExtraError when torch is needed but absent.

    `robot` (see joint_layout) sizes a random-weight model: its action and state widths are the
    robot's joint count and its last n_hand joints get hand normalizer ranges, so the sim runs any
    joint layout without a model_dir. A given `checkpoint` keeps its own layout."""
    out = out_dir or cached_model_dir(preset, seed, robot)
    if (out / MANIFEST).is_file():
        return out
    if importlib.util.find_spec("torch") is None:
        raise MissingExtraError(
            f"no exported controller at {out}, and making one needs PyTorch, which is not installed. "
            "Install it with: pip install 'dexgraspvla-runtime[export]' (CPU torch first on machines "
            "without a GPU), or point policy.model_dir at an exported model directory"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        ckpt = Path(checkpoint) if checkpoint else work / f"{preset}-seed{seed}.ckpt"
        if not checkpoint:
            args = ["make-checkpoint", "--preset", preset, "--seed", str(seed), "--output", str(ckpt)]
            what = f"making a random-weight '{preset}' checkpoint"
            if layout_key(robot):
                space = joint_layout(robot)
                args += ["--config", str(_robot_config(space, work / "robot.yaml"))]
                what += f" for {space.n_arm} arm + {space.n_hand} hand joints"
            _dexgrasp(args, what, timeout_s)
        export_dir = work / "model"
        args = ["export", "controller", "--checkpoint", str(ckpt), "--output", str(export_dir)]
        if not progress:
            args.append("--no-progress")
        _dexgrasp(args, f"exporting {ckpt.name} to ONNX", timeout_s)
        if not (export_dir / MANIFEST).is_file():
            raise ModelError(f"export finished but {export_dir / MANIFEST} is missing")
        if (out / MANIFEST).is_file():  # another process made it meanwhile
            return out
        if out.exists():
            shutil.rmtree(out)
        export_dir.rename(out)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _robot_config(space, path: Path) -> Path:
    """A config file holding only `space` as its robot section, for `make-checkpoint --config`."""
    import yaml

    robot = {"units": space.units, "arm_joint_names": list(space.arm_names),
             "hand_joint_names": list(space.hand_names), "arm_lower_rad": space.arm_lower.tolist(),
             "arm_upper_rad": space.arm_upper.tolist(), "hand_lower": space.lower[space.n_arm:].tolist(),
             "hand_upper": space.upper[space.n_arm:].tolist(), "home_positions": space.home.tolist(),
             "place_positions": space.place.tolist()}
    path.write_text(yaml.safe_dump({"robot": robot}, sort_keys=False))
    return path


def _dexgrasp(args: list[str], what: str, timeout_s: float) -> None:
    cmd = [sys.executable, "-m", "runtime.cli.main", *args]
    print(f"dexgrasp: {what} (once; cached afterwards) ...", file=sys.stderr, flush=True)
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, timeout=timeout_s, stdout=subprocess.PIPE, stderr=None, text=True)
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"{what} took longer than {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stdout or "")[-2000:]
        raise ModelError(f"{what} failed (exit {proc.returncode}): `{' '.join(args)}`\n{tail}")
