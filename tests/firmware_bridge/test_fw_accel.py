"""Motion-law safety of the C firmware (dgb_device_tick): every tick |dv| <= a_max*dt,
|v| <= v_max and the position stays inside its limits. Why: the old law snapped to a goal
1 mrad ahead of a 1.5 rad/s joint (1500 rad/s^2 against a limit of 10) and zeroed the
velocity at a position limit (~17 rad/s^2); a real arm would jerk or trip its drives."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware_bridge" / "firmware"

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="a C compiler is needed")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("probe") / "motion_probe"
    srcs = [str(p) for p in sorted((FW / "src").glob("*.c"))]
    cmd = ["cc", "-O2", "-std=c99", "-I", str(FW / "include"), str(FW / "tests" / "motion_probe.c"),
           *srcs, "-lm", "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def _run(exe: Path, scenario: int, seed: int = 1) -> dict[str, float]:
    out = subprocess.run([str(exe), str(scenario), str(seed)], capture_output=True, text=True, check=True)
    return {k: float(v) for k, v in (kv.split("=") for kv in out.stdout.split())}


def _assert_safe(m: dict[str, float]) -> None:
    assert m["acc_ratio"] <= 1.001, m  # float rounding only
    assert m["vel_ratio"] <= 1.0 + 1e-6, m
    assert m["lim_excess"] == 0.0, m


def test_fast_joint_with_target_one_mrad_ahead_brakes_within_accel_limit(probe):
    m = _run(probe, 0)
    _assert_safe(m)
    assert m["final_err"] < 1e-5, m  # overshoots as the limit forces, then comes back


def test_target_beyond_position_limit_at_full_speed_stops_at_limit_smoothly(probe):
    m = _run(probe, 1)
    _assert_safe(m)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_random_goal_sweep_keeps_all_limits(probe, seed):
    _assert_safe(_run(probe, 2, seed))
