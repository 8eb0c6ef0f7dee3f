"""The suite runner: find the benchmark modules, run each in its own process, collect the results.

One failing, hanging or missing module never stops the suite: it is recorded with its status
("error", "timeout", "not_run") and the reason, and the next one runs. Every child gets the same
options (config, model directory, checkpoint); a module receives only the options its `run()`
signature accepts (all of them if it takes **opts).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

#: Benchmarks in the order they run. The matmul rate runs first (the compute floor needs it), the
#: CPU-hungry controller comparison late so its heat/load does not precede the timing-sensitive loops.
EXPECTED = ("matmul", "stages", "control_loop", "bridge", "planner", "perception", "tracker", "controller")

#: Benchmarks implemented inside benchmarks.common rather than as benchmarks/<name>.py.
BUILTIN = {"matmul": "benchmarks.common.matmul"}

#: Files in benchmarks/ that are not benchmarks.
NOT_BENCHMARKS = {"__init__", "run_all"}

#: Extra options for `--quick` runs, to keep the whole quick suite short on 2 cores.
#: The full run measures these too. Recorded in results.json (options.quick_overrides).
QUICK_OPTS = {
    # Exporting SAM's ViT-B image encoder alone takes over a minute here; quick runs time Cutie only.
    "tracker": {"with_sam": False},
}

#: Whole-module timeouts (seconds): a net against hangs, not a budget. Quick benchmarks take up to
#: ~2.5 minutes each on a shared 2-core CPU, so the quick limit leaves them twice that.
DEFAULT_TIMEOUT_S = {"quick": 300.0, "full": 3 * 3600.0}


@dataclass(frozen=True)
class BenchSpec:
    """One benchmark: its name in the report, the module the child imports, and whether it exists."""

    name: str
    module: str
    path: pathlib.Path | None
    present: bool


def discover(bench_dir: pathlib.Path, package: str = "benchmarks") -> list[BenchSpec]:
    """The expected benchmarks (present or not) followed by any other `<name>.py` defining `run(`.

    Discovery reads file text instead of importing, so a module with a broken import is still found
    (and then reported as an error by its child process) and the parent never imports torch.
    """
    specs: list[BenchSpec] = []
    for name in EXPECTED:
        if name in BUILTIN:
            specs.append(BenchSpec(name, BUILTIN[name], None, True))
            continue
        path = bench_dir / f"{name}.py"
        specs.append(BenchSpec(name, f"{package}.{name}", path, path.is_file()))
    for path in sorted(bench_dir.glob("*.py")):
        name = path.stem
        if name in NOT_BENCHMARKS or name.startswith("_") or name in EXPECTED:
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "def run(" in text:
            specs.append(BenchSpec(name, f"{package}.{name}", path, True))
    return specs


def select(specs: list[BenchSpec], only: list[str] | None) -> tuple[list[BenchSpec], list[str]]:
    """Filter by --only; unknown names are returned separately so the CLI can name them."""
    if not only:
        return specs, []
    known = {s.name for s in specs}
    unknown = [n for n in only if n not in known]
    return [s for s in specs if s.name in only], unknown


def _kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Stop the child and everything it started (it runs in its own session/process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: pathlib.Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_one(
    spec: BenchSpec,
    *,
    quick: bool,
    out_dir: pathlib.Path,
    opts: dict,
    timeout_s: float,
    pythonpath: list[pathlib.Path],
) -> dict:
    """Run one benchmark in a child process; always returns a record, never raises for its failures.

    Blocks until the child exits or `timeout_s` passes (then the child's process group is killed).
    """
    bench_out = out_dir / spec.name
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{spec.name}.log"
    result_path = out_dir / ".results" / f"{spec.name}.json"
    result_path.unlink(missing_ok=True)
    if not spec.present:
        where = spec.path.as_posix() if spec.path else spec.module
        return {"name": spec.name, "module": spec.module, "status": "not_run",
                "reason": f"{where} does not exist in this checkout", "duration_s": 0.0}
    cmd = [sys.executable, "-m", "benchmarks.common.child", "--module", spec.module,
           "--out-dir", str(bench_out), "--result", str(result_path), "--opts-json", json.dumps(opts)]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("MPLBACKEND", "Agg")
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return {"name": spec.name, "module": spec.module, "status": "timeout",
                    "reason": f"did not finish within {timeout_s:.0f} s (killed); log: {log_path}",
                    "duration_s": time.monotonic() - t0, "log": str(log_path)}
        except BaseException:
            _kill_group(proc)  # Ctrl-C: never leave the child (or its emulator) running
            raise
    duration = time.monotonic() - t0
    record = {"name": spec.name, "module": spec.module, "duration_s": duration, "log": str(log_path)}
    if result_path.is_file():
        try:
            child = json.loads(result_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            child = {"status": "error", "reason": f"unreadable result file {result_path}: {exc}"}
        record.update({k: v for k, v in child.items() if k not in ("module", "duration_s")})
        record["run_s"] = child.get("duration_s")
    else:
        record.update(status="error", reason=f"child exited with code {rc} and wrote no result; "
                                             f"last log lines:\n{_tail(log_path)}")
    if record.get("status") == "ok" and rc != 0:
        record.update(status="error", reason=f"child exited with code {rc} after returning a result")
    return record


#: Benchmarks that run the exported controller from the config's model cache.
NEEDS_MODEL = {"stages", "control_loop"}

_PREPARE = """
import sys
from runtime.config.loading import load_config
from runtime.config.models import resolve_model_dir
cfg = load_config(sys.argv[1])
print(resolve_model_dir(cfg.policy, progress=False, robot=cfg.robot))
"""


def prepare_model(config: str | None, *, timeout_s: float, pythonpath: list[pathlib.Path],
                  log_path: pathlib.Path) -> dict:
    """Make (once) and cache the config's controller model before any benchmark runs, so the
    one-time export (minutes on 2 cores) never counts against a benchmark's timeout or numbers.

    Blocks until the model is cached or `timeout_s` passes. Never raises for a failure: the
    record says what went wrong and the benchmarks that need the model report it themselves."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", _PREPARE, config or "sim"], stdout=subprocess.PIPE,
                                stderr=log, text=True, env=env, start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return {"status": "timeout", "reason": f"not ready within {timeout_s:.0f} s; log: {log_path}",
                    "duration_s": time.monotonic() - t0}
        except BaseException:
            _kill_group(proc)
            raise
    duration = time.monotonic() - t0
    lines = (stdout or "").strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"status": "error", "reason": f"exit {proc.returncode}: {_tail(log_path, 3)}", "duration_s": duration}
    return {"status": "ok", "model_dir": lines[-1], "duration_s": duration}
