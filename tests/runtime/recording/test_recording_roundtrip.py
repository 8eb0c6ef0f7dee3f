"""Round trip of episodes through the zarr training layout, read back as upstream reads it."""

import json
import time

import cv2
import numpy as np
import pytest

zarr = pytest.importorskip("zarr", reason="the record extra (zarr) is not installed")

from rec_helpers import WH, WW, H, W, expected, feed_frames  # noqa: E402

from runtime.errors import ConfigError  # noqa: E402
from runtime.recording import (  # noqa: E402
    EpisodeRecorder,
    RecordingConfig,
    RecordingError,
    list_episodes,
    load_episode,
    make_recorder,
    pack_dataset,
)


def wait_idle(rec, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rec.queue_depth() == 0 and rec.state == "idle" and not rec._items:
            return
        time.sleep(0.01)
    raise AssertionError(f"recorder never drained: {rec.status()}")


def record_two(tmp_path, **cfg):
    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path), chunk_frames=4, min_free_mb=0, **cfg)).start()
    rec.on_episode_event({"event": "episode_start", "prompt": "grasp the red cube"})
    rec.on_episode_event({"event": "planner_request", "task": "bbox", "prompt": "find the red cube"})
    rec.on_episode_event({"event": "planner_reply", "task": "bbox", "reply": {"bbox": [1, 2, 30, 20]}})
    feed_frames(rec, 0, 10, episode=0)
    rec.on_episode_event({"event": "episode_end", "outcome": "success"})
    rec.on_episode_event({"event": "episode_start", "prompt": "grasp the blue cube"})
    feed_frames(rec, 0, 7, episode=1)
    rec.stop()  # finishes the open episode (outcome recorder_stopped), drains, joins
    return rec


def test_episode_round_trip_through_upstream_layout(tmp_path):
    rec = record_two(tmp_path)
    assert rec.counters["frames_written"] == 17 and rec.counters["episodes_finished"] == 2
    paths = list_episodes(tmp_path)
    assert [p.name for p in paths] == ["episode_000001", "episode_000002"]
    for path, n, ep in ((paths[0], 10, 0), (paths[1], 7, 1)):
        # Read it the way upstream's StreamingReplayBuffer.copy_from_path does: zarr.open(path, 'r'),
        # meta/episode_ends fully, data[key] for the four training keys.
        src = zarr.open(str(path / "data.zarr"), mode="r")
        meta = {"episode_ends": src["meta"]["episode_ends"][:]}
        assert meta["episode_ends"].dtype == np.int64 and meta["episode_ends"].tolist() == [n]
        want = expected(n, ep)
        for key in ("right_cam_img", "rgbm", "right_state", "action", "timestamp"):
            got = src["data"][key][:]
            assert got.dtype == want[key].dtype, key
            np.testing.assert_array_equal(got, want[key], err_msg=key)
        assert src["data"]["rgbm"].shape == (n, H, W, 4) and src["data"]["right_cam_img"].shape == (n, WH, WW, 3)
        # zarr format 2 with a Blosc compressor: what upstream's zarr 2.12 reads
        zarray = json.loads((path / "data.zarr/data/rgbm/.zarray").read_text())
        assert zarray["zarr_format"] == 2 and zarray["compressor"]["id"] == "blosc"
        assert zarray["chunks"] == [4, H, W, 4]
    first = load_episode(paths[0])
    assert first.info["prompt"] == "grasp the red cube" and first.info["outcome"] == "success"
    assert [e["event"] for e in first.events] == ["episode_start", "planner_request", "planner_reply", "episode_end"]
    assert first.events[2]["reply"] == {"bbox": [1, 2, 30, 20]}
    assert load_episode(paths[1]).info["outcome"] == "recorder_stopped"


def test_video_has_one_frame_per_step_head_wrist_overlay(tmp_path):
    record_two(tmp_path)
    info = load_episode(list_episodes(tmp_path)[0]).info
    cap = cv2.VideoCapture(str(list_episodes(tmp_path)[0] / info["video"]))
    try:
        assert cap.isOpened()
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
        wrist_w = round(WW * H / WH)
        assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == W + wrist_w + W
        assert int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == H
    finally:
        cap.release()


def test_pack_dataset_concatenates_with_cumulative_episode_ends(tmp_path):
    record_two(tmp_path / "rec")
    summary = pack_dataset(tmp_path / "rec", tmp_path / "train.zarr", progress=False)
    assert summary == {"episodes": 2, "frames": 17, "out": str(tmp_path / "train.zarr")}
    src = zarr.open(str(tmp_path / "train.zarr"), mode="r")
    assert src["meta"]["episode_ends"][:].tolist() == [10, 17]
    np.testing.assert_array_equal(src["data"]["action"][10:], expected(7, 1)["action"])
    np.testing.assert_array_equal(src["data"]["rgbm"][:10], expected(10, 0)["rgbm"])


def test_tampered_episode_is_refused_naming_the_file(tmp_path):
    record_two(tmp_path)
    path = list_episodes(tmp_path)[0]
    chunk = path / "data.zarr/data/action/1.0"
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(RecordingError, match=r"data.zarr/data/action/1.0: sha256 mismatch"):
        load_episode(path)
    (path / "events.jsonl").unlink()
    with pytest.raises(RecordingError, match="events.jsonl: listed in the manifest but missing"):
        load_episode(path, verify=False)


def test_action_pairs_with_the_next_command_and_arm_is_scaled_like_upstream(tmp_path):
    lower, upper = [-2.0] * 7, [2.0] * 7
    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path), chunk_frames=2, min_free_mb=0, video=False,
                                          arm_joint_limits={"lower": lower, "upper": upper})).start()
    rec.begin_episode("p")
    rec.on_frames(*_tiny(), t=0.9)  # no joint state yet: cannot be a training sample
    rec.on_joint_state(np.array([1.0] * 7 + [0.3] * 6))
    rec.on_frames(*_tiny(), t=1.0)
    rec.on_frames(*_tiny(), t=1.1)
    rec.on_command(np.array([-2.0] * 7 + [0.5] * 6), t=1.05)  # the command after frame 1.0 only
    rec.on_command(np.array([2.0] * 7 + [0.7] * 6), t=1.15)
    rec.end_episode("success")
    rec.stop()
    ep = load_episode(list_episodes(tmp_path)[0])
    assert ep.data["timestamp"].tolist() == [1.0, 1.1]
    np.testing.assert_allclose(ep.data["right_state"][0], [0.5] * 7 + [0.3] * 6, rtol=1e-6)  # 1 rad in [-2, 2] -> 0.5
    np.testing.assert_allclose(ep.data["action"][:, 0], [-1.0, 1.0])
    np.testing.assert_allclose(ep.data["action"][:, 7], [0.5, 0.7], rtol=1e-6)
    assert rec.counters["dropped_no_state"] == 1


def _tiny():
    return np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8)


def test_bad_frames_and_samples_are_counted_not_raised(tmp_path):
    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path), chunk_frames=2, min_free_mb=0, video=False)).start()
    rec.begin_episode("p")
    rec.on_joint_state(np.full(13, np.nan))  # non-finite
    rec.on_joint_state(np.zeros(5))  # wrong size
    rec.on_joint_state(np.zeros(13))
    rec.on_frames(*_tiny(), t=0.0)
    rec.on_frames(np.zeros((5, 5, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), np.ones((5, 5), np.uint8), t=0.1)
    rec.on_command(np.zeros(13), t=0.2)
    rec.end_episode("success")
    rec.stop()
    assert rec.counters["bad_joint_samples"] == 2
    assert rec.counters["dropped_bad_frame"] == 1 and rec.counters["frames_written"] == 1
    assert load_episode(list_episodes(tmp_path)[0]).frames == 1


def test_second_recorder_on_the_same_dir_is_refused(tmp_path):
    with EpisodeRecorder(str(tmp_path)):
        with pytest.raises(RecordingError, match="another recorder is writing to"):
            EpisodeRecorder(str(tmp_path)).start()


def test_factory_and_config_errors(tmp_path):
    assert make_recorder(None) is None and make_recorder({}) is None
    rec = make_recorder({"video": False}, record_dir=str(tmp_path))
    try:
        assert rec.cfg.dir == str(tmp_path) and not rec.cfg.video
    finally:
        rec.stop()
    with pytest.raises(ConfigError, match=r"recording: unknown field\(s\) \['chunk'\]"):
        RecordingConfig.from_dict({"dir": "x", "chunk": 3})
    with pytest.raises(ConfigError, match="recording.compressor"):
        RecordingConfig.from_dict({"dir": "x", "compressor": "gzip"})
    with pytest.raises(ConfigError, match="recording.arm_joint_limits"):
        RecordingConfig.from_dict({"dir": "x", "arm_joint_limits": {"lower": [0] * 7, "upper": [0] * 7}})


def test_event_times_are_on_the_recorders_clock_with_the_sources_kept(tmp_path):
    """Events from other processes carry their own relative `t`; events.jsonl puts every event on the
    recorder's monotonic clock (the clock of data/timestamp) and keeps the source's as t_source."""
    from runtime.clock import FakeClock

    clock = FakeClock(500.0)
    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path), chunk_frames=4, min_free_mb=0), clock=clock).start()
    rec.on_episode_event({"event": "episode_start", "prompt": "p", "t": 1.5})
    clock.advance(2.0)
    rec.on_episode_event({"source": "control", "event": "holding: waiting_for_chunk", "t": 0.25})
    rec.on_episode_event({"event": "planner reply", "task": "bbox"})
    feed_frames(rec, 0, 2)  # an episode without frames is quarantined, not finished
    rec.stop()
    events = load_episode(list_episodes(tmp_path)[0]).events
    assert [(e["event"], e["t"], e.get("t_source")) for e in events[:3]] == [
        ("episode_start", 500.0, 1.5), ("holding: waiting_for_chunk", 502.0, 0.25), ("planner reply", 502.0, None)]


def test_video_is_scaled_down_to_video_height_and_keeps_the_mask(tmp_path):
    from runtime.recording.video import compose_frame

    head = np.zeros((480, 640, 3), np.uint8)
    wrist = np.full((240, 320, 3), 200, np.uint8)
    mask = np.zeros((480, 640), np.uint8)
    mask[100:300, 200:400] = 1
    frame = compose_frame(head, wrist, mask, max_height=240)
    assert frame.shape == (240, 320 + 320 + 320, 3)
    overlay = frame[:, 640:]
    assert overlay[100, 150, 1] > 100 and overlay[10, 10].sum() == 0  # green where the mask is, only there
    assert compose_frame(head, wrist, mask, max_height=0).shape == (480, 640 + 640 + 640, 3)
    assert compose_frame(head, wrist, mask, max_height=960).shape[0] == 480  # never scaled up
    with pytest.raises(ConfigError, match="video_height"):
        RecordingConfig(dir=str(tmp_path), video_height=-1).validate()


def _threads_affinity(pid: int) -> dict[int, set[int]]:
    import os

    return {int(tid): os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_writer_keeps_off_the_control_loops_cpu(tmp_path, writer):
    """With the loop pinned (control.realtime.cpu_affinity), the writer and every thread it starts
    (zarr's I/O pool included) run on the other CPUs: its long write() calls cannot hold up the
    loop's wake-up on a kernel without full preemption."""
    import os
    import types

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to keep the writer off one")
    loop_cpu, writer_cpus = cpus[-1], cpus[:-1]
    ctx = types.SimpleNamespace(control=types.SimpleNamespace(realtime=types.SimpleNamespace(cpu_affinity=[loop_cpu])))
    rec = make_recorder({"video": True, "chunk_frames": 2, "min_free_mb": 0, "writer": writer}, ctx,
                        record_dir=str(tmp_path))
    try:
        assert rec.cfg.writer_cpu_affinity == writer_cpus and rec.status()["writer_cpu_affinity"] == writer_cpus
        rec.begin_episode("pin")
        feed_frames(rec, 0, 6)  # chunks written: zarr's threads exist now
        deadline = time.monotonic() + 20
        while rec.counters["frames_written"] < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rec.counters["frames_written"] == 6, rec.status()
        if writer == "process":
            pinned = _threads_affinity(rec._backend._proc.pid)
        else:
            me = _threads_affinity(os.getpid())
            names = {t.native_id: t.name for t in __import__("threading").enumerate()}
            pinned = {tid: a for tid, a in me.items() if names.get(tid) == "recorder-writer"}
        assert pinned and all(a == set(writer_cpus) for a in pinned.values()), pinned
    finally:
        rec.stop()
    unpinned = types.SimpleNamespace(control=types.SimpleNamespace(realtime=types.SimpleNamespace(cpu_affinity=None)))
    from runtime.recording import cpus_left_by_the_control_loop

    assert cpus_left_by_the_control_loop(unpinned) is None and cpus_left_by_the_control_loop(None) is None
    everything = types.SimpleNamespace(control=types.SimpleNamespace(realtime=types.SimpleNamespace(cpu_affinity=cpus)))
    assert cpus_left_by_the_control_loop(everything) is None  # never leave the writer nowhere
    with pytest.raises(ConfigError, match="writer_cpu_affinity"):
        RecordingConfig.from_dict({"dir": "x", "writer_cpu_affinity": []})


def test_video_draws_the_planner_box_and_the_phase(tmp_path):
    """The box is given in head-image pixels and drawn red where it lands after the scale-down, on the
    head and overlay panels; the phase is written on the head panel; a malformed box draws nothing."""
    from runtime.recording.video import BOX_BGR, compose_frame

    head = np.zeros((480, 640, 3), np.uint8)
    wrist = np.zeros((240, 320, 3), np.uint8)
    mask = np.zeros((480, 640), np.uint8)
    plain = compose_frame(head, wrist, mask, max_height=240)
    frame = compose_frame(head, wrist, mask, max_height=240, box=[200, 100, 400, 300])
    for x0 in (0, 640):  # head panel and overlay panel; the box is at half scale: (100, 50)-(200, 150)
        assert tuple(frame[50, x0 + 150]) == BOX_BGR and tuple(frame[150, x0 + 150]) == BOX_BGR
        assert tuple(frame[100, x0 + 100]) == BOX_BGR and frame[100, x0 + 150].sum() == 0  # edge drawn, inside empty
    assert frame[:, 320:640].sum() == 0  # the wrist panel is untouched
    texted = compose_frame(head, wrist, mask, max_height=240, phase="grasping")
    assert texted[:30, :320].sum() > 0 and texted[:, 320:].sum() == 0
    for bad in ([1, 2], [float("nan")] * 4, "box"):
        assert np.array_equal(compose_frame(head, wrist, mask, max_height=240, box=bad), plain)


def test_episode_writer_video_follows_phase_events(tmp_path, monkeypatch):
    """Each video frame is drawn with the phase and box of the latest phase event before it."""
    from runtime.recording import episode_writer as ew
    from runtime.recording.episode_writer import EpisodeWriter, FrameRecord

    drawn = []
    real = ew.compose_frame

    def spy(*args, **kwargs):
        drawn.append((kwargs.get("phase"), kwargs.get("box")))
        return real(*args, **kwargs)

    monkeypatch.setattr(ew, "compose_frame", spy)
    writer = EpisodeWriter(tmp_path, "ep", RecordingConfig(dir=str(tmp_path), state_dim=13), {"prompt": "p"})

    def frame(t):
        return FrameRecord(t=t, head=np.zeros((48, 64, 3), np.uint8), wrist=np.zeros((24, 32, 3), np.uint8),
                           mask=np.zeros((48, 64), np.uint8), state=np.zeros(13, np.float32),
                           action=np.zeros(13, np.float32))

    writer.add_frame(frame(0.0))
    writer.add_event({"event": "phase locating", "phase": "locating", "box": None})
    writer.add_frame(frame(0.1))
    writer.add_event({"event": "planner reply"})  # no status in it: keeps what was drawn
    writer.add_event({"event": "phase grasping", "phase": "grasping", "box": [1, 2, 30, 40]})
    writer.add_frame(frame(0.2))
    writer.add_frame(frame(0.3))
    assert drawn == [(None, None), ("locating", None), ("grasping", [1, 2, 30, 40]), ("grasping", [1, 2, 30, 40])]
