"""Training windows on the action-rate grid (issue 13): a chunk is trained at the rate the runtime
plays it (control.action_rate_hz, 20 Hz upstream), whatever the camera rate of the recording.

Each episode is recorded through the runtime's recorder with a known ramp: the command sent right
after the frame captured at t is `t * RAMP`, so an action read back from a window says which
recorded frame's command it is. The expected value at a grid tick is computed here from the
recorded timestamps (the last frame captured at or before the tick), not by the code under test."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("zarr", reason="the record extra (zarr) is not installed")
pytest.importorskip("scipy", reason="the train extra (scipy) is not installed")
pytest.importorskip("diffusers", reason="the train extra (diffusers) is not installed")

from export.train.data import WindowDataset, load_episodes  # noqa: E402
from runtime.errors import ConfigError  # noqa: E402

RAMP = np.linspace(0.1, 1.3, 13)
HORIZON = 64


def _record(root, times) -> None:
    from runtime.recording import EpisodeRecorder, RecordingConfig

    rng = np.random.default_rng(0)
    rec = EpisodeRecorder(RecordingConfig(dir=str(root), chunk_frames=16, queue_frames=4096, min_free_mb=0,
                                          video=False, fsync=False)).start()
    rec.begin_episode("grasp the red cube")
    gap = float(np.min(np.diff(times))) if len(times) > 1 else 0.05
    for t in times:
        rec.on_joint_state(-t * RAMP)
        rec.on_frames(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8),
                      rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), np.ones((8, 8), np.uint8), float(t))
        rec.on_command(t * RAMP, float(t) + 0.2 * abs(gap))  # the command in force after this frame
    rec.end_episode("success")
    rec.stop()


def _recorded_at(tmp_path, fps: float, seconds: float):
    root = tmp_path / f"rec{fps:g}"
    times = 0.3 + np.arange(int(round(seconds * fps))) / fps  # a clock that does not start at 0
    _record(root, times)
    return root, times


def _held(times: np.ndarray, tick: float) -> float:
    """The capture time of the last recorded frame at or before `tick`."""
    return float(times[times <= tick + 1e-9].max())


@pytest.mark.parametrize(("fps", "rate"), [(15, None), (30, None), (30, 10.0)])
def test_action_windows_are_the_commands_at_action_rate_ticks(tmp_path, fps, rate):
    root, times = _recorded_at(tmp_path, fps, seconds=4.0)
    kw = {} if rate is None else {"action_rate_hz": rate}
    data = load_episodes(root, action_dim=13, **kw)
    rate = rate or 20.0  # the default is upstream's (and the runtime's default) 20 Hz
    ds = WindowDataset(data, HORIZON)
    n_ticks = int(np.floor((times[-1] - times[0]) * rate + 1e-9)) + 1
    assert len(ds) == n_ticks  # one window per action step, not per camera frame
    for k in (0, 5, n_ticks - 10):
        window_t = ds.actions([k])[0].numpy() / RAMP  # (64, 13): every column recovers the frame time
        np.testing.assert_allclose(window_t, window_t[:, :1].repeat(13, axis=1), atol=1e-5)
        got = window_t[:, 0]
        ticks = times[0] + np.minimum(np.arange(k, k + HORIZON), n_ticks - 1) / rate  # end: last repeated
        expected = np.array([_held(times, t) for t in ticks])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        # and so every command is within one camera frame of its tick: the window spans 63 action steps
        assert np.all(got <= ticks + 1e-5) and np.all(got > ticks - 1.0 / fps - 1e-5)
        # the observation is the frame held at the window's first tick, with its own state
        obs = ds.batch([k])["obs"]
        t_obs = _held(times, ticks[0])
        assert data.timestamp[ds.obs_frame(k)] == pytest.approx(t_obs)
        np.testing.assert_allclose(obs["right_state"][0, 0].numpy(), -t_obs * RAMP, atol=1e-5)
        if k + HORIZON <= n_ticks:  # a full window spans 63 steps of 1/rate (not 63 camera frames)
            assert got[-1] - got[0] == pytest.approx(63 / rate, abs=1.0 / fps + 1e-5)


def test_only_frames_on_the_grid_are_kept_and_a_slow_recording_warns_once(tmp_path, caplog):
    root30, times30 = _recorded_at(tmp_path, 30, seconds=3.0)
    with caplog.at_level(logging.WARNING):
        fast = load_episodes(root30, action_dim=13)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    tl = fast.timeline
    assert tl.recorded_frames == len(times30) == 90
    assert fast.frames == tl.frames_used == 60  # 2 of every 3 frames: ticks 0 .. 59 at 50 ms
    assert tl.recorded_fps == pytest.approx(30.0, rel=1e-6) and tl.action_rate_hz == 20.0
    assert tl.repeated_ticks == 0

    root15, times15 = _recorded_at(tmp_path, 15, seconds=4.0)
    for _ in range(2):  # three slow episodes, one warning
        _record(root15, times15)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        slow = load_episodes(root15, action_dim=13)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    n_ticks = int(np.floor((times15[-1] - times15[0]) * 20 + 1e-9)) + 1  # 79, the last at 3.9 s
    used = len({_held(times15, times15[0] + k / 20) for k in range(n_ticks)})  # 59: not the one at 3.93 s
    repeats = n_ticks - used
    assert len(slow.names) == 3 and slow.frames == 3 * used and slow.timeline.repeated_ticks == 3 * repeats
    msg = warnings[0]
    assert "3 of 3 episodes" in msg and "15.0 fps" in msg and "20 Hz" in msg, msg
    assert f"{3 * repeats} of {3 * n_ticks} action steps (25%)" in msg, msg


def test_several_episodes_keep_their_own_grids(tmp_path):
    root = tmp_path / "mixed"
    t15 = 0.3 + np.arange(20) / 15
    t30 = 7.0 + np.arange(30) / 30
    _record(root, t15)
    _record(root, t30)
    data = load_episodes(root, action_dim=13)
    ds = WindowDataset(data, HORIZON)
    n15 = int(np.floor((t15[-1] - t15[0]) * 20 + 1e-9)) + 1
    n30 = int(np.floor((t30[-1] - t30[0]) * 20 + 1e-9)) + 1
    assert len(ds) == n15 + n30
    # the first window of episode 2 starts on its own first frame and never reads episode 1
    got = ds.actions([n15])[0].numpy()[:, 0] / RAMP[0]
    ticks = t30[0] + np.minimum(np.arange(HORIZON), n30 - 1) / 20
    np.testing.assert_allclose(got, [_held(t30, t) for t in ticks], atol=1e-5)
    # the last window of episode 1 repeats its own last held command, not episode 2's first
    last = _held(t15, t15[0] + (n15 - 1) / 20)
    np.testing.assert_allclose(ds.actions([n15 - 1])[0].numpy()[:, 0] / RAMP[0], last, atol=1e-5)


def test_non_monotonic_timestamps_and_a_bad_rate_are_refused_in_one_line(tmp_path, capsys):
    from runtime.cli.main import main

    root = tmp_path / "bad"
    _record(root, np.array([0.0, 0.1, 0.05, 0.15]))
    with pytest.raises(ConfigError) as err:
        load_episodes(root, action_dim=13)
    msg = str(err.value)
    assert "\n" not in msg and "episode_000001" in msg and "not strictly increasing" in msg, msg
    assert "frame 2 at 0.050000 s after frame 1 at 0.100000 s" in msg, msg
    with pytest.raises(ConfigError, match="action rate"):
        load_episodes(root, action_dim=13, action_rate_hz=0.0)
    good = tmp_path / "good"
    _record(good, np.arange(4) / 20)
    out = str(tmp_path / "o.ckpt")
    for episodes, extra, needle in ((root, [], "not strictly increasing"),
                                    (good, ["--action-rate-hz", "0"], "--action-rate-hz"),
                                    (good, ["--action-rate-hz", "nan"], "must be a positive number")):
        rc = main(["train", "--episodes", str(episodes), "--preset", "_test_tiny", "--output", out,
                   "--no-progress", *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and needle in err, err


def test_feature_cache_encodes_only_the_frames_on_the_grid(tmp_path, monkeypatch):
    import torch

    import export.train.cache as cache_mod
    from export.model.arch import TEST_ARCH
    from export.train.checkpoint import fresh_policy
    from export.train.trainer import fit_normalizer

    root, times = _recorded_at(tmp_path, 30, seconds=0.5)  # 15 frames -> 10 ticks at 50 ms
    data = load_episodes(root, action_dim=13)
    ds = WindowDataset(data, HORIZON)
    policy = fresh_policy(TEST_ARCH, fit_normalizer(data), 0)
    encoded = []
    original = cache_mod.dino_features

    def counting(enc, rgbm, wrist):
        encoded.append(int(rgbm.shape[0]))
        return original(enc, rgbm, wrist)

    monkeypatch.setattr(cache_mod, "dino_features", counting)
    cache = cache_mod.FeatureCache.build(policy, ds, "float32", progress=False)
    assert len(times) == 15 and len(ds) == 10
    assert sum(encoded) == cache.head.shape[0] == data.frames == 10
    # a sample's cached features are those of its own observation frame
    batch = ds.batch([7], images=True)
    head, _ = cache.get(batch["frames"])
    with torch.no_grad():
        ref, _ = original(policy.obs_encoder.eval(), batch["obs"]["rgbm"], batch["obs"]["right_cam_img"])
    torch.testing.assert_close(head, ref.float(), rtol=1e-5, atol=1e-5)
