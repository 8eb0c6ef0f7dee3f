"""`dexgrasp infer` with bad inputs: exit code 2 and one line naming the problem, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


def infer(*args):
    code = ("import sys\nfrom runtime.cli.main import main\n"
            f"rc = main(['infer', *{list(args)!r}])\n"
            "sys.exit(99 if 'torch' in sys.modules else rc)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def good_obs(tiny_export, tmp_path_factory):
    d = tmp_path_factory.mktemp("infer_cli")
    obs = {k: v.numpy() for k, v in tiny_export["obs"].items()}
    np.savez(d / "obs.npz", **obs)
    return d, obs


def test_infer_ok_with_seed_and_repeat(tiny_export, good_obs):
    d, _ = good_obs
    r = infer("--model", str(tiny_export["dir"]), "--obs", str(d / "obs.npz"), "--output", str(d / "a.npz"),
              "--seed", "1", "--repeat", "2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout.strip().splitlines()[-1])) == {"encoder_ms", "denoise_ms", "total_ms"}
    assert np.load(d / "a.npz")["action"].shape == (1, 64, 13)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda o: o.update(rgbm=o["rgbm"].astype(np.float64)), "'rgbm' has dtype float64"),
        (lambda o: o.update(right_cam_img=o["right_cam_img"][..., :500]), "'right_cam_img' has shape"),
        (lambda o: o.update(right_state=np.full((1, 1, 13), np.nan, np.float32)), "'right_state' contains 13 NaN"),
        (lambda o: o.pop("right_state"), "'right_state' is missing"),
    ],
)
def test_infer_rejects_bad_observations(tiny_export, good_obs, change, message):
    d, obs = good_obs
    bad = dict(obs)
    change(bad)
    np.savez(d / "bad.npz", **bad)
    r = infer("--model", str(tiny_export["dir"]), "--obs", str(d / "bad.npz"), "--output", str(d / "x.npz"), "--seed", "0")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_infer_rejects_bad_files(tiny_export, good_obs, tmp_path):
    d, _ = good_obs
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    cases = [
        (["--model", str(tiny_export["dir"]), "--obs", str(corrupt)], "is not a readable .npz"),
        (["--model", str(tiny_export["dir"]), "--obs", str(tmp_path / "missing.npz")], "does not exist"),
        (["--model", str(tmp_path), "--obs", str(d / "obs.npz")], "manifest.json not found"),
        (["--model", str(tiny_export["dir"]), "--obs", str(d / "obs.npz"), "--noise", str(d / "obs.npz")],
         "has no array named 'noise'"),
    ]
    for args, message in cases:
        r = infer(*args, "--output", str(tmp_path / "o.npz"))
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
