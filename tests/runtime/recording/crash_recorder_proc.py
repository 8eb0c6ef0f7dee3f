"""A recorder process for the kill -9 tests. Never exits on its own: the parent kills it.

deterministic DIR: record episode 1 (marker 1, 10 frames) to completion, then 14 frames of episode 2
    (marker 2) with chunk_frames=4; once the writer has taken everything (3 chunks journaled, 2 frames
    in the open chunk) print "READY 14" and wait.
random DIR ROUND: record episodes of random length back to back (markers ROUND*20 + k), printing
    "FED marker i dropped" after each frame, until killed.
"""

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from rec_helpers import feed_frames  # noqa: E402

from runtime.recording import EpisodeRecorder, RecordingConfig  # noqa: E402

CHUNK = 4


def wait(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            print("TIMEOUT", flush=True)
            sys.exit(3)
        time.sleep(0.005)


def _dropped(rec) -> int:
    return sum(v for k, v in rec.counters.items() if k.startswith("dropped_"))


def main() -> None:
    mode, root = sys.argv[1], sys.argv[2]
    rec = EpisodeRecorder(RecordingConfig(dir=root, chunk_frames=CHUNK, min_free_mb=0, queue_frames=64)).start()
    print("QUARANTINED " + " ".join(rec.quarantined_on_start), flush=True)
    if mode == "deterministic":
        rec.on_episode_event({"event": "episode_start", "prompt": "marker=1"})
        feed_frames(rec, 0, 10, episode=1)
        rec.on_episode_event({"event": "episode_end", "outcome": "success"})
        wait(lambda: rec.counters["episodes_finished"] == 1)
        rec.on_episode_event({"event": "episode_start", "prompt": "marker=2"})
        feed_frames(rec, 0, 14, episode=2)
        wait(lambda: rec.counters["frames_written"] == 24 and rec.queue_depth() == 0)
        print("READY 14", flush=True)
    else:
        rnd = random.Random(int(sys.argv[3]))
        for k in range(20):
            marker = int(sys.argv[3]) * 20 + k  # < 256: it is also a pixel value
            rec.on_episode_event({"event": "episode_start", "prompt": f"marker={marker}"})
            dropped_before = _dropped(rec)
            for i in range(rnd.randint(3, 20)):
                feed_frames(rec, i, i + 1, episode=marker)
                # FED marker n dropped: frames offered so far and how many the recorder dropped
                # (a full queue on a loaded machine drops by design; the test accounts for them)
                print(f"FED {marker} {i + 1} {_dropped(rec) - dropped_before}", flush=True)
                time.sleep(0.002)  # a camera-paced producer
            rec.on_episode_event({"event": "episode_end", "outcome": "success"})
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
