"""The MuJoCo tabletop, written as MJCF from Python (no external assets).

Why generated: the arm's joint names and limits must be the runtime's (`robot:` section of the
config), and the objects are placed at random per episode from a seed, so the model is a function
of (robot config, seed). Every process that needs the model (the simulator, the scripted expert's
kinematics) rebuilds the same one from the same inputs.

Layout (metres, world z up): a table whose top is at TABLE_Z; the arm's base on the table at the
origin; objects in front of it (+x); the head camera opposite the arm looking back at the table.
The arm: 7 revolute joints (yaw, pitch, roll, pitch, roll, pitch, roll) named and limited like
robot.joint_names[:7] / arm_*_rad. The hand: three fingers at 120 degrees, each a proximal and a
distal hinge (6 actuated joints, robot.joint_names[7:], range = hand_lower..hand_upper in rad; 0
open, 1 closed). Position actuators on all 13; arm links are gravity-compensated like a robot's
servo controller. The "grasp" site sits between the fingers where an object is held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime.errors import ConfigError

TABLE_Z = 0.40
SHOULDER_Z = 0.20          # base + link 1 above the table top
UPPER_ARM_M = 0.30
FOREARM_M = 0.30
WRIST_M = 0.06
FINGER_RADIUS_M = 0.05     # fingers' distance from the hand axis
PROXIMAL_M = 0.05
DISTAL_M = 0.04
GRASP_OFFSET_M = 0.095     # grasp site along the hand axis from the wrist roll joint

# Colours the local planner finds (runtime/planner/local_backend.py PALETTE, HSV): vivid, saturated.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.08, 0.08),
    "green": (0.10, 0.75, 0.15),
    "blue": (0.10, 0.25, 0.90),
    "yellow": (0.90, 0.80, 0.05),
    "purple": (0.60, 0.10, 0.80),
    "orange": (0.95, 0.45, 0.05),
}
SHAPES = ("cube", "cylinder", "ball")
# Where objects may be placed (x, y ranges in world metres) and their minimum spacing (the open
# hand's fingers reach FINGER_RADIUS_M + 8 mm around the target).
WORKSPACE_X = (0.36, 0.52)
WORKSPACE_Y = (-0.18, 0.18)
MIN_SPACING_M = 0.13


@dataclass(frozen=True)
class ObjectSpec:
    """One graspable object: colour and shape words (as the planner understands them), size, pose."""

    name: str
    colour: str
    shape: str
    half_size_m: float     # cube half edge / cylinder and ball radius
    half_height_m: float   # half its height (rest height of its centre above the table)
    x: float
    y: float
    yaw: float
    mass_kg: float = 0.08

    @property
    def rest_z(self) -> float:
        return TABLE_Z + self.half_height_m


@dataclass(frozen=True)
class SceneSpec:
    seed: int
    objects: tuple[ObjectSpec, ...]

    def find(self, colour: str | None = None, shape: str | None = None) -> ObjectSpec:
        for o in self.objects:
            if (colour is None or o.colour == colour) and (shape is None or o.shape == shape):
                return o
        raise ConfigError(f"scene (seed {self.seed}): no {colour or ''} {shape or 'object'} in "
                          f"{[o.colour + ' ' + o.shape for o in self.objects]}")


def random_scene(seed: int, n_objects: int = 3) -> SceneSpec:
    """Objects of distinct colours and random shapes, placed at random (seeded) with spacing."""
    if not 1 <= n_objects <= len(COLOURS):
        raise ConfigError(f"scene: n_objects must be in [1, {len(COLOURS)}], got {n_objects}")
    rng = np.random.default_rng(seed)
    colours = rng.choice(list(COLOURS), size=n_objects, replace=False)
    placed: list[ObjectSpec] = []
    for i, colour in enumerate(colours):
        shape = str(rng.choice(SHAPES))
        half = float(rng.uniform(0.020, 0.024))
        half_h = {"cube": half, "cylinder": float(rng.uniform(0.026, 0.032)), "ball": half + 0.002}[shape]
        if shape == "ball":
            half = half_h
        for _ in range(1000):
            x, y = rng.uniform(*WORKSPACE_X), rng.uniform(*WORKSPACE_Y)
            if all(math.hypot(x - o.x, y - o.y) >= MIN_SPACING_M for o in placed):
                break
        else:  # pragma: no cover - the workspace fits 3 objects easily
            raise ConfigError(f"scene (seed {seed}): could not place {n_objects} objects")
        placed.append(ObjectSpec(f"obj{i}", str(colour), shape, half, half_h, float(x), float(y),
                                 float(rng.uniform(-math.pi / 4, math.pi / 4))))
    return SceneSpec(int(seed), tuple(placed))


def look_at_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF camera `xyaxes` for a camera at `pos` looking at `target` (MuJoCo cameras look along -z)."""
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    x = np.cross(f, up)
    x /= np.linalg.norm(x)
    y = np.cross(-f, x)
    return " ".join(f"{v:.6f}" for v in (*x, *y))


def _fmt(v) -> str:
    return " ".join(f"{float(a):.6g}" for a in v)


def _object_xml(o: ObjectSpec) -> str:
    r, g, b = COLOURS[o.colour]
    rgba = f"{r} {g} {b} 1"
    common = f'rgba="{rgba}" mass="{o.mass_kg}" friction="1.5 0.02 0.002" condim="4" solref="0.004 1"'
    if o.shape == "cube":
        geom = f'<geom name="{o.name}_geom" type="box" size="{o.half_size_m} {o.half_size_m} {o.half_size_m}" {common}/>'
    elif o.shape == "cylinder":
        geom = f'<geom name="{o.name}_geom" type="cylinder" size="{o.half_size_m} {o.half_height_m}" {common}/>'
    else:
        geom = f'<geom name="{o.name}_geom" type="sphere" size="{o.half_size_m}" {common}/>'
    quat = (math.cos(o.yaw / 2), 0, 0, math.sin(o.yaw / 2))
    return (f'<body name="{o.name}" pos="{o.x:.5f} {o.y:.5f} {o.rest_z + 0.001:.5f}" quat="{_fmt(quat)}">'
            f'<freejoint name="{o.name}_free"/>{geom}</body>')


def _finger_xml(k: int, names: list[str], lo: list[float], hi: list[float]) -> str:
    """Finger k (0..2) at azimuth 120k degrees; hinge axes tangential so + angle curls inward."""
    phi = 2 * math.pi * k / 3
    c, s = math.cos(phi), math.sin(phi)
    axis = f"{s:.6f} {-c:.6f} 0"
    pj, dj = names[2 * k], names[2 * k + 1]
    cap = 'friction="1.5 0.02 0.002" condim="4" rgba="0.25 0.25 0.28 1"'
    return (f'<body name="finger{k}_proximal" pos="{FINGER_RADIUS_M * c:.6f} {FINGER_RADIUS_M * s:.6f} 0.02">'
            f'<joint name="{pj}" type="hinge" axis="{axis}" range="{lo[2 * k]} {hi[2 * k]}" damping="0.05" armature="0.001"/>'
            f'<geom type="capsule" fromto="0 0 0 0 0 {PROXIMAL_M}" size="0.008" mass="0.02" {cap}/>'
            f'<body name="finger{k}_distal" pos="0 0 {PROXIMAL_M}">'
            f'<joint name="{dj}" type="hinge" axis="{axis}" range="{lo[2 * k + 1]} {hi[2 * k + 1]}" damping="0.05" armature="0.001"/>'
            f'<geom type="capsule" fromto="0 0 0 0 0 {DISTAL_M}" size="0.008" mass="0.015" {cap}/>'
            f'</body></body>')


def build_mjcf(robot, scene: SceneSpec, offscreen: tuple[int, int] = (640, 480), timestep_s: float = 0.002) -> str:
    """The MJCF text of the tabletop for `robot` (a RobotConfig) with `scene`'s objects."""
    names = list(robot.joint_names)
    if len(robot.arm_lower_rad) != 7 or len(robot.hand_lower) != 6:
        raise ConfigError(f"mujoco scene: the generated arm has 7 arm + 6 hand joints; robot has "
                          f"{len(robot.arm_lower_rad)} + {len(robot.hand_lower)}")
    arm_lo, arm_hi = list(robot.arm_lower_rad), list(robot.arm_upper_rad)
    hand_lo, hand_hi = list(robot.hand_lower), list(robot.hand_upper)
    axes = ["0 0 1", "0 1 0", "0 0 1", "0 1 0", "0 0 1", "0 1 0", "0 0 1"]
    offsets = [(0, 0, 0.10), (0, 0, 0.10), (0, 0, UPPER_ARM_M / 2), (0, 0, UPPER_ARM_M / 2),
               (0, 0, FOREARM_M / 2), (0, 0, FOREARM_M / 2), (0, 0, WRIST_M)]
    lengths = [0.10, UPPER_ARM_M / 2, UPPER_ARM_M / 2, FOREARM_M / 2, FOREARM_M / 2, WRIST_M, 0.0]
    link = 'rgba="0.7 0.7 0.72 1" contype="0" conaffinity="0"'
    arm_xml = ""
    for i in range(7):
        geom = (f'<geom type="capsule" fromto="0 0 0 0 0 {lengths[i]}" size="0.03" mass="0.4" {link}/>'
                if lengths[i] > 0 else "")
        arm_xml += (f'<body name="link{i + 1}" pos="{_fmt(offsets[i])}" gravcomp="1">'
                    f'<joint name="{names[i]}" type="hinge" axis="{axes[i]}" range="{arm_lo[i]} {arm_hi[i]}" '
                    f'damping="2" armature="0.05"/>{geom}')
    hand = ('<geom name="palm" type="cylinder" pos="0 0 0.01" size="0.058 0.01" mass="0.15" rgba="0.3 0.3 0.33 1" '
            'friction="1.5 0.02 0.002" condim="4"/>'
            f'<site name="grasp" pos="0 0 {GRASP_OFFSET_M}" size="0.005" rgba="1 1 1 0"/>'
            f'<camera name="wrist" pos="0 0 0.022" xyaxes="0 1 0 1 0 0" fovy="80"/>'
            + "".join(_finger_xml(k, names[7:], hand_lo, hand_hi) for k in range(3)))
    arm_xml += hand + "</body>" * 7
    actuators = "".join(
        f'<position name="act_{n}" joint="{n}" kp="{kp}" kv="{kv}" ctrlrange="{lo} {hi}"/>'
        for n, lo, hi, kp, kv in zip(names, arm_lo + hand_lo, arm_hi + hand_hi,
                                     [400.0] * 7 + [1.5] * 6, [20.0] * 7 + [0.05] * 6, strict=True))
    head_pos = (1.05, 0.0, TABLE_Z + 0.62)
    head_target = (0.42, 0.0, TABLE_Z)
    objects = "".join(_object_xml(o) for o in scene.objects)
    w, h = offscreen
    return f"""<mujoco model="dexgrasp_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep_s}" cone="elliptic" impratio="5" gravity="0 0 -9.81"/>
  <visual><global offwidth="{w}" offheight="{h}"/><quality shadowsize="0"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5"/></visual>
  <worldbody>
    <light pos="0.4 0 2.2" dir="0 0 -1" diffuse="0.5 0.5 0.5" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" rgba="0.35 0.35 0.37 1"/>
    <geom name="table" type="box" pos="0.45 0 {TABLE_Z / 2}" size="0.45 0.5 {TABLE_Z / 2}" rgba="0.55 0.52 0.48 1"
          friction="1.0 0.02 0.002" condim="4"/>
    <camera name="head" pos="{_fmt(head_pos)}" xyaxes="{look_at_xyaxes(head_pos, head_target)}" fovy="50"/>
    <body name="base" pos="0 0 {TABLE_Z}">
      <geom type="cylinder" pos="0 0 0.05" size="0.06 0.05" rgba="0.4 0.4 0.42 1" contype="0" conaffinity="0"/>
      {arm_xml}
    </body>
    {objects}
  </worldbody>
  <actuator>{actuators}</actuator>
</mujoco>"""


def check_model(model, robot, where: str = "scene") -> list[int]:
    """qpos addresses of robot.joint_names in `model`; ConfigError naming any joint the robot does not
    have (an actuated joint outside robot.joint_names) or a robot joint the scene lacks."""
    import mujoco

    names = list(robot.joint_names)
    addresses = []
    for n in names:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n)
        if jid < 0:
            raise ConfigError(f"{where}: robot joint {n!r} (robot.joint_names) is not in the scene")
        addresses.append(int(model.jnt_qposadr[jid]))
    for a in range(model.nu):
        jid = int(model.actuator_trnid[a, 0])
        jname = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, jid)
        if jname not in names:
            raise ConfigError(f"{where}: actuator {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a)!r} "
                              f"drives unknown joint {jname!r}; the robot's joints are {names}")
    for j in range(model.njnt):
        jname = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
        if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_FREE and jname not in names:
            raise ConfigError(f"{where}: unknown joint {jname!r}: not one of the robot's joints {names}")
    if model.nu != len(names):
        raise ConfigError(f"{where}: {model.nu} actuators, expected one per robot joint ({len(names)})")
    return addresses


def load_model(robot, scene: SceneSpec | None = None, xml: str | None = None, where: str = "scene"):
    """Compile the generated scene (or `xml`, a user's MJCF text) and check it against `robot`."""
    try:
        import mujoco
    except ModuleNotFoundError as exc:
        from runtime.errors import MissingExtraError

        raise MissingExtraError(f"the MuJoCo simulator needs the 'mujoco' extra: pip install -e '.[mujoco]' ({exc})") from exc
    text = xml if xml is not None else build_mjcf(robot, scene or random_scene(0))
    try:
        model = mujoco.MjModel.from_xml_string(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: MuJoCo cannot load the model: {str(exc).splitlines()[0]}") from None
    check_model(model, robot, where)
    return model
