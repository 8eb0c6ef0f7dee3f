"""Find or make the controller model a config asks for.

`policy.model_dir: null` (the sim default) means: a small random-weight controller, made once with
`dexgrasp make-checkpoint` + `dexgrasp export controller` and cached under
~/.cache/dexgrasp/models/<preset>-seed<seed>/. Making it needs the `export` extra (torch); it runs
in a subprocess so the onboard process itself never imports torch. Later runs only read the cache.
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


def cached_model_dir(preset: str = "small", seed: int = 0) -> Path:
    return cache_root() / f"{preset}-seed{seed}-{exporter_fingerprint()}"


def resolve_model_dir(policy_cfg, progress: bool = True) -> Path:
    """The exported model directory for `policy_cfg` (made and cached if it is null)."""
    if policy_cfg.model_dir:
        path = Path(policy_cfg.model_dir).expanduser()
        if not (path / MANIFEST).is_file():
            raise ModelError(
                f"policy.model_dir '{path}' is not an exported controller ({MANIFEST} missing); "
                "export one with `dexgrasp export controller --checkpoint CKPT --output DIR`"
            )
        return path
    return ensure_model(policy_cfg.preset, policy_cfg.seed, progress=progress)


def ensure_model(preset: str = "small", seed: int = 0, checkpoint: str | Path | None = None,
                 out_dir: Path | None = None, progress: bool = True, timeout_s: float = 1800.0) -> Path:
    """Return a cached exported model, making it first if needed. Blocks for the export (minutes
    at most for the small preset). Raises MissingExtraError when torch is needed but absent."""
    out = out_dir or cached_model_dir(preset, seed)
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
            _dexgrasp(["make-checkpoint", "--preset", preset, "--seed", str(seed), "--output", str(ckpt)],
                      f"making a random-weight '{preset}' checkpoint", timeout_s)
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
