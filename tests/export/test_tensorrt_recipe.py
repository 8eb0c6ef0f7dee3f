"""The fp16/int8 precision recipe of export/tensorrt_build.py on CPU: a fake TensorRT network made
from the project's real exported ONNX graphs (one fake layer per ONNX node, named like the ONNX
parser names them), so we check exactly which layers stay fp32, the builder flags, the fp16 K/V
I/O, the timing cache handling and the engine sidecar, without TensorRT."""

from __future__ import annotations

import enum
import json
import types

import onnx
import pytest
from onnx import shape_inference

from export.checkpoint import load_checkpoint
from export.onnx_export import export_controller
from export.tensorrt_build import (
    DEFAULT_RULES,
    apply_precision_recipe,
    fp32_layers,
    kv_io_names,
    load_timing_cache,
    save_timing_cache,
    write_engine_meta,
)
from runtime.controller.manifest import Manifest
from runtime.errors import ConfigError
from runtime.inference.tensorrt import check_engine_meta, engine_meta_path

LayerType = enum.Enum("LayerType", "NORMALIZATION SOFTMAX REDUCE UNARY ELEMENTWISE MATRIX_MULTIPLY CONVOLUTION "
                      "SHUFFLE CONSTANT OTHER")
UnaryOperation = enum.Enum("UnaryOperation", "EXP LOG SQRT RECIP SIN COS ERF TANH ABS NEG")
ElementWiseOperation = enum.Enum("ElementWiseOperation", "SUM SUB PROD DIV POW MAX MIN EQUAL")
ReduceOperation = enum.Enum("ReduceOperation", "AVG MAX SUM PROD MIN")
DataType = enum.Enum("DataType", "FLOAT HALF INT64 INT32 BOOL")
BuilderFlag = enum.Enum("BuilderFlag", "FP16 INT8 OBEY_PRECISION_CONSTRAINTS")

KIND = {"LayerNormalization": ("NORMALIZATION", None), "Softmax": ("SOFTMAX", None),
        "MatMul": ("MATRIX_MULTIPLY", None), "Gemm": ("MATRIX_MULTIPLY", None), "Conv": ("CONVOLUTION", None),
        **{op: ("REDUCE", r) for op, r in [("ReduceMean", "AVG"), ("ReduceMax", "MAX"), ("ReduceSum", "SUM"),
                                           ("ReduceProd", "PROD")]},
        **{op: ("UNARY", op.upper()) for op in ("Exp", "Sqrt", "Sin", "Cos", "Erf", "Tanh", "Log")},
        **{op: ("ELEMENTWISE", e) for op, e in [("Add", "SUM"), ("Sub", "SUB"), ("Mul", "PROD"), ("Div", "DIV"),
                                               ("Pow", "POW"), ("Max", "MAX"), ("Equal", "EQUAL")]},
        "Reshape": ("SHUFFLE", None), "Transpose": ("SHUFFLE", None), "Constant": ("CONSTANT", None)}
OP_ENUM = {"UNARY": UnaryOperation, "ELEMENTWISE": ElementWiseOperation, "REDUCE": ReduceOperation}


class Tensor:
    def __init__(self, name, dtype) -> None:
        self.name, self.dtype = name, dtype


class Layer:
    def __init__(self, node, dtypes) -> None:
        kind, op = KIND.get(node.op_type, ("OTHER", None))
        self.name, self.type = node.name, LayerType[kind]
        if op:
            self.op = OP_ENUM[kind][op]
        self.inputs = [Tensor(n, dtypes.get(n, DataType.FLOAT)) if n else None for n in node.input]
        self.outputs = [Tensor(n, dtypes.get(n, DataType.FLOAT)) for n in node.output]
        self.num_inputs, self.num_outputs = len(self.inputs), len(self.outputs)
        self.precision, self.output_types = None, {}

    def get_input(self, j):
        return self.inputs[j]

    def get_output(self, j):
        return self.outputs[j]

    def set_output_type(self, j, dtype):
        self.output_types[j] = dtype


class Network:
    """ONNX graph -> layers named as TensorRT's ONNX parser names them (after the node)."""

    def __init__(self, path) -> None:
        model = shape_inference.infer_shapes(onnx.load(str(path)))
        elem = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
                onnx.TensorProto.INT64: DataType.INT64, onnx.TensorProto.INT32: DataType.INT32,
                onnx.TensorProto.BOOL: DataType.BOOL}
        dtypes = {v.name: elem.get(v.type.tensor_type.elem_type, DataType.FLOAT)
                  for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
        for node in model.graph.node:
            if node.op_type == "Constant":
                for out in node.output:
                    t = next(a.t for a in node.attribute if a.name == "value")
                    dtypes[out] = elem.get(t.data_type, DataType.FLOAT)
        self.layers = [Layer(n, dtypes) for n in model.graph.node]
        self.inputs = [Tensor(v.name, DataType.FLOAT) for v in model.graph.input]
        self.outputs = [Tensor(v.name, DataType.FLOAT) for v in model.graph.output]
        self.num_layers, self.num_inputs, self.num_outputs = len(self.layers), len(self.inputs), len(self.outputs)

    def get_layer(self, i):
        return self.layers[i]

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]


class Config:
    def __init__(self) -> None:
        self.flags = set()

    def set_flag(self, flag):
        self.flags.add(flag)


TRT = types.SimpleNamespace(float32=DataType.FLOAT, float16=DataType.HALF, BuilderFlag=BuilderFlag)


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt-recipe") / "m"
    export_controller(load_checkpoint(tiny_ckpt), out, progress=False)
    return out, Manifest.load(out)


def by_op(net, names):
    return {n: next(la for la in net.layers if la.name == n).type.name for n in names}


def test_fp16_recipe_pins_norms_softmax_and_timestep_embedding_not_matmuls(exported):
    model_dir, _ = exported
    enc, den = Network(model_dir / "encoder.onnx"), Network(model_dir / "denoiser.onnx")
    enc_pinned, den_pinned = fp32_layers(enc, TRT), fp32_layers(den, TRT)
    for net, pinned in ((enc, enc_pinned), (den, den_pinned)):
        for layer in net.layers:
            if layer.type.name in ("NORMALIZATION", "SOFTMAX"):
                assert layer.name in pinned, layer.name
            if layer.type.name in ("MATRIX_MULTIPLY", "CONVOLUTION"):
                assert layer.name not in pinned, layer.name  # the GEMMs are what fp16 is for
    assert {la.name for la in enc.layers if la.type.name == "NORMALIZATION"}  # DINOv2's LayerNorms exist
    # the DiT's RmsNorms are decomposed: the mean of squares, +eps, sqrt and division all stay fp32
    for scope in ("/norm1/", "/q_norm/", "/k_norm/"):
        names = [la.name for la in den.layers if scope in la.name and la.outputs[0].dtype == DataType.FLOAT]
        assert names and all(n in den_pinned for n in names), scope
    assert {"/time_emb/Sin", "/time_emb/Cos"} <= set(den_pinned)
    # the cached cross-attention's hand-written softmax: max, x - max, exp, sum, x / sum
    top = [la for la in den.layers if la.name.count("/") == 1 and la.type.name in ("REDUCE", "UNARY")]
    assert top and all(la.name in den_pinned for la in top)
    subs = [la for la in den.layers if any(i is not None and i.name in {o.name for t in top for o in t.outputs}
                                           for i in la.inputs) and la.type.name == "ELEMENTWISE"]
    assert subs and all(la.name in den_pinned for la in subs)
    # integer shape arithmetic (ReduceProd over shapes) is never pinned: precision does not apply
    int_layers = [la for la in den.layers if la.outputs and la.outputs[0].dtype == DataType.INT64]
    assert int_layers and not any(la.name in den_pinned for la in int_layers)
    # and a useful build is still mostly fp16
    float_layers = [la for la in den.layers if la.outputs and la.outputs[0].dtype == DataType.FLOAT]
    assert len(den_pinned) < 0.8 * len(float_layers)


def test_apply_sets_flags_layer_precisions_and_half_kv_io(exported):
    model_dir, manifest = exported
    for graph in ("encoder", "denoiser"):
        net, config = Network(model_dir / f"{graph}.onnx"), Config()
        half = kv_io_names(manifest.graph(graph))
        pinned = apply_precision_recipe(net, config, TRT, "fp16", half_io=half)
        assert config.flags == {BuilderFlag.FP16, BuilderFlag.OBEY_PRECISION_CONSTRAINTS}
        for layer in net.layers:
            if layer.name in pinned:
                assert layer.precision == DataType.FLOAT and set(layer.output_types.values()) == {DataType.FLOAT}
            else:
                assert layer.precision is None
        io = {t.name: t.dtype for t in [*net.inputs, *net.outputs]}
        assert half and all(io[n] == DataType.HALF for n in half)
        assert all(d == DataType.FLOAT for n, d in io.items() if n not in half)  # obs, sample, epsilon stay fp32
    int8 = Config()
    apply_precision_recipe(Network(model_dir / "encoder.onnx"), int8, TRT, "int8")
    assert BuilderFlag.INT8 in int8.flags and BuilderFlag.OBEY_PRECISION_CONSTRAINTS in int8.flags
    fp32 = Config()
    assert apply_precision_recipe(Network(model_dir / "encoder.onnx"), fp32, TRT, "fp32") == {} and not fp32.flags
    with pytest.raises(ConfigError, match="precision must be one of"):
        apply_precision_recipe(Network(model_dir / "encoder.onnx"), Config(), TRT, "fp8")


def test_extra_patterns_from_measurement_pin_more(exported):
    model_dir, _ = exported
    net = Network(model_dir / "encoder.onnx")
    base = fp32_layers(net, TRT)
    extra = fp32_layers(net, TRT, DEFAULT_RULES.with_extra([r"blocks\.0/attn/"]))
    added = set(extra) - set(base)
    assert added and all("blocks.0/attn/" in n for n in added)


class FakeCache:
    def __init__(self, blob) -> None:
        self.blob = blob

    def serialize(self):
        return self.blob + b"+tuned"


class CacheConfig:
    def __init__(self) -> None:
        self.cache = None

    def create_timing_cache(self, blob):
        if blob.startswith(b"junk"):
            raise RuntimeError("invalid timing cache")
        return FakeCache(blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


def test_timing_cache_is_reused_and_a_bad_one_replaced(tmp_path):
    path = tmp_path / "timing.cache"
    config = CacheConfig()
    load_timing_cache(config, path)
    assert config.cache.blob == b""
    save_timing_cache(config, path)
    assert path.read_bytes() == b"+tuned"
    again = CacheConfig()
    load_timing_cache(again, path)
    assert again.cache.blob == b"+tuned"  # the rebuild starts from what the first build timed
    path.write_bytes(b"junk from another GPU")
    bad = CacheConfig()
    load_timing_cache(bad, path)
    assert bad.cache.blob == b""  # never trusted
    assert load_timing_cache(CacheConfig(), None) is None


def test_engine_sidecar_round_trips_through_the_runtime_check(exported, tmp_path):
    _, manifest = exported
    spec = manifest.graph("encoder")
    engine = tmp_path / "encoder.fp16.engine"
    write_engine_meta(engine, "10.3.0", {"name": "NVIDIA H200", "compute_capability": "9.0"}, "fp16", spec, {"a": "x"})
    meta = json.loads(engine_meta_path(engine).read_text())
    assert meta["precision"] == "fp16" and meta["onnx_sha256"] == spec.sha256
    assert check_engine_meta(engine, "10.3.0", {"name": "NVIDIA H100", "compute_capability": "9.0"}, spec.sha256)
    with pytest.raises(Exception, match="sm 9.0.*sm 8.7"):
        check_engine_meta(engine, "10.3.0", {"name": "Orin", "compute_capability": "8.7"}, spec.sha256)


def test_int8_calibration_batches_cover_both_graphs_and_share_kv(exported, tmp_path):
    from export.calibration import controller_calibration

    model_dir, manifest = exported
    batches = controller_calibration(model_dir, manifest, None, limit=8, steps_kept=4)
    assert len(batches["encoder"]) == 8
    den = batches["denoiser"]
    names = {t.name: tuple(t.shape) for t in manifest.graph("denoiser").inputs}
    assert len(den) == 8 and all({k: v.shape for k, v in b.items()} == names for b in den)
    assert len({float(b["timestep"][0]) for b in den}) == 4  # spread over the DDIM loop
    assert den[0]["obs_k_0"] is den[1]["obs_k_0"]  # one K/V per observation, not per batch
    assert not (den[0]["sample"] == den[1]["sample"]).all()
    with pytest.raises(ConfigError, match="not a directory of recorded episodes"):
        controller_calibration(model_dir, manifest, tmp_path / "missing", limit=2)
