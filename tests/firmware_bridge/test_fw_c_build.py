"""Configure and build the whole C project through the TOP-LEVEL CMakeLists.txt (the way the README
says to), then run every ctest: library unit tests (one per behaviour), the C check of the shared
test vectors and the fuzz target's corpus replay. So `python -m pytest` covers the C tests too."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_bridge.emulator import cache_root

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("cc") is None,
                    reason="cmake and a C compiler are needed for the C tests")
def test_cmake_build_and_ctest():
    # one build dir per checkout: CMake refuses a build dir configured from another source path
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    build = cache_root() / f"toplevel-build-{key}"
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".lock", "w") as lock:  # concurrent test runs share this build dir
        fcntl.flock(lock, fcntl.LOCK_EX)
        _build_and_test(build)


def _build_and_test(build: Path) -> None:
    env = dict(os.environ)
    run = dict(capture_output=True, text=True, env=env)
    cfg = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"], **run)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    b = subprocess.run(["nice", "-n", "10", "cmake", "--build", str(build), "-j", "2"], **run)
    assert b.returncode == 0, b.stdout[-4000:] + b.stderr[-4000:]
    t = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], timeout=300, **run)
    assert t.returncode == 0, t.stdout[-6000:] + t.stderr[-2000:]
    assert "100% tests passed" in t.stdout
    n = int(t.stdout.split("tests passed, 0 tests failed out of ")[1].split()[0])
    assert n >= 30, t.stdout  # unit behaviours + vectors + fuzz replay
    assert (build / "firmware_bridge" / "firmware" / "dexgrasp-fw-emulator").exists()
