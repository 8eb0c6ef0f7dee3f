"""Training the controller from recorded episodes with upstream's training semantics (torch side).

data.py (episodes -> MaskImageDataset windows), forward.py (the training-mode forward pass),
loss.py (compute_loss), ema.py (EMAModel), cache.py (DINOv2 features once per frame),
checkpoint.py (initial weights, upstream-format output), trainer.py (the loop). See docs/training.md.
"""

from export.train.trainer import TrainConfig, Trainer, train

__all__ = ["TrainConfig", "Trainer", "train"]
