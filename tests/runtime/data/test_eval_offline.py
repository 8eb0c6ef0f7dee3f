"""eval-offline: the exported controller replayed on recorded observations, compared with what ran."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("zarr", reason="the record extra (zarr) is not installed")
pytest.importorskip("onnxruntime", reason="the ort extra is not installed")
torch = pytest.importorskip("torch", reason="making the tiny model needs torch (export extra)")

from data_helpers import record  # noqa: E402

from runtime.cli.main import main  # noqa: E402
from runtime.controller import Controller  # noqa: E402
from runtime.controller.preprocess import process_obs  # noqa: E402
from runtime.data.offline_eval import evaluate  # noqa: E402
from runtime.recording import load_episode  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return tiny_model_dir


def test_eval_offline_errors_are_against_the_executed_commands(tiny_model, tmp_path, capsys):
    paths = record(tmp_path / "rec", (("grasp the red cube", 12),))
    report = evaluate(tiny_model, tmp_path / "rec", stride=5, seed=7, progress=False)
    row = report["episodes"][0]
    assert row["steps"] == 3 and report["overall"]["fp32"]["n"] > 0
    # recompute step k=5 by hand: same observation, noise from seed 7+5, chunk vs held executed commands
    ep = load_episode(paths[0])
    ctrl = Controller.from_dir(tiny_model)
    obs = process_obs(ep.data["rgbm"][5][..., :3].copy(), ep.data["rgbm"][5][..., 3].copy(),
                      ep.data["right_cam_img"][5], ep.data["right_state"][5])
    chunk = ctrl.predict(obs, noise=np.random.default_rng(12).standard_normal(ctrl.sample_shape).astype(np.float32))
    ts = ep.data["timestamp"]
    times = ts[5] + np.arange(chunk.shape[0]) * 0.05
    times = times[times <= ts[-1] + 1e-9]
    held = ep.data["action"][np.searchsorted(ts, times + 1e-9, side="right") - 1]
    np.testing.assert_allclose(row["trace"]["fp32"][1], chunk[0], atol=1e-5)
    # the per-episode MAE includes step 5's error exactly (recompute all three steps the same way)
    errs = []
    for k in (0, 5, 10):
        o = process_obs(ep.data["rgbm"][k][..., :3].copy(), ep.data["rgbm"][k][..., 3].copy(),
                        ep.data["right_cam_img"][k], ep.data["right_state"][k])
        c = ctrl.predict(o, noise=np.random.default_rng(7 + k).standard_normal(ctrl.sample_shape).astype(np.float32))
        t = ts[k] + np.arange(c.shape[0]) * 0.05
        t = t[t <= ts[-1] + 1e-9]
        errs.append(c[: t.size] - ep.data["action"][np.searchsorted(ts, t + 1e-9, side="right") - 1])
    assert held.shape[0] == errs[1].shape[0]
    assert row["fp32"]["mae"] == pytest.approx(float(np.abs(np.concatenate(errs)).mean()), rel=1e-5)
    ctrl.close()

    rc = main(["eval-offline", "--model", str(tiny_model), "--episodes", str(tmp_path / "rec"), "--stride", "5",
               "--seed", "7", "--no-progress", "--output", str(tmp_path / "r.json"), "--plot", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert rc == 0 and "episode_000001: fp32: MAE" in out
    assert json.loads((tmp_path / "r.json").read_text())["overall"]["fp32"]["mae"] == pytest.approx(row["fp32"]["mae"])
    assert (tmp_path / "plots/episode_000001.png").stat().st_size > 1000


def test_eval_offline_bad_precision_is_one_line(tmp_path, capsys):
    rc = main(["eval-offline", "--model", str(tmp_path), "--episodes", str(tmp_path), "--precision", "fp32,fp8"])
    err = capsys.readouterr().err
    assert rc == 2 and "--precision" in err and "Traceback" not in err
