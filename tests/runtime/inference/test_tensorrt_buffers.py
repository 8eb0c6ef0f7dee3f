"""The TensorRT backend's buffer plan, on CPU: a fake `tensorrt` module whose engines compute with
numpy on a counting FakeDevice, so we check what lives on the device, what crosses the bus per
inference, and the one-line errors for engines that do not belong on this machine."""

from __future__ import annotations

import enum
import json
import types

import numpy as np
import pytest

from runtime.controller.manifest import GraphSpec, TensorSpec, kv_names
from runtime.errors import MissingExtraError, ModelError
from runtime.inference.buffer_plan import (
    DEVICE_IN,
    DEVICE_OUT,
    HOST_IN,
    HOST_OUT,
    STATIC_IN,
    ControllerPlan,
    FakeDevice,
    plan_controller,
)
from runtime.inference.tensorrt import TensorRTBackend, engine_meta_path, share_device_outputs

STEPS = 16


# --- a fake TensorRT -------------------------------------------------------------------------------


class Severity(enum.IntEnum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"


class TensorIOMode(enum.Enum):
    INPUT, OUTPUT = 1, 2


class FakeILogger:
    Severity = Severity

    def __init__(self) -> None:
        pass


def encoder_math(obs: dict, names: list[str]) -> dict:
    """What the fake encoder engine computes: each K/V filled with a function of the observations."""
    base = float(obs["rgbm"].mean() + 2 * obs["right_state"].sum())
    return {n: np.float32(base + i) for i, n in enumerate(names)}


def denoiser_math(sample, timestep, kv_means: list[float]) -> np.ndarray:
    return (0.5 * sample + 1e-3 * float(timestep[0]) + 1e-2 * sum(kv_means)).astype(np.float32)


class FakeContext:
    def __init__(self, engine) -> None:
        self.engine, self.addr, self.shapes = engine, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def execute_async_v3(self, stream):
        e, dev = self.engine, self.engine.device
        if e.compute == "none":
            return True
        view = {n: dev.view(self.addr[n], shape, dt) for n, (_, dt, shape) in e.io.items()}
        if e.compute == "encoder":
            values = encoder_math(view, [n for n in e.io if n.startswith("obs_")])
            for n, v in values.items():
                view[n][...] = v
        else:
            kv = [float(view[n].astype(np.float32).mean()) for n in e.io if n.startswith("obs_")]
            view["epsilon"][...] = denoiser_math(view["sample"], view["timestep"], kv)
        return True


class FakeEngine:
    def __init__(self, blob: dict, device) -> None:
        self.io = {t["name"]: (t["mode"], np.dtype(t["dtype"]), tuple(t["shape"])) for t in blob["io"]}
        self.compute, self.device = blob["compute"], device
        self.num_io_tensors = len(self.io)

    def get_tensor_name(self, i):
        return list(self.io)[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if self.io[name][0] == "in" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType(self.io[name][1].name)

    def create_execution_context(self):
        return FakeContext(self)


def fake_trt(device, version="10.3.0"):
    class Runtime:
        def __init__(self, logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, blob: bytes):
            data = json.loads(blob)
            if "error" in data:
                self.logger.log(Severity.ERROR, data["error"])
                return None
            return FakeEngine(data, device)

    return types.SimpleNamespace(__version__=version, ILogger=FakeILogger, Runtime=Runtime,
                                 TensorIOMode=TensorIOMode, nptype=lambda dt: np.dtype(dt.value))


# --- graphs ----------------------------------------------------------------------------------------


def specs(n_layer=2, heads=2, tokens=5, head_dim=4, image=8, horizon=64, action_dim=13):
    obs = [TensorSpec("rgbm", [1, 1, 4, image, image], "float32"),
           TensorSpec("right_cam_img", [1, 1, 3, image, image], "float32"),
           TensorSpec("right_state", [1, 1, 13], "float32")]
    kv = [TensorSpec(n, [1, heads, tokens, head_dim] if "_k_" in n else [1, heads, head_dim, tokens], "float32")
          for n in kv_names(n_layer)]
    enc = GraphSpec("encoder.onnx", "a" * 64, obs, kv + [TensorSpec("obs_tokens", [1, tokens, heads * head_dim],
                                                                   "float32")])
    den = GraphSpec("denoiser.onnx", "b" * 64, [TensorSpec("sample", [1, horizon, action_dim], "float32"),
                                                TensorSpec("timestep", [1], "float32"), *kv],
                    [TensorSpec("epsilon", [1, horizon, action_dim], "float32")])
    return enc, den


def write_engine(path, spec: GraphSpec, compute: str, kv_dtype="float32", meta: dict | None = None, **extra):
    io = [{"name": t.name, "mode": "in", "dtype": kv_dtype if t.name.startswith("obs_") else t.dtype, "shape": t.shape}
          for t in spec.inputs]
    io += [{"name": t.name, "mode": "out", "dtype": kv_dtype if t.name.startswith("obs_") else t.dtype,
            "shape": t.shape} for t in spec.outputs]
    path.write_text(json.dumps({"io": io, "compute": compute, **extra}))
    if meta is not None:
        engine_meta_path(path).write_text(json.dumps(meta))
    return path


def backends(tmp_path, device, kv_dtype="float32", compute=True, **shape):
    enc_spec, den_spec = specs(**shape)
    trt = fake_trt(device)
    enc = TensorRTBackend(write_engine(tmp_path / "encoder.engine", enc_spec, "encoder" if compute else "none",
                                       kv_dtype), enc_spec, device=device, trt_module=trt)
    den = TensorRTBackend(write_engine(tmp_path / "denoiser.engine", den_spec, "denoiser" if compute else "none",
                                       kv_dtype), den_spec, device=device, trt_module=trt)
    return enc, den


def observations(enc_spec, seed=0):
    rng = np.random.default_rng(seed)
    return {t.name: rng.random(t.shape, dtype=np.float32) for t in enc_spec.inputs}


def inference(enc, den, obs, sample, steps=STEPS, pass_kv_each_step=False):
    """The controller's loop: encoder once, K/V bound once, then per step sample/timestep in, eps out."""
    out = enc.run(obs)
    kv = {n: out[n] for n in den.input_names if n.startswith("obs_")}
    if not pass_kv_each_step:
        den.bind_static(kv)
    for t in range(steps, 0, -1):
        feed = {"sample": sample, "timestep": np.asarray([t], np.float32)}
        eps = den.run({**feed, **kv} if pass_kv_each_step else feed)["epsilon"]
        sample = sample - 0.1 * eps
    return sample


def reference(obs, sample, names, steps=STEPS, kv_dtype=np.float32):
    kv = encoder_math(obs, names)
    means = [float(np.asarray(kv[n], kv_dtype)) for n in names]
    for t in range(steps, 0, -1):
        sample = sample - 0.1 * denoiser_math(sample, np.asarray([t], np.float32), means)
    return sample


# --- tests -----------------------------------------------------------------------------------------


def test_kv_stay_on_device_and_only_obs_sample_timestep_eps_cross_the_bus(tmp_path):
    dev = FakeDevice()
    enc, den = backends(tmp_path, dev)
    assert share_device_outputs(enc, den, kv_names(2))
    obs, sample = observations(enc.spec), np.random.default_rng(1).standard_normal((1, 64, 13)).astype(np.float32)
    result = inference(enc, den, obs, sample)
    np.testing.assert_allclose(result, reference(obs, sample, kv_names(2)), rtol=1e-5)
    obs_bytes = sum(v.nbytes for v in obs.values())
    per_step = sample.nbytes + 4 + sample.nbytes  # sample + timestep in, epsilon out
    assert dev.htod_bytes + dev.dtoh_bytes == obs_bytes + STEPS * per_step
    assert den.plan().names(DEVICE_IN) == kv_names(2)
    assert enc.plan().names(DEVICE_OUT) == [*kv_names(2), "obs_tokens"]
    # the denoiser reads the encoder's buffers: same addresses, and it allocated none of its own for them
    assert all(den.ptrs[n] == enc.ptrs[n] for n in kv_names(2)) and not den.owned & set(kv_names(2))
    plan = ControllerPlan(enc.plan(), den.plan(), STEPS, "device", tuple(kv_names(2)))
    assert plan.bytes_moved()["total"] == dev.htod_bytes + dev.dtoh_bytes
    # a second inference refreshes the shared K/V: new observations give the new answer
    obs2 = observations(enc.spec, seed=5)
    np.testing.assert_allclose(inference(enc, den, obs2, sample), reference(obs2, sample, kv_names(2)), rtol=1e-5)


def test_controller_passing_kv_every_step_still_copies_nothing_once_shared(tmp_path):
    """Today's Controller.denoise passes the K/V dict at every step: shared DeviceTensors are no-ops."""
    dev = FakeDevice()
    enc, den = backends(tmp_path, dev)
    share_device_outputs(enc, den, kv_names(2))
    obs, sample = observations(enc.spec), np.zeros((1, 64, 13), np.float32)
    result = inference(enc, den, obs, sample, pass_kv_each_step=True)
    np.testing.assert_allclose(result, reference(obs, sample, kv_names(2)), rtol=1e-5)
    assert dev.htod_bytes == sum(v.nbytes for v in obs.values()) + STEPS * (sample.nbytes + 4)


def test_old_behaviour_copies_kv_every_step_and_static_binding_copies_once(tmp_path):
    dev = FakeDevice()
    enc, den = backends(tmp_path, dev)  # not shared: K/V come back to the host
    obs, sample = observations(enc.spec), np.zeros((1, 64, 13), np.float32)
    kv_bytes = sum(den.slots[n].nbytes for n in kv_names(2))
    inference(enc, den, obs, sample, pass_kv_each_step=True)
    old = dev.htod_bytes + dev.dtoh_bytes
    expected_old = plan_controller(enc.spec, den.spec, kv_names(2), STEPS, kv_mode="per_step").bytes_moved()
    assert old == expected_old["total"]
    assert dev.htod_bytes >= STEPS * kv_bytes
    dev2 = FakeDevice()
    enc2, den2 = backends(tmp_path, dev2)
    np.testing.assert_allclose(inference(enc2, den2, obs, sample), reference(obs, sample, kv_names(2)), rtol=1e-5)
    assert sorted(den2.plan().names(STATIC_IN)) == sorted(kv_names(2))
    assert dev2.htod_bytes + dev2.dtoh_bytes == plan_controller(
        enc.spec, den.spec, kv_names(2), STEPS, kv_mode="static").bytes_moved()["total"]
    assert dev2.htod_bytes < dev.htod_bytes - (STEPS - 2) * kv_bytes


def test_paper_size_plan_moves_megabytes_not_gigabytes():
    """Paper size: 12 layers x 8 heads, 2739 obs tokens, head_dim 128: the K/V are 269 MB."""
    enc, den = specs(n_layer=12, heads=8, tokens=2739, head_dim=128, image=518)
    kv = kv_names(12)
    new = plan_controller(enc, den, kv, STEPS, kv_mode="device")
    old = plan_controller(enc, den, kv, STEPS, kv_mode="per_step")
    kv_bytes = sum(new.denoiser.slot(n).nbytes for n in kv)
    assert kv_bytes == 24 * 8 * 2739 * 128 * 4 == 269_254_656
    obs_bytes = (4 + 3) * 518 * 518 * 4 + 13 * 4
    step = 64 * 13 * 4 + 4 + 64 * 13 * 4
    assert new.bytes_moved()["total"] == obs_bytes + STEPS * step  # ~7.6 MB
    assert old.bytes_moved()["total"] > 4.3e9 and old.bytes_moved()["htod"] >= STEPS * kv_bytes
    assert set(new.device_resident()) == {*kv, "obs_tokens"}
    assert new.summary()["denoiser_bytes_per_step"] == step


def test_paper_size_backend_counts_match_the_plan(tmp_path):
    dev = FakeDevice()
    enc, den = backends(tmp_path, dev, compute=False, n_layer=12, heads=8, tokens=2739, head_dim=128, image=518)
    share_device_outputs(enc, den, kv_names(12))
    obs = {t.name: np.zeros(t.shape, np.float32) for t in enc.spec.inputs}
    inference(enc, den, obs, np.zeros((1, 64, 13), np.float32))
    expected = plan_controller(enc.spec, den.spec, kv_names(12), STEPS).bytes_moved()
    assert (dev.htod_bytes, dev.dtoh_bytes) == (expected["htod"], expected["dtoh"])
    assert dev.htod_bytes + dev.dtoh_bytes < 8e6


def test_fp16_engines_store_kv_in_half_and_the_plan_says_so(tmp_path):
    dev = FakeDevice()
    enc, den = backends(tmp_path, dev, kv_dtype="float16")
    share_device_outputs(enc, den, kv_names(2))
    plan = ControllerPlan(enc.plan(), den.plan(), STEPS, "device", tuple(kv_names(2)))
    assert plan.kv_dtype == "float16"
    obs, sample = observations(enc.spec), np.zeros((1, 64, 13), np.float32)
    np.testing.assert_allclose(inference(enc, den, obs, sample),
                               reference(obs, sample, kv_names(2), kv_dtype=np.float16), rtol=1e-3)
    # host K/V bound statically into an fp16 engine are converted once, at half the bytes
    dev2 = FakeDevice()
    _, den2 = backends(tmp_path, dev2, kv_dtype="float16")
    kv = {n: np.ones(den2.slots[n].shape, np.float32) for n in kv_names(2)}
    den2.bind_static(kv)
    assert dev2.htod_bytes == sum(v.nbytes for v in kv.values()) // 2


def test_linking_mismatched_precisions_is_one_line(tmp_path):
    dev = FakeDevice()
    enc_spec, den_spec = specs()
    trt = fake_trt(dev)
    enc = TensorRTBackend(write_engine(tmp_path / "e.engine", enc_spec, "encoder", "float16"), enc_spec,
                          device=dev, trt_module=trt)
    den = TensorRTBackend(write_engine(tmp_path / "d.engine", den_spec, "denoiser", "float32"), den_spec,
                          device=dev, trt_module=trt)
    with pytest.raises(ModelError, match="same --precision") as err:
        share_device_outputs(enc, den, kv_names(2))
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="same --precision"):
        plan_controller({"inputs": enc_spec.inputs, "outputs": [TensorSpec(t.name, t.shape, "float16")
                                                               for t in enc_spec.outputs]},
                        den_spec, kv_names(2), STEPS)


@pytest.mark.parametrize("meta,match", [
    ({"tensorrt_version": "8.6.1", "compute_capability": "9.0"}, r"built with TensorRT 8\.6\.1, this machine has 10\.3\.0"),
    ({"tensorrt_version": "10.3.0", "compute_capability": "8.7", "device_name": "Orin"},
     r"built for Orin \(sm 8\.7\), this GPU is Fake GPU \(sm 9\.0\)"),
    ({"tensorrt_version": "10.3.0", "onnx_sha256": "c" * 64}, "another export of its graph"),
])
def test_engine_for_another_gpu_or_tensorrt_is_refused_in_one_line(tmp_path, meta, match):
    enc_spec, _ = specs()
    path = write_engine(tmp_path / "encoder.engine", enc_spec, "encoder", meta=meta)
    with pytest.raises(ModelError, match=match) as err:
        TensorRTBackend(path, enc_spec, device=FakeDevice(), trt_module=fake_trt(FakeDevice()))
    assert "\n" not in str(err.value) and "dexgrasp engine build" in str(err.value)


def test_undeserializable_engine_reports_tensorrts_reason(tmp_path):
    enc_spec, _ = specs()
    path = tmp_path / "encoder.engine"
    path.write_text(json.dumps({"error": "The engine plan file is not compatible with this version of TensorRT"}))
    with pytest.raises(ModelError, match="not compatible with this version of TensorRT.*dexgrasp engine build"):
        TensorRTBackend(path, enc_spec, device=FakeDevice(), trt_module=fake_trt(FakeDevice()))


def test_stale_engine_missing_an_input_and_bad_calls(tmp_path):
    dev = FakeDevice()
    enc_spec, den_spec = specs()
    old_spec = GraphSpec("denoiser.onnx", "b" * 64, den_spec.inputs[:2], den_spec.outputs)
    path = write_engine(tmp_path / "d.engine", old_spec, "denoiser")
    with pytest.raises(ModelError, match="has no input 'obs_k_0'"):
        TensorRTBackend(path, den_spec, device=dev, trt_module=fake_trt(dev))
    _, den = backends(tmp_path, dev)
    with pytest.raises(ModelError, match="'obs_k_0' not given"):
        den.run({"sample": np.zeros((1, 64, 13), np.float32), "timestep": np.ones(1, np.float32)})
    with pytest.raises(ModelError, match="no input"):
        den.bind_static({"nope": np.zeros(1)})
    with pytest.raises(ModelError, match="shape"):
        den.run({"sample": np.zeros((3, 3), np.float32)})


def test_close_frees_only_own_buffers(tmp_path):
    dev = FakeDevice()
    enc, den = backends(tmp_path, dev)
    share_device_outputs(enc, den, kv_names(2))
    den.close()
    assert dev.live_buffers == len(enc.slots)  # the shared K/V still belong to the encoder
    enc.close()
    assert dev.live_buffers == 0


def test_without_tensorrt_installed_the_error_names_the_extra(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    enc_spec, _ = specs()
    with pytest.raises(MissingExtraError, match="gpu"):
        TensorRTBackend(tmp_path / "x.engine", enc_spec)


def test_plan_rejects_bad_requests():
    enc, den = specs()
    with pytest.raises(ModelError, match="kv_mode"):
        plan_controller(enc, den, kv_names(2), STEPS, kv_mode="sometimes")
    with pytest.raises(ModelError, match=r"\['obs_k_9'\]"):
        plan_controller(enc, den, ["obs_k_9"], STEPS)
    p = plan_controller(enc, den, kv_names(2), STEPS, kv_mode="static")
    assert p.denoiser.names(HOST_IN) == ["sample", "timestep"] and p.encoder.names(HOST_OUT)[-1] == "obs_tokens"


def test_asking_another_precision_than_the_engine_was_built_for(tmp_path):
    enc_spec, _ = specs()
    path = write_engine(tmp_path / "encoder.engine", enc_spec, "encoder",
                        meta={"tensorrt_version": "10.3.0", "precision": "fp32"})
    dev = FakeDevice()
    with pytest.raises(ModelError, match=r"built for fp32, not fp16.*--precision fp16"):
        TensorRTBackend(path, enc_spec, device=dev, trt_module=fake_trt(dev), precision="fp16")
    assert TensorRTBackend(path, enc_spec, device=dev, trt_module=fake_trt(dev), precision="fp32",
                           threads=2).precision == "fp32"


def test_the_controller_runs_on_linked_engines_with_only_obs_and_sample_on_the_bus(tmp_path):
    """runtime.controller.Controller as from_dir wires it for TensorRT (denoiser.bind_device_outputs)."""
    from export.model.arch import get_preset
    from runtime.controller import Controller
    from runtime.controller.ddim import DDIMSampler
    from runtime.controller.manifest import Manifest

    dev = FakeDevice()
    enc, den = backends(tmp_path, dev)
    den.bind_device_outputs(enc, kv_names(2))
    scheduler = dict(get_preset("_test_tiny").scheduler)
    sampler = DDIMSampler(scheduler, STEPS)
    manifest = Manifest(arch={"n_layer": 2}, action_horizon=64, action_dim=13, num_obs_tokens=5,
                        num_inference_steps=STEPS, scheduler=scheduler, timesteps=[int(t) for t in sampler.timesteps],
                        normalizer={"scale": [0.5] * 13, "offset": [0.1] * 13},
                        graphs={"encoder": enc.spec, "denoiser": den.spec})
    controller = Controller(manifest, enc, den)
    obs = observations(enc.spec)
    noise = np.random.default_rng(3).standard_normal((1, 64, 13)).astype(np.float32)
    action = controller.predict(obs, noise=noise)
    means = [float(v) for v in encoder_math(obs, kv_names(2)).values()]
    sample = noise
    for t in sampler.timesteps:
        sample = sampler.step(denoiser_math(sample, np.asarray([t], np.float32), means), int(t), sample)
    np.testing.assert_allclose(action, (sample.reshape(64, 13) - 0.1) / 0.5, rtol=1e-4, atol=1e-5)
    assert dev.htod_bytes + dev.dtoh_bytes == sum(v.nbytes for v in obs.values()) + STEPS * (2 * noise.nbytes + 4)


def test_engine_file_names_per_precision():
    from runtime.inference.tensorrt import engine_file_name

    assert [engine_file_name("encoder.onnx", p) for p in ("fp32", "fp16", "int8")] == [
        "encoder.engine", "encoder.fp16.engine", "encoder.int8.engine"]
    with pytest.raises(ModelError, match="precision must be one of"):
        engine_file_name("encoder.onnx", "bf16")
