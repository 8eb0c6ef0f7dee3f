"""A slow or full disk never blocks the producer (the runtime's observer thread).

No wall-clock asserts: the writer is held inside an injected slow chunk write (an Event for the
writer thread, a gate file for the writer process), and the test shows the producer finished
every put while the writer was still held there."""

import errno
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr", reason="the record extra (zarr) is not installed")

from rec_helpers import GATE_ENV, feed_frames  # noqa: E402

from runtime.recording import (  # noqa: E402
    EpisodeRecorder,
    RecordingConfig,
    list_episodes,
    list_quarantined,
    load_episode,
)

WAIT_S = 30.0  # only reached when something is broken


class HeldDisk:
    """chunk_hook that parks the writer thread inside chunk `hold_at` until released."""

    def __init__(self, hold_at: int = 0):
        self.hold_at = hold_at
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, chunk_index: int) -> None:
        if chunk_index == self.hold_at:
            self.entered.set()
            if not self.release.wait(WAIT_S):
                raise TimeoutError("test never released the held disk")


def test_slow_disk_never_blocks_put_and_drops_are_counted(tmp_path):
    disk = HeldDisk(hold_at=0)
    cfg = RecordingConfig(dir=str(tmp_path), chunk_frames=4, queue_frames=8, min_free_mb=0, video=False,
                          writer="thread")
    rec = EpisodeRecorder(cfg, chunk_hook=disk).start()
    rec.begin_episode("slow disk")
    feed_frames(rec, 0, 4)  # the writer takes these and parks inside the first chunk write
    assert disk.entered.wait(WAIT_S)
    produced = threading.Event()

    def producer():
        feed_frames(rec, 4, 104)
        produced.set()

    threading.Thread(target=producer, name="test-producer").start()
    assert produced.wait(WAIT_S), "put() waited for the disk"
    assert not disk.release.is_set()  # ... and it finished while the writer was still stuck
    c = rec.counters
    assert c["frames_queued"] == 4 + cfg.queue_frames  # the held chunk + a full queue
    assert c["dropped_queue_full"] == 100 - cfg.queue_frames
    assert c["frames_offered"] == 104
    disk.release.set()
    rec.end_episode("success")
    rec.stop()
    ep = load_episode(list_episodes(tmp_path)[0])
    assert ep.frames == 4 + cfg.queue_frames == rec.counters["frames_written"]
    assert ep.data["timestamp"].tolist() == pytest.approx([i * 0.05 for i in range(4 + cfg.queue_frames)])


def test_disk_full_stops_the_episode_with_a_reason_and_keeps_counting(tmp_path):
    def full_disk(chunk_index):
        if chunk_index == 1:
            raise OSError(errno.ENOSPC, "No space left on device")

    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path), chunk_frames=4, min_free_mb=0, video=False,
                                          writer="thread"), chunk_hook=full_disk).start()
    rec.begin_episode("fills the disk")
    feed_frames(rec, 0, 20)  # never raises in the producer
    rec.end_episode("success")
    rec.stop()
    c = rec.counters
    assert c["write_errors"] == 1 and c["episodes_quarantined"] == 1 and c["episodes_finished"] == 0
    assert c["frames_written"] + c["dropped_after_error"] == 20
    assert c["frames_lost"] == 4  # the chunk being written; the first chunk stays salvageable
    assert rec.state.startswith("stopped: OSError") and "No space left on device" in rec.state
    cut = list_quarantined(tmp_path)[0]
    note = json.loads((cut / "QUARANTINE.json").read_text())
    assert "No space left on device" in note["reason"] and note["journaled_frames"] == 4
    assert list_episodes(tmp_path) == []


def test_low_free_space_stops_recording_before_the_disk_is_full(tmp_path):
    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path), chunk_frames=2, min_free_mb=1e12, video=False)).start()
    rec.begin_episode("p")
    feed_frames(rec, 0, 6)
    rec.stop()
    assert "disk nearly full" in rec.state and rec.counters["write_errors"] == 1
    # the next episode tries again (space may have been freed) and fails the same clear way
    assert list_episodes(tmp_path) == [] and len(list_quarantined(tmp_path)) == 1


def test_recorder_keeps_working_after_a_failed_episode(tmp_path):
    fail_once = {"armed": True}

    def flaky(chunk_index):
        if fail_once["armed"]:
            fail_once["armed"] = False
            raise OSError(errno.EIO, "I/O error")

    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path), chunk_frames=2, min_free_mb=0, video=False,
                                          writer="thread"), chunk_hook=flaky).start()
    rec.begin_episode("first")
    feed_frames(rec, 0, 4)
    rec.end_episode("success")
    rec.begin_episode("second")
    rec.on_joint_state(np.zeros(13))
    feed_frames(rec, 0, 4, episode=1)
    rec.end_episode("success")
    rec.stop()
    assert [p.name for p in list_episodes(tmp_path)] == ["episode_000002"]
    assert load_episode(list_episodes(tmp_path)[0]).frames == 4
    assert rec.state == "idle"


@pytest.fixture()
def writer_process_env(tmp_path, monkeypatch):
    """The writer process imports rec_helpers' hooks and finds its gate directory from the env."""
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(GATE_ENV, str(gate))
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    return gate


def _wait_file(path: Path, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return path.exists()


def test_writer_process_stuck_on_disk_never_blocks_put(tmp_path, writer_process_env):
    gate = writer_process_env
    cfg = RecordingConfig(dir=str(tmp_path / "rec"), chunk_frames=4, queue_frames=8, min_free_mb=0, video=False)
    rec = EpisodeRecorder(cfg, chunk_hook="rec_helpers:hold_first_chunk").start()
    try:
        rec.begin_episode("slow disk, writer process")
        feed_frames(rec, 0, 4)
        assert _wait_file(gate / "entered"), "the writer process never reached the first chunk write"
        produced = threading.Event()

        def producer():
            feed_frames(rec, 4, 104)
            produced.set()

        threading.Thread(target=producer, name="test-producer").start()
        assert produced.wait(WAIT_S), "put() waited for the writer process"
        assert not (gate / "release").exists()
        c = rec.counters
        # the 4 frames of the held chunk left their slots; 8 more fill every slot; the rest is dropped
        assert c["frames_queued"] == 4 + cfg.queue_frames
        assert c["dropped_queue_full"] == 100 - cfg.queue_frames
        (gate / "release").touch()
        rec.end_episode("success")
    finally:
        (gate / "release").touch()
        rec.stop()
    ep = load_episode(list_episodes(tmp_path / "rec")[0])
    assert ep.frames == 4 + cfg.queue_frames == rec.counters["frames_written"]


def test_writer_process_disk_full_is_reported_back(tmp_path, writer_process_env):
    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path / "rec"), chunk_frames=4, min_free_mb=0, video=False),
                          chunk_hook="rec_helpers:disk_full_at_second_chunk").start()
    rec.begin_episode("fills the disk")
    feed_frames(rec, 0, 20)
    rec.end_episode("success")
    rec.stop()
    c = rec.counters
    assert c["write_errors"] == 1 and c["episodes_quarantined"] == 1 and c["frames_lost"] == 4
    assert "No space left on device" in rec.state
    assert list_episodes(tmp_path / "rec") == [] and len(list_quarantined(tmp_path / "rec")) == 1


def test_dead_writer_process_is_reported_and_frames_are_dropped_not_blocked(tmp_path):
    rec = EpisodeRecorder(RecordingConfig(dir=str(tmp_path), chunk_frames=4, min_free_mb=0, video=False)).start()
    try:
        rec.begin_episode("the writer will die")
        deadline = time.monotonic() + WAIT_S
        while not rec.state.startswith("recording") and time.monotonic() < deadline:
            time.sleep(0.01)
        rec._backend._proc.kill()  # e.g. the OOM killer
        rec._backend._proc.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while "exited unexpectedly" not in rec.state and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "exited unexpectedly" in rec.state
        feed_frames(rec, 0, 10)  # returns at once: dropped and counted
        assert rec.counters["dropped_writer_dead"] == 10
    finally:
        rec.stop()
    with EpisodeRecorder(str(tmp_path)) as again:  # the next start quarantines the orphaned episode
        assert again.quarantined_on_start == ["episode_000001"]
