"""Helpers shared by the tracker tests: random-weight exports and the PyTorch InferenceCore reference."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np


def export_random_tracker(out: pathlib.Path, height: int, width: int, cutie_config: str = "small",
                          seed: int = 0, with_sam: bool = False, sam_type: str = "vit_b",
                          objects: str = "target") -> pathlib.Path:
    from export.tracker.exporter import TrackerExportRequest, export_tracker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_tracker(TrackerExportRequest(output=out, random_init=True, cutie_config=cutie_config, seed=seed,
                                            height=height, width=width, with_sam=with_sam, sam_type=sam_type,
                                            objects=objects))
    return out


def cutie_checkpoint(out: pathlib.Path) -> pathlib.Path:
    (path,) = sorted(out.glob("cutie_*_random_seed*.pth"))
    return path


class ReferenceCutie:
    """PyTorch InferenceCore with upstream's settings, driven exactly like upstream's get_mask()."""

    def __init__(self, export_dir: pathlib.Path, cutie_config: str = "small", objects=(1,)):
        import torch
        from cutie.inference.inference_core import InferenceCore

        from export.tracker.cutie_model import build_cutie

        torch.set_grad_enabled(False)
        self.torch = torch
        self.net = build_cutie(cutie_config, checkpoint=cutie_checkpoint(export_dir))
        self.processor = InferenceCore(self.net, cfg=self.net.cfg)
        self.processor.max_internal_size = -1
        self.objects = list(objects)
        self.initialised = False

    def init(self, frame_bgr: np.ndarray, mask: np.ndarray):
        self.processor.clear_memory()  # upstream initialize_sam_cutie
        self.mask = self.torch.from_numpy(mask.astype(np.uint8))
        self.initialised = False
        return self.step(frame_bgr)

    def step(self, frame_bgr: np.ndarray):
        """(foreground probability of object 1, binary mask of object 1) like upstream's get_mask()."""
        torch = self.torch
        image = torch.from_numpy(frame_bgr[..., ::-1].copy()).permute(2, 0, 1).float() / 255  # to_tensor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not self.initialised:
                prob = self.processor.step(image, self.mask, objects=self.objects)
                self.initialised = True
            else:
                prob = self.processor.step(image)
        mask = self.processor.output_prob_to_mask(prob).numpy()
        channel = 1 + self.objects.index(1)
        return prob[channel].numpy(), (mask == 1).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a > 0, b > 0).sum()
    return float(np.logical_and(a > 0, b > 0).sum() / union) if union else 1.0
