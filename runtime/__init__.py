"""dexgraspvla-runtime: the onboard, torch-free side of the project.

Nothing in this package imports torch. Optional backends (TensorRT, CUDA, RealSense, DDS) are
imported lazily and fail with a message naming the extra to install.
"""

__version__ = "0.1.0"
