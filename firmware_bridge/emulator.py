"""Build and run `dexgrasp-fw-emulator` (the C firmware library behind a pseudo-terminal).

`ensure_emulator_binary()` finds the binary: $DEXGRASP_FW_EMULATOR if set, else a CMake build of
firmware/ cached under ~/.cache/dexgrasp/fw-<hash of the C sources>/ (built once, on first use).
`EmulatorProcess` starts it, reads the pty path from its first stdout line and stops it on exit;
the emulator also exits on its own when this process dies (parent-pid watch and stdin EOF).

Example::

    with EmulatorProcess().start(log_applied="applied.csv") as emu:
        with BridgeHost(emu.port) as bridge: ...

CLI: python -m firmware_bridge.emulator [--limits limits.json] [emulator options...]
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from firmware_bridge.joints import JointLimits
from runtime.cache import cache_dir
from runtime.errors import ConfigError, DeviceNotConnectedError, DexGraspError

log = logging.getLogger(__name__)

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
BINARY_NAME = "dexgrasp-fw-emulator"


class BuildError(DexGraspError, RuntimeError):
    """The C firmware project could not be configured or built."""


def _sources_hash() -> str:
    """Key of a build dir: the C sources' contents AND their location (CMake refuses to reuse a build
    dir configured from another source path, e.g. a second clone of the repo)."""
    h = hashlib.sha256(str(FIRMWARE_DIR.resolve()).encode())
    for p in sorted(FIRMWARE_DIR.rglob("*")):
        if p.is_file() and p.suffix in (".c", ".h", ".txt"):
            h.update(str(p.relative_to(FIRMWARE_DIR)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    return cache_dir()


def ensure_firmware_build(quiet: bool = False) -> Path:
    """Configure and build firmware/ with CMake (once per source hash); returns the build dir.

    Blocks for the build (about 10 s on 2 cores the first time); concurrent callers wait on a file
    lock. Raises BuildError naming the missing tool or the failed step with its output."""
    build = cache_root() / f"fw-{_sources_hash()}"
    stamp = build / ".built"
    if stamp.exists():
        return build
    for tool in ("cmake", "cc"):
        if shutil.which(tool) is None:
            raise BuildError(f"building {BINARY_NAME} needs '{tool}' on PATH (apt-get install cmake gcc), "
                             f"or set DEXGRASP_FW_EMULATOR to a prebuilt binary")
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return build
        if not quiet:
            print(f"[firmware_bridge] building the C firmware library and {BINARY_NAME} with cmake into {build}",
                  file=sys.stderr, flush=True)
        steps = [
            ["cmake", "-S", str(FIRMWARE_DIR), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
            ["cmake", "--build", str(build), "-j", "2"],
        ]
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"'{' '.join(cmd)}' failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                                 f"\n{proc.stderr[-3000:]}")
        stamp.write_text("ok\n")
    return build


def ensure_emulator_binary() -> Path:
    """Path of dexgrasp-fw-emulator: $DEXGRASP_FW_EMULATOR, else the cached CMake build."""
    env = os.environ.get("DEXGRASP_FW_EMULATOR")
    if env:
        p = Path(env)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise ConfigError(f"DEXGRASP_FW_EMULATOR={env} is not an executable file")
        return p
    return ensure_firmware_build() / BINARY_NAME


class EmulatorProcess:
    """One running emulator. Context manager; `stop()` on exit. Not thread-safe."""

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = Path(binary) if binary else None
        self.proc: subprocess.Popen | None = None
        self.port: str | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="dexgrasp-emu-")
        self.stderr_path = Path(self._tmp.name) / "emulator.stderr"

    def start(
        self,
        limits: JointLimits | str | Path | None = None,
        state_rate_hz: float = 500.0,
        state_on_command: bool = True,
        log_applied: str | Path | None = None,
        link: str | Path | None = None,
        hold_ms: float | None = None,
        safe_off_ms: float | None = None,
        initial_positions=None,
        extra_args: tuple[str, ...] = (),
        startup_timeout_s: float = 10.0,
    ) -> EmulatorProcess:
        """Start the emulator and wait (up to `startup_timeout_s`) for its pty path.

        `initial_positions` (13 values) is the simulated pose at boot (clamped into the limits)."""
        binary = self.binary or ensure_emulator_binary()
        args = [str(binary), "--exit-on-stdin-eof", "--state-rate-hz", str(state_rate_hz)]
        if limits is not None:
            lim = limits if isinstance(limits, JointLimits) else JointLimits.load_json(limits)
            table = Path(self._tmp.name) / "limits.txt"
            table.write_text(lim.to_emulator_table())
            args += ["--limits", str(table)]
        if not state_on_command:
            args.append("--no-state-on-command")
        if log_applied is not None:
            args += ["--log-applied", str(log_applied)]
        if link is not None:
            args += ["--link", str(link)]
        if hold_ms is not None:
            args += ["--hold-ms", str(hold_ms)]
        if safe_off_ms is not None:
            args += ["--safe-off-ms", str(safe_off_ms)]
        if initial_positions is not None:
            q = [float(v) for v in initial_positions]
            if len(q) != 13 or not all(math.isfinite(v) for v in q):
                raise ConfigError(f"emulator initial_positions must be 13 finite numbers, got {q}")
            args += ["--initial-positions", ",".join(repr(v) for v in q)]
        args += list(extra_args)
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        err.close()
        line = self._read_first_line(startup_timeout_s)
        if not line.startswith("/"):
            self.stop()
            raise DeviceNotConnectedError(f"{BINARY_NAME} did not print a pty path (got {line!r}); "
                                          f"stderr: {self.stderr_text()[-500:]}")
        self.port = line
        return self

    def _read_first_line(self, timeout_s: float) -> str:
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise DeviceNotConnectedError(f"{BINARY_NAME} printed no pty path within {timeout_s} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 256)
                if not chunk:
                    raise DeviceNotConnectedError(
                        f"{BINARY_NAME} exited before printing its pty path: {self.stderr_text()[-500:]}")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode().strip()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reset(self) -> None:
        """Simulate a firmware reset (SIGUSR1): new session id, disarmed, handshake required."""
        if self.running:
            self.proc.send_signal(signal.SIGUSR1)

    def kill(self) -> None:
        """SIGKILL, for crash tests. The pty disappears with the process."""
        if self.running:
            self.proc.kill()
        self._reap(2.0)

    def stop(self, timeout_s: float = 3.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit within `timeout_s`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not exit on SIGTERM within %.1f s; killing", BINARY_NAME, timeout_s)
                self.proc.kill()
        return self._reap(timeout_s)

    def _reap(self, timeout_s: float) -> int | None:
        if self.proc is None:
            return None
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        return rc

    def __enter__(self) -> EmulatorProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground, accepting a JSON limits file.

    Example: python -m firmware_bridge.emulator --limits limits.json --log-applied applied.csv
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m firmware_bridge.emulator", description=main.__doc__)
    parser.add_argument("--limits", help="JSON with names, lower, upper, velocity[, acceleration]")
    args, rest = parser.parse_known_args(argv)
    binary = ensure_emulator_binary()
    cmd = [str(binary)]
    if args.limits:
        # exec replaces this process, so nothing could delete a temporary file afterwards: the table
        # goes to the cache under its content hash instead (one small file per distinct limits set).
        text = JointLimits.load_json(args.limits).to_emulator_table()
        table = cache_dir("emulator-limits") / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
        table.parent.mkdir(parents=True, exist_ok=True)
        if not table.is_file() or table.read_text() != text:
            table.write_text(text)
        cmd += ["--limits", str(table)]
    os.execv(cmd[0], cmd + rest)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
