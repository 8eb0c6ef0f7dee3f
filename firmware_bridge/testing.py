"""Fault injection for the serial link: a pty-in-the-middle proxy and a raw protocol client.

`PtyProxy` sits between a host and the emulator: the host opens `proxy.port`, the proxy forwards
bytes both ways through fault functions (corrupt bytes, drop everything, inject garbage) and records
which host->device frames it damaged, so a test can prove nothing damaged was ever applied.
`RawClient` speaks the protocol by hand (wrong seqs, raw bytes, silence) where BridgeHost would not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import select
import threading
import tty
from pathlib import Path

import numpy as np

from firmware_bridge import protocol as P
from firmware_bridge.framer import FrameError, Framer

log = logging.getLogger(__name__)


class PtyProxy:
    """Forward bytes between a new pty (for the host) and `device_port`, injecting faults."""

    def __init__(self, device_port: str, corrupt_h2d: float = 0.0, corrupt_d2h: float = 0.0, seed: int = 1) -> None:
        self.device_port = device_port
        self.corrupt_h2d = corrupt_h2d
        self.corrupt_d2h = corrupt_d2h
        self.rng = random.Random(seed)
        self.drop_all = threading.Event()  # set: the link goes silent both ways
        self.corrupted_seqs: set[int] = set()  # host->device TARGETS/TRAJECTORY seqs that were damaged
        self.clean_frames = 0
        self.damaged_frames = 0
        self.bytes_corrupted = 0
        self.undecodable_originals = 0
        self._inject: queue.Queue[bytes] = queue.Queue()
        self._inject_host: queue.Queue[bytes] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._orig = bytearray()
        self._damaged = False

    def start(self) -> PtyProxy:
        self._dev = os.open(self.device_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._dev)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="pty-proxy", daemon=True)
        self._thread.start()
        return self

    def inject_to_device(self, data: bytes) -> None:
        """Queue raw bytes to be written toward the device (between forwarded chunks)."""
        self._inject.put(bytes(data))
        os.write(self._wake_w, b"x")

    def inject_to_host(self, data: bytes) -> None:
        """Queue raw bytes to be written toward the host (a forged device frame)."""
        self._inject_host.put(bytes(data))
        os.write(self._wake_w, b"x")

    def _corrupt(self, data: bytes, p: float) -> tuple[bytes, list[bool]]:
        out = bytearray(data)
        hit = [False] * len(out)
        if p > 0:
            for i in range(len(out)):
                if self.rng.random() < p:
                    out[i] = (out[i] + self.rng.randrange(1, 256)) & 0xFF
                    hit[i] = True
                    self.bytes_corrupted += 1
        return bytes(out), hit

    def _track_h2d(self, data: bytes, hit: list[bool]) -> None:
        """Follow the ORIGINAL host stream frame by frame and remember the seqs of damaged frames."""
        for b, h in zip(data, hit, strict=True):
            self._damaged = self._damaged or h
            if b != 0:
                self._orig.append(b)
                continue
            if self._orig:
                try:
                    msg = P.decode(bytes(self._orig))
                    if self._damaged:
                        self.corrupted_seqs.add(msg.seq)
                except P.DecodeError:
                    self.undecodable_originals += 1  # the host itself sent a bad frame: tests check this is 0
                if self._damaged:
                    self.damaged_frames += 1
                else:
                    self.clean_frames += 1
            self._orig.clear()
            self._damaged = False

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                select.select([], [fd], [], 0.01)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([self._master, self._dev, self._wake_r], [], [], 0.05)
                if self._wake_r in r:
                    os.read(self._wake_r, 4096)
                while not self._inject.empty():
                    self._write_all(self._dev, self._inject.get_nowait())
                while not self._inject_host.empty():
                    self._write_all(self._master, self._inject_host.get_nowait())
                if self._master in r:
                    try:
                        data = os.read(self._master, 65536)
                    except (BlockingIOError, OSError):
                        data = b""
                    if data and not self.drop_all.is_set():
                        bad, hit = self._corrupt(data, self.corrupt_h2d)
                        self._track_h2d(data, hit)
                        self._write_all(self._dev, bad)
                if self._dev in r:
                    try:
                        data = os.read(self._dev, 65536)
                    except BlockingIOError:
                        data = b""
                    if data and not self.drop_all.is_set():
                        bad, _ = self._corrupt(data, self.corrupt_d2h)
                        self._write_all(self._master, bad)
        except OSError as exc:
            if not self._stop.is_set():
                log.warning("pty proxy stopped: %s", exc)

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("pty proxy thread still alive after %.1f s", timeout_s)
        for fd in (self._dev, self._master, self._slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):  # already closed (device side gone): nothing to release
                os.close(fd)

    def __enter__(self) -> PtyProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class RawClient:
    """A minimal protocol speaker over pyserial for tests: send exactly the frames you choose."""

    def __init__(self, port: str) -> None:
        import serial

        self.ser = serial.Serial(port, timeout=0.02, exclusive=True)
        self.framer = Framer()
        self.received: list[P.Message | FrameError] = []
        self.session = 0
        self.seq = 0

    def send(self, msg: P.Message) -> None:
        self.ser.write(P.encode(msg))

    def send_raw(self, data: bytes) -> None:
        self.ser.write(data)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def poll(self, timeout_s: float = 0.02) -> list[P.Message | FrameError]:
        """Read what arrived within `timeout_s` (returns early once something arrived)."""
        self.ser.timeout = timeout_s
        data = self.ser.read(self.ser.in_waiting or 1)
        if self.ser.in_waiting:
            data += self.ser.read(self.ser.in_waiting)
        events = self.framer.feed(data) if data else []
        self.received.extend(events)
        return events

    def wait_for(self, pred, timeout_s: float = 1.0) -> P.Message:
        """Poll until a message satisfies `pred`; raises TimeoutError naming what was seen."""
        import time

        deadline = time.monotonic() + timeout_s
        seen = []
        while time.monotonic() < deadline:
            for ev in self.poll(0.02):
                if isinstance(ev, P.Message) and pred(ev):
                    return ev
                seen.append(ev.type.name if isinstance(ev, P.Message) else ev.code.name)
        raise TimeoutError(f"no matching frame within {timeout_s} s; saw {seen[-20:]}")

    def handshake(self, schema_hash: int, version: int = P.PROTOCOL_VERSION) -> P.HelloAck:
        nonce = random.getrandbits(32)
        self.send(P.Message(P.MsgType.HELLO, self.next_seq(), 0, P.Hello(version, P.NUM_JOINTS, schema_hash, nonce)))
        ack = self.wait_for(lambda m: m.type is P.MsgType.HELLO_ACK and m.body.host_nonce == nonce)
        self.session = ack.session_id
        return ack.body

    def request(self, mtype: P.MsgType) -> P.Message:
        seq = self.next_seq()
        self.send(P.Message(mtype, seq, self.session, P.Empty()))
        return self.wait_for(lambda m: (m.type is P.MsgType.ACK and m.body.acked_seq == seq)
                             or (m.type is P.MsgType.FAULT and m.body.rejected_seq == seq))

    def state(self, timeout_s: float = 1.0) -> P.StateBody:
        return self.wait_for(lambda m: m.type is P.MsgType.STATE, timeout_s).body

    def close(self) -> None:
        self.ser.close()


def read_applied(path: str | Path) -> list[tuple[int, int, np.ndarray]]:
    """Parse the emulator's `--log-applied` file: `seq,mcu_time_us,v1..v13` per applied target."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text().splitlines():
        parts = line.split(",")
        rows.append((int(parts[0]), int(parts[1]), np.array([float(x) for x in parts[2:]], dtype=np.float64)))
    return rows
