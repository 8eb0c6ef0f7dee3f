"""The C and Python codecs agree on a shared random corpus: random valid messages of every type,
the same with random bit flips, truncations, spliced streams and raw garbage. Each line goes
through `dgb_codec_tool` (the C framer + decoder + encoder) and through the Python framer; the
event lists (canonical text and re-encoded bytes for frames, error names for rejections) must be
identical."""

from __future__ import annotations

import random
import subprocess

import numpy as np

from firmware_bridge import protocol as P
from firmware_bridge.framer import FrameError, Framer


def random_message(rng: random.Random) -> P.Message:
    t = rng.choice(list(P.MsgType))
    seq, session = rng.getrandbits(32), rng.getrandbits(32)

    def joints():
        return tuple(float(np.float32(rng.uniform(-7, 7))) for _ in range(P.NUM_JOINTS))

    if t is P.MsgType.HELLO:
        body = P.Hello(rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(32), rng.getrandbits(32))
    elif t is P.MsgType.HELLO_ACK:
        body = P.HelloAck(*(rng.getrandbits(b) for b in (16, 16, 32, 32, 32, 32, 16, 16, 32, 32)))
    elif t is P.MsgType.HEARTBEAT:
        body = P.Heartbeat(rng.getrandbits(64))
    elif t is P.MsgType.TARGETS:
        body = P.Targets(rng.getrandbits(64), rng.getrandbits(32), joints())
    elif t is P.MsgType.TRAJECTORY:
        n = rng.randint(1, P.MAX_TRAJ_POINTS)
        body = P.Trajectory(rng.getrandbits(64), tuple(P.TrajPoint(rng.getrandbits(32), joints()) for _ in range(n)))
    elif t is P.MsgType.STATE:
        body = P.StateBody(rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(32), rng.getrandbits(8),
                           rng.getrandbits(8), rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(16),
                           joints(), joints(), joints())
    elif t is P.MsgType.ACK:
        body = P.Ack(rng.getrandbits(32), rng.getrandbits(8), rng.getrandbits(16))
    elif t is P.MsgType.FAULT:
        body = P.Fault(rng.getrandbits(16), rng.getrandbits(8), rng.getrandbits(32))
    else:
        body = P.Empty()
    return P.Message(t, seq, session, body)


def corpus(seed: int = 7, n: int = 1500) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        wire = bytearray(P.encode(random_message(rng)))
        kind = i % 5
        if kind == 1:  # bit flips
            for _ in range(rng.randint(1, 3)):
                wire[rng.randrange(len(wire))] ^= 1 << rng.randrange(8)
        elif kind == 2:  # truncation + next frame
            wire = wire[: rng.randrange(len(wire))] + b"\x00" + P.encode(random_message(rng))
        elif kind == 3:  # raw garbage with occasional delimiters
            wire = bytearray(rng.randrange(256) if rng.random() > 0.05 else 0 for _ in range(rng.randrange(1, 1200)))
        elif kind == 4:  # header fields changed with the CRC fixed up (reaches the later checks)
            from firmware_bridge import cobs

            payload = bytearray(cobs.decode(bytes(wire[:-1])))
            payload[rng.choice([0, 1, 2, 3])] = rng.randrange(256)
            import struct
            import zlib

            payload[-4:] = struct.pack("<I", zlib.crc32(bytes(payload[:-4])))
            wire = bytearray(cobs.encode(bytes(payload)) + b"\x00")
        lines.append(bytes(wire))
    return lines


def python_events(data: bytes) -> list[str]:
    out = []
    for ev in Framer().feed(data):
        if isinstance(ev, FrameError):
            out.append(f"ERROR {ev.code.name}")
        else:
            out.append(f"FRAME {P.canonical(ev)} {P.encode(ev).hex()}")
    return out


def test_c_and_python_codecs_agree_on_random_corpus(fw_build):
    lines = corpus()
    stdin = "".join(line.hex() + "\n" for line in lines)
    proc = subprocess.run([str(fw_build / "dgb_codec_tool")], input=stdin, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    blocks, cur = [], []
    for line in proc.stdout.splitlines():
        if line == "END":
            blocks.append(cur)
            cur = []
        else:
            cur.append(line)
    assert len(blocks) == len(lines)
    kinds = {"FRAME": 0, "ERROR": 0}
    for data, c_events in zip(lines, blocks, strict=True):
        py = python_events(data)
        assert c_events == py, f"codecs disagree on {data.hex()}"
        for e in py:
            kinds[e.split()[0]] += 1
    # the corpus really exercises both paths
    assert kinds["FRAME"] > 500 and kinds["ERROR"] > 500, kinds
