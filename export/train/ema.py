"""Upstream's EMAModel (controller/model/diffusion/ema_model.py): the EMA warmup schedule of
diffusion_policy, which differs from diffusers' EMAModel defaults, so it is reproduced here.

decay(step) = 0 while step' = step - update_after_step - 1 <= 0, else
              clamp(1 - (1 + step' / inv_gamma) ** -power, min_value, max_value)
`step` is the number of EMA updates done before this one (0 at the first). Each update walks the
live and averaged models module by module: BatchNorm parameters are copied, parameters that do not
require grad (frozen DINOv2, the normalizer) are left as they are, every other parameter becomes
decay * ema + (1 - decay) * live. Buffers are not averaged (upstream iterates parameters only).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class EMA:
    def __init__(self, averaged: nn.Module, update_after_step: int = 0, inv_gamma: float = 1.0,
                 power: float = 0.75, min_value: float = 0.0, max_value: float = 0.9999) -> None:
        self.averaged = averaged.eval().requires_grad_(False)
        self.update_after_step = update_after_step
        self.inv_gamma = inv_gamma
        self.power = power
        self.min_value = min_value
        self.max_value = max_value
        self.decay = 0.0
        self.optimization_step = 0

    def get_decay(self, optimization_step: int) -> float:
        step = max(0, optimization_step - self.update_after_step - 1)
        if step <= 0:
            return 0.0
        value = 1 - (1 + step / self.inv_gamma) ** -self.power
        return max(self.min_value, min(value, self.max_value))

    @torch.no_grad()
    def step(self, live: nn.Module) -> None:
        self.decay = self.get_decay(self.optimization_step)
        for module, ema_module in zip(live.modules(), self.averaged.modules(), strict=True):
            for param, ema_param in zip(module.parameters(recurse=False), ema_module.parameters(recurse=False),
                                        strict=True):
                if isinstance(module, _BatchNorm):
                    ema_param.copy_(param.detach().to(ema_param.dtype))
                elif not param.requires_grad:
                    continue
                else:
                    ema_param.mul_(self.decay).add_(param.detach().to(ema_param.dtype), alpha=1 - self.decay)
        self.optimization_step += 1
