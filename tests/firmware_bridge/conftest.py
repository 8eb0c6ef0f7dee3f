"""Fixtures for the firmware bridge: the C build (cached by source hash), emulators that are always
stopped"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from firmware_bridge.emulator import EmulatorProcess, ensure_firmware_build

needs_toolchain = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None,
    reason="cmake and a C compiler are needed to build the firmware library and emulator",
)


@pytest.fixture(scope="session")
def fw_build() -> Path:
    if shutil.which("cmake") is None or shutil.which("cc") is None:
        pytest.skip("cmake and a C compiler are needed to build the firmware library and emulator")
    return ensure_firmware_build()


@pytest.fixture
def start_emulator(fw_build, tmp_path):
    """start_emulator(**EmulatorProcess.start kwargs) -> EmulatorProcess; all stopped at teardown."""
    procs: list[EmulatorProcess] = []

    def _start(**kwargs) -> EmulatorProcess:
        emu = EmulatorProcess(fw_build / "dexgrasp-fw-emulator")
        procs.append(emu)
        return emu.start(**kwargs)

    yield _start
    for emu in procs:
        emu.stop()
        emu._tmp.cleanup()
