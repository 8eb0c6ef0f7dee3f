"""The simulator in a process of its own, stepping physics at real time and rendering both cameras.

Why its own process: physics (500 Hz) and rendering (two cameras at the camera rate) are CPU work
that must not share the control loop's GIL, as a robot's servos and cameras never do. Like the
firmware emulator, it is started once and the runtime's robot link and cameras attach to it.

Real time: the simulated clock follows time.monotonic(); when the process falls behind (a busy
CPU) it catches up by at most MAX_CATCHUP_STEPS per wake-up and then drops the remainder, counted in
`lag_steps` (a robot does not slow down for a slow host either). Targets take effect only while
armed and not stopped; otherwise the servos hold the last target.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass

import numpy as np

from runtime.sim import shm

log = logging.getLogger(__name__)

MAX_CATCHUP_STEPS = 25


@dataclass(frozen=True)
class SimSettings:
    """Everything the sim process needs (picklable): robot layout, scene seed, cameras."""

    robot: dict                 # RobotConfig.model_dump()
    seed: int
    head_size: tuple[int, int]  # (width, height)
    wrist_size: tuple[int, int]
    fps: float
    timestep_s: float = 0.002
    n_objects: int = 3
    render_masks: bool = False  # ground-truth object masks of the head view (evaluation only)
    scene_xml: str | None = None
    # The sim plays the robot's servos and cameras, which a busy host CPU does not slow down: a
    # low SCHED_FIFO priority where permitted, else ordinary scheduling. Below the control process's
    # worker threads (control.realtime.worker_sched_fifo_priority, 10 in the configs): at 20 it
    # preempted a thread holding the loop's GIL (per-episode p99 lateness median 86 -> 439 us).
    sched_fifo_priority: int | None = 5

    @property
    def layout(self) -> shm.Layout:
        """Sized by the robot's joint count (the config's joint space), not upstream's 13."""
        return shm.Layout(tuple(self.head_size), tuple(self.wrist_size), self.robot_config().n_joints)

    def robot_config(self):
        from runtime.config.schema import RobotConfig

        return RobotConfig(**self.robot)


def build(settings: SimSettings):
    """(model, spec, robot qpos addresses) for `settings`."""
    from runtime.sim.scene import check_model, load_model, random_scene

    robot = settings.robot_config()
    spec = random_scene(settings.seed, settings.n_objects)
    if settings.scene_xml is not None:
        model = load_model(robot, xml=settings.scene_xml, where="scene file")
    else:
        from runtime.sim.scene import build_mjcf

        w = max(settings.head_size[0], settings.wrist_size[0])
        h = max(settings.head_size[1], settings.wrist_size[1])
        model = load_model(robot, xml=build_mjcf(robot, spec, (w, h), settings.timestep_s))
    return model, spec, check_model(model, robot)


class Simulator:
    """Physics + rendering on one MjData; `run(mem)` is the process's main loop."""

    def __init__(self, settings: SimSettings) -> None:
        import mujoco

        self.mj = mujoco
        self.s = settings
        self.model, self.spec, self.addr = build(settings)
        self.data = mujoco.MjData(self.model)
        robot = settings.robot_config()
        home = np.asarray(robot.home_positions, dtype=np.float64)
        self.data.qpos[self.addr] = home
        self.data.ctrl[:] = home
        mujoco.mj_forward(self.model, self.data)
        self.dof = [int(self.model.jnt_dofadr[int(np.nonzero(self.model.jnt_qposadr == a)[0][0])]) for a in self.addr]
        self.obj_qpos = []
        for o in self.spec.objects:
            jid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, f"{o.name}_free")
            self.obj_qpos.append(int(self.model.jnt_qposadr[jid]) if jid >= 0 else -1)
        self.obj_geoms = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, f"{o.name}_geom")
                          for o in self.spec.objects]
        self.renderers = {}
        self.steps = 0
        self.lag_steps = 0

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.mj.mj_step(self.model, self.data)
        self.steps += n

    def apply(self, cmd: np.ndarray) -> None:
        """cmd = [t, armed, stopped, count, targets...] (shm.cmd_len(n) - 1 values, n = robot joints)."""
        armed, stopped = cmd[1] > 0.5, cmd[2] > 0.5
        if armed and not stopped and cmd[3] > 0:
            self.data.ctrl[:] = cmd[shm.CMD_HEAD:shm.CMD_HEAD + len(self.addr)]

    def state(self, t: float) -> np.ndarray:
        d = self.data
        return np.concatenate([[t, d.time, self.steps, self.lag_steps], d.qpos[self.addr], d.qvel[self.dof]])

    def objects(self) -> np.ndarray:
        out = np.zeros(shm.OBJ_LEN - 1)
        out[0] = len(self.obj_qpos)
        for i, a in enumerate(self.obj_qpos[:shm.MAX_OBJECTS]):
            if a >= 0:
                out[1 + 7 * i:8 + 7 * i] = self.data.qpos[a:a + 7]
        return out

    def render(self, camera: str, size: tuple[int, int], masks: bool = False):
        key = (camera, masks)
        r = self.renderers.get(key)
        if r is None:
            r = self.renderers[key] = self.mj.Renderer(self.model, size[1], size[0])
            if masks:
                r.enable_segmentation_rendering()
        r.update_scene(self.data, camera)
        img = r.render()
        if not masks:
            return img
        seg = img[:, :, 0]
        types = img[:, :, 1]
        mask = np.zeros(seg.shape, np.uint8)
        for i, g in enumerate(self.obj_geoms):
            mask[(seg == g) & (types == int(self.mj.mjtObj.mjOBJ_GEOM))] = i + 1
        return mask

    def publish_frame(self, mem: shm.SimMemory, cam: str, size, index: int, t: float) -> None:
        img = self.render(cam, size)
        mask = self.render(cam, size, masks=True) if (self.s.render_masks and cam == "head") else None
        hdr = mem[f"{cam}_hdr"]
        hdr[0] += 1
        mem[f"{cam}_img"][...] = img[:, :, ::-1]  # BGR, as the runtime's cameras deliver
        if mask is not None:
            mem[f"{cam}_mask"][...] = mask
        hdr[1:4] = (t, index, 1.0 if mask is not None else 0.0)
        hdr[0] += 1

    def run(self, mem: shm.SimMemory) -> None:
        dt = self.model.opt.timestep
        frame_dt = 1.0 / self.s.fps
        ctrl = mem["ctrl"]
        t0 = time.monotonic()
        sim_t0 = self.data.time
        next_frame = t0
        index = 0
        last_cmd_seq = -1.0
        shm.write(mem["state"], self.state(t0))
        shm.write(mem["obj"], self.objects())
        while ctrl[1] < 0.5:
            now = time.monotonic()
            ctrl[3] = now
            if mem["cmd"][0] != last_cmd_seq:
                last_cmd_seq = mem["cmd"][0]
                self.apply(shm.read(mem["cmd"]))
            due = int((now - t0 - (self.data.time - sim_t0)) / dt)
            if due > MAX_CATCHUP_STEPS:
                self.lag_steps += due - MAX_CATCHUP_STEPS
                sim_t0 -= (due - MAX_CATCHUP_STEPS) * dt  # drop the time we cannot catch up
                due = MAX_CATCHUP_STEPS
            if due > 0:
                self.step(due)
                now = time.monotonic()
                shm.write(mem["state"], self.state(now))
                shm.write(mem["obj"], self.objects())
            if now >= next_frame:
                index += 1
                self.publish_frame(mem, "head", self.s.head_size, index, now)
                self.publish_frame(mem, "wrist", self.s.wrist_size, index, now)
                next_frame += frame_dt
                if next_frame < now:  # rendering fell behind: skip frames, like a camera's ring buffer
                    next_frame = now + frame_dt
            wake = min(t0 + (self.data.time - sim_t0) + dt, next_frame)
            pause = wake - time.monotonic()
            if pause > 0:
                time.sleep(pause)


def sim_main(settings: SimSettings, name: str, conn) -> None:
    """Entry point of the sim process: attach, build, say ready (or why not), run until told to stop."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    if settings.sched_fifo_priority is not None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(settings.sched_fifo_priority)))
        except (OSError, AttributeError):
            pass  # not permitted here: the sim runs at ordinary priority and counts its lag
    mem = None
    try:
        mem = shm.SimMemory(settings.layout, name)
        sim = Simulator(settings)
        # the first state and poses are in before anyone is told to attach
        shm.write(mem["state"], sim.state(time.monotonic()))
        shm.write(mem["obj"], sim.objects())
        mem["ctrl"][0], mem["ctrl"][2] = 1.0, os.getpid()
        conn.send(("ready", {"objects": [o.__dict__ for o in sim.spec.objects]}))
    except Exception as exc:  # reported to the parent, which raises it with the reason
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        sim.run(mem)
    finally:
        mem["ctrl"][0] = 0.0


class SimProcess:
    """Owner of one simulator process and its shared memory block."""

    def __init__(self, settings: SimSettings, start_timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.start_timeout_s = start_timeout_s
        self.mem: shm.SimMemory | None = None
        self.proc = None
        self.objects: list[dict] = []

    @property
    def name(self) -> str:
        return self.mem.name

    def start(self) -> SimProcess:
        from runtime.errors import DeviceNotConnectedError

        self.mem = shm.SimMemory(self.settings.layout, name=f"dexgrasp-sim-{os.getpid()}-{id(self):x}", create=True)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=sim_main, args=(self.settings, self.mem.name, child),
                                name="dexgrasp-mujoco", daemon=True)
        self.proc.start()
        child.close()
        if not parent.poll(self.start_timeout_s):
            self.stop()
            raise DeviceNotConnectedError(f"mujoco sim process did not start within {self.start_timeout_s:.0f} s")
        try:
            kind, payload = parent.recv()
        except EOFError:
            self.stop()
            raise DeviceNotConnectedError("mujoco sim process exited during start-up") from None
        if kind == "error":
            self.stop()
            from runtime.errors import ConfigError

            raise ConfigError(f"mujoco sim: {payload}")
        self.objects = payload["objects"]
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.mem is not None and self.proc is not None:
            self.mem["ctrl"][1] = 1.0
            self.proc.join(timeout_s)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(timeout_s)
        self.proc = None
        if self.mem is not None:
            self.mem.close()
            self.mem = None


def settings_from_config(cfg, render_masks: bool = False, scene_xml: str | None = None) -> SimSettings:
    c = cfg.cameras
    fps = c.head.fps
    if not (math.isfinite(fps) and fps > 0):
        from runtime.errors import ConfigError

        raise ConfigError(f"cameras.head.fps: must be > 0, got {fps}")
    return SimSettings(robot=cfg.robot.model_dump(), seed=int(c.seed), head_size=(c.head.width, c.head.height),
                       wrist_size=(c.wrist.width, c.wrist.height), fps=float(fps), render_masks=render_masks,
                       scene_xml=scene_xml)
