"""Where the recorder's disk work runs: a thread of the runtime process, or a separate process.

Why a process by default: the writer compresses, hashes, encodes video and runs zarr's Python
machinery, which means CPU bursts and GIL hold times. Measured on this 2-core machine
(benchmarks/recording.py) with a SCHED_FIFO 200 Hz loop, a writer *thread* raised the loop's p99
lateness from ~25 us to several ms. A writer *process* shares no GIL with the control loop and can
be niced without priority inversion. The runtime only copies each frame into a shared-memory slot
(a memcpy) and sends a small message.

Both backends have the same contract: `put()` never blocks, `start()` takes the directory lock and
quarantines crash leftovers, and `stop(timeout_s)` drains and joins.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import msgpack
import numpy as np

from runtime.recording.config import RecordingConfig
from runtime.recording.episode_writer import FrameRecord, RecordingError
from runtime.recording.writer_core import WriterCore, lock_directory, pin_writer

log = logging.getLogger(__name__)

MAX_CONTROL_ITEMS = 256  # episode events queued beyond the frame bound
LOCK_WAIT_S = 3.0  # a crashed runtime's writer process may take a moment to notice and exit

ChunkHook = Callable[[int], None] | str | None


def resolve_hook(hook: ChunkHook) -> Callable[[int], None] | None:
    """A chunk hook from a callable or an importable "module:function" spec."""
    if hook is None or callable(hook):
        return hook
    module, _, name = str(hook).partition(":")
    if not module or not name:
        raise ValueError(f"chunk_hook spec must be 'module:function', got {hook!r}")
    return getattr(importlib.import_module(module), name)


class ThreadBackend:
    """Writer on a named thread ("recorder-writer") of this process, fed by a bounded deque."""

    def __init__(self, root: Path, cfg: RecordingConfig, chunk_hook: ChunkHook = None) -> None:
        self.root, self.cfg = root, cfg
        self.core = WriterCore(root, cfg, resolve_hook(chunk_hook))
        self._cv = threading.Condition()
        self._items: deque = deque()
        self._frames = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None

    def start(self) -> list[str]:
        self._lock_fd = lock_directory(self.root)
        quarantined = self.core.recover()
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()
        return quarantined

    def put(self, kind: str, item) -> str | None:
        with self._cv:
            if kind == "frame":
                if self._frames >= self.cfg.queue_frames:
                    return "queue_full"
                self._frames += 1
            elif kind == "event" and len(self._items) - self._frames >= MAX_CONTROL_ITEMS:
                return "events"
            self._items.append((kind, item))
            self._cv.notify()
        return None

    def depth(self) -> int:
        with self._cv:
            return self._frames

    def writer_status(self) -> tuple[dict, str, str | None, list[str]]:
        c = self.core
        return dict(c.counters), c.state, c.episode, list(c.finished)

    def busy(self) -> bool:
        with self._cv:
            return bool(self._items)

    def _run(self) -> None:
        pin_writer(self.cfg.writer_cpu_affinity)
        while True:
            with self._cv:
                while not self._items and not self._stop.is_set():
                    self._cv.wait(0.5)
                if not self._items:
                    break
                kind, item = self._items.popleft()
                if kind == "frame":
                    self._frames -= 1
            self.core.handle(kind, item)
        self.core.close()

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("recorder-writer thread still alive after %.1f s (slow disk?); %d items unwritten",
                            timeout_s, len(self._items))
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class Ring:
    """Frame slots in one shared-memory block: head (H, W, 3), mask (H, W), wrist (h, w, 3) per slot."""

    def __init__(self, shm, shapes, slots: int) -> None:
        (hh, hw), (wh, ww) = shapes
        self.shm, self.shapes, self.slots = shm, (tuple(shapes[0]), tuple(shapes[1])), slots
        sizes = [hh * hw * 3, hh * hw, wh * ww * 3]
        buf = np.ndarray((slots, sum(sizes)), dtype=np.uint8, buffer=shm.buf)
        a, b = sizes[0], sizes[0] + sizes[1]
        self.head = buf[:, :a].reshape(slots, hh, hw, 3)
        self.mask = buf[:, a:b].reshape(slots, hh, hw)
        self.wrist = buf[:, b:].reshape(slots, wh, ww, 3)

    @staticmethod
    def nbytes(shapes, slots: int) -> int:
        (hh, hw), (wh, ww) = shapes
        return slots * (hh * hw * 4 + wh * ww * 3)

    def close(self, unlink: bool) -> None:
        self.head = self.mask = self.wrist = None
        self.shm.close()
        if unlink:
            self.shm.unlink()


def pack(msg) -> bytes:
    """msgpack (never pickle) for the pipe to the writer process; numpy values become lists."""
    return msgpack.packb(msg, default=_to_plain, use_bin_type=True)


def _to_plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


class ProcessBackend:
    """Writer in a separate process: `python -m runtime.recording.writer_process`.

    Frames travel through `queue_frames` shared-memory slots (the bound: no free slot = dropped),
    messages as msgpack over the child's stdin/stdout. Two named threads of this process move the
    bytes: "recorder-sender" (writes to the pipe, so put() never waits on it) and "recorder-replies"
    (freed slots, status). The child owns the directory lock and exits on "stop" or when its stdin
    closes (this process died: its open episode is quarantined on the next start).
    `start()` blocks until the child has locked and recovered the directory (about a second).
    `chunk_hook` must be a "module:function" spec importable in the child.
    """

    def __init__(self, root: Path, cfg: RecordingConfig, chunk_hook: ChunkHook = None,
                 start_timeout_s: float = 60.0) -> None:
        if chunk_hook is not None and not isinstance(chunk_hook, str):
            raise ValueError("the process writer needs chunk_hook as a 'module:function' string (it runs in "
                             "another process); use writer='thread' for an in-process callable")
        self.root, self.cfg, self.chunk_hook = root, cfg, chunk_hook
        self.start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._send_cv = threading.Condition()
        self._outbox: deque[bytes] = deque()
        self._ring: Ring | None = None
        self._free: deque[int] = deque()
        self._inflight = 0
        self._events_sent = 0
        self._events_done = 0
        self._status: tuple = ({}, "starting", None, [])
        self._ready = threading.Event()
        self._start_reply: list | None = None
        self._dead = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> list[str]:
        self._proc = subprocess.Popen([sys.executable, "-m", "runtime.recording.writer_process"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        if self.cfg.writer_cpu_affinity:
            # Pinned from here, while the child's interpreter is still starting: its imports (zarr,
            # OpenCV: many file reads and mmaps) already keep off the control loop's CPU. The child
            # pins every thread again on "hello" in case this raced with its first threads.
            try:
                os.sched_setaffinity(self._proc.pid, set(self.cfg.writer_cpu_affinity))
            except OSError as exc:
                log.warning("recorder writer: CPU affinity %s not applied at start: %s", self.cfg.writer_cpu_affinity, exc)
        for target, name in ((self._send_loop, "recorder-sender"), (self._reply_loop, "recorder-replies")):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        self._send(["hello", str(self.root), asdict(self.cfg), self.chunk_hook, LOCK_WAIT_S])
        if not self._ready.wait(self.start_timeout_s) or self._start_reply is None:
            self._kill()
            raise RecordingError(f"the recorder writer process did not come up within {self.start_timeout_s:.0f} s")
        if self._start_reply[0] != "ready":
            self._kill()
            raise RecordingError(str(self._start_reply[1]))
        self._status = ({}, "idle", None, [])
        return list(self._start_reply[1])

    def stop(self, timeout_s: float) -> None:
        if self._proc is None:
            return
        self._stopping = True
        self._send(["stop"])
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("recorder writer process still alive after %.1f s (slow disk?); terminating it, its "
                        "open episode will be quarantined on the next start", timeout_s)
            self._kill()
        self._dead.set()
        with self._send_cv:
            self._send_cv.notify_all()
        for th in self._threads:
            th.join(2.0)
            if th.is_alive():
                log.warning("recorder thread %s still alive after 2 s", th.name)
        with self._lock:
            if self._ring is not None:
                self._ring.close(unlink=True)
                self._ring = None
        self._proc = None

    def _kill(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    # ---------------------------------------------------------------- producer side
    def put(self, kind: str, item) -> str | None:
        if self._dead.is_set():
            return "writer_dead"
        with self._lock:
            if kind == "frame":
                return self._put_frame(item)
            if kind == "event":
                if self._events_sent - self._events_done >= MAX_CONTROL_ITEMS:
                    return "events"
                self._events_sent += 1
            self._send([kind, item])
        return None

    def _put_frame(self, rec: FrameRecord) -> str | None:
        head, wrist, mask = rec.head, rec.wrist, rec.mask
        ok = (head.dtype == np.uint8 and head.ndim == 3 and head.shape[2] == 3 and wrist.dtype == np.uint8
              and wrist.ndim == 3 and wrist.shape[2] == 3 and mask.shape == head.shape[:2])
        if not ok:
            return "bad_frame"
        shapes = (tuple(head.shape[:2]), tuple(wrist.shape[:2]))
        if self._ring is None or self._ring.shapes != shapes:
            if self._inflight:
                return "bad_frame"  # resolution changed mid-stream: not part of this episode
            self._new_ring(shapes)
        if not self._free:
            return "queue_full"
        slot = self._free.popleft()
        self._ring.head[slot] = head
        self._ring.mask[slot] = mask
        self._ring.wrist[slot] = wrist
        self._inflight += 1
        self._send(["frame", slot, rec.t, rec.state, rec.action])
        return None

    def _new_ring(self, shapes) -> None:
        from multiprocessing import shared_memory

        if self._ring is not None:
            self._ring.close(unlink=True)
        shm = shared_memory.SharedMemory(create=True, size=Ring.nbytes(shapes, self.cfg.queue_frames))
        self._ring = Ring(shm, shapes, self.cfg.queue_frames)
        self._free = deque(range(self.cfg.queue_frames))
        self._send(["ring", shm.name, [list(shapes[0]), list(shapes[1])], self.cfg.queue_frames])

    def _send(self, msg) -> None:
        data = pack(msg)
        with self._send_cv:
            self._outbox.append(data)
            self._send_cv.notify()

    # ---------------------------------------------------------------- state
    def depth(self) -> int:
        with self._lock:
            return self._inflight

    def busy(self) -> bool:
        with self._lock:
            return self._inflight > 0 or self._status[1].startswith("recording") or bool(self._outbox)

    def writer_status(self) -> tuple[dict, str, str | None, list[str]]:
        with self._lock:
            counters, state, episode, finished = self._status
        proc = self._proc
        if self._dead.is_set() and not self._stopping and proc is not None and proc.poll() is not None:
            state = f"stopped: the writer process exited unexpectedly (code {proc.returncode}); frames are dropped"
        return dict(counters), state, episode, list(finished)

    # ---------------------------------------------------------------- threads
    def _send_loop(self) -> None:
        pipe = self._proc.stdin
        while True:
            with self._send_cv:
                while not self._outbox and not self._dead.is_set():
                    self._send_cv.wait(0.5)
                if not self._outbox:
                    break
                data = self._outbox.popleft()
            try:
                pipe.write(data)  # may block while the child is busy: only this thread waits
            except (BrokenPipeError, OSError, ValueError):
                self._dead.set()
                break
        try:
            pipe.close()
        except OSError:
            pass

    def _reply_loop(self) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        stream = self._proc.stdout
        while True:
            data = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
            if not data:
                break
            unpacker.feed(data)
            for msg in unpacker:
                self._on_reply(msg)
        self._dead.set()
        if not self._ready.is_set():
            self._start_reply = ["error", "the recorder writer process exited during start-up (see its stderr)"]
            self._ready.set()
        with self._send_cv:
            self._send_cv.notify_all()

    def _on_reply(self, msg: list) -> None:
        kind = msg[0]
        if kind in ("ready", "error"):
            self._start_reply = msg
            self._ready.set()
            return
        with self._lock:
            if kind == "free":
                self._free.extend(msg[1])
                self._inflight -= len(msg[1])
            elif kind == "status":
                self._status = tuple(msg[1:5])
                self._events_done = msg[5]
