"""sha256 of files, read in blocks: one implementation for checkpoints, exported graphs (controller
and tracker manifests) and recorded episodes. Torch-free."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_BLOCK = 1 << 22


def _update(h, path: str | Path) -> None:
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)


def sha256_files(paths: Iterable[str | Path | None]) -> str:
    """sha256 over the files in order, as if concatenated; None or missing entries are skipped
    (an ONNX graph without external data)."""
    h = hashlib.sha256()
    for p in paths:
        if p is not None and Path(p).exists():
            _update(h, p)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 of one file (FileNotFoundError when it is missing, unlike sha256_files)."""
    h = hashlib.sha256()
    _update(h, path)
    return h.hexdigest()
