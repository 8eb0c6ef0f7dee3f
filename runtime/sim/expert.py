"""The scripted expert: a ChunkPolicy that grasps the prompted object with privileged knowledge.

Why a policy: it runs inside the runtime exactly where a trained controller runs (PolicyWorker ->
timed chunks -> safety -> robot), so its demonstrations go through the real recorder with the
tracker's masks in `rgbm`, the same 20 Hz action spacing and the same arm normalisation as at
inference. Its privilege is the target's pose, read from the simulator's shared memory when an
attempt starts; the images and mask it is given are ignored.

Plan (joint space, from IK on the simulator's own model): approach above the object, descend in
short IK steps, close the hand, lift, hold. Each segment is a cosine-eased interpolation timed so
that no arm joint exceeds `max_speed_rad_s` (below the safety filter's limit, so the filter never
reshapes the demonstration). A call more than `restart_gap_s` after the previous one (the episode
disabled and re-enabled the controller) starts a new plan from the measured state.
"""

from __future__ import annotations

import math

import numpy as np

from runtime.clock import Clock
from runtime.execution.chunk import scale_arm, unscale_arm
from runtime.sim.kinematics import ArmKinematics, down_rotation

ARM = 7
HAND_CLOSED = 1.0


def _yaw_of(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


class ScriptedExpert:
    """predict_chunk(head, mask, wrist, state13) -> (horizon, 13) in upstream's action space."""

    def __init__(self, cfg, target_index: int, clock: Clock | None = None, horizon: int = 64,
                 max_speed_rad_s: float = 0.6, approach_height_m: float = 0.12, lift_height_m: float = 0.15,
                 restart_gap_s: float = 5.0) -> None:
        from runtime.sim.process import build, settings_from_config

        model, spec, addr = build(settings_from_config(cfg))
        self.spec = spec
        if not 0 <= target_index < len(spec.objects):
            from runtime.errors import ConfigError

            raise ConfigError(f"scripted expert: target index {target_index} not in the scene's "
                              f"{len(spec.objects)} objects")
        self.target = target_index
        self.cfg = cfg
        self.clock = clock or Clock()
        self.horizon = horizon
        self.dt = 1.0 / cfg.control.action_rate_hz
        self.lower = np.asarray(cfg.robot.lower, dtype=np.float64)
        self.upper = np.asarray(cfg.robot.upper, dtype=np.float64)
        self.kin = ArmKinematics(model, addr, self.lower, self.upper)
        self.rest = np.asarray(cfg.robot.home_positions, dtype=np.float64)
        self.max_speed = max_speed_rad_s
        self.approach_h = approach_height_m
        self.lift_h = lift_height_m
        self.restart_gap_s = restart_gap_s
        self.engine_choice = "scripted expert (privileged object pose)"
        self._plan: tuple[np.ndarray, np.ndarray] | None = None
        self._last_call = -math.inf
        self.plans = 0
        self.pose_source = None  # callable -> (pos3, quat4) of the target; default: the sim's shared memory

    # ---- the target's pose ----
    def target_pose(self) -> tuple[np.ndarray, np.ndarray]:
        if self.pose_source is not None:
            return self.pose_source()
        from runtime.sim import link, shm

        sim = link.current()
        if sim is None or sim.mem is None:
            o = self.spec.objects[self.target]
            return np.array([o.x, o.y, o.rest_z]), np.array([math.cos(o.yaw / 2), 0, 0, math.sin(o.yaw / 2)])
        v = shm.read(sim.mem["obj"])
        i = self.target
        return v[1 + 7 * i:4 + 7 * i].copy(), v[4 + 7 * i:8 + 7 * i].copy()

    # ---- planning ----
    def _segment(self, q0: np.ndarray, q1: np.ndarray, min_s: float) -> float:
        dmax = float(np.max(np.abs(q1[:ARM] - q0[:ARM])))
        return max(min_s, math.pi / 2 * dmax / self.max_speed)

    def make_plan(self, q_now: np.ndarray, t_now: float) -> tuple[np.ndarray, np.ndarray]:
        pos, quat = self.target_pose()
        obj = self.spec.objects[self.target]
        # three fingers: any yaw works for round objects; for a cube keep the wrist roll small
        yaw = _yaw_of(quat) if obj.shape == "cube" else 0.0
        rot = down_rotation(yaw)
        arm = q_now[:ARM].copy()
        waypoints: list[tuple[np.ndarray, float]] = []  # (q13, seconds to reach it from the previous)

        def at(height: float, hand: float, seed: np.ndarray, min_s: float) -> np.ndarray:
            q_arm, _ = self.kin.ik(pos + np.array([0, 0, height]), rot, seed, self.rest)
            q = np.concatenate([q_arm, np.full(len(q_now) - ARM, hand)])
            prev = waypoints[-1][0] if waypoints else q_now
            waypoints.append((q, self._segment(prev, q, min_s)))
            return q_arm

        seed = at(self.approach_h, 0.0, arm, 1.0)
        for h in np.linspace(self.approach_h, 0.0, 5)[1:]:
            seed = at(float(h), 0.0, seed, 0.35)
        waypoints.append((np.concatenate([seed, np.full(len(q_now) - ARM, HAND_CLOSED)]), 1.2))
        waypoints.append((waypoints[-1][0].copy(), 0.5))  # let the grip settle
        for h in np.linspace(0.0, self.lift_h, 4)[1:]:
            q_arm, _ = self.kin.ik(pos + np.array([0, 0, h]), rot, seed, self.rest)
            seed = q_arm
            q = np.concatenate([q_arm, np.full(len(q_now) - ARM, HAND_CLOSED)])
            waypoints.append((q, self._segment(waypoints[-1][0], q, 0.5)))
        times = [t_now]
        qs = [np.asarray(q_now, dtype=np.float64)]
        for q, dur in waypoints:
            times.append(times[-1] + dur)
            qs.append(q)
        self.plans += 1
        return np.asarray(times), np.asarray(qs)

    def _sample(self, t: np.ndarray) -> np.ndarray:
        times, qs = self._plan
        idx = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
        t0, t1 = times[idx], times[idx + 1]
        u = np.clip((t - t0) / np.maximum(t1 - t0, 1e-9), 0.0, 1.0)
        s = 0.5 - 0.5 * np.cos(np.pi * u)  # cosine ease: zero speed at every waypoint
        out = qs[idx] + (qs[idx + 1] - qs[idx]) * s[:, None]
        out[t >= times[-1]] = qs[-1]
        return out

    # ---- ChunkPolicy ----
    def predict_chunk(self, head_bgr, mask, wrist_bgr, state13) -> np.ndarray:
        now = self.clock.now()
        state = np.asarray(state13, dtype=np.float64)
        q_now = np.concatenate([scale_arm(state[:ARM], self.lower[:ARM], self.upper[:ARM]), state[ARM:]])
        if self._plan is None or now - self._last_call > self.restart_gap_s:
            self._plan = self.make_plan(q_now, now)
        self._last_call = now
        q = self._sample(now + self.dt * np.arange(self.horizon))
        q[:, :ARM] = unscale_arm(q[:, :ARM], self.lower[:ARM], self.upper[:ARM])
        return q.astype(np.float32)
