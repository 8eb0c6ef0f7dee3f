"""SAM as two fixed-shape graphs: the image encoder (once per box) and the box -> masks decoder.

  sam_image_encoder   resized RGB image (float 0..255, long side 1024) -> image_embeddings
                      (Sam.preprocess: normalise + pad to 1024x1024, then the ViT)
  sam_prompt_decoder  image_embeddings, box in resized-image pixels -> mask logits at the camera's
                      resolution (Sam.postprocess_masks) and the 3 predicted IoUs

Resizing to the encoder's input (PIL bilinear, as ResizeLongestSide does) and choosing the
highest-scoring of the 3 masks stay in the runtime (numpy), like SamPredictor.
"""

from __future__ import annotations

from torch import nn

GRAPH_NAMES = ("sam_image_encoder", "sam_prompt_decoder")


def preprocess_shape(height: int, width: int, long_side: int = 1024) -> tuple[int, int]:
    """ResizeLongestSide.get_preprocess_shape."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class ImageEncoder(nn.Module):
    def __init__(self, sam):
        super().__init__()
        self.sam = sam

    def forward(self, image):
        return self.sam.image_encoder(self.sam.preprocess(image))


class PromptDecoder(nn.Module):
    def __init__(self, sam, input_hw: tuple[int, int], original_hw: tuple[int, int]):
        super().__init__()
        self.sam = sam
        self.input_hw = input_hw
        self.original_hw = original_hw

    def forward(self, image_embeddings, box):
        sparse, dense = self.sam.prompt_encoder(points=None, boxes=box, masks=None)
        low_res, iou = self.sam.mask_decoder(
            image_embeddings=image_embeddings, image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)
        masks = self.sam.postprocess_masks(low_res, self.input_hw, self.original_hw)
        return masks, iou


def graph_specs(sam, height: int, width: int) -> dict:
    size = sam.image_encoder.img_size
    input_hw = preprocess_shape(height, width, size)
    emb = sam.prompt_encoder.image_embedding_size
    return {
        "sam_image_encoder": (ImageEncoder(sam), {"image": (1, 3, *input_hw)}, ["image_embeddings"]),
        "sam_prompt_decoder": (PromptDecoder(sam, input_hw, (height, width)),
                               {"image_embeddings": (1, sam.prompt_encoder.embed_dim, *emb), "box": (1, 4)},
                               ["masks", "iou_predictions"]),
    }
