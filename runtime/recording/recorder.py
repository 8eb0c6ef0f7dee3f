"""EpisodeRecorder: a runtime observer that records every episode in DexGraspVLA's training layout.

Producer side (the runtime's observer callbacks, any thread): pairs each camera frame with the
state measured before it and the command sent right after it, then appends the finished record
to a bounded deque. Appending never blocks: when `queue_frames` frames are waiting, the new frame
is dropped and counted. Consumer side: one named writer thread ("recorder-writer") does all disk
work (zarr chunks, video, journal, manifest). A disk error or a nearly full disk stops the current
episode (quarantined, with the reason) and the recorder keeps counting instead of crashing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.clock import Clock
from runtime.recording.config import RecordingConfig
from runtime.recording.episode_writer import EpisodeWriter, FrameRecord, RecordingError
from runtime.recording.layout import LOCK_FILE, episode_name
from runtime.recording.store import next_episode_index, recover_directory
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
MAX_CONTROL_ITEMS = 256  # episode begin/end/events queued beyond the frame bound
WRITER_JOIN_TIMEOUT_S = 10.0


class EpisodeRecorder:
    """Record episodes under cfg.dir. `start()` takes the directory lock, quarantines episodes cut
    by an earlier crash and starts the writer thread; `stop()` finishes the open episode, drains
    the queue and joins the writer (timeout WRITER_JOIN_TIMEOUT_S, warns if still alive).

    Observer methods (on_joint_state, on_command, on_frames, on_episode_event) never block on disk
    and never raise on bad input (bad samples are counted). `chunk_hook(chunk_index)` runs on the
    writer thread before each chunk write: a seam for tests and benchmarks to inject a slow or
    failing disk.
    """

    def __init__(self, cfg: RecordingConfig | str | os.PathLike, clock: Clock | None = None,
                 chunk_hook: Callable[[int], None] | None = None) -> None:
        if not isinstance(cfg, RecordingConfig):
            cfg = RecordingConfig(dir=str(cfg))
        cfg.validate()
        self.cfg = cfg
        self.root = Path(cfg.dir)
        self.clock = clock or Clock()
        self.chunk_hook = chunk_hook
        self._cv = threading.Condition()
        self._items: deque = deque()
        self._frames_queued = 0
        self._pair_lock = threading.Lock()
        self._pending: deque[tuple] = deque()
        self._latest_state: np.ndarray | None = None
        self._recording = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._writer: EpisodeWriter | None = None
        self.state = "idle"
        self.quarantined_on_start: list[str] = []
        self.finished: list[Path] = []
        self.counters = {
            "frames_offered": 0, "frames_queued": 0, "frames_written": 0, "dropped_queue_full": 0,
            "dropped_no_state": 0, "dropped_no_wrist": 0, "dropped_no_action": 0, "dropped_not_recording": 0, "dropped_bad_frame": 0,
            "dropped_after_error": 0, "frames_lost": 0, "dropped_events": 0, "bad_joint_samples": 0, "episodes_finished": 0,
            "episodes_quarantined": 0, "write_errors": 0,
        }
        lim = cfg.arm_joint_limits
        self._arm_lo = None if lim is None else np.asarray(lim["lower"], dtype=np.float64)
        self._arm_hi = None if lim is None else np.asarray(lim["upper"], dtype=np.float64)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EpisodeRecorder:
        """Lock the directory, quarantine crash leftovers, start the writer thread (fast)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise RecordingError(f"another recorder is writing to {self.root} (lock {LOCK_FILE} is held)") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        self.quarantined_on_start = recover_directory(self.root, self.cfg.fsync)
        self._thread = threading.Thread(target=self._writer_loop, name="recorder-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = WRITER_JOIN_TIMEOUT_S) -> None:
        """Finish the open episode (outcome 'recorder_stopped'), drain, join the writer thread."""
        if self._recording:
            self.end_episode("recorder_stopped")
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("recorder-writer still alive after %.1f s (slow disk?); %d items unwritten",
                            timeout_s, len(self._items))
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> EpisodeRecorder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ episode control
    def begin_episode(self, prompt: str | None = None, **info) -> None:
        """Start a new episode (ends an open one first, outcome 'superseded'). Never blocks."""
        if self._recording:
            self.end_episode("superseded")
        with self._pair_lock:
            self._pending.clear()
            self._recording = True
        self._put("begin", {"prompt": prompt, "started_wall": time.time(), "t_start": self.clock.now(), **info})

    def end_episode(self, outcome: str = "completed", **info) -> None:
        """End the open episode; the writer finishes it (manifest last). Never blocks."""
        with self._pair_lock:
            if not self._recording:
                return
            self._recording = False
            self.counters["dropped_no_action"] += len(self._pending)
            self._pending.clear()
        self._put("end", {"outcome": outcome, **info})

    def note(self, event: dict) -> None:
        """Append an event (planner prompt/reply, phase change) to the open episode's events.jsonl."""
        if self._recording:
            self._put("event", {"t": self.clock.now(), "t_wall": time.time(), **event})

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
        The arrays are kept by reference: the caller must not modify them afterwards."""
        self.counters["frames_offered"] += 1
        with self._pair_lock:
            if not self._recording:
                self.counters["dropped_not_recording"] += 1
                return
            if self._latest_state is None:
                self.counters["dropped_no_state"] += 1
                return
            if wrist is None:  # right_cam_img is part of every training sample
                self.counters["dropped_no_wrist"] += 1
                return
            if mask is None:
                mask = np.zeros(np.shape(head)[:2], dtype=np.uint8)
            self._pending.append((float(t), head, wrist, mask, self._latest_state))
            while len(self._pending) > self.cfg.max_pending_frames:
                self._pending.popleft()
                self.counters["dropped_no_action"] += 1

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
            self.counters["bad_joint_samples"] += 1
            log.debug("recorder: bad %s sample: %s", what, exc)
            return None
        if pos.size != self.cfg.state_dim or not np.all(np.isfinite(pos)):
            self.counters["bad_joint_samples"] += 1
            return None
        if self._arm_lo is not None:
            pos = pos.copy()
            pos[:7] = 2.0 * (pos[:7] - self._arm_lo) / (self._arm_hi - self._arm_lo) - 1.0
        return pos.astype(np.float32)

    # ------------------------------------------------------------------ queue
    def _put(self, kind: str, item) -> bool:
        """Append to the writer queue; never waits for the writer. False = dropped (counted)."""
        with self._cv:
            if kind == "frame":
                if self._frames_queued >= self.cfg.queue_frames:
                    self.counters["dropped_queue_full"] += 1
                    return False
                self._frames_queued += 1
                self.counters["frames_queued"] += 1
            elif len(self._items) - self._frames_queued >= MAX_CONTROL_ITEMS and kind == "event":
                self.counters["dropped_events"] += 1
                return False
            self._items.append((kind, item))
            self._cv.notify()
        return True

    def queue_depth(self) -> int:
        with self._cv:
            return self._frames_queued

    def status(self) -> dict:
        """A snapshot for the runtime's status report (cheap; any thread)."""
        return {"state": self.state, "dir": str(self.root), "episode": self._writer.name if self._writer else None,
                "queue_frames": self.queue_depth(), **self.counters}

    # ------------------------------------------------------------------ writer thread
    def _writer_loop(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._stop.is_set():
                    self._cv.wait(0.5)
                if not self._items:
                    break  # stopped and drained
                kind, item = self._items.popleft()
                if kind == "frame":
                    self._frames_queued -= 1
            try:
                self._handle(kind, item)
            except Exception as exc:  # OSError (disk), RecordingError, or a bug: stop this episode, loudly
                self._fail(exc)
        if self._writer is not None:  # stopped without an end (should not happen: stop() ends it)
            self._fail(RecordingError("recorder stopped before the episode ended"))

    def _handle(self, kind: str, item) -> None:
        if kind == "begin":
            if self._writer is not None:
                self._finish("superseded")
            name = episode_name(next_episode_index(self.root))
            self._writer = EpisodeWriter(self.root, name, self.cfg, item, self.chunk_hook)
            self.state = f"recording {name}"
            log.info("recording: %s started (prompt %r)", name, item.get("prompt"))
        elif self._writer is None:
            if kind == "frame":
                self.counters["dropped_after_error"] += 1
        elif kind == "frame":
            self.counters["frames_written"] += 1  # handed to the episode (buffered or on disk)
            if not self._writer.add_frame(item):
                self.counters["frames_written"] -= 1
                self.counters["dropped_bad_frame"] += 1
        elif kind == "event":
            self._writer.add_event(item)
        elif kind == "end":
            self._finish(item.get("outcome", "completed"))

    def _finish(self, outcome: str) -> None:
        writer, self._writer = self._writer, None
        try:
            if writer.frames + len(writer._buf) == 0:
                writer.abort(f"episode ended ({outcome}) with no recorded frames")
                self.counters["episodes_quarantined"] += 1
                self.state = "idle"
                return
            path = writer.finish(outcome)
        except Exception:
            self._writer = writer
            raise
        self.finished.append(path)
        self.counters["episodes_finished"] += 1
        self.state = "idle"
        log.info("recording: %s finished (%s, %d frames)", writer.name, outcome, writer.frames)

    def _fail(self, exc: Exception) -> None:
        self.counters["write_errors"] += 1
        writer, self._writer = self._writer, None
        reason = f"{type(exc).__name__}: {exc}"
        self.state = f"stopped: {reason}"
        log.error("recording stopped: %s", reason)
        if writer is not None:
            self.counters["frames_lost"] += len(writer._buf)  # buffered, not journaled: not salvageable
            try:
                writer.abort(reason)
                self.counters["episodes_quarantined"] += 1
            except OSError as exc2:  # e.g. the disk is gone: leave it, the next start quarantines it
                log.error("recording: could not quarantine %s: %s", writer.name, exc2)
