"""Cutie split into three fixed-shape per-frame graphs; the memory bookkeeping stays in the runtime.

InferenceCore interleaves network calls with Python dict/list memory management whose sizes grow
frame by frame. For ONNX/TensorRT each network call becomes a graph with static shapes:

  cutie_encode_image  image -> f8, f4, pix_feat, key, shrinkage, selection
  cutie_encode_mask   image, pix_feat, sensory, masks -> mask_value, sensory_out, obj_summaries
  cutie_segment       query key/selection, pixel features, sensory, last mask, object memory and a
                      fixed-size working memory (max_mem_frames slots + a validity mask)
                      -> prob_with_bg, sensory_out

The working memory is `max_mem_frames * (H/16) * (W/16)` tokens; slots not filled yet are masked
out before the top-k softmax, which therefore selects exactly what InferenceCore's growing memory
would. The readout gathers the top-k memory values per pixel instead of multiplying by a mostly-zero
affinity matrix (the same sum, ~200x fewer FLOPs). Every layer is the package's own module.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

GRAPH_NAMES = ("cutie_encode_image", "cutie_encode_mask", "cutie_segment")


class EncodeImage(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        ms_feat, pix_feat = self.net.encode_image(image)
        key, shrinkage, selection = self.net.transform_key(ms_feat[0])
        return ms_feat[1], ms_feat[2], pix_feat, key, shrinkage, selection


class EncodeMask(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image, pix_feat, sensory, masks):
        value, sensory_out, summaries, _ = self.net.encode_mask(image, pix_feat, sensory, masks, deep_update=True)
        return value, sensory_out, summaries


def upstream_top_k_softmax(values):
    """The top-k weights as Cutie's do_softmax computes them: exp(v) / sum(exp(v)), no max subtracted.

    Similarities are negative squared distances; when a pixel's best one is below about -87.3 its
    exp() is a float32 denormal (rounded to a few significant bits) and below about -104 it is 0.
    A max-subtracted softmax then differs from InferenceCore by up to ~0.9 in a weight (the source
    of the issue-15 probability error), so we compute what upstream computes. Only where upstream's
    sum underflows to 0 (0/0: NaN that would poison the whole frame) do we take the exact softmax.
    """
    e = torch.exp(values)
    total = e.sum(2, keepdim=True)
    return torch.where(total > 0, e / total, torch.softmax(values, dim=2))


class Segment(nn.Module):
    """Memory read (anisotropic L2 affinity, top-k softmax) + pixel fusion + object transformer + decoder."""

    def __init__(self, net, top_k: int):
        super().__init__()
        self.net = net
        self.top_k = top_k

    def forward(self, key, selection, pix_feat, f8, f4, sensory, last_mask,
                mem_key, mem_shrinkage, mem_valid, mem_value, obj_memory):
        _, num_objects, value_dim, mem_tokens = mem_value.shape
        h, w = key.shape[-2:]
        qk = key.flatten(start_dim=2).transpose(1, 2)  # 1 x HW x CK
        qe = selection.flatten(start_dim=2).transpose(1, 2)
        # get_similarity from cutie.model.utils.memory_utils, written out per query pixel (HW x M, so
        # the top-k runs along the contiguous last axis) without in-place ops
        a_sq = qe @ mem_key.pow(2)
        two_ab = ((qk * qe) @ mem_key) * 2
        b_sq = (qe * qk.pow(2)).sum(2, keepdim=True)
        similarity = (two_ab - a_sq - b_sq) * mem_shrinkage / math.sqrt(mem_key.shape[1])
        similarity = torch.where(mem_valid.unsqueeze(1), similarity, torch.full_like(similarity, -1e30))
        values, indices = torch.topk(similarity, k=self.top_k, dim=2)  # 1 x HW x K
        weights = upstream_top_k_softmax(values)
        flat_value = mem_value.reshape(num_objects * value_dim, mem_tokens)
        picked = flat_value[:, indices.reshape(-1)].reshape(num_objects * value_dim, h * w, self.top_k)
        readout = (picked * weights).sum(2).reshape(1, num_objects, value_dim, h, w)

        pixel_readout = self.net.pixel_fusion(pix_feat, readout, sensory, last_mask)
        memory_readout, _ = self.net.readout_query(pixel_readout, obj_memory.unsqueeze(2))
        sensory_out, _, prob_with_bg = self.net.segment([None, f8, f4], memory_readout, sensory,
                                                        update_sensory=True)
        return prob_with_bg, sensory_out


@contextlib.contextmanager
def area_resize_as_avg_pool():
    """Trace `F.interpolate(mode='area')` by integer factors as AvgPool (identical values).

    Area interpolation is adaptive average pooling, which the ONNX exporter only handles with
    constant output sizes; at our fixed shapes every area resize is an exact integer downscale.
    """
    real = F.interpolate

    def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None, **kw):
        if mode == "area":
            in_hw = x.shape[-2:]
            if size is not None:
                out_hw = tuple(size) if isinstance(size, (tuple, list, torch.Size)) else (size, size)
            else:
                sf = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
                out_hw = (int(math.floor(in_hw[0] * sf[0])), int(math.floor(in_hw[1] * sf[1])))
            kh, kw_ = int(in_hw[0]) // int(out_hw[0]), int(in_hw[1]) // int(out_hw[1])
            if kh * int(out_hw[0]) == int(in_hw[0]) and kw_ * int(out_hw[1]) == int(in_hw[1]):
                return F.avg_pool2d(x, kernel_size=(kh, kw_), stride=(kh, kw_))
        return real(x, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners, **kw)

    F.interpolate = interpolate
    try:
        yield
    finally:
        F.interpolate = real


def graph_specs(net, height: int, width: int, num_objects: int, max_mem_frames: int, top_k: int) -> dict:
    """name -> (module, {input: shape}, [outputs]); the one source of truth for every shape."""
    m = net.cfg.model
    h, w = height // 16, width // 16
    _, c8, c4 = m.pixel_encoder.ms_dims  # strides 16, 8, 4
    mem = max_mem_frames * h * w
    q = m.object_transformer.num_queries
    n = num_objects
    image = (1, 3, height, width)
    sensory = (1, n, m.sensory_dim, h, w)
    return {
        "cutie_encode_image": (EncodeImage(net), {"image": image},
                               ["f8", "f4", "pix_feat", "key", "shrinkage", "selection"]),
        "cutie_encode_mask": (EncodeMask(net),
                              {"image": image, "pix_feat": (1, m.pixel_dim, h, w), "sensory": sensory,
                               "masks": (1, n, height, width)},
                              ["mask_value", "sensory_out", "obj_summaries"]),
        "cutie_segment": (Segment(net, top_k),
                          {"key": (1, m.key_dim, h, w), "selection": (1, m.key_dim, h, w),
                           "pix_feat": (1, m.pixel_dim, h, w), "f8": (1, c8, height // 8, width // 8),
                           "f4": (1, c4, height // 4, width // 4), "sensory": sensory,
                           "last_mask": (1, n, height, width), "mem_key": (1, m.key_dim, mem),
                           "mem_shrinkage": (1, 1, mem), "mem_valid": (1, mem),
                           "mem_value": (1, n, m.value_dim, mem),
                           "obj_memory": (1, n, q, m.embed_dim + 1)},
                          ["prob_with_bg", "sensory_out"]),
    }


def example_inputs(inputs: dict, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, shape in inputs.items():
        if name == "mem_valid":
            valid = torch.zeros(shape, dtype=torch.bool)
            valid[:, : shape[1] // 2] = True
            out.append(valid)
        else:
            out.append(torch.rand(shape, generator=g))
    return tuple(out)
