"""Per-graph compute precision of the learned tracker: "fp32", the measured "bf16" recipe, or a mapping.

Why per graph: running every Cutie graph in bf16 (OpenVINO) moved the masks too far from fp32
(IoU min 0.89 over 39 frames, base config), while one graph loses little in bf16.
`python benchmarks/tracker.py --precision-sweep` measures every subset of Cutie's graphs in bf16
against ONNX Runtime fp32; BF16_RECIPE keeps in bf16 only the graphs whose subset passed the mask
IoU gate (docs/tracker.md has the numbers). SAM's graphs run once per box, not per frame, and were
not measured: the recipe keeps them fp32.

Forms (config `tracker.options.precision`, CLI `--precision`):
  "fp32"                          every graph fp32 (exact, the default);
  "bf16"                          BF16_RECIPE (openvino only);
  {graph: precision, ...}         explicit, for experts; graphs not named run fp32;
  "graph=precision,graph=..."     the same mapping on a command line.
Errors are one line naming the graph or precision at fault (ConfigError). Torch-free, no imports of
the inference packages (the config schema calls `resolve` to check a config without them).
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable, Mapping

from runtime.errors import ConfigError

ENCODE_IMAGE, ENCODE_MASK, SEGMENT = "cutie_encode_image", "cutie_encode_mask", "cutie_segment"
SAM_IMAGE_ENCODER, SAM_PROMPT_DECODER = "sam_image_encoder", "sam_prompt_decoder"
CUTIE_GRAPHS = (ENCODE_IMAGE, ENCODE_MASK, SEGMENT)
SAM_GRAPHS = (SAM_IMAGE_ENCODER, SAM_PROMPT_DECODER)
GRAPHS = CUTIE_GRAPHS + SAM_GRAPHS

FP32 = "fp32"
RECIPES = ("fp32", "bf16")
# Precisions each tracker backend takes per graph (TensorRT's engine precision is fixed when the
# engine is built, so its runner is always asked for fp32).
BACKEND_PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16"), "tensorrt": ("fp32",)}

# Measured with `benchmarks/tracker.py --precision-sweep` (Cutie base, 640x480, 39 tracked
# frames; docs/tracker.md): bf16 alone on cutie_segment gave IoU min 0.89 vs fp32, on
# cutie_encode_image 0.954 (both fail the 0.99 gate), on cutie_encode_mask 0.992 (passes).
# So only cutie_encode_mask runs bf16 (OpenVINO does not honour per-node fp32 marks, see
# docs/inference.md, so a graph is the finest split there is without re-exporting smaller graphs).
BF16_RECIPE = {ENCODE_IMAGE: "fp32", ENCODE_MASK: "bf16", SEGMENT: "fp32",
               SAM_IMAGE_ENCODER: "fp32", SAM_PROMPT_DECODER: "fp32"}


def parse(text: str) -> str | dict[str, str]:
    """A command-line precision: "fp32", "bf16" or "graph=precision,graph=precision"."""
    text = text.strip()
    if "=" not in text:
        return text
    out: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name or not value:
            raise ConfigError(f"precision: '{item}' is not graph=precision (e.g. cutie_segment=fp32)")
        if name in out:
            raise ConfigError(f"precision: graph '{name}' is given twice")
        out[name] = value
    return out


def _unknown_graph(name: str, known: Iterable[str]) -> str:
    known = list(known)
    hint = difflib.get_close_matches(str(name), known, n=1)
    return (f"precision: unknown tracker graph '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
            + f" (graphs: {', '.join(known)})")


def resolve(precision: str | Mapping[str, str], backend: str, graphs: Iterable[str] = GRAPHS,
            check_installed: bool = True) -> dict[str, str]:
    """{graph: precision} for the `graphs` of an export under `precision` on `backend`.

    ConfigError (one line) for an unknown recipe or graph name, a graph this export lacks, a
    precision the backend cannot run, or bf16 asked of openvino where it is not installed /
    the CPU has no bf16 (`check_installed=False`: the static checks only, for config loading).
    """
    graphs = list(graphs)
    if backend not in BACKEND_PRECISIONS:
        raise ConfigError(f"backend: '{backend}' is not a tracker backend; choose one of "
                          f"{', '.join(BACKEND_PRECISIONS)}")
    if isinstance(precision, str):
        if precision == "fp32":
            mapping = {}
        elif precision == "bf16":
            if "bf16" not in BACKEND_PRECISIONS[backend]:
                raise ConfigError(f"precision: bf16 runs on backend openvino; {backend} runs fp32 only")
            mapping = {g: p for g, p in BF16_RECIPE.items() if g in graphs}
        else:
            raise ConfigError(f"precision: '{precision}' is not one of {', '.join(RECIPES)} "
                              "or a mapping {graph: precision}")
    elif isinstance(precision, Mapping):
        mapping = dict(precision)
        for name in mapping:
            if name not in GRAPHS:
                raise ConfigError(_unknown_graph(name, GRAPHS))
            if name not in graphs:
                raise ConfigError(f"precision: graph '{name}' is not in this export (it has: {', '.join(graphs)})")
    else:
        raise ConfigError(f"precision: must be {' or '.join(RECIPES)} or a mapping {{graph: precision}}, "
                          f"got {type(precision).__name__}")
    allowed = BACKEND_PRECISIONS[backend]
    for name, value in mapping.items():
        if value not in allowed:
            hint = " (bf16 runs on backend openvino)" if value == "bf16" else ""
            raise ConfigError(f"precision: graph '{name}' asks for '{value}', backend {backend} runs "
                              f"{', '.join(allowed)} only{hint}")
    out = {g: mapping.get(g, FP32) for g in graphs}
    if check_installed and reduced(out):
        _check_backend_can(backend, out)
    return out


def _check_backend_can(backend: str, mapping: dict[str, str]) -> None:
    if backend != "openvino":
        return
    if importlib.util.find_spec("openvino") is None:
        raise ConfigError("precision: bf16 needs the openvino package, which is not installed "
                          "(pip install 'dexgraspvla-runtime[openvino]', or precision fp32)")
    from runtime.errors import ModelError
    from runtime.inference.openvino import check_precision

    try:
        check_precision("bf16")
    except ModelError as exc:
        raise ConfigError(f"precision: {exc}") from None


def reduced(mapping: Mapping[str, str]) -> bool:
    """Whether any graph runs below fp32 (then a recorded verification is needed)."""
    return any(p != FP32 for p in mapping.values())


def key(mapping: Mapping[str, str]) -> str:
    """Canonical name of a resolved mapping, as recorded with verifications: "fp32" or the
    reduced graphs, sorted ("cutie_encode_image=bf16,cutie_encode_mask=bf16")."""
    parts = [f"{g}={p}" for g, p in sorted(mapping.items()) if p != FP32]
    return ",".join(parts) or FP32
