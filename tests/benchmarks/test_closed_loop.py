"""benchmarks/closed_loop.py: the report built from stage results (no long runs here), its sizing,
that the suite runner does not pick it up, and a corrupt collect directory stopping it clearly."""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import pytest

from benchmarks import closed_loop


def _episode(seed: int, success: bool, t: float | None = None, cause: str | None = None) -> dict:
    return {"seed": seed, "success": success, "time_to_grasp_s": t, "failure": cause}


def _summary(per: list[dict], backend="onnxruntime", precision="fp32", mode="timed") -> dict:
    ok = [e for e in per if e["success"]]
    causes: dict = {}
    for e in per:
        if e["failure"]:
            causes[e["failure"]] = causes.get(e["failure"], 0) + 1
    return {"episodes": len(per), "successes": len(ok), "success_rate": len(ok) / len(per),
            "median_time_to_grasp_s": float(np.median([e["time_to_grasp_s"] for e in ok])) if ok else None,
            "failures_by_cause": causes, "control_p99_lateness_us_max": 310.0, "missed_cycles_total": 2,
            "inference_p50_ms_median": 2800.0, "seeds": [per[0]["seed"], per[-1]["seed"]], "backend": backend,
            "precision": precision, "execution_mode": mode}


def _results(total_s: float) -> dict:
    timed = [_episode(10000, True, 11.0), _episode(10001, True, 13.0), _episode(10002, False, cause="dropped")]
    upstream = [_episode(10000, True, 15.0), _episode(10001, False, cause="never_reached"),
                _episode(10002, False, cause="closed_empty")]
    return {
        "command": "benchmarks/closed_loop.py --out X", "budget_s": closed_loop.BUDGET_S, "total_s": total_s,
        "stages": {
            "collect": {"wall_s": 40.0, "summary": {"episodes": 2, "successes": 2, "success_rate": 1.0,
                                                    "median_time_to_grasp_s": 10.7, "seeds": [0, 1]}},
            "train": {"wall_s": 900.0, "loss": [1.0, 0.8, 0.6, 0.5],
                      "summary": {"arch": "small", "episodes": 2, "frames": 500, "steps": 4, "batch_size": 4,
                                  "first_loss": 1.0, "final_loss": 0.5, "action_mse": 0.1,
                                  "median_frame_interval_s": 0.05, "train_s": 880.0, "scene_seeds": "0-1"}},
            "export": {"wall_s": 60.0},
            "verify": {"wall_s": 0.1, "passed": False, "reason": "openvino not installed"},
            "eval": {"wall_s": 600.0},
        },
        "conditions": [
            {"name": "fp32 timed", "backend": "onnxruntime", "precision": "fp32", "execution_mode": "timed",
             "summary": _summary(timed), "per_episode": timed, "seed_check": "no overlap with the training scene seeds (0-1)"},
            {"name": "fp32 upstream", "backend": "onnxruntime", "precision": "fp32", "execution_mode": "upstream",
             "summary": _summary(upstream, mode="upstream"), "per_episode": upstream},
            {"name": "openvino bf16 timed", "backend": "openvino", "precision": "bf16", "execution_mode": "timed",
             "skipped": "openvino not installed"},
        ],
    }


def test_report_shows_every_condition_and_the_grasps_a_mode_loses(tmp_path):
    line = closed_loop.build_report(_results(total_s=1600.0), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| 2 | 2 | 1.00 | 10.70 | 0-1 |" in md  # the expert's row
    assert "| fp32 timed | onnxruntime | fp32 | timed | 2/3 (67 %) | 12.00 | dropped 1 | 310.0 | 2 | 2,800 |" in md
    assert "closed_empty 1, never_reached 1" in md
    assert "skipped: openvino not installed" in md
    assert "**fp32 upstream loses 1 grasp(s)** against fp32 timed (1/3 vs 2/3)" in md
    assert "within the 45-minute budget" in md and "no overlap with the training scene seeds" in md
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["final"] == line
    assert set(closed_loop.SUMMARY_KEYS) <= set(line)
    assert line["success_rate"] == pytest.approx(2 / 3) and line["execution_mode"] == "timed"
    assert line["expert_success_rate"] == 1.0 and line["within_budget"] is True
    assert line["conditions"]["openvino bf16 timed"] == {"skipped": "openvino not installed"}
    assert line["conditions"]["fp32 upstream"]["failures_by_cause"] == {"closed_empty": 1, "never_reached": 1}
    pytest.importorskip("matplotlib")
    for name in ("success", "loss", "time_to_grasp"):
        assert (tmp_path / saved["plots"][name]).stat().st_size > 0


def test_a_run_over_the_budget_says_so(tmp_path):
    line = closed_loop.build_report(_results(total_s=closed_loop.BUDGET_S + 1.0), tmp_path)
    assert line["within_budget"] is False
    assert "OVER the 45-minute budget" in (tmp_path / "report.md").read_text()


def test_sizing_quick_and_explicit_options():
    parser = argparse.ArgumentParser()
    closed_loop.add_arguments(parser)
    quick = closed_loop.sizing(parser.parse_args(["--out", "x", "--quick", "--eval-episodes", "2"]))
    assert quick["preset"] == "_test_tiny" and quick["eval_episodes"] == 2 and quick["train_steps"] == 2
    full = closed_loop.sizing(parser.parse_args(["--out", "x", "--train-steps", "500"]))
    assert full["preset"] == "small" and full["train_steps"] == 500
    with pytest.raises(SystemExit, match="--collect-episodes must be >= 1"):
        closed_loop.sizing(parser.parse_args(["--out", "x", "--collect-episodes", "0"]))


def test_the_suite_runner_does_not_run_it():
    """run_all runs every benchmarks/<name>.py with a run() function; this pipeline is opt-in."""
    from benchmarks.common import suite

    names = [s.name for s in suite.discover(pathlib.Path(closed_loop.__file__).parent)]
    assert "closed_loop" not in names and "stages" in names


def test_a_corrupt_collect_directory_stops_it_with_one_line_and_a_report(tmp_path, capsys):
    pytest.importorskip("zarr", reason="the record extra is not installed")
    pytest.importorskip("diffusers", reason="the train extra is not installed")
    pytest.importorskip("scipy", reason="the train extra is not installed")
    from runtime.recording import EpisodeRecorder, RecordingConfig

    demos = tmp_path / "demos"
    rec = EpisodeRecorder(RecordingConfig(dir=str(demos), chunk_frames=4, min_free_mb=0, video=False)).start()
    rec.begin_episode("grasp the red object")
    rng = np.random.default_rng(0)
    for i in range(8):
        rec.on_joint_state(np.zeros(13))
        rec.on_frames(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                      rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), np.ones((24, 32), np.uint8), i * 0.05)
        rec.on_command(np.full(13, 0.1 * i), i * 0.05 + 0.025)
    rec.end_episode("success")
    rec.stop()
    chunk = next((demos / "episode_000001" / "data.zarr" / "data" / "action").glob("1.*"))
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    out = tmp_path / "out"
    rc = closed_loop.main(["--quick", "--skip-collect", str(demos), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [e for e in err if e.startswith("closed_loop: error:")]
    assert rc == 2 and len(errors) == 1 and "episode_000001" in errors[0] and "sha256 mismatch" in errors[0]
    assert "The run stopped with an error" in (out / "report.md").read_text()


def test_collect_at_the_configs_camera_rate_and_train_on_its_action_grid(tmp_path, monkeypatch):
    """The trainer resamples every episode onto control.action_rate_hz, so collection keeps the
    config's own camera rate (what eval runs at) and training is told the config's action rate."""
    pytest.importorskip("torch", reason="the train extra is not installed")
    import yaml

    import export.train
    import runtime.sim.collect
    from runtime.config import load_config

    config = tmp_path / "robot_sim.yaml"
    data = yaml.safe_load((closed_loop.REPO_ROOT / "configs" / "mujoco.yaml").read_text())
    data["control"]["action_rate_hz"] = 10
    config.write_text(yaml.safe_dump(data))
    collected, trained = [], []

    def fake_collect(cfg_path, episodes, output, **kwargs):
        collected.append(load_config(cfg_path))
        return {"episodes": episodes, "successes": episodes, "per_episode": []}

    def fake_train(cfg):
        trained.append(cfg)
        return {"arch": cfg.preset}

    monkeypatch.setattr(runtime.sim.collect, "collect", fake_collect)
    monkeypatch.setattr(export.train, "train", fake_train)
    parser = argparse.ArgumentParser()
    closed_loop.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "out"), "--quick", "--config", str(config)])
    size, results = closed_loop.sizing(args), {"stages": {}}
    args.out.mkdir()  # as pipeline() makes it
    demos = closed_loop.stage_collect(args, size, tmp_path / "out", results, progress=False)
    closed_loop.stage_train(args, size, tmp_path / "out", demos, results, progress=False)
    (cfg,) = collected
    assert (cfg.cameras.head.fps, cfg.cameras.wrist.fps) == (15, 15)  # the config's own rate, not 10
    assert cfg.control.action_rate_hz == 10
    assert trained[0].action_rate_hz == 10.0 and trained[0].episodes == str(demos)


def test_the_training_row_names_the_recorded_rate_and_the_action_grid():
    md = closed_loop.report_markdown(
        {"stages": {"train": {"summary": {"arch": "small", "recorded_fps": 15.002, "action_rate_hz": 20.0,
                                          "repeated_steps": 55}}}}, {})
    assert "15 fps -> 20 Hz (55 repeated steps)" in md
