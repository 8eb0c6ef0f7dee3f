"""Run upstream's SamPredictor on one image + box and save the result (run by test_sam_parity.py).

Executed with the interpreter named by DEXGRASP_SAM_REFERENCE_PYTHON: a venv where the full
`segment_anything` package imports (torch + a matching torchvision), which the project's main venv
cannot provide on this CPU-only machine. Mirrors upstream inference.py initialize_sam_cutie().
"""

import argparse

import numpy as np
import torch
from segment_anything import SamPredictor, sam_model_registry


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--sam-type", required=True)
    p.add_argument("--image-bgr", required=True, help=".npy HxWx3 uint8 BGR")
    p.add_argument("--boxes", required=True, help=".npy Bx4 pixel boxes")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    sam = sam_model_registry[a.sam_type](checkpoint=a.checkpoint).eval()
    predictor = SamPredictor(sam)
    image_bgr = np.load(a.image_bgr)
    predictor.set_image(image_bgr[..., ::-1])  # upstream: self.third_color_image[..., ::-1]
    results = {}
    for i, box in enumerate(np.load(a.boxes)):
        masks, scores, _ = predictor.predict(box=box, multimask_output=True)
        results[f"masks_{i}"] = masks
        results[f"scores_{i}"] = scores
        results[f"best_{i}"] = masks[np.argmax(scores)]
    np.savez_compressed(a.out, torch_version=torch.__version__, **results)


if __name__ == "__main__":
    main()
