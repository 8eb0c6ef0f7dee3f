"""Consistent Overhead Byte Stuffing, the framing of the serial protocol (PROTOCOL.md, "Framing").

Encoded bytes never contain 0x00, so 0x00 delimits frames and a receiver resynchronises at the next
delimiter after any corruption. The decoder is strict in exactly the ways the C decoder is
(dgb_cobs.c): a 0x00 inside the input or a code byte that runs past the end is an error.
"""

from __future__ import annotations


class CobsError(ValueError):
    """The bytes are not a valid COBS encoding."""


def max_encoded_len(n: int) -> int:
    """Worst-case encoded size of `n` bytes (without the delimiter)."""
    return n + n // 254 + 1


def encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_pos = 0
    code = 1
    n = len(data)
    for i, b in enumerate(data):
        if b:
            out.append(b)
            code += 1
        if not b or code == 0xFF:
            out[code_pos] = code
            code = 1
            code_pos = len(out)
            if not b or i + 1 < n:
                out.append(0)
    if code_pos < len(out):
        out[code_pos] = code
    return bytes(out)


def decode(data: bytes) -> bytes:
    out = bytearray()
    r = 0
    n = len(data)
    while r < n:
        code = data[r]
        r += 1
        if code == 0:
            raise CobsError(f"zero code byte at offset {r - 1}")
        end = r + code - 1
        if end > n:
            raise CobsError(f"code byte {code} at offset {r - 1} runs past the end ({n} bytes)")
        block = data[r:end]
        if 0 in block:
            raise CobsError(f"0x00 inside a COBS block at offset {r + block.index(0)}")
        out += block
        r = end
        if code != 0xFF and r < n:
            out.append(0)
    return bytes(out)
