"""dexgrasp-fw-emulator as a process: pty path on the first line, clean exit on SIGTERM, no orphan
when its parent dies, clear errors for bad options, and the launcher's binary lookup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from firmware_bridge.emulator import EmulatorProcess, ensure_emulator_binary
from runtime.errors import ConfigError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, timeout_s: float) -> bool:
    ev = threading.Event()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        ev.wait(0.02)
    return False


def test_prints_pty_path_and_exits_cleanly_on_sigterm(start_emulator):
    emu = start_emulator()
    assert emu.port.startswith("/dev/pts/") and os.path.exists(emu.port)
    emu.proc.send_signal(signal.SIGTERM)
    assert emu.proc.wait(5) == 0
    assert "exiting" in emu.stderr_text()


def test_exits_when_parent_dies(fw_build, tmp_path):
    """A parent that is SIGKILLed cannot clean up: the emulator must go by itself."""
    pid_file = tmp_path / "emu.pid"
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([{str(fw_build / 'dexgrasp-fw-emulator')!r}], stdout=subprocess.PIPE)\n"
        "p.stdout.readline()\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout.readline().strip() == b"ready"
    emu_pid = int(pid_file.read_text())
    assert _alive(emu_pid)
    parent.kill()
    parent.wait(5)
    assert _wait_dead(emu_pid, 5.0), "emulator outlived its parent (orphan)"


def test_exits_on_stdin_eof(fw_build):
    p = subprocess.Popen([str(fw_build / "dexgrasp-fw-emulator"), "--exit-on-stdin-eof"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout.readline().startswith(b"/dev/")
    p.stdin.close()
    assert p.wait(5) == 0
    p.stdout.close()


@pytest.mark.parametrize("args,message", [
    (["--state-rate-hz", "abc"], "--state-rate-hz expects a number"),
    (["--bogus"], "unknown option"),
    (["--hold-ms", "200", "--safe-off-ms", "100"], "--safe-off-ms must be longer"),
    (["--initial-positions", "1,2,3"], "--initial-positions expects 13"),
])
def test_bad_options_are_clear_errors(fw_build, args, message):
    p = subprocess.run([str(fw_build / "dexgrasp-fw-emulator"), *args], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and message in p.stderr and p.stdout == ""


def test_bad_limits_file_names_the_line(fw_build, tmp_path):
    bad = tmp_path / "limits.txt"
    bad.write_text("arm_joint_1 1.0 -1.0 1.5\n")
    p = subprocess.run([str(fw_build / "dexgrasp-fw-emulator"), "--limits", str(bad)], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2 and f"{bad}:1" in p.stderr


def test_initial_positions_are_the_boot_pose(start_emulator):
    from firmware_bridge.host import BridgeHost

    q = [0.1 * i for i in range(7)] + [0.2] * 6
    emu = start_emulator(initial_positions=q)
    with BridgeHost(emu.port) as bridge:
        got = bridge.latest_state(1.0).positions
    assert max(abs(a - b) for a, b in zip(got, q, strict=True)) < 1e-3


def test_binary_override_must_be_executable(monkeypatch, tmp_path):
    monkeypatch.setenv("DEXGRASP_FW_EMULATOR", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="DEXGRASP_FW_EMULATOR"):
        ensure_emulator_binary()


def test_missing_toolchain_is_a_clear_error(monkeypatch, tmp_path):
    import firmware_bridge.emulator as E

    monkeypatch.delenv("DEXGRASP_FW_EMULATOR", raising=False)
    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(E.shutil, "which", lambda tool: None)
    with pytest.raises(E.BuildError, match="needs 'cmake'"):
        E.ensure_emulator_binary()


def test_json_limits_cli_wrapper_runs_the_emulator(fw_build, tmp_path):
    from firmware_bridge.joints import DEFAULT_JOINT_NAMES

    limits = tmp_path / "l.json"
    limits.write_text(json.dumps({"names": list(DEFAULT_JOINT_NAMES), "lower": [-1] * 13, "upper": [1] * 13,
                                  "velocity": [1] * 13}))
    cache = tmp_path / "cache"
    env = dict(os.environ, DEXGRASP_FW_EMULATOR=str(fw_build / "dexgrasp-fw-emulator"), DEXGRASP_CACHE_DIR=str(cache))
    p = subprocess.Popen([sys.executable, "-m", "firmware_bridge.emulator", "--limits", str(limits),
                          "--exit-on-stdin-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    line = p.stdout.readline()
    p.stdin.close()
    p.wait(5)
    p.stdout.close()
    p.stderr.close()
    assert line.startswith(b"/dev/"), line
    # the table the exec'd emulator read lives in the cache under its content hash (no temp dir leaks)
    (table,) = (cache / "emulator-limits").glob("*.txt")
    assert table.read_text().count("\n") >= 13


def test_threads_stop_on_close(start_emulator):
    from firmware_bridge.host import BridgeHost

    emu = start_emulator()
    with BridgeHost(emu.port, name="closetest") as bridge:
        bridge.arm()
        names = {t.name for t in threading.enumerate()}
        assert {"closetest-reader", "closetest-supervisor"} <= names
    assert not [t for t in threading.enumerate() if t.name.startswith("closetest-")]


def test_emulator_process_context_manager(fw_build):
    with EmulatorProcess(fw_build / "dexgrasp-fw-emulator") as emu:
        pid = emu.proc.pid
        assert emu.running
    assert _wait_dead(pid, 5.0)
