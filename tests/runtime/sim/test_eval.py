"""`dexgrasp eval`: one short closed-loop episode of a tiny exported controller on the sim, the failure
causes, and the refusals (wrong joint space, training seeds, unverified reduced precision)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

import runtime.sim  # noqa: F401  (headless GL before mujoco is imported)

pytest.importorskip("mujoco")

from runtime.cli.main import main  # noqa: E402
from runtime.sim.evaluate import CAUSES, classify, planner_verdict  # noqa: E402

SUMMARY_KEYS = {"episodes", "successes", "success_rate", "median_time_to_grasp_s", "failures_by_cause",
                "control_p99_lateness_us_max", "missed_cycles_total", "seeds", "backend", "precision",
                "execution_mode"}


def _small_config(tmp_path) -> str:
    """configs/mujoco.yaml with small cameras (the planner still finds the objects at 320x240)."""
    import yaml

    data = yaml.safe_load(open("configs/mujoco.yaml"))
    data["cameras"]["head"] = {"width": 320, "height": 240, "fps": 10}
    data["cameras"]["wrist"] = {"width": 64, "height": 48, "fps": 10}
    path = tmp_path / "mujoco_small.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_eval_runs_the_exported_controller_and_reports_each_episode(tiny_model_dir, tmp_path, capsys):
    from runtime.data.h264 import available, probe

    report_path = tmp_path / "eval.json"
    argv = ["eval", "--model", str(tiny_model_dir), "--episodes", "1", "--seed", "10000", "--timeout-s", "4",
            "--config", _small_config(tmp_path), "--execution-mode", "upstream", "--report", str(report_path)]
    if available():
        argv += ["--video-dir", str(tmp_path / "videos")]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    line = json.loads(out[-1])
    assert SUMMARY_KEYS <= set(line)
    assert line["episodes"] == 1 and line["seeds"] == [10000, 10000]
    assert (line["backend"], line["precision"], line["execution_mode"]) == ("onnxruntime", "fp32", "upstream")
    report = json.loads(report_path.read_text())
    ep = report["per_episode"][0]
    assert ep["seed"] == 10000 and ep["target"] and ep["engine"].startswith("onnxruntime fp32")
    # a random-weight controller does not grasp: the episode fails with a cause physics explains
    assert ep["success"] is False and ep["failure"] in CAUSES and ep["failure_detail"]
    assert line["failures_by_cause"] == {ep["failure"]: 1} and line["success_rate"] == 0.0
    assert ep["control_p99_lateness_us"] is not None and ep["missed_cycles"] is not None
    assert 0.0 <= ep["max_hand_closure"] <= 1.0 and ep["min_reach_m"] > 0
    if ep["inferences"]:
        assert ep["inference_ms"]["p50"] > 0
    assert report["seed_check"].startswith("training seeds not recorded")  # a make-checkpoint model
    if available():
        info = probe(ep["video"])
        assert info["codec"] == "h264" and info["frames"] > 0


def test_classify_names_what_physics_saw():
    report = {"policy": {"inferences": 3}, "episode": {"box": [1, 2, 3, 4]}}

    def probe(reach, closure):
        return SimpleNamespace(min_reach_m=reach, max_closure=closure)

    assert classify(True, report, probe(0.01, 0.9), 0.1, 0.1, 0.06) == (None, "lifted and held")
    assert classify(False, report, probe(0.2, 0.0), 0.0, 0.0, 0.06)[0] == "never_reached"
    assert classify(False, report, probe(0.03, 0.1), 0.0, 0.0, 0.06)[0] == "never_closed"
    assert classify(False, report, probe(0.03, 0.8), 0.005, 0.0, 0.06)[0] == "closed_empty"
    assert classify(False, report, probe(0.03, 0.8), 0.07, 0.0, 0.06)[0] == "dropped"
    assert classify(False, report, probe(0.03, 0.8), 0.07, 0.07, 0.06)[0] == "timeout"  # still up at the end
    assert classify(False, {"policy": {"inferences": 0}, "episode": {"box": [1, 2, 3, 4]}},
                    probe(np.inf, 0.0), 0.0, 0.0, 0.06)[0] == "no_inference"
    assert classify(False, {"policy": {"inferences": 0}, "episode": {"outcome": "planner_failed", "reason": "no box"}},
                    probe(np.inf, 0.0), 0.0, 0.0, 0.06) == ("planner_failed", "no box")
    dead = {"policy": {"inferences": 2}, "fatal": "control process ended unexpectedly"}
    assert classify(False, dead, probe(0.01, 0.9), 0.0, 0.0, 0.06)[0] == "runtime_error"
    assert planner_verdict({"successes": 1}) == "grasped" and planner_verdict({"verify_failures": 2}) == "not grasped"
    assert planner_verdict({}) is None


def test_a_model_for_another_joint_space_is_refused_before_anything_starts(tmp_path, capsys):
    from export.checkpoint import LoadedCheckpoint
    from export.model.arch import TEST_ARCH
    from export.model.policy import ControllerPolicy
    from export.onnx_export import export_controller
    from export.random_init import fit_limits, init_weights, synthetic_joint_data

    # a real export of a controller for a 7-joint robot (arm only), random weights
    arch = dataclasses.replace(TEST_ARCH, action_dim=7)
    joints = synthetic_joint_data(np.random.default_rng(1))
    policy = ControllerPolicy(arch, {"action": fit_limits(joints[:, :7]), "right_state": fit_limits(joints)})
    init_weights(policy, 1)
    export_controller(LoadedCheckpoint(policy.eval(), arch, "0" * 64, "arm7.ckpt", "model"), tmp_path / "arm7",
                      progress=False)
    err = _one_line_error(capsys, ["eval", "--model", str(tmp_path / "arm7"), "--episodes", "1", "--seed", "10000"])
    assert "action_dim 7" in err and "13 joints" in err


def test_unverified_reduced_precision_is_refused_with_how_to_verify(tiny_model_copy, capsys):
    err = _one_line_error(capsys, ["eval", "--model", str(tiny_model_copy), "--episodes", "1", "--seed", "10000",
                                   "--backend", "openvino", "--precision", "bf16"])
    assert "no passing accuracy verification for openvino bf16" in err and "dexgrasp engine verify" in err


def _record_sim_episode(root, seed: int) -> None:
    """One short episode whose provenance says it was recorded on MuJoCo scene `seed`."""
    from runtime.config.loading import load_config
    from runtime.recording import EpisodeRecorder, RecordingConfig
    from runtime.recording.provenance import build_provenance

    cfg = load_config("configs/mujoco.yaml", {"cameras": {"seed": seed}})
    rng = np.random.default_rng(seed)
    rec = EpisodeRecorder(RecordingConfig(dir=str(root), chunk_frames=4, min_free_mb=0, video=False),
                          provenance=build_provenance(cfg)).start()
    rec.begin_episode("grasp the red object")
    for i in range(8):
        rec.on_joint_state(np.linspace(-0.5, 0.5, 13) * np.sin(0.3 * i))
        rec.on_frames(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                      rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), np.ones((24, 32), np.uint8), i * 0.05)
        rec.on_command(np.linspace(-0.4, 0.6, 13) * np.cos(0.3 * i), i * 0.05 + 0.025)
    rec.end_episode("success")
    rec.stop()


def test_training_seeds_travel_to_the_export_and_overlapping_eval_seeds_are_refused(tmp_path, capsys):
    pytest.importorskip("zarr", reason="the record extra is not installed")
    from export.checkpoint import load_checkpoint
    from export.model.arch import TEST_ARCH
    from export.onnx_export import export_controller
    from export.random_init import make_policy
    from export.train.checkpoint import save_trained_checkpoint
    from export.train.data import load_episodes
    from runtime.controller.manifest import Manifest
    from runtime.sim.evaluate import check_seeds

    demos = tmp_path / "demos"
    _record_sim_episode(demos, seed=5)
    # collect.json also names seed 6 (its recording was deleted): still a training scene
    (demos / "collect.json").write_text(json.dumps({"per_episode": [{"seed": 5}, {"seed": 6}]}))
    assert load_episodes(demos, action_dim=13).scene_seeds == [5, 6]
    # what Trainer.finish stores (Trainer.provenance), through the checkpoint and the export
    save_trained_checkpoint(make_policy(TEST_ARCH, 0), tmp_path / "t.ckpt",
                            provenance={"episodes_dir": str(demos), "episodes": ["episode_000001"], "scene_seeds": [5, 6]})
    loaded = load_checkpoint(tmp_path / "t.ckpt")  # weights_only: the provenance is plain data
    assert loaded.training == {"episodes_dir": str(demos), "scene_seeds": [5, 6]}
    export_controller(loaded, tmp_path / "model", progress=False)
    manifest = Manifest.load(tmp_path / "model")
    assert manifest.source_checkpoint["training"]["scene_seeds"] == [5, 6]

    err = _one_line_error(capsys, ["eval", "--model", str(tmp_path / "model"), "--episodes", "3", "--seed", "4"])
    assert "overlap the training scene seeds" in err and "(5-6;" in err
    assert "--seed 7" in err and "--allow-seed-overlap" in err
    assert check_seeds([7, 8], manifest, "m", allow_overlap=False).startswith("no overlap")
    assert check_seeds([6, 7], manifest, "m", allow_overlap=True).startswith("OVERLAP allowed: seeds 6")


def test_default_config_loads_from_any_directory(tmp_path, monkeypatch):
    """`dexgrasp eval` / `sim collect` run from a robot team's own directory: the default --config is
    the shipped preset, not a path relative to the checkout."""
    from runtime.cli.main import build_parser
    from runtime.config.loading import load_config

    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    for argv in (["eval", "--model", "m", "--episodes", "1", "--seed", "10000"], ["sim", "collect", "--episodes", "1", "--output", "o"]):
        args = parser.parse_args(argv)
        cfg = load_config(args.config)
        assert cfg.bridge.kind == "mujoco" and cfg.cameras.kind == "mujoco"
