"""EpisodeRecorder: a runtime observer that records every episode in DexGraspVLA's training layout.

Producer side (the runtime's observer callbacks, any thread): pairs each camera frame with the
state measured before it and the command sent right after it, then hands the finished record to
the writer backend. Handing over never blocks: when `queue_frames` frames are waiting, the new
frame is dropped and counted. Consumer side (backends.py): a writer process (default) or thread
named "recorder-writer" does all disk work (zarr chunks, video, journal, manifest). A disk error or
a nearly full disk stops the current episode (quarantined, with the reason) and the recorder keeps
counting instead of crashing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.clock import Clock
from runtime.joint_space import unscale_arm
from runtime.recording.backends import ProcessBackend, ThreadBackend
from runtime.recording.config import RecordingConfig
from runtime.recording.episode_writer import FrameRecord
from runtime.recording.writer_core import WRITER_COUNTERS
from runtime.telemetry.joint import joint_sample

log = logging.getLogger(__name__)

# Event names (event_dict["event"], or ["type"]) that open / close a recorded episode. The app emits
# "command start" when an operator or autostart starts one, and the episode runner "ended <outcome>"
# and "episode ended" when it finishes; a protective stop ("command stop") ends it too.
START_EVENTS = frozenset({"episode_start", "episode_started", "start", "command start"})
END_EVENTS = frozenset({"episode_end", "episode_ended", "episode ended", "end", "complete", "completed", "done",
                        "aborted", "failed", "stopped", "protective_stop", "command stop"})


def _event_kind(event: dict) -> str:
    kind = str(event.get("event") or event.get("type") or "").strip().lower()
    return "episode_end" if kind.startswith("ended ") else kind
WRITER_JOIN_TIMEOUT_S = 10.0


class EpisodeRecorder:
    """Record episodes under cfg.dir. `start()` starts the writer (process or thread, cfg.writer),
    which takes the directory lock and quarantines episodes cut by an earlier crash; it blocks
    until that is done (about a second for the process). `stop()` finishes the open episode,
    drains and joins the writer (timeout WRITER_JOIN_TIMEOUT_S, warns if still alive).

    Observer methods (on_joint_state, on_command, on_frames, on_episode_event) never block on disk
    and never raise on bad input (bad samples are counted). `chunk_hook(chunk_index)` runs in the
    writer before each chunk write: a seam for tests and benchmarks to inject a slow or failing
    disk (it must be picklable for the process writer: a module-level function or a partial).
    """

    def __init__(self, cfg: RecordingConfig | str | os.PathLike, clock: Clock | None = None,
                 chunk_hook: Callable[[int], None] | None = None, provenance: dict | None = None) -> None:
        # provenance (model, config, commit, machine: recording/provenance.py) goes into every episode.json
        self.provenance = provenance
        if not isinstance(cfg, RecordingConfig):
            cfg = RecordingConfig(dir=str(cfg))
        cfg.validate()
        self.cfg = cfg
        self.root = Path(cfg.dir)
        self.clock = clock or Clock()
        backend_cls = ProcessBackend if cfg.writer == "process" else ThreadBackend
        self._backend = backend_cls(self.root, cfg, chunk_hook)
        self._pair_lock = threading.Lock()
        self._pending: deque[tuple] = deque()
        self._latest_state: np.ndarray | None = None
        self._recording = False
        self._started = False
        self.quarantined_on_start: list[str] = []
        self._producer = {
            "frames_offered": 0, "frames_queued": 0, "dropped_queue_full": 0, "dropped_no_state": 0,
            "dropped_no_wrist": 0, "dropped_no_action": 0, "dropped_not_recording": 0,
            "dropped_bad_frame": 0, "dropped_events": 0, "dropped_writer_dead": 0, "bad_joint_samples": 0,
        }
        lim = cfg.arm_joint_limits
        self._arm_lo = None if lim is None else np.asarray(lim["lower"], dtype=np.float64)
        self._arm_hi = None if lim is None else np.asarray(lim["upper"], dtype=np.float64)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EpisodeRecorder:
        """Start the writer; it locks the directory and quarantines crash leftovers (no checksums)."""
        self.quarantined_on_start = self._backend.start()
        self._started = True
        return self

    def stop(self, timeout_s: float = WRITER_JOIN_TIMEOUT_S) -> None:
        """Finish the open episode (outcome 'recorder_stopped'), drain, join the writer."""
        if not self._started:
            return
        if self._recording:
            self.end_episode("recorder_stopped")
        self._backend.stop(timeout_s)
        self._started = False

    def __enter__(self) -> EpisodeRecorder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ state
    @property
    def counters(self) -> dict:
        """Producer counters (this process) merged with the writer's (frames_written, episodes_*...)."""
        writer, _, _, _ = self._backend.writer_status()
        out = {**dict.fromkeys(WRITER_COUNTERS, 0), **self._producer}
        for key, value in writer.items():
            out[key] = out.get(key, 0) + value
        return out

    @property
    def state(self) -> str:
        return self._backend.writer_status()[1]

    @property
    def finished(self) -> list[Path]:
        return [Path(p) for p in self._backend.writer_status()[3]]

    def queue_depth(self) -> int:
        """Frames handed to the writer and not yet taken by it."""
        return self._backend.depth()

    def idle(self) -> bool:
        """True when nothing is queued and no episode is open in the writer."""
        return not self._backend.busy() and not self._recording and not self.state.startswith("recording")

    def status(self) -> dict:
        """A snapshot for the runtime's status report (cheap; any thread)."""
        _, state, episode, _ = self._backend.writer_status()
        return {"state": state, "dir": str(self.root), "episode": episode, "writer": self.cfg.writer,
                "writer_cpu_affinity": self.cfg.writer_cpu_affinity,
                "queue_frames": self.queue_depth(), **self.counters}

    # ------------------------------------------------------------------ episode control
    def begin_episode(self, prompt: str | None = None, **info) -> None:
        """Start a new episode (ends an open one first, outcome 'superseded'). Never blocks."""
        if self._recording:
            self.end_episode("superseded")
        with self._pair_lock:
            self._pending.clear()
            self._recording = True
        units = {"arm_joint_limits": self.cfg.arm_joint_limits,
                 "arm": "[-1, 1] between arm_joint_limits" if self.cfg.arm_joint_limits else "as handed over"}
        extra = {"provenance": self.provenance} if self.provenance is not None else {}
        self._put("begin", {"prompt": prompt, "started_wall": time.time(), "t_start": self.clock.now(),
                            "joint_units": units, **extra, **info})

    def end_episode(self, outcome: str = "completed", **info) -> None:
        """End the open episode; the writer finishes it (manifest last). Never blocks."""
        with self._pair_lock:
            if not self._recording:
                return
            self._recording = False
            self._producer["dropped_no_action"] += len(self._pending)
            self._pending.clear()
        self._put("end", {"outcome": outcome, **info})

    def note(self, event: dict) -> None:
        """Append an event (planner prompt/reply, phase change) to the open episode's events.jsonl.

        `t` is the recorder's monotonic clock, the same clock as data/timestamp, so events line up with
        frames; an event's own `t` (relative to whichever process made it) is kept as `t_source`."""
        if self._recording:
            body = {k: v for k, v in event.items() if k != "t"}
            if "t" in event:
                body["t_source"] = event["t"]
            self._put("event", {"t": self.clock.now(), "t_wall": time.time(), **body})

    # ------------------------------------------------------------------ observer interface
    def on_episode_event(self, event: dict) -> None:
        kind = _event_kind(event)
        if kind in START_EVENTS:
            command = event.get("command") if isinstance(event.get("command"), dict) else {}
            prompt = event.get("prompt") or command.get("prompt")
            self.begin_episode(prompt, **{k: v for k, v in event.items() if k not in ("event", "type", "prompt")})
            self.note(dict(event))
        elif kind in END_EVENTS:
            self.note(dict(event))
            self.end_episode(str(event.get("outcome") or event.get("event") or kind))
        else:
            self.note(dict(event))

    def on_joint_state(self, state) -> None:
        value = self._joint_vector(state, "state")
        if value is not None:
            with self._pair_lock:
                self._latest_state = value

    def on_frames(self, head, wrist, mask, t: float) -> None:
        """A camera step (head BGR HxWx3, wrist BGR, mask HxW {0,1} or None) captured at t.
        The thread writer keeps the arrays by reference (the caller must not modify them); the
        process writer copies them into shared memory when the command for them arrives."""
        self._producer["frames_offered"] += 1
        with self._pair_lock:
            if not self._recording:
                self._producer["dropped_not_recording"] += 1
                return
            if self._latest_state is None:
                self._producer["dropped_no_state"] += 1
                return
            if wrist is None:  # right_cam_img is part of every training sample
                self._producer["dropped_no_wrist"] += 1
                return
            if mask is None:
                mask = np.zeros(np.shape(head)[:2], dtype=np.uint8)
            self._pending.append((float(t), head, wrist, mask, self._latest_state))
            while len(self._pending) > self.cfg.max_pending_frames:
                self._pending.popleft()
                self._producer["dropped_no_action"] += 1

    def on_command(self, sent_positions, t: float | None = None) -> None:
        """The command actually sent at t: it becomes the action of every frame captured before t."""
        action = self._joint_vector(sent_positions, "action")
        if action is None:
            return
        t = self.clock.now() if t is None else float(t)
        ready = []
        with self._pair_lock:
            while self._pending and self._pending[0][0] <= t:
                ready.append(self._pending.popleft())
        for t_f, head, wrist, mask, state in ready:
            rec = FrameRecord(t_f, np.asarray(head), np.asarray(wrist), np.asarray(mask, dtype=np.uint8), state, action)
            self._put("frame", rec)

    def on_status(self, status: dict) -> None:  # the recorder keeps no status of others
        return None

    def _joint_vector(self, obj, what: str) -> np.ndarray | None:
        try:
            pos = joint_sample(obj).position
        except (ValueError, TypeError) as exc:
            self._producer["bad_joint_samples"] += 1
            log.debug("recorder: bad %s sample: %s", what, exc)
            return None
        if pos.size != self.cfg.state_dim or not np.all(np.isfinite(pos)):
            self._producer["bad_joint_samples"] += 1
            return None
        if self._arm_lo is not None:
            pos = pos.copy()
            n_arm = self._arm_lo.size  # the arm joints of the config's joint space (upstream: 7)
            pos[:n_arm] = unscale_arm(pos[:n_arm], self._arm_lo, self._arm_hi)
        return pos.astype(np.float32)

    def _put(self, kind: str, item) -> bool:
        """Hand to the writer; never waits for it. False = dropped (counted by reason)."""
        if not self._started:
            if kind == "frame":
                self._producer["dropped_not_recording"] += 1
            return False
        reason = self._backend.put(kind, item)
        if reason is None:
            if kind == "frame":
                self._producer["frames_queued"] += 1
            return True
        self._producer[f"dropped_{reason}"] += 1
        return False
