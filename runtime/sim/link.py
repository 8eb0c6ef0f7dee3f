"""One simulator per runtime, shared by the robot link and the cameras (and by the control process).

Why a registry: `bridge.kind: mujoco` and `cameras.kind: mujoco` are built by separate factories,
and with `control.process: separate` the bridge lives in a spawned child. The first user in the
runtime's process starts the sim and exports its shared-memory name in DEXGRASP_MUJOCO_SIM, so the
child (spawned later, inheriting the environment) attaches instead of starting another. The sim is
reference-counted: it stops when the last user in its owning process releases it.
"""

from __future__ import annotations

import os
import threading

from runtime.sim import shm
from runtime.sim.process import SimProcess, SimSettings, settings_from_config

ENV = "DEXGRASP_MUJOCO_SIM"

_lock = threading.Lock()
_owned: SimProcess | None = None
_refs = 0
# Set by `dexgrasp sim collect` / tests before the App builds: options the config has no key for.
overrides: dict = {}


class SimLink:
    """A user's handle on the shared simulator: its memory plus `release()`."""

    def __init__(self, mem: shm.SimMemory, settings: SimSettings | None, owned: bool) -> None:
        self.mem = mem
        self.settings = settings
        self._owned = owned
        self._released = False

    @property
    def alive(self) -> bool:
        if _owned is not None and self._owned:
            return _owned.alive
        try:
            return bool(self.mem["ctrl"][0] > 0.5) and _pid_alive(int(self.mem["ctrl"][2]))
        except (KeyError, TypeError):
            return False

    def release(self) -> None:
        global _owned, _refs
        if self._released:
            return
        self._released = True
        if not self._owned:
            self.mem.close()
            return
        with _lock:
            _refs -= 1
            if _refs <= 0 and _owned is not None:
                _owned.stop()
                _owned = None
                _refs = 0
                os.environ.pop(ENV, None)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(cfg) -> SimLink:
    """Attach to the runtime's simulator, starting it if this process has none and none is exported."""
    global _owned, _refs
    settings = settings_from_config(cfg, **overrides)
    with _lock:
        if _owned is not None:
            if not _owned.alive:
                # A silently restarted world would put back objects mid-grasp: the loss is reported
                # (cameras retry, the loop holds) until every user has released the dead one.
                from runtime.errors import DeviceNotConnectedError

                raise DeviceNotConnectedError(f"mujoco sim process ended (exit code {getattr(_owned.proc, 'exitcode', None)})")
            if _owned.settings != settings:
                from runtime.errors import ConfigError

                raise ConfigError("a mujoco sim with other settings (robot, scene seed or camera sizes) is "
                                  "already running in this process; stop that runtime first")
            _refs += 1
            return SimLink(_owned.mem, _owned.settings, owned=True)
        name = os.environ.get(ENV)
        if name and _owned is None:
            try:
                mem = shm.SimMemory(settings.layout, name)
            except FileNotFoundError:
                os.environ.pop(ENV, None)  # a stale name from an ended run: start our own
            else:
                return SimLink(mem, settings, owned=False)
        _owned = SimProcess(settings).start()
        _refs = 1
        os.environ[ENV] = _owned.name
        return SimLink(_owned.mem, settings, owned=True)


def current() -> SimProcess | None:
    """The simulator this process owns (for `sim collect`'s physics judgement), or None."""
    return _owned
