"""A deterministic tabletop scene for the synthetic cameras: a few coloured objects and a planar arm.

Why: the embedded default (`configs/sim.yaml`) must run without hardware yet exercise the real
perception path: the planner grounds words like "red cube" in the HEAD image, the classical
tracker follows the object's mask while the hand moves and occludes it, and grasp verification
sees an object lifted by the closed hand. Rendering is plain OpenCV drawing (well under 1 ms
per view), so it never competes with the control loop for CPU.

Palette (exact BGR as drawn; each object also has a darker inset/stripe of the same hue at 65 %
value, so colour thresholds in HSV should use hue + saturation, not exact values):

=================  ==========  ================  ==================================================
name               shape       BGR               silhouette in the head image
=================  ==========  ================  ==================================================
red cube           cube        (30, 30, 220)     square (4 corners, aspect 1)
green ball         ball        (40, 180, 40)     circle
blue cube          cube        (210, 70, 20)     square
yellow cylinder    cylinder    (30, 210, 220)    upright rounded rectangle, about 2x taller than wide
=================  ==========  ================  ==================================================

Non-object colours are desaturated on purpose (HSV saturation < 70): table (120, 140, 150), wall
(70, 70, 70), arm links (150, 150, 150), hand (205, 200, 200).

Coordinates: world metres, x to the right, y away from the robot, z up, table top at z = 0.
Robot state: the robot's joint vector in the config's joint space (runtime/joint_space.py: arm
joints, then hand joints with 1.0 = open, 0.0 = closed; upstream's is 7 + 6 = 13). The scene reads
the arm and hand through the joint space's slices, so any layout with at least ARM_JOINTS_READ arm
joints gets a scene (fewer: one ConfigError saying so); without hand joints the hand stays open.
The arm FK is deliberately simple and planar: q0 is the base yaw; q1 and q3 are shoulder and elbow
pitch of a two-link arm (0.3 m links) in the vertical plane through the shoulder (0.36, -0.06,
0.30) at heading q0 - 1.0 rad from +y (elevation of link 1 = pi/2 + q1, of link 2 = pi/2 + q1 +
q3); the other arm joints do not move the hand. Upstream's right-arm `init_qpos` puts the hand
above the table, between the objects.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from runtime.errors import ConfigError
from runtime.joint_space import JointSpace

ARM_JOINTS_READ = 4  # the planar FK reads arm joints 1, 2 and 4 (q0, q1, q3)
ARM_LINK_M = (0.30, 0.30)
SHOULDER_XYZ = (0.36, -0.06, 0.30)
BASE_YAW_OFFSET = -1.0  # rad: the arm stands right of the table and reaches in toward its centre
TABLE_X = (-0.45, 0.45)
TABLE_Y = (-0.10, 0.75)
TABLE_BGR = (120, 140, 150)
WALL_BGR = (70, 70, 70)
LINK_BGR = (150, 150, 150)
JOINT_BGR = (95, 95, 95)
HAND_BGR = (205, 200, 200)
ARM_LABEL = 255  # label value of arm/hand pixels in ground-truth label images
UPSTREAM_INIT_QPOS = (0.36939895, -1.42726047, 0.32529447, -0.78829542, -1.78686804, 0.85681702, 2.33696087)
OPEN_HAND = 1.0  # every hand joint


@dataclass(frozen=True)
class SceneObject:
    """One object on the table. `x, y` is the centre of its footprint, `z` its bottom."""

    name: str
    shape: str  # "cube" | "ball" | "cylinder"
    bgr: tuple[int, int, int]
    width_m: float
    height_m: float
    x: float
    y: float
    z: float = 0.0
    label: int = 0


DEFAULT_OBJECTS = (
    SceneObject("red cube", "cube", (30, 30, 220), 0.06, 0.06, -0.16, 0.32),
    SceneObject("green ball", "ball", (40, 180, 40), 0.06, 0.06, 0.06, 0.46),
    SceneObject("blue cube", "cube", (210, 70, 20), 0.05, 0.05, 0.20, 0.24),
    SceneObject("yellow cylinder", "cylinder", (30, 210, 220), 0.05, 0.10, -0.02, 0.18),
)


def scene_joint_space(joint_space: JointSpace | None = None) -> JointSpace:
    """`joint_space`, checked for what the scene reads (default: a config's that names no joints,
    upstream's 7 + 6). ConfigError when the arm has too few joints for the planar FK."""
    space = joint_space if joint_space is not None else JointSpace.from_config({})
    if space.n_arm < ARM_JOINTS_READ:
        raise ConfigError(f"cameras.kind synthetic: the synthetic scene's planar arm reads arm joints 1, 2 and 4; "
                          f"robot has {space.n_arm} arm joints ({', '.join(space.arm_names)}); use real or "
                          "mujoco cameras for this robot")
    return space


def default_state(joint_space: JointSpace | None = None) -> np.ndarray:
    """Upstream's right-arm init pose with an open hand, in `joint_space`'s layout (default:
    upstream's 13 values): its arm joints take upstream's init values in order (0 beyond the 7th)."""
    space = scene_joint_space(joint_space)
    arm = np.zeros(space.n_arm)
    k = min(space.n_arm, len(UPSTREAM_INIT_QPOS))
    arm[:k] = UPSTREAM_INIT_QPOS[:k]
    return np.concatenate([arm, np.full(space.n_hand, OPEN_HAND)])


def arm_points(q: np.ndarray) -> tuple[np.ndarray, float]:
    """Planar FK from the arm joints (or a whole joint vector: the arm comes first): world points
    (shoulder, elbow, wrist) as a 3x3 array and the base yaw."""
    yaw = float(q[0]) + BASE_YAW_OFFSET
    a1 = math.pi / 2 + float(q[1])
    a2 = a1 + float(q[3])
    direction = np.array([math.sin(yaw), math.cos(yaw)])
    shoulder = np.array(SHOULDER_XYZ, dtype=np.float64)
    r1, z1 = ARM_LINK_M[0] * math.cos(a1), ARM_LINK_M[0] * math.sin(a1)
    r2, z2 = ARM_LINK_M[1] * math.cos(a2), ARM_LINK_M[1] * math.sin(a2)
    elbow = shoulder + np.array([*(r1 * direction), z1])
    wrist = elbow + np.array([*(r2 * direction), z2])
    wrist[2] = max(wrist[2], 0.03)  # the hand cannot go through the table
    return np.stack([shoulder, elbow, wrist]), yaw


def hand_closure(hand: np.ndarray) -> float:
    """0 = open, 1 = closed, from the hand joints alone (1.0 open, 0.0 closed; none: open)."""
    hand = np.asarray(hand, dtype=np.float64)
    if hand.size == 0:
        return 0.0
    return float(np.clip(1.0 - np.mean(hand), 0.0, 1.0))


@dataclass(frozen=True)
class SceneSnapshot:
    """Everything a view needs to draw one frame (immutable, so views render without locks)."""

    objects: tuple[SceneObject, ...]
    arm: np.ndarray  # 3x3 shoulder, elbow, wrist
    yaw: float
    closure: float
    held: str | None


class HeadProjection:
    """Pinhole head camera looking down at the table from behind the robot."""

    def __init__(self, width: int = 640, height: int = 480, focal_px: float = 600.0,
                 position=(0.0, -0.50, 0.80), target=(0.0, 0.30, 0.0)) -> None:
        self.width, self.height, self.focal_px = width, height, focal_px
        self.c = np.array(position, dtype=np.float64)
        fwd = np.array(target, dtype=np.float64) - self.c
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        self.r = np.stack([right, down, fwd])  # world -> camera rows

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World Nx3 -> (pixels Nx2 float, depth N)."""
        pc = (np.atleast_2d(pts) - self.c) @ self.r.T
        z = np.maximum(pc[:, 2], 1e-3)
        uv = np.stack([self.width / 2 + self.focal_px * pc[:, 0] / z,
                       self.height / 2 + self.focal_px * pc[:, 1] / z], axis=1)
        return uv, z


def _dark(bgr: tuple[int, int, int], k: float = 0.65) -> tuple[int, int, int]:
    return tuple(int(c * k) for c in bgr)


class TabletopScene:
    """World state shared by the head and wrist cameras.

    `state_fn` returns the robot's current joint positions in `joint_space`'s layout (default:
    upstream's 13; called once per `snapshot()`, from camera threads; it must be thread-safe and
    fast). A non-finite or wrongly sized state is ignored (the last good one is kept) and counted
    in `bad_states`.
    Grasping: when the hand closes (closure > 0.6) with the wrist within reach of an object, the
    object follows the hand; it drops straight onto the table when the hand opens (< 0.4).
    """

    def __init__(self, state_fn: Callable[[], np.ndarray] | None = None,
                 objects: tuple[SceneObject, ...] = DEFAULT_OBJECTS, joint_space: JointSpace | None = None) -> None:
        names = [o.name for o in objects]
        if len(set(names)) != len(names):
            raise ValueError(f"scene object names must be unique, got {names}")
        self.joints = scene_joint_space(joint_space)
        home = default_state(self.joints)
        self.state_fn = state_fn or (lambda: home)
        self._objects = [replace(o, label=i + 1) for i, o in enumerate(objects)]
        self._lock = threading.Lock()
        self._q = home
        self._held: str | None = None
        self._grip_offset = np.zeros(3)
        self.bad_states = 0

    @property
    def labels(self) -> dict[str, int]:
        """Object name -> value of its pixels in ground-truth label images."""
        return {o.name: o.label for o in self._objects}

    def _read_state(self) -> np.ndarray:
        try:
            q = np.asarray(self.state_fn(), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            q = np.empty(0)
        if q.size != self.joints.n or not np.all(np.isfinite(q)):
            self.bad_states += 1
            return self._q
        return q

    def snapshot(self) -> SceneSnapshot:
        """Pull the robot state, update grasping, return an immutable snapshot to draw."""
        q = self._read_state()
        arm, yaw = arm_points(self.joints.arm(q))
        closure = hand_closure(self.joints.hand(q))
        wrist = arm[2]
        with self._lock:
            self._q = q
            if self._held is None and closure > 0.6:
                self._try_grasp(wrist)
            elif self._held is not None and closure < 0.4:
                self._release()
            if self._held is not None:
                for i, o in enumerate(self._objects):
                    if o.name == self._held:
                        p = wrist + self._grip_offset
                        self._objects[i] = replace(o, x=float(p[0]), y=float(p[1]), z=float(max(p[2], 0.0)))
            return SceneSnapshot(tuple(self._objects), arm, yaw, closure, self._held)

    def _try_grasp(self, wrist: np.ndarray) -> None:
        best, best_d = None, math.inf
        for o in self._objects:
            d = math.hypot(o.x - wrist[0], o.y - wrist[1])
            if d < 0.03 + o.width_m / 2 and wrist[2] < o.z + o.height_m + 0.06 and d < best_d:
                best, best_d = o, d
        if best is not None:
            self._held = best.name
            self._grip_offset = np.array([best.x, best.y, best.z]) - wrist

    def _release(self) -> None:
        for i, o in enumerate(self._objects):
            if o.name == self._held:
                self._objects[i] = replace(o, z=0.0)
        self._held = None

    def object(self, name: str) -> SceneObject:
        """The named object's current state; KeyError lists the known names."""
        with self._lock:
            for o in self._objects:
                if o.name == name:
                    return o
        raise KeyError(f"no object '{name}' in the scene; known: {[o.name for o in self._objects]}")

    def place(self, name: str, x: float, y: float) -> None:
        """Move an object on the table (tests and demos use this to script motion)."""
        with self._lock:
            for i, o in enumerate(self._objects):
                if o.name == name:
                    self._objects[i] = replace(o, x=float(x), y=float(y))
                    return
        raise KeyError(f"no object '{name}' in the scene")

    @property
    def held(self) -> str | None:
        return self._held


class HeadRenderer:
    """Draws the head ("third") view; background precomputed once."""

    def __init__(self, width: int = 640, height: int = 480, seed: int = 0) -> None:
        self.proj = HeadProjection(width, height)
        self.width, self.height = width, height
        self.background = self._make_background(seed)

    def _make_background(self, seed: int) -> np.ndarray:
        img = np.full((self.height, self.width, 3), WALL_BGR, np.uint8)
        corners = np.array([[TABLE_X[0], TABLE_Y[0], 0], [TABLE_X[1], TABLE_Y[0], 0],
                            [TABLE_X[1], TABLE_Y[1], 0], [TABLE_X[0], TABLE_Y[1], 0]])
        uv, _ = self.proj.project(corners)
        cv2.fillConvexPoly(img, np.round(uv).astype(np.int32), TABLE_BGR, cv2.LINE_AA)
        rng = np.random.default_rng(seed)
        for _ in range(25):  # faint wood grain: texture for optical flow, colourless for grounding
            y = rng.uniform(TABLE_Y[0], TABLE_Y[1])
            x0, x1 = sorted(rng.uniform(TABLE_X[0], TABLE_X[1], 2))
            uv, _ = self.proj.project(np.array([[x0, y, 0], [x1, y, 0]]))
            shade = int(rng.integers(-14, 14))
            col = tuple(int(np.clip(c + shade, 0, 255)) for c in TABLE_BGR)
            cv2.line(img, tuple(np.round(uv[0]).astype(int)), tuple(np.round(uv[1]).astype(int)), col, 1)
        return img

    def render(self, snap: SceneSnapshot, labels: np.ndarray | None = None) -> np.ndarray:
        img = self.background.copy()
        if labels is not None:
            labels[:] = 0
        centres = np.array([[o.x, o.y, o.z + o.height_m / 2] for o in snap.objects])
        uv, depth = self.proj.project(centres)
        for i in np.argsort(-depth):  # far to near
            self._draw_object(img, labels, snap.objects[i], uv[i], self.proj.focal_px / depth[i])
        self._draw_arm(img, labels, snap)
        return img

    @staticmethod
    def _draw_object(img, labels, o: SceneObject, c: np.ndarray, px_per_m: float) -> None:
        w = o.width_m * px_per_m
        h = o.height_m * px_per_m
        cx, cy = float(c[0]), float(c[1])
        targets = [(img, o.bgr, _dark(o.bgr))]
        if labels is not None:
            targets.append((labels, o.label, o.label))
        for canvas, col, dark in targets:
            if o.shape == "ball":
                cv2.circle(canvas, (round(cx), round(cy)), max(1, round(w / 2)), col, -1, cv2.LINE_8)
                cv2.circle(canvas, (round(cx - w * 0.12), round(cy - w * 0.12)), max(1, round(w * 0.15)), dark, -1)
            elif o.shape == "cylinder":
                half_w, half_h, cap = w / 2, h / 2, max(1, round(w * 0.18))
                p1 = (round(cx - half_w), round(cy - half_h))
                p2 = (round(cx + half_w), round(cy + half_h))
                cv2.rectangle(canvas, p1, p2, col, -1)
                cv2.ellipse(canvas, (round(cx), p2[1]), (round(half_w), cap), 0, 0, 180, col, -1)
                cv2.ellipse(canvas, (round(cx), p1[1]), (round(half_w), cap), 0, 0, 360, dark, -1)
                band = round(h * 0.12)
                cv2.rectangle(canvas, (p1[0], round(cy) - band // 2), (p2[0], round(cy) + band // 2), dark, -1)
            else:  # cube: square face with a darker inset
                half = w / 2
                cv2.rectangle(canvas, (round(cx - half), round(cy - half)), (round(cx + half), round(cy + half)), col, -1)
                k = half * 0.45
                cv2.rectangle(canvas, (round(cx - k), round(cy - k)), (round(cx + k), round(cy + k)), dark, 2)

    def _draw_arm(self, img, labels, snap: SceneSnapshot) -> None:
        uv, depth = self.proj.project(snap.arm)
        pts = [tuple(np.round(p).astype(int)) for p in uv]
        f = self.proj.focal_px
        link_t = [max(2, round(0.035 * f / d)) for d in depth]
        wrist_px = pts[2]
        r_hand = max(3, round(0.035 * f / depth[2]))
        spread = (1.0 - snap.closure) * 0.9 + 0.15
        fingers = []
        for k in (-1, 0, 1):
            ang = snap.yaw + k * spread * 0.6
            tip = (round(wrist_px[0] + math.sin(ang) * r_hand * 2.0), round(wrist_px[1] - math.cos(ang) * r_hand * 1.2))
            fingers.append(tip)
        for canvas, link, joint, hand in ((img, LINK_BGR, JOINT_BGR, HAND_BGR),
                                          (labels, ARM_LABEL, ARM_LABEL, ARM_LABEL)):
            if canvas is None:
                continue
            cv2.line(canvas, pts[0], pts[1], link, link_t[0])
            cv2.line(canvas, pts[1], pts[2], link, link_t[1])
            cv2.circle(canvas, pts[0], round(link_t[0] * 0.7), joint, -1)
            cv2.circle(canvas, pts[1], round(link_t[1] * 0.7), joint, -1)
            for tip in fingers:
                cv2.line(canvas, wrist_px, tip, hand, max(2, r_hand // 2))
            cv2.circle(canvas, wrist_px, r_hand, hand, -1)


class WristRenderer:
    """Draws the wrist ("right_first") view: looking straight down from the hand, rotated with
    the base yaw, fingers visible at the bottom edge (closing with the hand)."""

    def __init__(self, width: int = 640, height: int = 480, focal_px: float = 320.0, lens_offset_m: float = 0.08) -> None:
        self.width, self.height, self.focal_px, self.lens_offset_m = width, height, focal_px, lens_offset_m
        self.wall = np.full((height, width, 3), WALL_BGR, np.uint8)

    def _to_px(self, snap: SceneSnapshot, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wrist = snap.arm[2]
        d = np.atleast_2d(xyz)[:, :2] - wrist[:2]
        c, s = math.cos(snap.yaw), math.sin(snap.yaw)
        right = d[:, 0] * c - d[:, 1] * s
        fwd = d[:, 0] * s + d[:, 1] * c
        dist = np.maximum(wrist[2] + self.lens_offset_m - np.atleast_2d(xyz)[:, 2], 0.02)
        scale = self.focal_px / dist
        return np.stack([self.width / 2 + right * scale, self.height / 2 - fwd * scale], axis=1), scale

    def render(self, snap: SceneSnapshot, labels: np.ndarray | None = None) -> np.ndarray:
        img = self.wall.copy()
        if labels is not None:
            labels[:] = 0
        corners = np.array([[TABLE_X[0], TABLE_Y[0], 0], [TABLE_X[1], TABLE_Y[0], 0],
                            [TABLE_X[1], TABLE_Y[1], 0], [TABLE_X[0], TABLE_Y[1], 0]])
        uv, _ = self._to_px(snap, corners)
        uv = np.clip(uv, -1e5, 1e5)
        cv2.fillConvexPoly(img, np.round(uv).astype(np.int32), TABLE_BGR)
        for o in sorted(snap.objects, key=lambda o: o.z + o.height_m):  # low to high
            if o.name == snap.held:
                continue  # drawn last, between the fingers
            self._draw_top(img, labels, snap, o)
        held = [o for o in snap.objects if o.name == snap.held]
        for o in held:
            self._draw_top(img, labels, snap, o)
        self._draw_fingers(img, labels, snap.closure)
        return img

    def _draw_top(self, img, labels, snap, o: SceneObject) -> None:
        top = np.array([[o.x, o.y, o.z + o.height_m]])
        uv, scale = self._to_px(snap, top)
        cx, cy = uv[0]
        if not (-self.width < cx < 2 * self.width and -self.height < cy < 2 * self.height):
            return
        half = o.width_m / 2 * float(scale[0])
        centre = (round(cx), round(cy))
        for canvas, col, dark in ((img, o.bgr, _dark(o.bgr)), (labels, o.label, o.label)):
            if canvas is None:
                continue
            if o.shape == "cube":
                box = cv2.boxPoints(((cx, cy), (2 * half, 2 * half), -math.degrees(snap.yaw)))
                cv2.fillConvexPoly(canvas, np.round(box).astype(np.int32), col)
                cv2.circle(canvas, centre, max(1, round(half * 0.3)), dark, 2)
            else:
                cv2.circle(canvas, centre, max(1, round(half)), col, -1)
                cv2.circle(canvas, centre, max(1, round(half * 0.4)), dark, 2)

    def _draw_fingers(self, img, labels, closure: float) -> None:
        gap = round((1.0 - closure) * self.width * 0.30 + 20)
        w, h = self.width, self.height
        for side in (-1, 1):
            x_in = w // 2 + side * gap
            x_out = w // 2 + side * (gap + 70)
            poly = np.array([[x_out, h], [x_in, h], [x_in + side * 10, h - 120], [x_out + side * 10, h - 130]], np.int32)
            for canvas, col in ((img, HAND_BGR), (labels, ARM_LABEL)):
                if canvas is not None:
                    cv2.fillConvexPoly(canvas, poly, col)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight [x1, y1, x2, y2] box (exclusive max) of a {0,1} mask, or None if empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
