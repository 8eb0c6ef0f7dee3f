"""The trainer (export/train): upstream's training semantics on the tiny preset and one short
recorded episode, the checkpoint it writes, and `dexgrasp train`'s one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("zarr", reason="the record extra (zarr) is not installed")
pytest.importorskip("scipy", reason="the train extra (scipy) is not installed")
pytest.importorskip("diffusers", reason="the train extra (diffusers) is not installed")

from export.checkpoint import load_checkpoint  # noqa: E402
from export.model.arch import TEST_ARCH  # noqa: E402
from export.random_init import make_checkpoint  # noqa: E402
from export.train import TrainConfig, Trainer  # noqa: E402
from export.train.data import load_episodes  # noqa: E402
from export.train.ema import EMA  # noqa: E402
from export.train.forward import dit_forward, encode_obs  # noqa: E402
from export.train.trainer import fit_normalizer  # noqa: E402
from runtime.cli.main import main  # noqa: E402

FRAMES = 12


def _record(root, frames: int = FRAMES, joints: int = 13) -> None:
    from runtime.recording import EpisodeRecorder, RecordingConfig

    rng = np.random.default_rng(0)
    rec = EpisodeRecorder(RecordingConfig(dir=str(root), chunk_frames=4, min_free_mb=0, video=False,
                                          state_dim=joints)).start()
    rec.begin_episode("grasp the red cube")
    for i in range(frames):
        t = i * 0.05
        mask = np.zeros((24, 32), np.uint8)
        mask[i % 24:, :16] = 1
        # joint 6 of the state is always 0: a constant dimension for the normalizer
        rec.on_joint_state(np.linspace(-0.5, 0.5, joints) * np.sin(0.3 * i))
        rec.on_frames(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                      rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), mask, t)
        rec.on_command(np.linspace(-0.4, 0.6, joints) * np.cos(0.3 * i), t + 0.025)
    rec.end_episode("success")
    rec.stop()


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes")
    _record(root)
    return root


@pytest.fixture(scope="module")
def trainer(episodes, tmp_path_factory):
    """One tiny-preset trainer for the tests that only read it (and the overfitting test, last)."""
    return _trainer(episodes, tmp_path_factory.mktemp("run"), cache_features=True, cache_dtype="float32",
                    lr=1e-2, warmup_steps=0, steps=6)


def _trainer(episodes, tmp_path, **kw) -> Trainer:
    opts = dict(preset="_test_tiny", steps=10, batch_size=2, precision="fp32", progress=False, plot=False)
    opts.update(kw)
    return Trainer(TrainConfig(episodes=str(episodes), output=str(tmp_path / "out.ckpt"), **opts))


def test_normalizer_fit_is_upstreams_limits_formula(episodes):
    data = load_episodes(episodes, action_dim=13)
    stats = fit_normalizer(data)
    for key, x in (("action", data.action), ("right_state", data.state)):
        lo, hi = x.min(axis=0), x.max(axis=0)
        const = (hi - lo) < 1e-4
        scale = np.where(const, 1.0, 2.0 / np.where(const, 1.0, hi - lo))
        offset = np.where(const, -lo, -1.0 - scale * lo)
        np.testing.assert_allclose(stats[key]["scale"].numpy(), scale, rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(stats[key]["offset"].numpy(), offset, rtol=1e-5, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(stats[key]["input_stats"]["min"].numpy(), lo)
    assert (data.state[:, 6] == 0).all() and stats["right_state"]["scale"][6] == 1.0  # constant dim kept as is
    normed = data.action * stats["action"]["scale"].numpy() + stats["action"]["offset"].numpy()
    np.testing.assert_allclose(normed.min(axis=0), -1.0, atol=1e-5)
    np.testing.assert_allclose(normed.max(axis=0), 1.0, atol=1e-5)


def test_windows_are_sampled_like_upstreams_sequence_sampler(trainer):
    ds = trainer.dataset
    actions = ds.episodes.action
    assert len(ds) == FRAMES  # pad_after = horizon - 1: one window per frame
    window = ds.actions([5])[0].numpy()
    assert window.shape == (64, 13) and ds.obs_frame(5) == 5
    np.testing.assert_array_equal(window[:FRAMES - 5], actions[5:])
    np.testing.assert_array_equal(window[FRAMES - 5:], np.repeat(actions[-1:], 64 - (FRAMES - 5), axis=0))
    obs = ds.batch([5])["obs"]
    assert obs["rgbm"].shape == (1, 1, 4, 518, 518) and obs["right_cam_img"].shape == (1, 1, 3, 518, 518)
    assert set(torch.unique(obs["rgbm"][:, :, 3]).tolist()) <= {0.0, 1.0}


def test_ema_follows_upstreams_warmup_formula():
    torch.manual_seed(0)
    live = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    live.register_parameter("frozen", frozen)
    averaged = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    averaged.load_state_dict({k: v for k, v in live.state_dict().items() if k != "frozen"})
    averaged.register_parameter("frozen", torch.nn.Parameter(torch.full((2,), 5.0), requires_grad=False))
    ema = EMA(averaged, update_after_step=2, inv_gamma=2.0, power=0.75, min_value=0.1, max_value=0.5)
    expected = live[0].weight.detach().clone()
    for k in range(8):
        with torch.no_grad():
            for p in live.parameters():
                p.add_(torch.randn(p.shape))
        ema.step(live)
        s = k - 2 - 1  # independent: step' = optimization_step - update_after_step - 1
        decay = 0.0 if s <= 0 else min(0.5, max(0.1, 1 - (1 + s / 2.0) ** -0.75))
        expected = decay * expected + (1 - decay) * live[0].weight.detach()
        assert ema.decay == pytest.approx(decay)
        torch.testing.assert_close(averaged[0].weight, expected)
        torch.testing.assert_close(averaged[1].weight, live[1].weight)  # BatchNorm: copied
    assert torch.equal(averaged.frozen, torch.full((2,), 5.0))  # requires_grad=False: untouched


def test_training_forward_in_eval_mode_is_the_inference_forward(trainer):
    policy = trainer.policy.eval()
    batch = trainer.dataset.batch([7])
    with torch.no_grad():
        cond = encode_obs(policy.obs_encoder, batch["obs"])
        torch.testing.assert_close(cond, policy.obs_encoder(batch["obs"]), rtol=1e-5, atol=1e-5)
        sample, ts = torch.randn(1, 64, 13), torch.tensor([41])
        ref = policy.model(sample, ts, cond)
        torch.testing.assert_close(dit_forward(policy.model, sample, ts, cond, 0.1, False, False), ref,
                                   rtol=1e-5, atol=1e-5)
        policy.train()  # dropout (p_drop_attn) and the encoder heads' Dropout(0.1) are on in training
        assert not torch.allclose(dit_forward(policy.model, sample, ts, cond, 0.1, True, False), ref, atol=1e-4)


def test_cached_features_give_the_uncached_loss(trainer):
    from export.train.cache import FeatureCache

    t, kept = trainer, trainer.cache
    assert t.jitter is None  # caching turns upstream's colour jitter off
    idx = [1, 9]
    t.policy.train()
    losses = {}
    try:
        for name in ("uncached", "float32", "float16"):
            t.cache = None if name == "uncached" else FeatureCache.build(t.policy, t.dataset, name, progress=False)
            torch.manual_seed(123)  # same noise, timesteps and dropout masks
            with torch.no_grad():
                losses[name] = t.loss(idx).item()
    finally:
        t.cache = kept
    assert losses["float32"] == pytest.approx(losses["uncached"], rel=1e-5)
    assert losses["float16"] == pytest.approx(losses["uncached"], rel=1e-2)


def test_loss_decreases_when_overfitting_a_fixed_batch(trainer):
    t = trainer
    idx = [3]

    def eval_loss() -> float:  # fixed noise and timesteps, no dropout
        t.policy.eval()
        torch.manual_seed(7)
        with torch.no_grad():
            return float(np.mean([t.loss(idx, training=False).item() for _ in range(3)]))

    before = eval_loss()
    for _ in range(6):
        t.step(idx)
    after = eval_loss()
    assert after < 0.9 * before, (before, after)  # measured: 1.04 -> 0.85


def test_checkpoint_loads_weights_only_and_exports(episodes, tmp_path):
    from export.onnx_export import export_controller
    from export.upstream_cfg import arch_from_cfg

    t = _trainer(episodes, tmp_path, cache_features=True, steps=1, use_ema=True, plot=True)
    summary = t.run()
    assert summary["steps"] == 1 and np.isfinite(summary["final_loss"])
    # recorded at 20 fps, trained on the 20 Hz action grid: every frame is one action step
    assert summary["action_rate_hz"] == 20.0 and summary["recorded_fps"] == pytest.approx(20.0)
    assert summary["frames_recorded"] == summary["frames_used"] == summary["samples"] == FRAMES
    loaded = load_checkpoint(tmp_path / "out.ckpt")  # weights_only=True with the allow-list
    assert loaded.arch == TEST_ARCH and loaded.weights == "model"
    for key, value in t.policy.state_dict().items():
        assert torch.equal(loaded.policy.state_dict()[key], value), key
    ema = load_checkpoint(tmp_path / "out.ckpt", use_ema=True)
    assert torch.equal(ema.policy.model.head.weight, t.ema.averaged.model.head.weight)
    scale = loaded.policy.normalizer.params_dict["action"]["scale"]
    torch.testing.assert_close(scale, fit_normalizer(t.episodes)["action"]["scale"])
    payload = torch.load(tmp_path / "out.ckpt", weights_only=False)
    assert arch_from_cfg(payload["cfg"]) == TEST_ARCH and payload["cfg"]["training"]["use_ema"] is True
    manifest = export_controller(loaded, tmp_path / "model", progress=False)
    assert (tmp_path / "model" / "manifest.json").is_file() and manifest is not None
    assert (tmp_path / "out.ckpt.train.json").is_file()
    # training provenance for `dexgrasp eval` (these synthetic episodes were not recorded on the sim)
    assert loaded.training == {"episodes_dir": str(episodes.resolve()), "scene_seeds": [], "action_rate_hz": 20.0,
                               "recorded_fps": pytest.approx(20.0)}
    assert manifest.source_checkpoint["training"] == loaded.training


def _cli_error(capsys, *args) -> str:
    rc = main(["train", *args, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_input_gives_one_line_errors(episodes, tmp_path, capsys):
    out = str(tmp_path / "o.ckpt")
    (tmp_path / "empty").mkdir()
    assert "holds no finished episode" in _cli_error(capsys, "--episodes", str(tmp_path / "empty"),
                                                     "--preset", "_test_tiny", "--output", out)
    assert "is not a directory" in _cli_error(capsys, "--episodes", str(tmp_path / "nope"),
                                              "--preset", "_test_tiny", "--output", out)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(episodes, corrupt)
    chunk = next((corrupt / "episode_000001" / "data.zarr" / "data" / "action").glob("1.*"))
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    err = _cli_error(capsys, "--episodes", str(corrupt), "--preset", "_test_tiny", "--output", out)
    assert "episode_000001" in err and "sha256 mismatch" in err
    init = make_checkpoint(TEST_ARCH, tmp_path / "tiny.ckpt")
    err = _cli_error(capsys, "--episodes", str(episodes), "--preset", "small", "--init", str(init), "--output", out)
    assert "--preset small" in err and "does not match --init" in err
    assert "unknown preset" in _cli_error(capsys, "--episodes", str(episodes), "--preset", "smal", "--output", out)
    assert "name the architecture" in _cli_error(capsys, "--episodes", str(episodes), "--output", out)


# ---- another robot's joint layout (issue 12) ----------------------------------------------------

ROBOT12 = {"arm_joint_names": [f"ur_{i}" for i in range(6)], "hand_joint_names": [f"finger_{i}" for i in range(6)],
           "arm_lower_rad": [-3.0] * 6, "arm_upper_rad": [1.0] * 6}


@pytest.fixture(scope="module")
def episodes12(tmp_path_factory):
    """Episodes a 6-arm + 6-hand robot recorded (12 state and 12 action columns), and its config."""
    import yaml

    root = tmp_path_factory.mktemp("episodes12")
    _record(root / "rec", joints=12)
    (root / "robot12.yaml").write_text(yaml.safe_dump({"robot": ROBOT12}))
    return root / "rec", root / "robot12.yaml"


def test_a_12_joint_model_trains_on_the_robots_12_wide_episodes_and_exports(episodes12, tmp_path):
    from export.onnx_export import export_controller

    rec, _ = episodes12
    t = _trainer(rec, tmp_path, joints=12, cache_features=True, steps=1)
    assert t.episodes.state.shape == (FRAMES, 12) and t.episodes.action.shape == (FRAMES, 12)
    assert t.dataset.batch([2])["obs"]["right_state"].shape == (1, 1, 12)
    summary = t.run()
    assert np.isfinite(summary["final_loss"]) and "action_dim 12, state_dim 12" in summary["arch"]
    loaded = load_checkpoint(tmp_path / "out.ckpt")
    assert loaded.arch == TEST_ARCH.with_joints(12)
    assert loaded.policy.normalizer.params_dict["right_state"]["scale"].shape == (12,)
    manifest = export_controller(loaded, tmp_path / "model", progress=False)
    assert manifest.graph("encoder").input("right_state").shape == [1, 1, 12] and manifest.action_dim == 12


def test_episodes_of_another_width_than_the_model_are_refused_in_one_line(episodes, episodes12, tmp_path, capsys):
    rec12, robot12 = episodes12
    out = str(tmp_path / "o.ckpt")
    err = _cli_error(capsys, "--episodes", str(episodes), "--preset", "_test_tiny", "--config", str(robot12),
                     "--output", out)
    assert "is 13 action x 13 state wide, the model is 12 x 12 (action_dim x state_dim)" in err, err
    err = _cli_error(capsys, "--episodes", str(rec12), "--preset", "_test_tiny", "--output", out)  # upstream's 13
    assert "is 12 action x 12 state wide, the model is 13 x 13" in err and "--config" in err, err
    init13 = make_checkpoint(TEST_ARCH, tmp_path / "tiny13.ckpt")
    err = _cli_error(capsys, "--episodes", str(rec12), "--init", str(init13), "--config", str(robot12),
                     "--output", out)
    assert "--config's robot has 12 joints" in err and "action_dim 13 x state_dim 13" in err, err
    assert not (tmp_path / "o.ckpt").exists()
