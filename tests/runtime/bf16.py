"""Skip marker for tests that need OpenVINO bf16 on this CPU (AMX-BF16 or AVX512-BF16)."""

from __future__ import annotations

import pytest


def cpu_has_bf16() -> bool:
    """Whether OpenVINO can run bf16 here; False without openvino."""
    try:
        from runtime.inference.openvino import bf16_support
    except ImportError:
        return False
    return bf16_support() is not None


needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has neither AMX-BF16 nor AVX512-BF16")
