"""benchmarks/process_boundary.py on a short run: every chunk is seen across the real control-process
boundary with a positive hand-off delay, and the run leaves no scratch directory behind."""

from __future__ import annotations

import json
import tempfile

from benchmarks import process_boundary


def test_short_run_sees_every_chunk_and_cleans_up(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "out"
    result = process_boundary.run(quick=True, out_dir=out, n_chunks=10)
    assert result["n_submitted"] == 10 and result["n_seen"] == 10, result
    handoff = result["handoff"]
    assert 0 < handoff["p50_ms"] <= handoff["max_ms"], handoff
    assert json.loads((out / "process_boundary.json").read_text())["n_seen"] == 10
    assert list(scratch.iterdir()) == []  # the child's seen-file directory is removed
