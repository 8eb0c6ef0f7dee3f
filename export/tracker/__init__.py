"""Export upstream's learned tracker (SAM box -> mask, Cutie mask tracking) to ONNX / TensorRT."""
