"""CRC-valid semantic fuzzer of the firmware state machine (firmware/tests/semantic_fuzz.c), in CI.

Random frames that decode (arm, disarm, targets, trajectories, heartbeats, stop, clear, hello, a
device-type frame), wrong sessions, replayed and jumping seqs, stale / zero / huge timestamps,
targets beyond the limits, huge and non-finite values and irregular tick gaps; after every frame and
tick the harness checks position, velocity, acceleration, "no motion while not armed", the watchdog
and the latches against its own model of PROTOCOL.md. Why: the motion tests checked hand-picked
scenarios only, and one (the clamp test) had the rate limits disabled.

The mutant tests build the same fuzzer against copies of dgb_device.c with one safety check
removed, and require the fuzzer to report exactly that rule: a fuzzer that cannot fail proves
nothing. DEXGRASP_SEMANTIC_FUZZ_FRAMES=N runs N frames per seed (default 300000, about 0.5 s each).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware_bridge" / "firmware"
FRAMES = int(os.environ.get("DEXGRASP_SEMANTIC_FUZZ_FRAMES", "300000"))

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="a C compiler is needed")


def _build(out: Path, src_dir: Path, strict: bool = True) -> Path:
    srcs = [str(p) for p in sorted(src_dir.glob("*.c"))]
    warn = ["-Wall", "-Wextra", "-Werror", "-pedantic"] if strict else ["-w"]  # a mutant leaves unused code
    cmd = ["cc", "-O2", "-std=c99", *warn, "-I", str(FW / "include"),
           str(FW / "tests" / "semantic_fuzz.c"), *srcs, "-lm", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def _run(exe: Path, seed: int, frames: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), str(seed), str(frames)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("sfuzz") / "semantic_fuzz", FW / "src")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_valid_frames_keep_every_invariant(fuzzer, seed):
    r = _run(fuzzer, seed, FRAMES)
    assert r.returncode == 0, r.stdout + r.stderr
    stats = {k: float(v) for k, v in (kv.split("=") for kv in r.stdout.split())}
    print(f"\nsemantic fuzz seed {seed}: {r.stdout.strip()}")
    # it must have reached every mode it checks, or "no violation" would mean little
    assert stats["frames"] >= FRAMES and stats["armed_ticks"] > FRAMES / 20 and stats["applied"] > FRAMES / 40
    assert stats["limited_ticks"] > 0 and stats["holds"] > 0 and stats["safe_offs"] > 0 and stats["pstops"] > 0


# (name, exact text in dgb_device.c, its replacement, the rule the fuzzer must report)
MUTANTS = [
    ("no_accel_limit", "v_des = clamp_noted(v_des, v - amax * dt_s, v + amax * dt_s, &limited);", "", "accel"),
    ("no_velocity_limit", "v_des = clamp_noted(v_des, -vmax, vmax, &limited);", "", "velocity"),
    ("no_position_limit", "out[i] = clampf(in[i], dev->cfg.lower[i], dev->cfg.upper[i]);", "out[i] = in[i];",
     "position"),
    ("motion_in_safe_off", "case DGB_MODE_SAFE_OFF: return DGB_ERR_SAFE_OFF;", "case DGB_MODE_SAFE_OFF: return DGB_OK;",
     "applied"),
    ("motion_while_disarmed", "default: return DGB_ERR_NOT_ARMED;", "default: return DGB_OK;", "applied"),
    ("no_safe_off_watchdog", "if (now_us - dev->last_host_frame_us > dev->cfg.safe_off_timeout_us &&",
     "if (0 &&", "watchdog"),
    ("clear_rearms", "if (dev->mode == DGB_MODE_PSTOP) {\n            dev->mode = DGB_MODE_DISARMED;",
     "if (dev->mode == DGB_MODE_PSTOP) {\n            dev->mode = DGB_MODE_ARMED;", "latch"),
    ("no_replay_check", "if (msg->seq <= dev->last_rx_seq) {", "if (0) {", "applied|latch"),
]


@pytest.mark.parametrize("name, old, new, rule", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_fuzzer_catches_a_removed_safety_check(tmp_path, name, old, new, rule):
    src = tmp_path / "src"
    shutil.copytree(FW / "src", src)
    if name == "no_position_limit":  # also the limit brake and the rounding clamp: no limit at all
        extra = [("v_des = clamp_noted(v_des, -stop_speed(dev->setpoint[i] - dev->cfg.lower[i], amax, dt_s),\n"
                  "                            stop_speed(dev->cfg.upper[i] - dev->setpoint[i], amax, dt_s), &limited);",
                  ""),
                 ("dev->setpoint[i] = clampf(dev->setpoint[i], dev->cfg.lower[i], dev->cfg.upper[i]);", "")]
    else:
        extra = []
    text = (src / "dgb_device.c").read_text()
    for a, b in [(old, new), *extra]:
        assert text.count(a) == 1, f"mutation anchor not found once: {a!r}"
        text = text.replace(a, b)
    (src / "dgb_device.c").write_text(text)
    exe = _build(tmp_path / "mutant", src, strict=False)
    r = _run(exe, 1, FRAMES)
    assert r.returncode == 1, f"mutant {name} survived: {r.stdout}"
    assert any(f"rule={x} " in r.stdout for x in rule.split("|")), r.stdout
    print(f"\nmutant {name}: {r.stdout.strip()}")


@pytest.mark.parametrize("seed", [5, 6])
def test_one_percent_corruption_for_60_s_of_stepped_time(fuzzer, seed):
    """The 1% corruption stream (500 Hz TARGETS, each byte replaced with probability 1%, as
    testing.PtyProxy does) for 60 s of simulated time against the firmware library, ticking at
    1 kHz. The emulator runs on the wall clock, so test_fw_faults runs the same stream for 10 s
    end to end; here nothing re-arms, and the watchdog must never trip."""
    r = subprocess.run([str(fuzzer), "--corrupt", str(seed), "60"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    s = {k: float(v) for k, v in (kv.split("=") for kv in r.stdout.split())}
    print(f"\n1% corruption, 60 s stepped, seed {seed}: {r.stdout.strip()}")
    assert s["sent"] == 30000 and s["damaged"] > 10000  # about 57% of 85-byte frames are hit at 1%/byte
    assert s["damaged_applied"] == 0 and s["mismatched"] == 0
    assert s["applied"] == s["sent"] - s["damaged"]  # every intact frame is applied
    assert s["safe_offs"] == 0 and s["final_mode"] == 1  # no watchdog trip, still ARMED, never re-armed
    assert s["longest_lost"] < 0.150 * 500 / 2  # well inside the 150 ms safe-off window
