"""Recorded episodes for trainers: LeRobot export, `data info`, offline evaluation of a controller.

Everything here runs off the robot (a workstation, CI); it needs the `data` extra (PyAV, pyarrow)
for export, and nothing for `info`. Nothing here imports torch.
"""

from runtime.errors import DexGraspError


class DataError(DexGraspError, ValueError):
    """A recording cannot be exported or evaluated (tampered, truncated, inconsistent, missing)."""


__all__ = ["DataError"]
