"""The wire protocol in Python: message types, byte layouts, encoder and decoder.

A second, independent implementation of what firmware/src/dgb_protocol.c does (PROTOCOL.md is the
spec both follow); the checked-in vectors and a shared random corpus keep the two in agreement.
A frame is COBS(header | body | CRC-32) + 0x00; little-endian; floats are IEEE-754 binary32.
CRC-32 is zlib's (ISO-HDLC), so `zlib.crc32` is the reference here, not a port of the C table.
"""

from __future__ import annotations

import enum
import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge import cobs

PROTOCOL_VERSION = 2  # 2: HELLO_ACK carries the firmware's compiled-in joint limits
NUM_JOINTS = 13
NUM_ARM_JOINTS = 7
MAX_TRAJ_POINTS = 8
HEADER_SIZE = 12
CRC_SIZE = 4
TRAJ_HEAD = 12
TRAJ_POINT = 4 + 4 * NUM_JOINTS
MAX_BODY = TRAJ_HEAD + MAX_TRAJ_POINTS * TRAJ_POINT
MAX_PAYLOAD = HEADER_SIZE + MAX_BODY + CRC_SIZE
MAX_ENCODED = cobs.max_encoded_len(MAX_PAYLOAD)
MAX_WIRE = MAX_ENCODED + 1

_HEADER = struct.Struct("<BBHII")


class MsgType(enum.IntEnum):
    HELLO = 0x01
    ARM = 0x02
    DISARM = 0x03
    PSTOP = 0x04
    CLEAR_PSTOP = 0x05
    HEARTBEAT = 0x06
    TARGETS = 0x10
    TRAJECTORY = 0x11
    HELLO_ACK = 0x81
    STATE = 0x82
    ACK = 0x83
    FAULT = 0x84


class ErrorCode(enum.IntEnum):
    """Error codes shared with the firmware (dgb_error_t). Names print as ERR_<NAME>."""

    OK = 0
    ERR_OVERSIZE = 1
    ERR_COBS = 2
    ERR_SHORT = 3
    ERR_CRC = 4
    ERR_RESERVED = 5
    ERR_LENGTH = 6
    ERR_TYPE = 7
    ERR_BODY_SIZE = 8
    ERR_FIELD = 9
    ERR_BUFFER = 10
    ERR_SESSION = 20
    ERR_NO_HANDSHAKE = 21
    ERR_REPLAY = 22
    ERR_STALE = 23
    ERR_NONFINITE = 24
    ERR_NOT_ARMED = 25
    ERR_SAFE_OFF = 26
    ERR_PSTOP = 27
    ERR_VERSION = 28
    ERR_SCHEMA = 29
    ERR_TRAJ_TIME = 30
    ERR_DIRECTION = 31

    @classmethod
    def name_of(cls, code: int) -> str:
        try:
            return cls(code).name
        except ValueError:
            return f"ERR_UNKNOWN({code})"


class Mode(enum.IntEnum):
    DISARMED = 0
    ARMED = 1
    HOLD = 2
    SAFE_OFF = 3
    PSTOP = 4


# STATE.flags and STATE.fault_flags bits (PROTOCOL.md, "STATE")
FLAG_HANDSHAKED = 0x01
FLAG_CLAMPED_POSITION = 0x02
FLAG_LIMITED_VELOCITY = 0x04
FLAG_TRAJECTORY = 0x08
FAULT_WATCHDOG_SAFE_OFF = 0x0001
FAULT_NONFINITE = 0x0002
FAULT_RX_ERROR = 0x0004
FAULT_PSTOP = 0x0008


class DecodeError(ValueError):
    """A frame was rejected; `code` is the ErrorCode the firmware would report for it."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code


def _f32(values) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.size != NUM_JOINTS:
        raise ValueError(f"expected {NUM_JOINTS} joint values, got {arr.size}")
    return tuple(float(v) for v in arr)


# --- message bodies -------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    protocol_version: int = PROTOCOL_VERSION
    num_joints: int = NUM_JOINTS
    schema_hash: int = 0
    host_nonce: int = 0
    _S = struct.Struct("<HHII")

    def pack(self) -> bytes:
        return self._S.pack(self.protocol_version, self.num_joints, self.schema_hash, self.host_nonce)

    @classmethod
    def unpack(cls, b: bytes) -> Hello:
        return cls(*cls._S.unpack(b))


_JOINTS4 = struct.Struct(f"<{4 * NUM_JOINTS}f")
HELLO_ACK_V1_SIZE = 32  # the prefix every version shares; version 1 ended here


@dataclass(frozen=True)
class HelloAck:
    """The handshake answer. Since version 2 it ends with the limits the firmware itself enforces
    (lower, upper, max_velocity, max_acceleration: f32[13] each), so the host can refuse to command
    a wider envelope. A bare 32-byte version-1 answer decodes with `lower` etc. None, only so that
    the host can report the version mismatch instead of timing out."""

    protocol_version: int = PROTOCOL_VERSION
    num_joints: int = NUM_JOINTS
    schema_hash: int = 0
    session_id: int = 0
    host_nonce: int = 0
    firmware_version: int = 0
    result: int = 0
    max_traj_points: int = MAX_TRAJ_POINTS
    hold_timeout_us: int = 0
    safe_off_timeout_us: int = 0
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    max_velocity: tuple[float, ...] | None = None
    max_acceleration: tuple[float, ...] | None = None
    _S = struct.Struct("<HHIIIIHHII")

    @property
    def has_limits(self) -> bool:
        return self.lower is not None

    def pack(self) -> bytes:
        head = self._S.pack(
            self.protocol_version, self.num_joints, self.schema_hash, self.session_id, self.host_nonce,
            self.firmware_version, self.result, self.max_traj_points, self.hold_timeout_us,
            self.safe_off_timeout_us,
        )
        if not self.has_limits:
            return head
        return head + _JOINTS4.pack(*self.lower, *self.upper, *self.max_velocity, *self.max_acceleration)

    @classmethod
    def unpack(cls, b: bytes) -> HelloAck:
        head = cls._S.unpack_from(b, 0)
        if len(b) == HELLO_ACK_V1_SIZE:
            return cls(*head)
        v = _JOINTS4.unpack_from(b, HELLO_ACK_V1_SIZE)
        n = NUM_JOINTS
        return cls(*head, v[:n], v[n:2 * n], v[2 * n:3 * n], v[3 * n:])


@dataclass(frozen=True)
class Empty:
    """Body of ARM, DISARM, PSTOP and CLEAR_PSTOP."""

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, b: bytes) -> Empty:
        return cls()


@dataclass(frozen=True)
class Heartbeat:
    host_time_us: int = 0
    _S = struct.Struct("<Q")

    def pack(self) -> bytes:
        return self._S.pack(self.host_time_us)

    @classmethod
    def unpack(cls, b: bytes) -> Heartbeat:
        return cls(*cls._S.unpack(b))


_JOINTS = struct.Struct(f"<{NUM_JOINTS}f")


@dataclass(frozen=True)
class Targets:
    host_time_us: int = 0
    reach_in_us: int = 0
    positions: tuple[float, ...] = field(default=(0.0,) * NUM_JOINTS)
    _S = struct.Struct("<QI")

    def pack(self) -> bytes:
        return self._S.pack(self.host_time_us, self.reach_in_us) + _JOINTS.pack(*self.positions)

    @classmethod
    def unpack(cls, b: bytes) -> Targets:
        t, r = cls._S.unpack_from(b, 0)
        return cls(t, r, _JOINTS.unpack_from(b, 12))


@dataclass(frozen=True)
class TrajPoint:
    t_offset_us: int
    positions: tuple[float, ...]


@dataclass(frozen=True)
class Trajectory:
    host_time_us: int = 0
    points: tuple[TrajPoint, ...] = ()

    def pack(self) -> bytes:
        if not 1 <= len(self.points) <= MAX_TRAJ_POINTS:
            raise ValueError(f"a trajectory has 1..{MAX_TRAJ_POINTS} points, got {len(self.points)}")
        out = bytearray(struct.pack("<QB3x", self.host_time_us, len(self.points)))
        for p in self.points:
            out += struct.pack("<I", p.t_offset_us) + _JOINTS.pack(*p.positions)
        return bytes(out)

    @classmethod
    def unpack(cls, b: bytes) -> Trajectory:
        t, n = struct.unpack_from("<QB", b, 0)
        pts = []
        for i in range(n):
            off = TRAJ_HEAD + i * TRAJ_POINT
            (dt,) = struct.unpack_from("<I", b, off)
            pts.append(TrajPoint(dt, _JOINTS.unpack_from(b, off + 4)))
        return cls(t, tuple(pts))


@dataclass(frozen=True)
class StateBody:
    mcu_time_us: int = 0
    echo_host_time_us: int = 0
    last_applied_seq: int = 0
    mode: int = 0
    flags: int = 0
    fault_flags: int = 0
    last_error: int = 0
    rx_errors: int = 0
    positions: tuple[float, ...] = field(default=(0.0,) * NUM_JOINTS)
    velocities: tuple[float, ...] = field(default=(0.0,) * NUM_JOINTS)
    efforts: tuple[float, ...] = field(default=(0.0,) * NUM_JOINTS)
    _S = struct.Struct("<QQIBBHHH")

    def pack(self) -> bytes:
        return (
            self._S.pack(self.mcu_time_us, self.echo_host_time_us, self.last_applied_seq, self.mode,
                         self.flags, self.fault_flags, self.last_error, self.rx_errors)
            + _JOINTS.pack(*self.positions) + _JOINTS.pack(*self.velocities) + _JOINTS.pack(*self.efforts)
        )

    @classmethod
    def unpack(cls, b: bytes) -> StateBody:
        head = cls._S.unpack_from(b, 0)
        j = 4 * NUM_JOINTS
        return cls(*head, _JOINTS.unpack_from(b, 28), _JOINTS.unpack_from(b, 28 + j),
                   _JOINTS.unpack_from(b, 28 + 2 * j))


@dataclass(frozen=True)
class Ack:
    acked_seq: int = 0
    acked_type: int = 0
    result: int = 0
    _S = struct.Struct("<IBxH")

    def pack(self) -> bytes:
        return self._S.pack(self.acked_seq, self.acked_type, self.result)

    @classmethod
    def unpack(cls, b: bytes) -> Ack:
        return cls(*cls._S.unpack(b))


@dataclass(frozen=True)
class Fault:
    error: int = 0
    rejected_type: int = 0
    rejected_seq: int = 0
    _S = struct.Struct("<HBxI")

    def pack(self) -> bytes:
        return self._S.pack(self.error, self.rejected_type, self.rejected_seq)

    @classmethod
    def unpack(cls, b: bytes) -> Fault:
        return cls(*cls._S.unpack(b))


BODY_CLASSES = {
    MsgType.HELLO: Hello, MsgType.ARM: Empty, MsgType.DISARM: Empty, MsgType.PSTOP: Empty,
    MsgType.CLEAR_PSTOP: Empty, MsgType.HEARTBEAT: Heartbeat, MsgType.TARGETS: Targets,
    MsgType.TRAJECTORY: Trajectory, MsgType.HELLO_ACK: HelloAck, MsgType.STATE: StateBody,
    MsgType.ACK: Ack, MsgType.FAULT: Fault,
}
FIXED_BODY_SIZE = {
    MsgType.HELLO: 12, MsgType.ARM: 0, MsgType.DISARM: 0, MsgType.PSTOP: 0, MsgType.CLEAR_PSTOP: 0,
    MsgType.HEARTBEAT: 8, MsgType.TARGETS: 12 + 4 * NUM_JOINTS, MsgType.HELLO_ACK: 32 + 16 * NUM_JOINTS,
    MsgType.STATE: 28 + 12 * NUM_JOINTS, MsgType.ACK: 8, MsgType.FAULT: 8,
}


@dataclass(frozen=True)
class Message:
    """One frame: header fields plus a typed body."""

    type: MsgType
    seq: int
    session_id: int
    body: object


def encode(msg: Message) -> bytes:
    """The complete wire frame: COBS(header|body|CRC) + 0x00."""
    body = msg.body.pack()
    if len(body) > MAX_BODY:
        raise ValueError(f"{msg.type.name} body of {len(body)} bytes exceeds {MAX_BODY}")
    payload = _HEADER.pack(int(msg.type), 0, len(body), msg.seq & 0xFFFFFFFF, msg.session_id & 0xFFFFFFFF) + body
    payload += struct.pack("<I", zlib.crc32(payload))
    return cobs.encode(payload) + b"\x00"


def decode(enc: bytes) -> Message:
    """Decode the bytes between two delimiters. Raises DecodeError with the firmware's error code,
    checking in the order PROTOCOL.md specifies (size, COBS, short, CRC, flags, length, type, body)."""
    if len(enc) > MAX_ENCODED:
        raise DecodeError(ErrorCode.ERR_OVERSIZE, f"{len(enc)} encoded bytes > {MAX_ENCODED}")
    try:
        payload = cobs.decode(enc)
    except cobs.CobsError as exc:
        raise DecodeError(ErrorCode.ERR_COBS, str(exc)) from None
    if len(payload) < HEADER_SIZE + CRC_SIZE:
        raise DecodeError(ErrorCode.ERR_SHORT, f"{len(payload)} bytes < {HEADER_SIZE + CRC_SIZE}")
    (crc_wire,) = struct.unpack_from("<I", payload, len(payload) - CRC_SIZE)
    crc = zlib.crc32(payload[:-CRC_SIZE])
    if crc != crc_wire:
        raise DecodeError(ErrorCode.ERR_CRC, f"CRC 0x{crc:08x} != wire 0x{crc_wire:08x}")
    mtype, flags, body_len, seq, session = _HEADER.unpack_from(payload, 0)
    if flags != 0:
        raise DecodeError(ErrorCode.ERR_RESERVED, f"flags byte 0x{flags:02x} is not 0")
    actual = len(payload) - HEADER_SIZE - CRC_SIZE
    if body_len != actual:
        raise DecodeError(ErrorCode.ERR_LENGTH, f"declared body_len {body_len} != {actual}")
    try:
        t = MsgType(mtype)
    except ValueError:
        raise DecodeError(ErrorCode.ERR_TYPE, f"unknown message type 0x{mtype:02x}") from None
    body = payload[HEADER_SIZE:HEADER_SIZE + body_len]
    if t is MsgType.TRAJECTORY:
        if body_len < TRAJ_HEAD:
            raise DecodeError(ErrorCode.ERR_BODY_SIZE, f"TRAJECTORY body {body_len} < {TRAJ_HEAD}")
        n = body[8]
        if not 1 <= n <= MAX_TRAJ_POINTS:
            raise DecodeError(ErrorCode.ERR_FIELD, f"TRAJECTORY num_points {n} not in 1..{MAX_TRAJ_POINTS}")
        want = TRAJ_HEAD + n * TRAJ_POINT
    elif t is MsgType.HELLO_ACK and body_len == HELLO_ACK_V1_SIZE:
        want = HELLO_ACK_V1_SIZE  # a version-1 firmware's answer: decoded to report the version
    else:
        want = FIXED_BODY_SIZE[t]
    if body_len != want:
        raise DecodeError(ErrorCode.ERR_BODY_SIZE, f"{t.name} body is {body_len} bytes, expected {want}")
    return Message(t, seq, session, BODY_CLASSES[t].unpack(body))


# --- canonical text (identical to tools/dgb_format.c) ----------------------------------------


def _fmt_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    s = format(x, ".9g")
    return s


def _joints(name: str, values) -> str:
    return f" {name}=[" + ",".join(_fmt_float(v) for v in values) + "]"


def canonical(msg: Message) -> str:
    """One-line text of a message; byte-for-byte what the C tools print for the same frame."""
    b = msg.body
    s = f"{msg.type.name} seq={msg.seq} session=0x{msg.session_id:08x}"
    t = msg.type
    if t is MsgType.HELLO:
        s += (f" protocol_version={b.protocol_version} num_joints={b.num_joints}"
              f" schema_hash=0x{b.schema_hash:08x} host_nonce=0x{b.host_nonce:08x}")
    elif t is MsgType.HELLO_ACK:
        s += (f" protocol_version={b.protocol_version} num_joints={b.num_joints}"
              f" schema_hash=0x{b.schema_hash:08x} session_id=0x{b.session_id:08x} host_nonce=0x{b.host_nonce:08x}"
              f" firmware_version=0x{b.firmware_version:08x} result={b.result} max_traj_points={b.max_traj_points}"
              f" hold_timeout_us={b.hold_timeout_us} safe_off_timeout_us={b.safe_off_timeout_us}")
        if b.has_limits:
            s += (_joints("lower", b.lower) + _joints("upper", b.upper) + _joints("max_velocity", b.max_velocity)
                  + _joints("max_acceleration", b.max_acceleration))
    elif t is MsgType.HEARTBEAT:
        s += f" host_time_us={b.host_time_us}"
    elif t is MsgType.TARGETS:
        s += f" host_time_us={b.host_time_us} reach_in_us={b.reach_in_us}" + _joints("positions", b.positions)
    elif t is MsgType.TRAJECTORY:
        s += f" host_time_us={b.host_time_us} num_points={len(b.points)}"
        for i, p in enumerate(b.points):
            s += f" p{i}.t_offset_us={p.t_offset_us}" + _joints(f"p{i}.positions", p.positions)
    elif t is MsgType.STATE:
        s += (f" mcu_time_us={b.mcu_time_us} echo_host_time_us={b.echo_host_time_us}"
              f" last_applied_seq={b.last_applied_seq} mode={b.mode} flags=0x{b.flags:02x}"
              f" fault_flags=0x{b.fault_flags:04x} last_error={b.last_error} rx_errors={b.rx_errors}")
        s += _joints("positions", b.positions) + _joints("velocities", b.velocities) + _joints("efforts", b.efforts)
    elif t is MsgType.ACK:
        s += f" acked_seq={b.acked_seq} acked_type=0x{b.acked_type:02x} result={b.result}"
    elif t is MsgType.FAULT:
        s += f" error={b.error} rejected_type=0x{b.rejected_type:02x} rejected_seq={b.rejected_seq}"
    return s


def schema_hash(names) -> int:
    """FNV-1a 32 over each joint name's UTF-8 bytes followed by one 0x00, in joint order."""
    h = 0x811C9DC5
    for name in names:
        for byte in name.encode("utf-8") + b"\x00":
            h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def targets(seq: int, session: int, host_time_us: int, positions, reach_in_us: int = 0) -> Message:
    return Message(MsgType.TARGETS, seq, session, Targets(host_time_us, reach_in_us, _f32(positions)))


def trajectory(seq: int, session: int, host_time_us: int, offsets_us, positions) -> Message:
    pts = tuple(TrajPoint(int(t), _f32(p)) for t, p in zip(offsets_us, positions, strict=True))
    return Message(MsgType.TRAJECTORY, seq, session, Trajectory(host_time_us, pts))
