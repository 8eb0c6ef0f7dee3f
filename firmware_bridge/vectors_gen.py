"""Regenerate the byte-level test vectors in firmware_bridge/vectors/ (checked in).

Both codecs are tested against these files: tests/firmware_bridge/test_fw_vectors.py (Python) and the
`dgb.test_vectors` ctest (C). Each vector is a block::

    name: targets_basic
    description: free text
    wire: <hex of the byte stream, delimiters included>
    expect: FRAME <canonical text>     (one line per framer event, in order)
    expect: ERROR ERR_CRC
    end

Run after a deliberate protocol change only (and bump PROTOCOL_VERSION):
    python -m firmware_bridge.vectors_gen
"""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import numpy as np

from firmware_bridge import cobs
from firmware_bridge import protocol as P
from firmware_bridge.framer import FrameError, Framer
from firmware_bridge.joints import DEFAULT_JOINT_NAMES, JointLimits

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
SESSION = 0x5EC0_1D01
HASH = P.schema_hash(DEFAULT_JOINT_NAMES)
Q = np.array([0.0, -0.5, 1.25, -2.0, 3.0999999, 0.001, -6.28, 0.0, 0.25, 0.5, 0.75, 1.0, 0.1])
_DEF = JointLimits.default()
LIMITS = tuple(tuple(float(v) for v in np.float32(a))
               for a in (_DEF.lower, _DEF.upper, _DEF.max_velocity, _DEF.max_acceleration))


def raw_frame(mtype: int, body: bytes, declared_len: int | None = None, flags: int = 0, seq: int = 7,
              session: int = SESSION) -> bytes:
    """A frame with a VALID CRC around arbitrary header values (what the encoder would refuse)."""
    blen = len(body) if declared_len is None else declared_len
    payload = struct.pack("<BBHII", mtype, flags, blen, seq, session) + body
    payload += struct.pack("<I", zlib.crc32(payload))
    return cobs.encode(payload) + b"\x00"


def events(wire: bytes) -> list[str]:
    out = []
    for ev in Framer().feed(wire):
        out.append(f"ERROR {ev.code.name}" if isinstance(ev, FrameError) else f"FRAME {P.canonical(ev)}")
    return out


def valid_messages() -> list[tuple[str, str, P.Message]]:
    M = P.Message
    T = P.MsgType
    state = P.StateBody(123456789, 987654321, 42, int(P.Mode.ARMED), P.FLAG_HANDSHAKED | P.FLAG_CLAMPED_POSITION,
                        P.FAULT_RX_ERROR, int(P.ErrorCode.ERR_CRC), 3, tuple(np.float32(Q)),
                        tuple(np.float32(Q * 0.1)), tuple(np.float32(-Q)))
    return [
        ("hello", "host HELLO: protocol 2, 13 joints, hash of the default joint names", M(T.HELLO, 1, 0, P.Hello(2, 13, HASH, 0x12345678))),
        ("hello_ack", "device answer: session, firmware 2.0.0, 20 ms hold, 150 ms safe-off, its default limits",
         M(T.HELLO_ACK, 1, SESSION, P.HelloAck(2, 13, HASH, SESSION, 0x12345678, 0x00020000, 0, 8, 20000, 150000,
                                               *LIMITS))),
        ("hello_ack_version_mismatch", "device refuses a host speaking another version",
         M(T.HELLO_ACK, 2, SESSION, P.HelloAck(2, 13, HASH, SESSION, 0xCAFEBABE, 0x00020000, int(P.ErrorCode.ERR_VERSION), 8, 20000, 150000,
                                               *LIMITS))),
        ("hello_ack_v1", "a version-1 firmware's 32-byte answer (no limits): decoded so the host can name the version",
         M(T.HELLO_ACK, 3, SESSION, P.HelloAck(1, 13, HASH, SESSION, 0xCAFEBABE, 0x00010000, int(P.ErrorCode.ERR_VERSION), 8, 20000, 150000))),
        ("arm", "ARM (empty body)", M(T.ARM, 2, SESSION, P.Empty())),
        ("disarm", "DISARM (empty body)", M(T.DISARM, 3, SESSION, P.Empty())),
        ("pstop", "protective stop (empty body)", M(T.PSTOP, 4, SESSION, P.Empty())),
        ("clear_pstop", "clear protective stop (empty body)", M(T.CLEAR_PSTOP, 5, SESSION, P.Empty())),
        ("heartbeat", "host keep-alive", M(T.HEARTBEAT, 6, SESSION, P.Heartbeat(1_700_000_000_123))),
        ("targets", "joint targets incl. values at the limits", P.targets(7, SESSION, 5_000_000, Q, reach_in_us=2000)),
        ("targets_zero", "all-zero targets: exercises COBS zero runs", P.targets(8, SESSION, 0, np.zeros(13))),
        ("targets_nan", "codec-valid frame with a NaN (the FIRMWARE rejects it with ERR_NONFINITE)",
         P.targets(9, SESSION, 5_000_100, np.where(np.arange(13) == 3, np.nan, Q))),
        ("trajectory_1", "one-point trajectory", P.trajectory(10, SESSION, 5_000_200, [2000], [Q])),
        ("trajectory_8", "eight-point trajectory (largest frame)",
         P.trajectory(11, SESSION, 5_000_300, [2000 * (i + 1) for i in range(8)], [Q * (i / 8) for i in range(8)])),
        ("state", "device STATE report", M(T.STATE, 1000, SESSION, state)),
        ("ack", "device ACK of ARM seq 2", M(T.ACK, 1001, SESSION, P.Ack(2, int(T.ARM), 0))),
        ("fault", "device FAULT: TARGETS seq 9 rejected (non-finite)",
         M(T.FAULT, 1002, SESSION, P.Fault(int(P.ErrorCode.ERR_NONFINITE), int(T.TARGETS), 9))),
        ("seq_max", "largest sequence number and session id", M(T.HEARTBEAT, 0xFFFFFFFF, 0xFFFFFFFF, P.Heartbeat(2**64 - 1))),
    ]


def error_vectors() -> list[tuple[str, str, bytes]]:
    good = P.encode(P.targets(20, SESSION, 6_000_000, Q))
    body = P.Targets(6_000_000, 0, tuple(np.float32(Q))).pack()
    rng = random.Random(3)
    garbage = bytes(rng.randrange(1, 256) for _ in range(65536))
    crc_flip = bytearray(good)
    crc_flip[-3] ^= 0x01
    payload_flip = bytearray(good)
    payload_flip[20] ^= 0x40
    return [
        ("crc_flip", "one bit flipped in the CRC, then a good frame", bytes(crc_flip) + good),
        ("payload_flip", "one bit flipped in a joint value", bytes(payload_flip) + good),
        ("truncated_half", "frame cut in half (delimiter arrives early), then a good frame", good[: len(good) // 2] + b"\x00" + good),
        ("truncated_header", "only 5 bytes of a frame", good[:5] + b"\x00" + good),
        ("declared_length_0", "TARGETS with body_len 0 but a 64-byte body (valid CRC)", raw_frame(0x10, body, declared_len=0) + good),
        ("declared_length_65535", "TARGETS with body_len 65535 (valid CRC)", raw_frame(0x10, body, declared_len=65535) + good),
        ("empty_targets", "TARGETS with a consistent body_len 0", raw_frame(0x10, b"") + good),
        ("unknown_type", "type 0x7F (valid CRC)", raw_frame(0x7F, b"") + good),
        ("reserved_flags", "flags byte 0x01 (valid CRC)", raw_frame(0x02, b"", flags=1) + good),
        ("trajectory_zero_points", "TRAJECTORY with num_points 0", raw_frame(0x11, struct.pack("<QB3x", 1, 0)) + good),
        ("trajectory_count_mismatch", "TRAJECTORY says 2 points, carries 1", raw_frame(0x11, P.Trajectory(1, (P.TrajPoint(1, tuple(np.float32(Q))),)).pack()[:8] + b"\x02\x00\x00\x00" + P.Trajectory(1, (P.TrajPoint(1, tuple(np.float32(Q))),)).pack()[12:]) + good),
        ("hello_short_body", "HELLO with an 11-byte body", raw_frame(0x01, b"\x01" * 11) + good),
        ("cobs_overrun", "COBS code byte pointing past the end", bytes([0x20, 0x11, 0x22]) + b"\x00" + good),
        ("too_short", "3 bytes: shorter than header + CRC", bytes([0x04, 0x11, 0x22, 0x33]) + b"\x00" + good),
        ("idle_delimiters", "delimiters between frames are ignored", b"\x00\x00" + good + b"\x00\x00\x00" + good),
        ("oversize_600", "600 bytes without a delimiter: one ERR_OVERSIZE, discard to the next delimiter",
         bytes([0x55]) * 600 + b"\x00" + good),
        ("garbage_64k", "64 KiB of random non-zero bytes, then a good frame: its own delimiter ends the discard",
         garbage + good + good),
    ]


def write_block(lines: list[str], name: str, description: str, wire: bytes) -> None:
    lines += [f"name: {name}", f"description: {description}", f"wire: {wire.hex()}"]
    lines += [f"expect: {e}" for e in events(wire)]
    lines += ["end", ""]


def main() -> int:
    """Write vectors/frames.vec, vectors/errors.vec and the fuzz seed corpus.

    Example: python -m firmware_bridge.vectors_gen
    """
    VECTORS_DIR.mkdir(exist_ok=True)
    header = ["# Generated by `python -m firmware_bridge.vectors_gen`; format in that module's docstring.",
              f"# Protocol version {P.PROTOCOL_VERSION}. Checked by the C ctest dgb.test_vectors and pytest.", ""]
    lines = list(header)
    corpus = VECTORS_DIR / "corpus"
    corpus.mkdir(exist_ok=True)
    for name, desc, msg in valid_messages():
        wire = P.encode(msg)
        write_block(lines, name, desc, wire)
        (corpus / f"{name}.bin").write_bytes(wire)
    (VECTORS_DIR / "frames.vec").write_text("\n".join(lines))
    lines = list(header)
    for name, desc, wire in error_vectors():
        write_block(lines, name, desc, wire)
        if len(wire) < 4096:
            (corpus / f"err_{name}.bin").write_bytes(wire)
    (VECTORS_DIR / "errors.vec").write_text("\n".join(lines))
    print(f"wrote {VECTORS_DIR}/frames.vec, errors.vec and {len(list(corpus.iterdir()))} corpus files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
