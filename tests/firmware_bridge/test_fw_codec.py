"""The Python codec and framer on their own: CRC, COBS, every message type, every corruption kind."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest

from firmware_bridge import cobs
from firmware_bridge import protocol as P
from firmware_bridge.framer import FrameError, Framer
from firmware_bridge.vectors_gen import raw_frame, valid_messages

Q = np.linspace(-1, 1, 13)


def test_crc_is_crc32_iso_hdlc_check_value():
    # The check value documented in PROTOCOL.md (same as the C test crc32_check_value).
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_cobs_known_examples_and_roundtrip():
    assert cobs.encode(bytes([0x11, 0x22, 0x00, 0x33])) == bytes([0x03, 0x11, 0x22, 0x02, 0x33])
    assert cobs.encode(b"\x00\x00") == b"\x01\x01\x01"
    assert cobs.encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255))  # exactly one full block
    rng = random.Random(0)
    for n in (0, 1, 253, 254, 255, 256, 476, 508, 509):
        for data in (bytes(n), bytes(rng.randrange(256) for _ in range(n)), bytes([7]) * n):
            enc = cobs.encode(data)
            assert 0 not in enc and len(enc) <= cobs.max_encoded_len(n)
            assert cobs.decode(enc) == data


@pytest.mark.parametrize("bad", [b"\x03\x11\x00", b"\x05\x11\x22", b"\x00"])
def test_cobs_rejects_invalid(bad):
    with pytest.raises(cobs.CobsError):
        cobs.decode(bad)


@pytest.mark.parametrize("name,desc,msg", valid_messages(), ids=[v[0] for v in valid_messages()])
def test_every_message_type_roundtrips(name, desc, msg):
    wire = P.encode(msg)
    assert wire[-1] == 0 and 0 not in wire[:-1]
    assert len(wire) <= P.MAX_WIRE
    back = P.decode(wire[:-1])
    assert P.canonical(back) == P.canonical(msg)
    assert P.encode(back) == wire


def test_header_layout_by_hand():
    # type | flags | body_len u16 | seq u32 | session u32, little-endian, then body, then CRC-32 LE.
    wire = P.encode(P.Message(P.MsgType.ARM, 0x01020304, 0xA0B0C0D0, P.Empty()))
    payload = cobs.decode(wire[:-1])
    assert payload[:12] == bytes([0x02, 0x00, 0x00, 0x00, 0x04, 0x03, 0x02, 0x01, 0xD0, 0xC0, 0xB0, 0xA0])
    assert struct.unpack("<I", payload[12:]) == (zlib.crc32(payload[:12]),)


def test_every_single_bit_flip_is_rejected():
    wire = P.encode(P.targets(5, 0x1234, 1000, Q))
    for i in range(len(wire) - 1):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            if bad[i] == 0:
                continue  # became a delimiter: a truncation, covered below
            with pytest.raises(P.DecodeError) as exc:
                P.decode(bytes(bad[:-1]))
            assert exc.value.code in (P.ErrorCode.ERR_CRC, P.ErrorCode.ERR_COBS, P.ErrorCode.ERR_SHORT)


def test_truncation_at_every_offset_then_next_frame_parses():
    good = P.encode(P.targets(9, 1, 1000, Q))
    for cut in range(len(good) - 1):
        f = Framer()
        events = f.feed(good[:cut] + b"\x00" + good)
        frames = [e for e in events if isinstance(e, P.Message)]
        errors = [e for e in events if isinstance(e, FrameError)]
        assert len(frames) == 1 and frames[0].seq == 9
        assert len(errors) == (0 if cut == 0 else 1)


def test_garbage_burst_64k_is_bounded_and_resyncs():
    rng = random.Random(1)
    garbage = bytes(rng.randrange(1, 256) for _ in range(65536))
    good = P.encode(P.targets(11, 1, 1000, Q))
    f = Framer()
    events = []
    for i in range(0, len(garbage), 4096):  # arrives in chunks, like a serial port delivers it
        events += f.feed(garbage[i:i + 4096])
        assert len(f._buf) <= P.MAX_ENCODED
    events += f.feed(good + good)
    assert [e.code for e in events if isinstance(e, FrameError)] == [P.ErrorCode.ERR_OVERSIZE]
    assert [e.seq for e in events if isinstance(e, P.Message)] == [11]
    assert f.resyncs == 1


@pytest.mark.parametrize("declared,code", [(0, P.ErrorCode.ERR_LENGTH), (65535, P.ErrorCode.ERR_LENGTH)])
def test_declared_length_0_and_65535(declared, code):
    body = P.Targets(1, 0, tuple(np.float32(Q))).pack()
    events = Framer().feed(raw_frame(0x10, body, declared_len=declared))
    assert len(events) == 1 and events[0].code is code


def test_unknown_types_rejected_and_counted():
    f = Framer()
    known = {int(t) for t in P.MsgType}
    unknown = [t for t in range(256) if t not in known]
    for t in unknown:
        f.feed(raw_frame(t, b""))
    assert f.errors_by_code == {"ERR_TYPE": len(unknown)}
    assert f.frames_ok == 0


def test_schema_hash_is_fnv1a_with_terminators():
    h = 0x811C9DC5
    for byte in b"a\x00":
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    assert P.schema_hash(["a"]) == h
    assert P.schema_hash(["ab", "c"]) != P.schema_hash(["a", "bc"])  # terminators keep names apart
