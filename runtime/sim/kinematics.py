"""Kinematics of the generated arm on a private MjData (no physics): forward kinematics of the
grasp site and damped-least-squares inverse kinematics for a top-down grasp pose.

Why MuJoCo's own Jacobians: the expert plans on exactly the model the simulator steps, so an IK
solution is reachable by construction (joint limits clipped at every iteration).
"""

from __future__ import annotations

import math

import numpy as np

ARM = 7


def down_rotation(yaw: float) -> np.ndarray:
    """Rotation whose z axis points down (fingers toward the table) and x axis at `yaw` in the table plane."""
    c, s = math.cos(yaw), math.sin(yaw)
    x = np.array([c, s, 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return np.stack([x, np.cross(z, x), z], axis=1)


class ArmKinematics:
    """FK / IK of the grasp site over the first 7 robot joints of `model`."""

    def __init__(self, model, qpos_addr: list[int], lower: np.ndarray, upper: np.ndarray) -> None:
        import mujoco

        self._mj = mujoco
        self.model = model
        self.data = mujoco.MjData(model)
        self.addr = np.asarray(qpos_addr[:ARM])
        self.dof = np.asarray([int(model.jnt_dofadr[j]) for j in self._joint_ids()])
        self.lower = np.asarray(lower[:ARM], dtype=np.float64)
        self.upper = np.asarray(upper[:ARM], dtype=np.float64)
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "grasp")

    def _joint_ids(self) -> list[int]:
        ids = []
        for a in self.addr:
            ids.append(int(np.nonzero(self.model.jnt_qposadr == a)[0][0]))
        return ids

    def fk(self, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), rotation (3, 3)) of the grasp site at arm joints `q_arm`."""
        d = self.data
        d.qpos[self.addr] = q_arm
        self._mj.mj_kinematics(self.model, d)
        return d.site_xpos[self.site].copy(), d.site_xmat[self.site].reshape(3, 3).copy()

    def ik(self, target_pos, target_rot: np.ndarray, q_seed: np.ndarray, q_rest: np.ndarray | None = None,
           iters: int = 300, tol_m: float = 1e-4) -> tuple[np.ndarray, float]:
        """Arm joints putting the grasp site at `target_pos` with `target_rot`; returns (q, position error m)."""
        mj, m, d = self._mj, self.model, self.data
        q = np.clip(np.asarray(q_seed, dtype=np.float64)[:ARM].copy(), self.lower, self.upper)
        rest = q.copy() if q_rest is None else np.asarray(q_rest, dtype=np.float64)[:ARM]
        jp = np.zeros((3, m.nv))
        jr = np.zeros((3, m.nv))
        err_p = np.inf
        for _ in range(iters):
            pos, rot = self.fk(q)
            mj.mj_comPos(m, d)
            err_p_vec = np.asarray(target_pos) - pos
            err_r_vec = 0.5 * sum(np.cross(rot[:, i], target_rot[:, i]) for i in range(3))
            err_p = float(np.linalg.norm(err_p_vec))
            if err_p < tol_m and np.linalg.norm(err_r_vec) < 1e-3:
                break
            mj.mj_jacSite(m, d, jp, jr, self.site)
            J = np.vstack([jp[:, self.dof], jr[:, self.dof]])
            e = np.concatenate([err_p_vec, 0.5 * err_r_vec])
            lam = 1e-2
            JJt = J @ J.T + lam * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, e)
            null = np.eye(ARM) - J.T @ np.linalg.solve(JJt, J)
            dq += null @ (0.05 * (rest - q))
            step = np.max(np.abs(dq))
            if step > 0.2:
                dq *= 0.2 / step
            q = np.clip(q + dq, self.lower, self.upper)
        return q, err_p
