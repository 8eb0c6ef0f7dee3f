"""The training loop of upstream's TrainDexGraspVLAControllerWorkspace.run, on a CPU.

Kept from upstream: seed 42 for torch / numpy / random; normalizer fitted on every recorded frame
('limits' mode, action and right_state); AdamW(lr 1e-4, betas (0.95, 0.999), fused where
available) with weight decay 1e-4 on >= 2-D parameters and 0 on the rest, trainable parameters only
(DINOv2 frozen); diffusers get_scheduler('cosine', warmup) stepped once per batch; gradient norm
clipped to 0.5; EMA (when enabled) stepped after every optimizer step; shuffled batches, the last
partial batch of an epoch kept; the forward pass in bf16 autocast with fp32 master weights (upstream:
accelerate mixed_precision='bf16' on a GPU; here torch.autocast('cpu') where the CPU has AMX).
Changed for CPU-sized runs: the run is `steps` optimizer steps (not 125 epochs), the warmup is
min(2000, steps // 10) unless given, the batch is smaller; no wandb, rollouts or validation split
(upstream's val_ratio is 0 anyway).
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from export.model.arch import ControllerArch, get_preset
from export.random_init import fit_limits
from export.train.cache import FeatureCache
from export.train.checkpoint import fresh_policy, save_trained_checkpoint, with_normalizer
from export.train.data import WindowDataset, load_episodes
from export.train.ema import EMA
from export.train.forward import fill_attn_masks
from export.train.jitter import ColorJitter
from export.train.loss import diffusion_loss
from export.train.timeline import UPSTREAM_ACTION_RATE_HZ, check_action_rate
from runtime.errors import CheckpointError, ConfigError
from runtime.sim.collect import describe_seeds

log = logging.getLogger(__name__)

UPSTREAM_EMA = {"update_after_step": 0, "inv_gamma": 1.0, "power": 0.75, "min_value": 0.0, "max_value": 0.9999}
UPSTREAM_WARMUP = 2000
DINO_NOTE = ("DINOv2 encoders are frozen with the weights {source} holds; pretrained DINOv2 weights "
             "cannot be downloaded here, so the policy learns on those features")


@dataclass
class TrainConfig:
    episodes: str
    output: str
    preset: str | None = None
    init: str | None = None
    joints: int | None = None  # the robot's joint count (--config): action and state width; None: 13 / --init's
    steps: int = 1000
    batch_size: int = 8
    seed: int = 42
    lr: float = 1.0e-4
    weight_decay: float = 1.0e-4
    betas: tuple[float, float] = (0.95, 0.999)
    lr_scheduler: str = "cosine"
    warmup_steps: int | None = None
    grad_clip: float = 0.5
    use_ema: bool = False
    ema: dict = field(default_factory=lambda: dict(UPSTREAM_EMA))
    precision: str = "auto"  # auto | bf16 | fp32
    action_rate_hz: float = UPSTREAM_ACTION_RATE_HZ  # the runtime's control.action_rate_hz: one action step each
    cache_features: bool = False
    cache_dtype: str = "float16"
    cache_dir: str | None = None
    color_jitter: bool | None = None  # None: upstream's jitter unless features are cached
    trust_checkpoint: bool = False
    verify_episodes: bool = True
    progress: bool = True
    plot: bool = True

    def check(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"--precision must be auto, bf16 or fp32, got '{self.precision}'")
        if self.cache_features and self.color_jitter:
            raise ConfigError("cached DINOv2 features cannot be colour-jittered: drop --color-jitter or "
                              "--cache-features")
        check_action_rate(self.action_rate_hz)
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.preset is None and self.init is None:
            raise ConfigError("name the architecture: --preset small (or --init CKPT to start from a checkpoint)")


def cpu_bf16() -> bool:
    """True when the CPU has the AMX-BF16 matrix engine. AVX512-BF16 alone is not enough: on such a
    2-core CPU bf16 autocast measured no faster than fp32 with cached features (small preset, 33.2 vs
    32.4 s/step; uncached 71.0 vs 85.8), so `--precision auto` stays fp32 there (`--precision bf16` forces it)."""
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def fit_normalizer(episodes) -> dict:
    """upstream MaskImageDataset.get_normalizer: 'limits' over every frame of every episode."""
    return {"action": fit_limits(episodes.action), "right_state": fit_limits(episodes.state)}


def optimizer_for(policy, lr: float, weight_decay: float, betas) -> torch.optim.Optimizer:
    """upstream DexGraspVLAController.get_optimizer: decay >= 2-D trainable tensors only."""
    params = [p for p in policy.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=True)
    except (RuntimeError, TypeError):  # fused AdamW unavailable for this torch/device
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))


def _arch_desc(arch: ControllerArch) -> str:
    return (f"head {arch.head_model_type}, wrist {arch.wrist_model_type}, DiT {arch.n_layer} x {arch.n_head} heads, "
            f"horizon {arch.action_horizon}, action_dim {arch.action_dim}, state_dim {arch.state_dim}")


class Trainer:
    """Everything one training run holds; `step` is one optimizer step, `run` the whole loop."""

    def __init__(self, cfg: TrainConfig) -> None:
        cfg.check()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        init = self._load_init() if cfg.init else None
        self.arch = init.arch if init is not None else get_preset(cfg.preset, cfg.joints)
        self.episodes = load_episodes(cfg.episodes, self.arch.action_dim, verify=cfg.verify_episodes,
                                      state_dim=self.arch.state_dim, action_rate_hz=cfg.action_rate_hz)
        self.dataset = WindowDataset(self.episodes, self.arch.action_horizon)
        stats = fit_normalizer(self.episodes)
        if init is not None:
            self.policy = with_normalizer(init.policy, stats)
            self.dino_source = f"--init '{cfg.init}'"
        else:
            self.policy = fresh_policy(self.arch, stats, cfg.seed)
            self.dino_source = f"a random init (dexgrasp make-checkpoint --seed {cfg.seed})"
        if self.arch.use_attn_mask:
            fill_attn_masks(self.policy)
        self.dino_note = DINO_NOTE.format(source=self.dino_source)
        log.warning(self.dino_note)
        self.ema = None
        if cfg.use_ema:
            import copy

            self.ema = EMA(copy.deepcopy(self.policy), **cfg.ema)
        self.scheduler = self.policy.make_scheduler()
        self.optimizer = optimizer_for(self.policy, cfg.lr, cfg.weight_decay, cfg.betas)
        self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(UPSTREAM_WARMUP, cfg.steps // 10)
        from diffusers.optimization import get_scheduler

        self.lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer=self.optimizer,
                                          num_warmup_steps=self.warmup, num_training_steps=cfg.steps)
        self.autocast = cfg.precision == "bf16" or (cfg.precision == "auto" and cpu_bf16())
        jitter_on = cfg.color_jitter if cfg.color_jitter is not None else not cfg.cache_features
        self.jitter = ColorJitter() if jitter_on else None
        self.cache = None
        if cfg.cache_features:
            self.cache = FeatureCache.build(self.policy, self.dataset, cfg.cache_dtype, self.autocast,
                                            directory=cfg.cache_dir, progress=cfg.progress)
        self.global_step = 0
        self.epoch = 0
        self._order: list[int] = []
        self._gen = torch.Generator().manual_seed(cfg.seed)

    def _load_init(self):
        from export.checkpoint import load_checkpoint

        try:
            loaded = load_checkpoint(self.cfg.init, trust_checkpoint=self.cfg.trust_checkpoint)
        except CheckpointError as exc:
            raise ConfigError(f"--init: {exc}") from exc
        if self.cfg.joints is not None and loaded.arch.joints != self.cfg.joints:
            raise ConfigError(f"--config's robot has {self.cfg.joints} joints, --init '{self.cfg.init}' is a model "
                              f"for action_dim {loaded.arch.action_dim} x state_dim {loaded.arch.state_dim}")
        if self.cfg.preset is not None and get_preset(self.cfg.preset, self.cfg.joints) != loaded.arch:
            raise ConfigError(f"--preset {self.cfg.preset} ({_arch_desc(get_preset(self.cfg.preset, self.cfg.joints))}) does not "
                              f"match --init '{self.cfg.init}' ({_arch_desc(loaded.arch)}); drop --preset or "
                              "pick the matching one")
        return loaded

    def next_indices(self) -> list[int]:
        """The next shuffled batch (DataLoader shuffle=True, drop_last=False)."""
        if not self._order:
            self._order = torch.randperm(len(self.dataset), generator=self._gen).tolist()
            if self.global_step:
                self.epoch += 1
        batch, self._order = self._order[: self.cfg.batch_size], self._order[self.cfg.batch_size:]
        return batch

    def loss(self, indices, training: bool = True) -> torch.Tensor:
        if self.cache is not None:
            batch = self.dataset.batch(indices, images=False)
            features = self.cache.get(batch["frames"])
        else:
            batch = self.dataset.batch(indices)
            features = None
        return diffusion_loss(self.policy, self.scheduler, batch, training, features, self.jitter, self.autocast)

    def step(self, indices) -> float:
        self.policy.train()
        loss = self.loss(indices)
        if not torch.isfinite(loss):
            raise ConfigError(f"loss is {loss.item()} at step {self.global_step}: lower --lr or check the episodes")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm=self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.lr_scheduler.step()
        if self.ema is not None:
            self.ema.step(self.policy)
        self.global_step += 1
        return float(loss.item())

    @torch.no_grad()
    def action_mse(self, n: int = 4, seed: int = 0) -> float:
        """upstream's train_action_mse_error: predict_action (DDIM) vs the recorded chunk, unnormalised."""
        policy = (self.ema.averaged if self.ema is not None else self.policy).eval()
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.dataset), generator=g)[:n].tolist()
        batch = self.dataset.batch(idx)
        noise = torch.randn(len(idx), self.arch.action_horizon, self.arch.action_dim, generator=g)
        pred = policy.predict_action(batch["obs"], noise)
        return float(torch.nn.functional.mse_loss(pred, batch["action"]))

    def provenance(self) -> dict:
        """What the checkpoint (and its export) says about its training data: the episodes
        directory and the MuJoCo scene seeds in it, so an evaluation can refuse those scenes; the
        action rate the chunks were trained at (and the recording's), so a runtime can tell whether
        it plays them at the demonstrated speed."""
        tl = self.episodes.timeline
        return {"episodes_dir": str(self.episodes.root.resolve()), "episodes": list(self.episodes.names),
                "scene_seeds": list(self.episodes.scene_seeds), "action_rate_hz": float(tl.action_rate_hz),
                "recorded_fps": float(tl.recorded_fps) if tl.recorded_fps else None}

    def run(self) -> dict:
        from tqdm.auto import tqdm

        cfg = self.cfg
        losses, lrs = [], []
        t0 = time.perf_counter()
        with tqdm(total=cfg.steps, desc="training", unit="step", disable=not cfg.progress) as bar:
            while self.global_step < cfg.steps:
                losses.append(self.step(self.next_indices()))
                lrs.append(self.lr_scheduler.get_last_lr()[0])
                bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lrs[-1]:.2e}", refresh=False)
                bar.update(1)
        train_s = time.perf_counter() - t0
        return self.finish(losses, lrs, train_s)

    def finish(self, losses: list[float], lrs: list[float], train_s: float) -> dict:
        cfg = self.cfg
        out = pathlib.Path(cfg.output)
        self.policy.eval()
        ema_policy = self.ema.averaged if self.ema is not None else None
        training = {"training.seed": cfg.seed, "training.lr_warmup_steps": self.warmup,
                    "training.use_ema": cfg.use_ema, "training.max_train_steps": cfg.steps,
                    "training.device": "cpu", "dataloader.batch_size": cfg.batch_size,
                    "optimizer.lr": cfg.lr, "optimizer.weight_decay": cfg.weight_decay,
                    "optimizer.betas": list(cfg.betas)}
        save_trained_checkpoint(self.policy, out, ema_policy, training, str(self.episodes.root),
                                global_step=self.global_step, epoch=self.epoch, provenance=self.provenance())
        tail = losses[-max(1, min(10, len(losses) // 5)):]
        summary = {
            "checkpoint": str(out),
            "arch": _arch_desc(self.arch),
            "episodes": len(self.episodes.names),
            "scene_seeds": describe_seeds(self.episodes.scene_seeds),
            "frames": self.episodes.frames,
            "samples": len(self.dataset),
            "median_frame_interval_s": self.episodes.median_frame_interval_s(),
            **self.episodes.timeline.summary(),
            "steps": self.global_step,
            "epochs": self.epoch + 1,
            "batch_size": cfg.batch_size,
            "precision": "bf16 autocast" if self.autocast else "fp32",
            "feature_cache": (f"{cfg.cache_dtype}, {self.cache.nbytes / 1e6:.1f} MB" if self.cache else "off"),
            "color_jitter": self.jitter is not None,
            "ema": cfg.use_ema,
            "warmup_steps": self.warmup,
            "first_loss": losses[0] if losses else None,
            "final_loss": float(np.mean(tail)) if losses else None,
            "train_s": round(train_s, 2),
            "steps_per_s": round(self.global_step / train_s, 4) if train_s > 0 else None,
            "action_mse": self.action_mse(),
            "dino_weights": self.dino_note,
        }
        log_path = out.with_name(out.name + ".train.json")
        log_path.write_text(json.dumps({"summary": summary, "config": _jsonable(asdict(cfg)),
                                        "loss": losses, "lr": lrs}, indent=1))
        summary["log"] = str(log_path)
        if cfg.plot:
            plot = plot_losses(losses, lrs, out.with_name(out.name + ".loss.png"))
            if plot:
                summary["plot"] = str(plot)
        return summary


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def plot_losses(losses: list[float], lrs: list[float], path: pathlib.Path) -> pathlib.Path | None:
    """Loss (and a running mean) and lr per step; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no loss plot")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss")
    k = max(1, len(losses) // 20)
    if len(losses) >= k > 1:
        ax.plot(steps[k - 1:], np.convolve(losses, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE (epsilon)")
    ax.set_yscale("log" if min(losses, default=1) > 0 else "linear")
    ax2 = ax.twinx()
    ax2.plot(steps, lrs, color="grey", lw=0.8, ls="--", label="lr")
    ax2.set_ylabel("lr")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train(cfg: TrainConfig) -> dict:
    """Run one training and return its summary (also written next to the checkpoint)."""
    if not math.isfinite(cfg.lr) or cfg.lr <= 0:
        raise ConfigError(f"--lr must be a positive number, got {cfg.lr}")
    return Trainer(cfg).run()
