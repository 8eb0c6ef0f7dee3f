"""The checked-in byte-level vectors: the Python codec must produce exactly their events, and the
generator must reproduce the files (a protocol change without regenerating them fails here).
The C codec is checked against the same files by the ctest dgb.test_vectors (see test_fw_c_build.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge import protocol as P
from firmware_bridge.framer import FrameError, Framer
from firmware_bridge.vectors_gen import VECTORS_DIR

# Checked against these files by the C test too; imported from files, never recomputed here.


def load_vectors() -> list[dict]:
    out = []
    for path in sorted(Path(VECTORS_DIR).glob("*.vec")):
        cur = None
        for line in path.read_text().splitlines():
            if line.startswith("name: "):
                cur = {"name": f"{path.name}:{line[6:]}", "wire": "", "expect": []}
            elif cur is not None and line.startswith("wire: "):
                cur["wire"] += line[6:]
            elif cur is not None and line.startswith("expect: "):
                cur["expect"].append(line[8:])
            elif cur is not None and line == "end":
                out.append(cur)
                cur = None
    return out


VECTORS = load_vectors()


def test_vector_files_present():
    assert len(VECTORS) >= 30


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_python_codec_matches_vector(vec):
    wire = bytes.fromhex(vec["wire"])
    got = []
    start = 0
    framer = Framer()
    for i, b in enumerate(wire):
        for ev in framer.feed(bytes([b])):
            if isinstance(ev, FrameError):
                got.append(f"ERROR {ev.code.name}")
            else:
                got.append(f"FRAME {P.canonical(ev)}")
                assert P.encode(ev) == wire[start:i + 1], "decoded frame must re-encode to its exact bytes"
        if b == 0:
            start = i + 1
    assert got == vec["expect"]


def test_generator_reproduces_checked_in_files(tmp_path, monkeypatch):
    import firmware_bridge.vectors_gen as gen

    monkeypatch.setattr(gen, "VECTORS_DIR", tmp_path)
    gen.main()
    for name in ("frames.vec", "errors.vec"):
        assert (tmp_path / name).read_text() == (Path(VECTORS_DIR) / name).read_text(), name
