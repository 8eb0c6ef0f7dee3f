"""Shared helpers for the camera tests."""

import time

import pytest


def _wait_until(predicate, timeout_s: float = 10.0) -> bool:
    """Poll a condition until it holds or `timeout_s` passes (a guard against hangs: tests assert
    on counts and states, never on how long something took)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.002)
    return False


@pytest.fixture
def wait_until():
    return _wait_until
