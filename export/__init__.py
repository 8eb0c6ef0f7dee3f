"""The PyTorch side: load upstream checkpoints, rebuild the architecture with upstream parameter
names, export named ONNX graphs and TensorRT engines, check numerical parity. Needs the `export`
extra (torch); the onboard runtime never imports this package."""
