"""Cutie's memory as preallocated numpy buffers (what InferenceCore's MemoryManager keeps in dicts).

Working memory: slot 0 holds the permanent first frame, slots 1..max_mem_frames-1 a FIFO of the most
recent memory frames (InferenceCore: 'first' frame permanent, `max_mem_frames - 1` temporary frames,
oldest dropped). Unfilled slots are marked invalid and masked out of the top-k softmax inside the
segment graph. Sensory memory, object summaries (a running sum, as upstream's streaming average) and
the last probability map complete the state. Nothing is allocated per frame.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import ModelError


class CutieMemory:
    def __init__(self, num_objects: int, key_dim: int, value_dim: int, sensory_dim: int, embed_dim: int,
                 num_queries: int, max_mem_frames: int, feat_hw: tuple[int, int], image_hw: tuple[int, int]):
        if max_mem_frames < 2:
            raise ModelError(f"max_mem_frames must be >= 2 (permanent + FIFO), got {max_mem_frames}")
        h, w = feat_hw
        self.tokens_per_frame = h * w
        self.slots = max_mem_frames
        m = max_mem_frames * h * w
        self.key = np.zeros((1, key_dim, m), np.float32)
        self.shrinkage = np.zeros((1, 1, m), np.float32)
        self.value = np.zeros((1, num_objects, value_dim, m), np.float32)
        self.valid = np.zeros((1, m), bool)
        self.sensory = np.zeros((1, num_objects, sensory_dim, h, w), np.float32)
        self.obj_memory = np.zeros((1, num_objects, num_queries, embed_dim + 1), np.float32)
        self.last_mask = np.zeros((1, num_objects, *image_hw), np.float32)
        self._fifo_next = 1
        self.frames_stored = 0

    def clear(self) -> None:
        """Forget everything (InferenceCore.clear_memory: a new target)."""
        self.valid[:] = False
        self.sensory[:] = 0.0
        self.obj_memory[:] = 0.0
        self.last_mask[:] = 0.0
        self._fifo_next = 1
        self.frames_stored = 0

    @property
    def engaged(self) -> bool:
        return self.frames_stored > 0

    def add(self, key: np.ndarray, shrinkage: np.ndarray, value: np.ndarray, obj_summaries: np.ndarray) -> int:
        """Store one memory frame; the first after clear() is permanent. Returns the slot written."""
        if self.frames_stored == 0:
            slot = 0
            self.obj_memory[:] = obj_summaries
        else:
            slot = self._fifo_next
            self._fifo_next = 1 + (self._fifo_next % (self.slots - 1))
            self.obj_memory += obj_summaries
        t = self.tokens_per_frame
        sl = slice(slot * t, (slot + 1) * t)
        self.key[:, :, sl] = key.reshape(1, key.shape[1], t)
        self.shrinkage[:, :, sl] = shrinkage.reshape(1, 1, t)
        self.value[..., sl] = value.reshape(*value.shape[:3], t)
        self.valid[:, sl] = True
        self.frames_stored += 1
        return slot
