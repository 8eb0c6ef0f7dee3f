"""One tiny random-weight Cutie export per session for the tracker tests (torch builds it once; the
runtime under test never imports torch), and private copies for tests that write its manifest."""

from __future__ import annotations

import shutil

import pytest

CUTIE_HW = (128, 160)


@pytest.fixture(scope="session")
def small_cutie_export(tmp_path_factory):
    """Cutie small at 128x160, target only. Read-only: tests writing verifications take a copy."""
    pytest.importorskip("cutie", reason="building the random-weight export needs rf-cutie (export extra)")
    from tests.export.tracker.tracker_fixtures import export_random_tracker

    return export_random_tracker(tmp_path_factory.mktemp("cutie_small"), *CUTIE_HW)


@pytest.fixture
def cutie_copy(small_cutie_export, tmp_path, monkeypatch):
    """A private copy of the tiny export and a private cache root (OpenVINO's compiled models)."""
    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(small_cutie_export, tmp_path / "model")
    return tmp_path / "model"
