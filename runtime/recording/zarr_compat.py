"""The few zarr calls the recorder makes, for zarr 3 (Python >= 3.11) and zarr 2 (>= 2.11).

Both write zarr *format 2*, the format upstream's pinned zarr 2.12 reads. A Jetson on JetPack 6
has Python 3.10, where pip resolves zarr 2.x, so the recorder must not depend on zarr-3-only API.
"""

from __future__ import annotations

from runtime.errors import require
from runtime.recording.layout import ZARR_FORMAT


def _zarr():
    return require("zarr", "record", "episode recording")


def is_v3() -> bool:
    return int(_zarr().__version__.split(".")[0]) >= 3


def open_group_for_write(path: str, mode: str = "w"):
    """A zarr group at `path` in format 2 (mode 'w' replaces, 'w-' refuses an existing store)."""
    zarr = _zarr()
    if is_v3():
        return zarr.open_group(path, mode=mode, zarr_format=ZARR_FORMAT)
    return zarr.open_group(path, mode=mode)


def open_group_for_read(path: str):
    return _zarr().open_group(path, mode="r")


def create_array(group, name: str, shape: tuple, chunks: tuple, dtype, compressor):
    """An array that writes every chunk, all-zero ones included (a missing chunk file must mean
    "lost", never "zeros"), with `compressor` (a numcodecs codec, or None for raw)."""
    if is_v3():
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, compressors=compressor,
                                  config={"write_empty_chunks": True})
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, compressor=compressor,
                                write_empty_chunks=True)
