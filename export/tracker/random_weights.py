"""Random-weight Cutie/SAM checkpoints for tests and demos (no checkpoint can be downloaded here).

Plain PyTorch init gives a Cutie whose outputs hover around 0.5 for every object and whose memory
attention is nearly uniform, so the binary mask and the top-k memory read are decided by near-ties
and a parity check would test rounding, not the port. Three gains make the random network behave
like a trained one in the ways the runtime depends on:
  - the final mask logits are spread (probabilities far from a tie, yet far from the sigmoid
    saturation where fp32 cannot represent 1 - p: a gain of 8 already breaks any fp32 parity);
  - the memory keys are scaled, so the top-k attention is peaked and a token at the top-k boundary
    (where two implementations may pick different tokens of near-equal similarity) weighs little;
  - the object transformer's auxiliary mask logits are spread, so its hard foreground/background
    attention masks are not decided by near-ties either.
"""

from __future__ import annotations

import pathlib

LOGIT_GAIN = 4.0
KEY_GAIN = 3.0
AUX_MASK_GAIN = 10.0


def random_cutie_state(model_config: str = "small", seed: int = 0, logit_gain: float = LOGIT_GAIN,
                       key_gain: float = KEY_GAIN, aux_mask_gain: float = AUX_MASK_GAIN) -> dict:
    import torch

    from export.tracker.cutie_model import build_cutie

    net = build_cutie(model_config, seed=seed)
    with torch.no_grad():
        net.mask_decoder.pred.weight.mul_(logit_gain)
        net.mask_decoder.pred.bias.mul_(logit_gain)
        net.key_proj.key_proj.weight.mul_(key_gain)
        for head in net.object_transformer.mask_pred:  # Sequential(ReLU, GConv2d)
            head[1].weight.mul_(aux_mask_gain)
            head[1].bias.mul_(aux_mask_gain)
    return {k: v.clone() for k, v in net.state_dict().items()}


def save_random_cutie(path: pathlib.Path, model_config: str = "small", seed: int = 0) -> pathlib.Path:
    import torch

    torch.save(random_cutie_state(model_config, seed), path)
    return path
