"""The disk side of the recorder: turns (kind, item) messages into episodes on disk.

Runs on exactly one thread, either a thread of the runtime process or the main thread of the
writer process (backends.py). Every failure stops only the current episode: it is quarantined
with the reason, later frames of that episode are counted as dropped, and the next episode tries
again.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path

from runtime.recording.config import RecordingConfig
from runtime.recording.episode_writer import EpisodeWriter, RecordingError
from runtime.recording.layout import LOCK_FILE, episode_name
from runtime.recording.store import next_episode_index, recover_directory

log = logging.getLogger(__name__)

def pin_writer(cpus: list[int] | None, whole_process: bool = False) -> str:
    """Keep the calling thread (and every thread it starts later, e.g. zarr's I/O pool) on `cpus`;
    with `whole_process`, also the threads already running (the writer process's BLAS pool).

    Why: see RecordingConfig.writer_cpu_affinity. Returns what happened, for the status report; a
    refusal (CPUs not in this cgroup, no permission) leaves the writer where it was and says so."""
    if not cpus:
        return "any CPU"
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")] if whole_process else [0]
        for tid in tids:
            os.sched_setaffinity(tid, set(cpus))
    except (OSError, ValueError) as exc:
        log.warning("recorder writer: CPU affinity %s not applied: %s", cpus, exc)
        return f"not applied: {exc}"
    return f"CPUs {sorted(cpus)}"


WRITER_COUNTERS = ("frames_written", "dropped_bad_frame", "dropped_after_error", "frames_lost",
                   "episodes_finished", "episodes_quarantined", "write_errors")


def lock_directory(root: Path) -> int:
    """Take the recording directory's flock (released by the kernel when the holder dies).

    Returns the fd to keep open; raises RecordingError if another live recorder holds it.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise RecordingError(f"another recorder is writing to {root} (lock {LOCK_FILE} is held)") from exc
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class WriterCore:
    """Episode lifecycle on disk. `handle(kind, item)` never raises: errors stop the episode."""

    def __init__(self, root: Path, cfg: RecordingConfig, chunk_hook: Callable[[int], None] | None = None) -> None:
        self.root, self.cfg, self.chunk_hook = root, cfg, chunk_hook
        self.counters = dict.fromkeys(WRITER_COUNTERS, 0)
        self.state = "idle"
        self.finished: list[str] = []
        self.writer: EpisodeWriter | None = None

    @property
    def episode(self) -> str | None:
        return self.writer.name if self.writer else None

    def recover(self) -> list[str]:
        """Quarantine crash leftovers (call with the directory lock held)."""
        return recover_directory(self.root, self.cfg.fsync)

    def handle(self, kind: str, item) -> None:
        try:
            self._handle(kind, item)
        except Exception as exc:  # OSError (disk), RecordingError, or a bug: stop this episode, loudly
            if kind == "frame" and self.writer is None:
                self.counters["dropped_after_error"] += 1
            self.fail(exc)

    def _handle(self, kind: str, item) -> None:
        if kind == "begin":
            if self.writer is not None:
                self._finish("superseded")
            name = episode_name(next_episode_index(self.root))
            self.writer = EpisodeWriter(self.root, name, self.cfg, item, self.chunk_hook)
            self.state = f"recording {name}"
            log.info("recording: %s started (prompt %r)", name, item.get("prompt"))
        elif self.writer is None:
            if kind == "frame":
                self.counters["dropped_after_error"] += 1
        elif kind == "frame":
            self.counters["frames_written"] += 1  # handed to the episode (buffered or on disk)
            if not self.writer.add_frame(item):
                self.counters["frames_written"] -= 1
                self.counters["dropped_bad_frame"] += 1
        elif kind == "event":
            self.writer.add_event(item)
        elif kind == "end":
            self._finish(item.get("outcome", "completed"))

    def _finish(self, outcome: str) -> None:
        writer, self.writer = self.writer, None
        try:
            if writer.frames + len(writer._buf) == 0:
                writer.abort(f"episode ended ({outcome}) with no recorded frames")
                self.counters["episodes_quarantined"] += 1
                self.state = "idle"
                return
            path = writer.finish(outcome)
        except Exception:
            self.writer = writer  # fail() quarantines it
            raise
        self.finished.append(str(path))
        self.counters["episodes_finished"] += 1
        self.state = "idle"
        log.info("recording: %s finished (%s, %d frames)", writer.name, outcome, writer.frames)

    def fail(self, exc: Exception) -> None:
        self.counters["write_errors"] += 1
        writer, self.writer = self.writer, None
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

    def close(self) -> None:
        """At shutdown: an episode still open (no end message arrived) is quarantined."""
        if self.writer is not None:
            self.fail(RecordingError("recorder stopped before the episode ended"))
