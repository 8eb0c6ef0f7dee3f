"""The torch-free controller: exported encoder + denoiser graphs, numpy DDIM sampler, preprocessing."""

from runtime.controller.controller import Controller
from runtime.controller.manifest import Manifest
from runtime.controller.preprocess import process_obs

__all__ = ["Controller", "Manifest", "process_obs"]
