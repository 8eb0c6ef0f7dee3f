"""Inference backends: named numpy inputs -> named numpy outputs (ONNX Runtime, native TensorRT)."""

from runtime.inference.base import Backend, open_backend

__all__ = ["Backend", "open_backend"]
