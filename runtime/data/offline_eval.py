"""Open-loop evaluation: run an exported controller on recorded observations, compare with what ran.

For each evaluated frame k (every `stride` recorded frames) the controller sees exactly what the
robot's policy saw (head image + mask, wrist image, state; process_obs), with an initial DDIM
sample drawn from seed `seed + k`: the same noise for every backend and precision, so differences
come from the engine, not from sampling. Its chunk entry j is compared with the command executed
at t_k + j * action_dt (sample-and-hold on the recorded commands; entries past the episode's end
are left out). Errors are in the model's space (arm [-1, 1], hand 0..1), the space the recorder
stores. With two precisions, their chunks are also compared with each other ("agreement").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.data import DataError
from runtime.data.source import episode_dirs, load_verified

ACTION_DT_S = 0.05  # upstream's 20 Hz action spacing


def _open(model: str | Path, backend: str, precision: str, allow_unverified: bool):
    from runtime.controller import Controller

    kwargs = {"backend": backend}
    if precision != "fp32" or allow_unverified:
        kwargs.update(precision=precision, allow_unverified=allow_unverified)
    return Controller.from_dir(model, **kwargs)


def executed_targets(ts: np.ndarray, actions: np.ndarray, k: int, horizon: int, dt: float) -> tuple[np.ndarray, int]:
    """(targets (m, D), m): the executed command at t_k + j*dt for j < horizon within the episode."""
    times = ts[k] + np.arange(horizon) * dt
    times = times[times <= ts[-1] + 1e-9]
    idx = np.searchsorted(ts, times + 1e-9, side="right") - 1
    return actions[idx], int(idx.size)


def evaluate(model: str | Path, episodes: str | Path, backend: str = "onnxruntime",
             precisions: tuple[str, ...] = ("fp32",), stride: int = 10, seed: int = 0,
             max_steps: int | None = None, allow_unverified: bool = False, progress: bool = True) -> dict:
    from tqdm import tqdm

    from runtime.controller.preprocess import process_obs

    if not precisions or len(precisions) > 2:
        raise DataError(f"--precision: give one precision or two to compare, got {list(precisions)}")
    paths = episode_dirs(episodes)
    controllers = {p: _open(model, backend, p, allow_unverified) for p in precisions}
    report: dict = {"model": str(model), "backend": backend, "precisions": list(precisions), "stride": stride,
                    "seed": seed, "action_dt_s": ACTION_DT_S, "episodes": []}
    all_err = {p: [] for p in precisions}
    all_agree = []
    try:
        for path in paths:
            ep = load_verified(path)
            ts, actions = ep.data["timestamp"], ep.data["action"]
            steps = list(range(0, ep.frames, stride))[: max_steps or None]
            per = {p: [] for p in precisions}
            agree = []
            trace = {"t": [], "executed": [], **{p: [] for p in precisions}}
            for k in tqdm(steps, desc=f"eval {path.name}", unit="step", disable=not progress):
                rgbm = ep.data["rgbm"][k]
                obs = process_obs(np.ascontiguousarray(rgbm[..., :3]), np.ascontiguousarray(rgbm[..., 3]),
                                  ep.data["right_cam_img"][k], ep.data["right_state"][k])
                chunks = {}
                for p, ctrl in controllers.items():
                    noise = np.random.default_rng(seed + k).standard_normal(ctrl.sample_shape).astype(np.float32)
                    chunks[p] = ctrl.predict(obs, noise=noise)
                horizon = next(iter(chunks.values())).shape[0]
                target, m = executed_targets(ts, actions, k, horizon, ACTION_DT_S)
                for p, chunk in chunks.items():
                    per[p].append(chunk[:m] - target)
                    trace[p].append(chunk[0])
                trace["t"].append(float(ts[k] - ts[0]))
                trace["executed"].append(actions[k])
                if len(chunks) == 2:
                    a, b = chunks.values()
                    agree.append(np.abs(a - b))
            row = {"episode": path.name, "steps": len(steps), "prompt": ep.info.get("prompt")}
            for p in precisions:
                err = np.concatenate(per[p]) if per[p] else np.zeros((0, actions.shape[1]))
                all_err[p].append(err)
                row[p] = _summary(err)
            if agree:
                cat = np.concatenate(agree)
                all_agree.append(cat)
                row["agreement"] = {"max_abs": float(cat.max()), "mean_abs": float(cat.mean())}
            row["trace"] = {k: np.asarray(v).tolist() for k, v in trace.items()}
            report["episodes"].append(row)
    finally:
        for ctrl in controllers.values():
            ctrl.close()
    report["overall"] = {p: _summary(np.concatenate(all_err[p])) for p in precisions}
    if all_agree:
        cat = np.concatenate(all_agree)
        report["overall"]["agreement"] = {"max_abs": float(cat.max()), "mean_abs": float(cat.mean())}
    return report


def _summary(err: np.ndarray) -> dict:
    if err.size == 0:
        return {"n": 0}
    return {"n": int(err.shape[0]), "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "max_abs": float(np.abs(err).max()), "mae_per_joint": np.abs(err).mean(0).round(6).tolist()}


def plot(report: dict, out_dir: str | Path, joint_names: list[str] | None = None) -> list[Path]:
    """One PNG per episode: per joint, the executed command and each precision's first predicted action."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from runtime.errors import MissingExtraError

        raise MissingExtraError("--plot needs matplotlib: pip install 'dexgraspvla-runtime[plots]'") from exc
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for row in report["episodes"]:
        tr = row["trace"]
        executed = np.asarray(tr["executed"])
        if executed.size == 0:
            continue
        dims = executed.shape[1]
        names = joint_names or [f"joint {i}" for i in range(dims)]
        fig, axes = plt.subplots((dims + 3) // 4, 4, figsize=(16, 2.4 * ((dims + 3) // 4)), sharex=True)
        for i, ax in enumerate(axes.flat):
            if i >= dims:
                ax.axis("off")
                continue
            ax.plot(tr["t"], executed[:, i], "k-", label="executed")
            for p in report["precisions"]:
                ax.plot(tr["t"], np.asarray(tr[p])[:, i], ".--", label=f"predicted {p}")
            ax.set_title(names[i], fontsize=9)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"{row['episode']}: {row.get('prompt')!r}")
        fig.tight_layout()
        path = out_dir / f"{row['episode']}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
