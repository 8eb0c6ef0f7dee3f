"""Export a loaded checkpoint to named ONNX graphs + manifest.json (the runtime's model directory).

Graph names, tensor names and shapes are written to the manifest (runtime/controller/manifest.py),
which the runtime reads back: the single source of truth for both sides.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import pathlib
import time
import warnings

import numpy as np
import torch

from export.checkpoint import LoadedCheckpoint
from export.graphs import DenoiserGraph, EncoderGraph, UncachedDenoiserGraph, use_explicit_attention
from export.model.layers import TIMM_1_0_12, check_rmsnorm_convention, set_rmsnorm_convention
from runtime.controller.ddim import DDIMSampler
from runtime.controller.manifest import (
    DENOISER,
    DENOISER_UNCACHED,
    ENCODER,
    EPSILON,
    OBS_TOKENS,
    SAMPLE,
    TIMESTEP,
    GraphSpec,
    Manifest,
    TensorSpec,
    kv_names,
    obs_specs,
)
from runtime.errors import ModelError
from runtime.hashing import sha256_files

log = logging.getLogger(__name__)

OPSET = 17
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GiB


def graph_sha256(onnx_path: pathlib.Path, data_path: pathlib.Path | None) -> str:
    """sha256 over the .onnx file followed by its external data file (when present)."""
    return sha256_files((onnx_path, data_path))


@contextlib.contextmanager
def _mha_fastpath_disabled():
    """nn.TransformerEncoder's fused fast path has no ONNX export; use the composite ops while tracing."""
    backends = getattr(torch.backends, "mha", None)
    if backends is None or not hasattr(backends, "set_fastpath_enabled"):
        yield
        return
    previous = backends.get_fastpath_enabled()
    backends.set_fastpath_enabled(False)
    try:
        yield
    finally:
        backends.set_fastpath_enabled(previous)


def _export_one(module: torch.nn.Module, args: tuple, path: pathlib.Path, inputs: list[TensorSpec],
                outputs: list[str]) -> tuple[GraphSpec, tuple]:
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as tmp_dir:
        # Large graphs come out of the exporter as one file per tensor: keep those in a temp dir.
        tmp = pathlib.Path(tmp_dir) / path.name
        with torch.no_grad(), _mha_fastpath_disabled(), warnings.catch_warnings():
            # Shape checks inside torch and our modules are constants for fixed-shape graphs.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # We choose the TorchScript exporter on purpose: the dynamo one needs onnxscript and
            # produces graphs TensorRT 8.6 parses less reliably.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(
                module, args, str(tmp), input_names=[t.name for t in inputs], output_names=outputs,
                opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )
            out_values = module(*args)
        model = onnx.load(str(tmp))  # pulls in any external data written next to it
    size = sum(t.ByteSize() for t in model.graph.initializer)
    data_path = path.with_name(path.name + ".data")
    for stale in (path, data_path):
        stale.unlink(missing_ok=True)
    external = size > EXTERNAL_DATA_THRESHOLD_BYTES
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_path.name, size_threshold=1024)
        data_path.chmod(0o644)  # onnx creates it owner-only; the model dir is often copied to the robot
    else:
        onnx.save_model(model, str(path))
    del model
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the exported graph {path.name} fails onnx.checker: {exc}") from exc
    out_values = out_values if isinstance(out_values, tuple) else (out_values,)
    out_specs = [
        TensorSpec(name, list(value.shape), str(value.detach().numpy().dtype))
        for name, value in zip(outputs, out_values, strict=True)
    ]
    spec = GraphSpec(
        file=path.name, sha256=graph_sha256(path, data_path if external else None),
        inputs=inputs, outputs=out_specs, external_data=external,
    )
    return spec, out_values


def example_inputs(arch, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rgbm = torch.rand(1, 1, 4, 518, 518, generator=g)
    rgbm[:, :, 3] = (rgbm[:, :, 3] > 0.5).float()
    return {
        "rgbm": rgbm,
        "right_cam_img": torch.rand(1, 1, 3, 518, 518, generator=g),
        # the encoder's joint state width (upstream: 13); the manifest's right_state shape comes from it
        "right_state": torch.rand(1, 1, arch.state_dim, generator=g) * 2 - 1,
    }


def export_controller(ckpt: LoadedCheckpoint, output_dir: str | pathlib.Path, precision: str = "fp32",
                      with_uncached: bool = False, progress: bool = True, rmsnorm: str = TIMM_1_0_12) -> Manifest:
    """Write encoder.onnx, denoiser.onnx (+ denoiser_uncached.onnx) and manifest.json to output_dir.

    `rmsnorm` is the timm RmsNorm formula the checkpoint was trained with ("timm-1.0.12", upstream's
    pin, or "mean-square" for timm >= 1.0.13); the weights cannot tell, so the caller says it and the
    manifest records it.

    Blocks for the whole export: seconds for the small preset, a few minutes at full size.
    """
    import onnx
    from tqdm.auto import tqdm

    if precision not in ("fp32", "fp16"):
        raise ModelError(f"precision must be fp32 or fp16, got '{precision}'")
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    arch = ckpt.arch
    dtype = torch.float16 if precision == "fp16" else torch.float32
    check_rmsnorm_convention(rmsnorm)
    policy = copy.deepcopy(ckpt.policy).eval()
    set_rmsnorm_convention(policy, rmsnorm)
    use_explicit_attention(policy)
    if dtype != torch.float32:
        policy = policy.to(dtype)

    obs = example_inputs(arch)
    n_obs = arch.num_obs_tokens
    k_shape = [1, arch.n_head, n_obs, arch.attn_head_dim]
    vt_shape = [1, arch.n_head, arch.attn_head_dim, n_obs]
    names = kv_names(arch.n_layer)
    sample = torch.randn(1, arch.action_horizon, arch.action_dim, generator=torch.Generator().manual_seed(1))
    timestep = torch.tensor([float(DDIMSampler(arch.scheduler, arch.num_inference_steps).timesteps[0])])
    stages = ["encoder", "denoiser"] + (["denoiser_uncached"] if with_uncached else []) + ["manifest"]
    graphs: dict[str, GraphSpec] = {}
    bar = tqdm(stages, desc="export controller", unit="graph", disable=not progress)
    for stage in bar:
        bar.set_postfix_str(stage)
        t0 = time.perf_counter()
        if stage == "encoder":
            graphs[ENCODER], encoded = _export_one(
                EncoderGraph(policy, dtype), (obs["rgbm"], obs["right_cam_img"], obs["right_state"]),
                out / "encoder.onnx", obs_specs(int(obs["rgbm"].shape[-1]), int(obs["right_state"].shape[-1])), [*names, OBS_TOKENS],
            )
            kv, tokens = encoded[:-1], encoded[-1]
        elif stage == "denoiser":
            graphs[DENOISER], _ = _export_one(
                DenoiserGraph(policy, dtype), (sample, timestep, *kv), out / "denoiser.onnx",
                [TensorSpec(SAMPLE, list(sample.shape), "float32"), TensorSpec(TIMESTEP, [1], "float32")]
                + [TensorSpec(name, k_shape if name.startswith("obs_k_") else vt_shape, "float32") for name in names],
                [EPSILON],
            )
        elif stage == "denoiser_uncached":
            graphs[DENOISER_UNCACHED], _ = _export_one(
                UncachedDenoiserGraph(policy, dtype), (sample, timestep, tokens), out / "denoiser_uncached.onnx",
                [TensorSpec(SAMPLE, list(sample.shape), "float32"), TensorSpec(TIMESTEP, [1], "float32"),
                 TensorSpec(OBS_TOKENS, list(tokens.shape), "float32")],
                [EPSILON],
            )
        log.info("exported %s in %.1f s", stage, time.perf_counter() - t0)
    bar.close()

    action_stats = ckpt.policy.normalizer.params_dict["action"]
    sampler = DDIMSampler(arch.scheduler, arch.num_inference_steps)
    manifest = Manifest(
        arch={**arch.to_dict(), "feature_dim": arch.feature_dim, "attn_head_dim": arch.attn_head_dim},
        action_horizon=arch.action_horizon,
        action_dim=arch.action_dim,
        num_obs_tokens=n_obs,
        num_inference_steps=arch.num_inference_steps,
        scheduler=dict(arch.scheduler),
        timesteps=[int(t) for t in sampler.timesteps],
        normalizer={
            "scale": np.asarray(action_stats["scale"].detach(), dtype=np.float32).tolist(),
            "offset": np.asarray(action_stats["offset"].detach(), dtype=np.float32).tolist(),
        },
        graphs=graphs,
        precision=precision,
        opset=OPSET,
        source_checkpoint={"path": ckpt.path, "sha256": ckpt.sha256, "weights": ckpt.weights,
                           **({"training": dict(ckpt.training)} if getattr(ckpt, "training", None) else {})},
        exporter={"torch": torch.__version__, "onnx": onnx.__version__},
        rmsnorm=rmsnorm,
    )
    manifest.save(out)
    return manifest
