"""The policy worker: on request, builds an observation from the freshest inputs and runs the policy.

It never runs on stale inputs: frames, mask and state must each be younger than the observation
age limit, otherwise the request is answered with nothing (the control loop holds, asks again).
The chunk is stamped with the capture time of its oldest input, so the control loop can execute
each action at the time it was meant for. The worker blocks only itself (inference releases the
GIL in ONNX Runtime / TensorRT).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from runtime.clock import Clock
from runtime.errors import ModelError, StaleDataError
from runtime.execution.chunk import TimedChunk
from runtime.execution.requests import ChunkRequests
from runtime.joint_space import scale_arm, unscale_arm
from runtime.mailbox import Mailbox
from runtime.stats import LatencyStats
from runtime.workers.base import WorkerThread

log = logging.getLogger(__name__)


class ChunkPolicy(Protocol):
    def predict_chunk(self, head_bgr: np.ndarray, mask: np.ndarray, wrist_bgr: np.ndarray,
                      state13: np.ndarray) -> np.ndarray:
        """(H, J) float actions in the model's space (arm in [-1, 1], hand as is; J joints of the
        config's joint space, 13 for upstream's robot). Blocks for the inference."""


class ControllerPolicy:
    """Adapter: runtime.controller.Controller + upstream process_obs -> ChunkPolicy."""

    def __init__(self, controller, process_obs: Callable | None = None) -> None:
        self.controller = controller
        if process_obs is None:
            from runtime.controller.preprocess import process_obs
        self._process_obs = process_obs
        self.seed = 0
        # The exported encoder fixes the image size (518 for the paper's model, smaller presets less)
        # and the joint count of the state it reads (its manifest's right_state width).
        specs = {s.name: s for s in getattr(controller, "obs_specs", [])}
        self.image_size = int(specs["rgbm"].shape[-1]) if "rgbm" in specs else None
        self.state_dim = int(specs["right_state"].shape[-1]) if "right_state" in specs else None

    def predict_chunk(self, head_bgr, mask, wrist_bgr, state13):
        state = np.asarray(state13, dtype=np.float32)
        kwargs = {}
        if self.image_size is not None:
            kwargs["size"] = self.image_size
        if self.state_dim is not None:
            kwargs["state_dim"] = self.state_dim
        obs = self._process_obs(head_bgr, mask, wrist_bgr, state, **kwargs)
        self.seed += 1
        return self.controller.predict(obs, seed=self.seed)


class PolicyWorker(WorkerThread):
    """Serves ChunkRequests. `head` holds objects with `.image` (BGR) and optionally `.mask`
    (the tracker's output for that very frame); `wrist` holds objects with `.image`."""

    name = "policy-worker"

    def __init__(
        self,
        policy: ChunkPolicy,
        requests: ChunkRequests,
        head: Mailbox,
        wrist: Mailbox,
        state_fn: Callable[[], np.ndarray],
        chunks_out: Mailbox,
        arm_lower: np.ndarray,
        arm_upper: np.ndarray,
        action_dt_s: float,
        max_observation_age_s: float,
        clock: Clock | None = None,
        require_mask: bool = True,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.requests = requests
        self.head, self.wrist = head, wrist
        self.state_fn = state_fn
        self.chunks_out = chunks_out
        self.arm_lower = np.asarray(arm_lower, dtype=np.float64)
        self.arm_upper = np.asarray(arm_upper, dtype=np.float64)
        # The arm's joint count is the length of its limits (the config's joint space); the rest of
        # the state and of every action are hand joints, passed through unscaled.
        self.n_arm = int(self.arm_lower.size)
        if self.arm_upper.shape != self.arm_lower.shape or self.n_arm == 0:
            raise ValueError(f"arm limits must be two equal, non-empty lists, got {self.arm_lower.size} "
                             f"and {self.arm_upper.size} values")
        self.action_dt_s = action_dt_s
        self.max_observation_age_s = max_observation_age_s
        self.clock = clock or Clock()
        self.require_mask = require_mask
        self.latency = LatencyStats(10_000)
        self.inferences = 0
        self.skipped_stale = 0
        self.last_skip_reason: str | None = None

    def _on_stop(self) -> None:
        self.requests.cancel()

    def _loop_once(self) -> None:
        if not self.requests.take(0.1):
            return
        try:
            self.serve_once()
        finally:
            self.requests.done()

    def serve_once(self) -> TimedChunk | None:
        """Build the observation, run the policy, publish the chunk (or None if inputs are stale)."""
        try:
            head = self.head.latest(self.max_observation_age_s)
            wrist = self.wrist.latest(self.max_observation_age_s)
            state = np.asarray(self.state_fn(), dtype=np.float64)
        except StaleDataError as exc:
            self.skipped_stale += 1
            self.last_skip_reason = str(exc)
            return None
        mask = getattr(head.value, "mask", None)
        if mask is None:
            if self.require_mask:
                self.skipped_stale += 1
                self.last_skip_reason = "no tracker mask for the head frame yet (target not initialised)"
                return None
            img = head.value.image
            mask = np.zeros(img.shape[:2], dtype=np.uint8)
        t_obs = min(head.t_capture, wrist.t_capture)
        arm = self.n_arm
        state13 = np.concatenate([unscale_arm(state[:arm], self.arm_lower, self.arm_upper), state[arm:]])
        t0 = self.clock.now()
        raw = np.asarray(self.policy.predict_chunk(head.value.image, mask, wrist.value.image, state13))
        t1 = self.clock.now()
        self.latency.add(t1 - t0)
        self.inferences += 1
        positions = raw.astype(np.float64, copy=True)
        if positions.ndim != 2 or positions.shape[1] != state.size:
            # A model for another joint layout must not move this robot (checked at load too).
            raise ModelError(f"policy returned actions of shape {positions.shape}, expected (H, {state.size}) "
                             "for this robot's joint space")
        positions[:, :arm] = scale_arm(positions[:, :arm], self.arm_lower, self.arm_upper)
        chunk = TimedChunk(
            positions=positions, t_obs=t_obs, t_start=t_obs, dt_s=self.action_dt_s,
            seq=self.inferences, t_ready=t1, inference_s=t1 - t0,
        )
        self.chunks_out.put(chunk, t_capture=t_obs)
        return chunk

    def report(self) -> dict:
        s = self.latency.summary_ms()
        return {
            "inferences": self.inferences,
            "engine": getattr(self.policy, "engine_choice", None),
            "latency_ms": {"p50": s["p50"], "p99": s["p99"], "max": s["max"]},
            "skipped_stale_inputs": self.skipped_stale,
            "last_skip_reason": self.last_skip_reason,
            "errors": self.errors,
            "last_error": self.last_error,
        }

