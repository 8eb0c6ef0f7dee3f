"""Config -> component instances (bridge, cameras, tracker, policy). Imports are lazy.

Each factory imports its component only when the config asks for it, so a sim run never imports
pyrealsense2 or TensorRT, and a missing optional package fails with the extra to install.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.clock import Clock
from runtime.config.schema import RuntimeConfig
from runtime.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class BridgeHandle:
    """The bridge plus whatever must be closed with it (an emulator process)."""

    bridge: Any
    closers: list[Callable[[], Any]] = field(default_factory=list)
    description: str = ""

    def close(self) -> list[str]:
        errors = []
        for fn in [getattr(self.bridge, "close", None), *self.closers]:
            if fn is None:
                continue
            try:
                fn()
            except Exception as exc:  # closing must go on for the rest; the error is reported
                errors.append(f"closing {self.description}: {exc!r}")
        return errors


def make_bridge(cfg: RuntimeConfig, clock: Clock) -> BridgeHandle:
    """Open the robot link. Blocks for the emulator start / serial handshake (< a few seconds)."""
    b = cfg.bridge
    if b.kind == "ros2":
        from runtime.robot.factory import make_ros2_link

        return make_ros2_link(cfg, clock, make_bridge)
    if b.kind == "fake":
        from runtime.execution.fakes import FakeBridge

        bridge = FakeBridge(cfg.robot.n_joints, clock, start=np.asarray(cfg.robot.home_positions),
                            lower=np.asarray(cfg.robot.lower), upper=np.asarray(cfg.robot.upper),
                            names=cfg.robot.joint_names)
        return BridgeHandle(bridge, description="fake bridge")
    if b.kind == "mujoco":
        from runtime.sim.bridge import make_mujoco_bridge

        return BridgeHandle(make_mujoco_bridge(cfg, clock), description="mujoco sim")
    from firmware_bridge.host import BridgeHost
    from firmware_bridge.joints import JointLimits as FirmwareLimits
    from runtime.execution.safety import JointLimits

    check_serial_joint_space(cfg)

    # The host's envelope is its SafetyConfig; the firmware (emulator included) enforces its own
    # compiled-in limits and reports them in the handshake, where the bridge refuses a wider envelope.
    host = JointLimits.from_config(cfg.robot, cfg.safety)
    opts = b.options
    fw_limits = FirmwareLimits(tuple(cfg.robot.joint_names), host.lower, host.upper,
                               host.max_velocity, host.max_acceleration)
    closers: list = []
    port = b.port
    desc = f"serial {port}"
    if b.kind == "emulator":
        from firmware_bridge.emulator import EmulatorProcess

        start_kwargs = {"initial_positions": list(cfg.robot.home_positions)}  # limits: its own table
        start_kwargs.update(opts.emulator_start)
        emu = EmulatorProcess(**_accepted(EmulatorProcess.__init__, opts.emulator, "bridge.options.emulator"))
        emu.start(**_accepted(emu.start, start_kwargs, "bridge.options.emulator_start"))
        port = emu.port
        closers.append(emu.stop)
        prio = opts.emulator_sched_fifo_priority
        if prio is not None and getattr(emu, "proc", None) is not None:
            # The emulator stands in for an MCU with a core of its own: do not let a busy host CPU
            # make it look like a stalled link.
            try:
                os.sched_setscheduler(emu.proc.pid, os.SCHED_FIFO, os.sched_param(int(prio)))
            except OSError as exc:
                log.warning("emulator SCHED_FIFO %s not applied: %s", prio, exc)
        desc = f"firmware emulator on {port}"
    host_kwargs = {"clock": clock, "limits": fw_limits, "baudrate": b.baudrate}
    host_kwargs.update(opts.host)
    try:
        bridge = BridgeHost(port, **_accepted(BridgeHost.__init__, host_kwargs, "bridge.options.host"))
        bridge.connect()
    except BaseException:
        for fn in closers:
            fn()
        raise
    return BridgeHandle(bridge, closers, desc)


def check_serial_joint_space(cfg: RuntimeConfig) -> None:
    """The serial firmware protocol is a fixed 13-joint wire format (firmware_bridge.protocol
    NUM_JOINTS, upstream's 7 arm + 6 hand; the C firmware is built for 13 slots): a robot config of
    another layout is refused before the port is opened, saying how such a robot is driven."""
    from firmware_bridge.protocol import NUM_ARM_JOINTS, NUM_JOINTS

    r = cfg.robot
    if r.n_joints == NUM_JOINTS and r.n_arm == NUM_ARM_JOINTS:
        return
    raise ConfigError(
        f"bridge.kind / bridge.ros2.hand {cfg.bridge.kind!r}: the serial firmware protocol carries "
        f"{NUM_JOINTS} joints ({NUM_ARM_JOINTS} arm + {NUM_JOINTS - NUM_ARM_JOINTS} hand), "
        f"the robot config has {r.n_joints} ({r.n_arm} arm + {r.n_hand} hand); drive this robot with "
        "bridge.kind ros2 (every joint in bridge.ros2.joints, hand: none), see docs/firmware_bridge.md")


def _accepted(fn, kwargs: dict, where: str) -> dict:
    """`kwargs` unchanged if `fn` takes every one of them, else ConfigError naming the key at `where`
    with a did-you-mean (an option nobody reads must not pass for a setting that took effect)."""
    from runtime.config.keys import check_keywords

    check_keywords(fn, kwargs, where)
    return kwargs


def make_cameras(cfg: RuntimeConfig, clock: Clock, state_fn: Callable[[], np.ndarray]) -> tuple[Any, Any, Any]:
    """(head camera, wrist camera, scene or None). Not connected yet (the capture workers do it)."""
    c = cfg.cameras
    if c.kind == "synthetic":
        from runtime.cameras.synthetic import make_synthetic_cameras

        scene, head, wrist = make_synthetic_cameras(state_fn, clock=clock, fps=c.head.fps, seed=c.seed,
                                                    joint_space=cfg.robot.joint_space())
        return head, wrist, scene
    if c.kind == "realsense":
        try:
            from runtime.cameras import realsense
        except ModuleNotFoundError as exc:
            raise ConfigError(f"cameras.kind 'realsense': the RealSense camera module is unavailable ({exc})") from exc
        cls = realsense.RealSenseCamera
        cams = []
        for name, cam in (("third", c.head), ("right_first", c.wrist)):
            kwargs = dict(name=name, serial=cam.serial, width=cam.width, height=cam.height, fps=cam.fps,
                          clock=clock, bag_path=cam.bag_path)
            cams.append(cls(**_accepted(cls.__init__, kwargs, "cameras")))
        return cams[0], cams[1], None
    if c.kind == "mujoco":
        from runtime.cameras.mujoco import make_mujoco_cameras

        return make_mujoco_cameras(cfg, clock)
    raise ConfigError(f"cameras.kind {c.kind!r} is not supported")


def make_tracker(cfg: RuntimeConfig):
    if cfg.tracker.kind == "none":
        return None
    if cfg.tracker.kind == "cutie":
        opts = dict(cfg.tracker.options)
        if not opts.get("model_dir"):
            raise ConfigError("tracker.options.model_dir: the cutie tracker needs the directory written by "
                              "`dexgrasp export tracker`")
        from runtime.tracking.cutie import CutieTracker

        try:
            return CutieTracker(**opts)
        except TypeError as exc:
            raise ConfigError(f"tracker.options: {exc}") from exc
    from runtime.tracking.classical import ClassicalTracker, ClassicalTrackerConfig

    try:
        tcfg = ClassicalTrackerConfig(**cfg.tracker.options)
    except TypeError as exc:
        raise ConfigError(f"tracker.options: {exc}") from exc
    return ClassicalTracker(tcfg)


def make_policy(cfg: RuntimeConfig, model_dir=None):
    """The ChunkPolicy for `cfg.policy` (loads the exported model: seconds; `backend: auto` may
    verify the cached sim model once). The chosen backend/precision is in `policy.engine_choice`."""
    p = cfg.policy
    if p.backend == "fake":
        from runtime.execution.fakes import FakeChunkPolicy

        return FakeChunkPolicy(latency_s=p.fake_latency_ms / 1e3)
    from runtime.config.models import cache_root, resolve_model_dir
    from runtime.controller import Controller
    from runtime.workers.policy import ControllerPolicy

    model_dir = model_dir or resolve_model_dir(p, robot=cfg.robot)  # a null model_dir: made for this robot
    # The project's own random-weight model (made under the cache root by the sim / demo): auto may
    # verify it once. A user's model is never verified behind their back.
    cached = not p.model_dir and _inside(model_dir, cache_root())
    from runtime.joint_space import check_model_dir

    check_model_dir(cfg.robot, model_dir)  # another joint layout's model: refused before anything loads
    check_action_rate(cfg.control.action_rate_hz, model_dir)
    backend, precision, why = p.backend, p.precision, "configured"
    if backend == "auto":
        from runtime.inference.auto import choose

        choice = choose(model_dir, threads=p.threads, verify_missing=cached)
        backend, precision, why = choice.backend, choice.precision, f"auto: {choice.reason}"
    controller = Controller.from_dir(model_dir, backend=backend, precision=precision, providers=p.providers,
                                     threads=p.threads, allow_unverified=p.allow_unverified)
    policy = ControllerPolicy(controller)
    policy.engine_choice = f"{backend} {precision} ({why})"
    log.info("policy engine: %s", policy.engine_choice)
    return policy


def _inside(path, root) -> bool:
    try:
        pathlib.Path(path).resolve().relative_to(pathlib.Path(root).resolve())
    except ValueError:
        return False
    return True


def check_action_rate(action_rate_hz: float, model_dir) -> None:
    """Refuse a model trained on another action spacing than the loop plays (ModelError).

    Why: a chunk's 64 actions are spaced 1 / control.action_rate_hz apart when executed; a model that
    `dexgrasp train` fitted on a 10 Hz grid played at 20 Hz moves twice as fast as it was shown. The
    trainer records its grid in the checkpoint and the export copies it into manifest.json
    (source_checkpoint.training.action_rate_hz); models without it (upstream's own, random-weight
    ones) are not checked."""
    from runtime.controller.manifest import Manifest

    training = (Manifest.load(model_dir).source_checkpoint or {}).get("training") or {}
    trained = training.get("action_rate_hz")
    if trained is None or abs(float(trained) - float(action_rate_hz)) <= 0.01 * float(action_rate_hz):
        return
    from runtime.errors import ModelError

    raise ModelError(f"model {model_dir} was trained on a {float(trained):g} Hz action grid but "
                     f"control.action_rate_hz is {float(action_rate_hz):g}: its chunks would play "
                     f"{float(action_rate_hz) / float(trained):.2f}x as fast as demonstrated; set "
                     f"control.action_rate_hz: {float(trained):g} or retrain with --action-rate-hz "
                     f"{float(action_rate_hz):g}")

