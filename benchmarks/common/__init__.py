"""Helpers shared by every benchmark: timing statistics, machine description, matmul rate, report
writers and plots. Importing this package imports only the standard library and numpy; plotting and
ONNX Runtime are imported inside the functions that need them."""

from benchmarks.common.timing import Timing, measure, summarize

__all__ = ["Timing", "measure", "summarize"]
