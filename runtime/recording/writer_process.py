"""The recorder's writer process: `python -m runtime.recording.writer_process` (started by
ProcessBackend, never by hand). msgpack messages on stdin, replies on stdout, logs on stderr.

It takes the directory lock (waiting up to LOCK_WAIT_S for a previous writer to exit), quarantines
crash leftovers, then applies messages until "stop". If stdin closes without "stop", the runtime
died: the open episode is left as it is on disk and quarantined by the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import msgpack
import numpy as np


def main() -> int:
    from runtime.recording.backends import Ring, pack, resolve_hook
    from runtime.recording.config import RecordingConfig
    from runtime.recording.episode_writer import FrameRecord, RecordingError
    from runtime.recording.writer_core import WriterCore, lock_directory, pin_writer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the runtime, which stops us cleanly
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s recorder-writer: %(message)s")
    log = logging.getLogger("runtime.recording.writer_process")
    out = sys.stdout.buffer

    def reply(msg) -> None:
        out.write(pack(msg))
        out.flush()

    unpacker = msgpack.Unpacker(raw=False)
    messages = _messages(unpacker)
    hello = next(messages, None)
    if hello is None or hello[0] != "hello":
        return 2
    _, root, cfg_dict, hook_spec, lock_wait_s = hello
    if cfg_dict.get("writer_nice"):
        # Lower our CPU priority: we share no GIL with the runtime, so this cannot invert priorities;
        # it keeps the runtime's threads (which may hold its GIL) from waiting behind our compression.
        try:
            os.nice(int(cfg_dict["writer_nice"]))
        except OSError as exc:
            log.warning("could not renice the recorder writer: %s", exc)
    pin_writer(cfg_dict.get("writer_cpu_affinity"), whole_process=True)  # before zarr starts its I/O threads: they inherit it
    root_path = Path(root)
    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            lock_fd = lock_directory(root_path)
            break
        except RecordingError as exc:
            if time.monotonic() > deadline:
                reply(["error", str(exc)])
                return 1
            time.sleep(0.05)
    try:
        core = WriterCore(root_path, RecordingConfig(**cfg_dict), resolve_hook(hook_spec))
        reply(["ready", core.recover()])
    except Exception as exc:  # bad config or hook: tell the runtime why, do not hang it
        reply(["error", f"{type(exc).__name__}: {exc}"])
        return 1
    ring = None
    events = 0
    stopped = False
    for batch in _batches(unpacker):
        for msg in batch:
            kind = msg[0]
            if kind == "stop":
                stopped = True
                break
            if kind == "ring":
                ring = _attach(ring, msg[1], msg[2], msg[3], Ring)
            elif kind == "frame":
                slot, t, state, action = msg[1:]
                rec = FrameRecord(t, ring.head[slot].copy(), ring.wrist[slot].copy(), ring.mask[slot].copy(),
                                  np.asarray(state, dtype=np.float32), np.asarray(action, dtype=np.float32))
                reply(["free", [slot]])
                core.handle("frame", rec)
            else:
                events += kind == "event"
                core.handle(kind, msg[1])
        reply(["status", core.counters, core.state, core.episode, core.finished, events])
        if stopped:
            break
    if stopped:
        core.close()
        reply(["status", core.counters, core.state, core.episode, core.finished, events])
    else:
        log.error("the runtime went away; leaving %s for quarantine on the next start", core.episode)
    if ring is not None:
        ring.close(unlink=False)
    os.close(lock_fd)
    return 0


def _read() -> bytes:
    return os.read(0, 1 << 16)


def _messages(unpacker):
    """Messages one by one (used for the hello)."""
    while True:
        yield from unpacker
        data = _read()
        if not data:
            return
        unpacker.feed(data)


def _batches(unpacker):
    """Lists of messages, one per read from stdin; ends at EOF."""
    pending = list(unpacker)
    if pending:
        yield pending
    while True:
        data = _read()
        if not data:
            return
        unpacker.feed(data)
        batch = list(unpacker)
        if batch:
            yield batch


def _attach(old, name: str, shapes, slots: int, ring_cls):
    from multiprocessing import resource_tracker, shared_memory

    if old is not None:
        old.close(unlink=False)
    shm = shared_memory.SharedMemory(name=name)
    try:  # the runtime process owns (and unlinks) the block; our tracker must not claim it
        resource_tracker.unregister(shm._name, "shared_memory")
    except (AttributeError, KeyError, ValueError):
        pass
    return ring_cls(shm, shapes, slots)


if __name__ == "__main__":
    sys.exit(main())
