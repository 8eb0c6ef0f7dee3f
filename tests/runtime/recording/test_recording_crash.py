"""kill -9 a recorder process: finished episodes stay verified, the cut one is quarantined on the
next start (never loaded), and its journal salvages all but the chunk being filled."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr", reason="the record extra (zarr) is not installed")

from rec_helpers import expected  # noqa: E402

from runtime.recording import (  # noqa: E402
    EpisodeRecorder,
    RecordingError,
    list_episodes,
    list_quarantined,
    load_episode,
    salvage_episode,
)

HERE = Path(__file__).parent
CHUNK = 4


def spawn(*args):
    return subprocess.Popen([sys.executable, str(HERE / "crash_recorder_proc.py"), *map(str, args)],
                            stdout=subprocess.PIPE, text=True)


def kill9(proc):
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return out


def marker_of(events):
    return int(events[0]["prompt"].split("=")[1])


def check_data(data, n, marker):
    want = expected(n, marker)
    for key in ("rgbm", "right_cam_img", "right_state", "action"):
        np.testing.assert_array_equal(data[key], want[key], err_msg=key)


def test_kill_mid_episode_quarantines_it_and_keeps_earlier_ones(tmp_path):
    proc = spawn("deterministic", tmp_path)
    try:
        assert proc.stdout.readline().strip() == "QUARANTINED"
        assert proc.stdout.readline().strip() == "READY 14"
    finally:
        kill9(proc)
    # before any recovery, the cut episode is visible as unfinished: the loader refuses it
    with pytest.raises(RecordingError, match="no MANIFEST.json"):
        load_episode(tmp_path / "episode_000002")

    rec = EpisodeRecorder(str(tmp_path)).start()  # the flock died with the process
    try:
        assert rec.quarantined_on_start == ["episode_000002"]
    finally:
        rec.stop()
    assert [p.name for p in list_episodes(tmp_path)] == ["episode_000001"]
    first = load_episode(tmp_path / "episode_000001")  # verifies every checksum
    assert first.frames == 10 and first.info["outcome"] == "success"
    check_data(first.data, 10, 1)

    cut = list_quarantined(tmp_path)[0]
    note = json.loads((cut / "QUARANTINE.json").read_text())
    assert "no manifest" in note["reason"] and note["journaled_frames"] == 12
    with pytest.raises(RecordingError, match="quarantined"):
        load_episode(cut)
    salvaged = salvage_episode(cut)
    assert salvaged.salvaged and salvaged.frames == 12  # 14 fed: only the 2 frames of the open chunk lost
    check_data(salvaged.data, 12, 2)
    # indices are never reused: the next episode after a crash is episode_000003
    with EpisodeRecorder(str(tmp_path)) as rec:
        rec.begin_episode("after the crash")
        rec.on_joint_state(np.zeros(13))
        rec.on_frames(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), None, 0.0)
        rec.on_command(np.zeros(13), 0.1)
    assert [p.name for p in list_episodes(tmp_path)] == ["episode_000001", "episode_000003"]


def check_kept_subset(data, n_offered, marker):
    want = expected(n_offered, marker)
    rows = [int(np.flatnonzero((want["rgbm"] == img).all(axis=(1, 2, 3)))[0]) for img in data["rgbm"]]
    assert rows == sorted(set(rows)), rows  # in order, no duplicates
    for key in ("rgbm", "right_cam_img", "right_state", "action"):
        np.testing.assert_array_equal(data[key], want[key][rows], err_msg=key)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_at_random_points_never_leaves_a_loadable_partial_episode(tmp_path, seed):
    rnd = random.Random(seed)
    fed: dict[int, int] = {}  # frames the recorder accepted, per episode marker
    offered: dict[int, int] = {}  # frames fed to it (some may be dropped by design, and counted)
    for round_ in range(2):
        proc = spawn("random", tmp_path, seed * 2 + round_)
        try:
            proc.stdout.readline()  # QUARANTINED ...
            first = proc.stdout.readline()
            assert first.startswith("FED"), first
            time.sleep(rnd.uniform(0.05, 0.6))
        finally:
            out = first + kill9(proc)
        for line in out.splitlines():
            if line.startswith("FED"):
                _, marker, n, dropped = line.split()
                fed[int(marker)] = int(n) - int(dropped)
                offered[int(marker)] = int(n)
        with EpisodeRecorder(str(tmp_path)) as rec:
            assert len(rec.quarantined_on_start) <= 1  # only the episode open at the kill
    for path in list_episodes(tmp_path):
        ep = load_episode(path)  # every finished episode verifies, data intact
        marker = marker_of(ep.events)
        assert ep.frames == fed[marker]
        if fed[marker] == offered[marker]:
            check_data(ep.data, ep.frames, marker)
        else:  # frames dropped under load: what was kept is an in-order subset of what was fed, intact
            check_kept_subset(ep.data, offered[marker], marker)
    for path in list_quarantined(tmp_path):
        try:
            ep = salvage_episode(path)
        except RecordingError as exc:
            assert "nothing to salvage" in str(exc)  # cut before its first chunk was committed
            continue
        marker = marker_of(ep.events)
        # whole chunks only, unless the kill hit while finishing (final partial chunk journaled, manifest not)
        assert ep.frames <= fed[marker] and (ep.frames % CHUNK == 0 or ep.frames == fed[marker])
        assert fed[marker] - ep.frames < CHUNK + 64 + 8  # open chunk + queue_frames + max_pending_frames
        check_data(ep.data, ep.frames, marker)
