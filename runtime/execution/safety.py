"""The last host-side check before a setpoint goes to the serial link.

Every control cycle's target passes `SafetyFilter.apply`: non-finite values are rejected (the
robot holds), positions are clamped to the joint limits, then the step is rate-limited so the
commanded velocity and acceleration stay within limits. Braking toward a target or a joint
limit uses a discrete-time stopping rule (`stopping_velocity`), so the command reaches a limit
without ever passing it and without a one-cycle stop. The filter runs on its own previous
command (not the measured state), so its output is a smooth, bounded trajectory whatever the
policy produces; the firmware enforces its own limits again (defence in depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits (arrays of length J)."""

    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray  # units/s
    max_acceleration: np.ndarray  # units/s^2

    @classmethod
    def from_config(cls, robot, safety) -> JointLimits:
        """Limits of the config's joint space (runtime/joint_space.py). `safety.speed_scale`
        (0 < s <= 1) multiplies every velocity and acceleration limit, for first runs on a new
        robot; position limits are never scaled."""
        from runtime.joint_space import JointSpace

        space = JointSpace.from_config(robot)
        s = float(getattr(safety, "speed_scale", 1.0))
        if not (0.0 < s <= 1.0 and math.isfinite(s)):
            raise ValueError(f"safety.speed_scale must be in (0, 1], got {s}")
        return cls(
            lower=space.lower.copy(),
            upper=space.upper.copy(),
            max_velocity=s * space.per_joint(safety.max_velocity_arm_rad_s, safety.max_velocity_hand_per_s),
            max_acceleration=s * space.per_joint(safety.max_acceleration_arm_rad_s2,
                                                 safety.max_acceleration_hand_per_s2),
        )

    @property
    def n(self) -> int:
        return int(self.lower.shape[0])


@dataclass
class SafetyCounters:
    """What the filter changed, for the report (clamp counters and the largest commanded step)."""

    cycles: int = 0
    rejected_nonfinite: int = 0
    rejected_nonfinite_state: int = 0  # reset() calls refused for a NaN/Inf measured position
    clamped_position: int = 0  # cycles where at least one joint was clamped to its limits
    limited_velocity: int = 0
    limited_acceleration: int = 0
    largest_step: list[float] = field(default_factory=list)  # per joint, max |q_k - q_{k-1}|
    largest_step_requested: float = 0.0  # max over joints of |target - q_prev| before limiting

    def as_dict(self) -> dict:
        return {
            "cycles": self.cycles,
            "rejected_nonfinite": self.rejected_nonfinite,
            "rejected_nonfinite_state": self.rejected_nonfinite_state,
            "clamped_position": self.clamped_position,
            "limited_velocity": self.limited_velocity,
            "limited_acceleration": self.limited_acceleration,
            "largest_step": [round(x, 6) for x in self.largest_step],
            "largest_step_requested": self.largest_step_requested,
        }


def stopping_velocity(distance: np.ndarray, max_acceleration: np.ndarray, dt: float) -> np.ndarray:
    """The largest velocity toward a point `distance` ahead that can still stop there without
    passing it, for the discrete update q += v*dt with |dv| <= a*dt per cycle.

    Why discrete: the continuous rule sqrt(2*a*e) overshoots by up to a cycle's travel, and when the
    point is a joint limit the position clip then zeroes the velocity in one cycle (5x the
    acceleration limit at 200 Hz). With d = a*dt, commanding v now and then v-d, v-2d, ... travels
    dt*sum_i max(v - i*d, 0); for v = n*d + r (0 <= r <= d) that is dt*((n+1)*v - d*n*(n+1)/2).
    Solving it for the distance gives v = e/((n+1)*dt) + d*n/2 with n the largest integer such
    that n*(n+1)/2 <= e/(d*dt). Stepping at this v leaves exactly the distance that v - d can stop
    in, so the bound next cycle is never below v - d: braking is always within the acceleration
    limit.
    """
    e = np.maximum(np.asarray(distance, dtype=np.float64), 0.0)
    d = np.asarray(max_acceleration, dtype=np.float64) * dt
    big_e = e / (d * dt)
    n = np.floor((np.sqrt(8.0 * big_e + 1.0) - 1.0) / 2.0)
    n = np.where((n + 1.0) * (n + 2.0) / 2.0 <= big_e, n + 1.0, n)  # floating-point guards
    n = np.where(n * (n + 1.0) / 2.0 > big_e, n - 1.0, n)
    n = np.maximum(n, 0.0)
    return e / ((n + 1.0) * dt) + d * n / 2.0


class SafetyFilter:
    """Clamp + velocity/acceleration rate limiter with non-finite rejection.

    Not thread-safe: owned by the control loop thread. Call `reset(q_measured)` before the first
    `apply` and whenever the command stream restarts (after arming, a link loss, a stop), so the
    first command continues from where the robot is, with zero velocity.
    """

    def __init__(self, limits: JointLimits, dt_s: float) -> None:
        if not (dt_s > 0 and math.isfinite(dt_s)):
            raise ValueError(f"dt_s must be positive, got {dt_s}")
        self.limits = limits
        self.dt_s = float(dt_s)
        self.counters = SafetyCounters(largest_step=[0.0] * limits.n)
        self._q: np.ndarray | None = None
        self._v = np.zeros(limits.n)
        self._target_prev: np.ndarray | None = None
        self._hold_target: np.ndarray | None = None
        self.reset_error: str | None = None  # why the last reset() refused, for the loop's log

    @property
    def holding(self) -> bool:
        return self._hold_target is not None

    @property
    def ready(self) -> bool:
        return self._q is not None

    @property
    def position(self) -> np.ndarray:
        if self._q is None:
            raise RuntimeError("SafetyFilter used before reset()")
        return self._q.copy()

    @property
    def velocity(self) -> np.ndarray:
        return self._v.copy()

    def reset(self, q: np.ndarray) -> bool:
        """Restart from the measured position `q` at rest. Returns False (and sets
        `reset_error`) when `q` holds NaN/Inf: a glitched state read must not crash the control
        loop, so the filter keeps its previous state (last safe command, or not ready) and the
        caller holds and retries. A wrong shape is a wiring bug and still raises."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.limits.n,):
            raise ValueError(f"reset needs {self.limits.n} positions, got shape {q.shape}")
        bad = np.flatnonzero(~np.isfinite(q))
        if bad.size:
            self.reset_error = (
                f"measured position not finite at joint(s) {bad.tolist()}: {q[bad].tolist()}"
            )
            self.counters.rejected_nonfinite_state += 1
            return False
        self.reset_error = None
        self._q = np.clip(q, self.limits.lower, self.limits.upper)
        self._v = np.zeros(self.limits.n)
        self._target_prev = self._q.copy()
        self._hold_target = None
        return True

    def stopping_point(self) -> np.ndarray:
        """Where the robot comes to rest if it decelerates at the limit from now: the hold target
        that stops without turning back."""
        q, v, a = self.position, self._v, self.limits.max_acceleration
        return np.clip(q + v * np.abs(v) / (2.0 * a), self.limits.lower, self.limits.upper)

    def _limit_speed(self, direction: int) -> np.ndarray:
        """Fastest speed toward the upper (+1) or lower (-1) joint limit that can still stop
        at the limit (see `stopping_velocity`)."""
        lim = self.limits
        dist = lim.upper - self._q if direction > 0 else self._q - lim.lower
        return stopping_velocity(dist, lim.max_acceleration, self.dt_s)

    def _brake(self) -> np.ndarray:
        """Hold: decelerate every joint at its limit until at rest, then stay (never turns back)."""
        lim, dt = self.limits, self.dt_s
        dv = lim.max_acceleration * dt
        v = np.sign(self._v) * np.maximum(np.abs(self._v) - dv, 0.0)
        v = np.clip(v, -self._limit_speed(-1), self._limit_speed(+1))  # rounding only (invariant)
        q = np.clip(self._q + v * dt, lim.lower, lim.upper)
        self._v = (q - self._q) / dt
        self._q = q
        self._target_prev = q.copy()
        self._hold_target = q.copy()
        return q.copy()

    def apply(self, target: np.ndarray | None) -> tuple[np.ndarray, bool]:
        """The command for this cycle and whether the target was accepted (False = non-finite,
        held instead). `None` means hold (brake at the limit to rest, then stay)."""
        if self._q is None:
            raise RuntimeError("SafetyFilter.apply called before reset()")
        lim, dt, c = self.limits, self.dt_s, self.counters
        c.cycles += 1
        accepted = True
        if target is not None:
            target = np.asarray(target, dtype=np.float64)
            if target.shape != (lim.n,) or not np.all(np.isfinite(target)):
                c.rejected_nonfinite += 1
                accepted = False
                target = None
        if target is None:
            return self._brake(), accepted
        self._hold_target = None
        clipped = np.clip(target, lim.lower, lim.upper)
        if np.any(clipped != target):
            c.clamped_position += 1
        target = clipped
        error = target - self._q
        c.largest_step_requested = max(c.largest_step_requested, float(np.max(np.abs(error))))

        # The target's own velocity lets a moving target be followed exactly; the discrete stopping
        # bound (|v - v_target| <= stopping_velocity(|e|)) makes a jump approach its goal without
        # overshoot. A jump in the target (new chunk, hold entry) is no velocity to follow: 0.
        v_target = (target - self._target_prev) / dt
        v_target = np.where(np.abs(v_target) > 2.0 * lim.max_velocity, 0.0, v_target)
        bound = stopping_velocity(np.abs(error), lim.max_acceleration, dt)
        v_des = np.clip(error / dt, v_target - bound, v_target + bound)
        v = np.clip(v_des, -lim.max_velocity, lim.max_velocity)
        if np.any(v != v_des):
            c.limited_velocity += 1
        # Position limits as velocity bounds: never faster toward a limit than can stop at it.
        # Since every command obeys these, the acceleration window below always overlaps them
        # (stepping at the bound leaves exactly the room v - a*dt needs), so the final position
        # clip only absorbs rounding and never stops a joint in one cycle.
        lo_pos, hi_pos = -self._limit_speed(-1), self._limit_speed(+1)
        v = np.clip(v, lo_pos, hi_pos)
        dv = lim.max_acceleration * dt
        v_acc = np.clip(v, self._v - dv, self._v + dv)
        if np.any(np.abs(v_acc - v) > 1e-12):
            c.limited_acceleration += 1
        v = np.clip(v_acc, lo_pos, hi_pos)  # no-op unless the state was infeasible
        q = np.clip(self._q + v * dt, lim.lower, lim.upper)
        v = (q - self._q) / dt
        step = np.abs(q - self._q)
        for j in range(lim.n):
            if step[j] > c.largest_step[j]:
                c.largest_step[j] = float(step[j])
        self._q, self._v, self._target_prev = q, v, target
        return q.copy(), accepted
