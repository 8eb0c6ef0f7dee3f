"""Timing helpers every benchmark uses: warm-ups, repeats, a monotonic clock, medians/percentiles.

Why this shape: a single timed call on a shared 2-core machine says little (first-call allocation,
page faults, another process's burst). So every number is a distribution: `warmup` untimed calls,
then at least `repeats` timed ones (and more until `min_time_s` has passed), summarised as
p50 / p90 / p99 / max with the sample count, so a reader can tell a p99 of 5 samples (= the max)
from a p99 of 10 000.

The clock is `time.perf_counter`: monotonic (never jumps with the wall clock) and the highest
resolution Python has. It is injectable so tests drive `measure` with a scripted clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

#: Unit name -> factor from seconds.
UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}

#: Percentiles every summary carries.
PERCENTILES = (50, 90, 99)


def summarize(samples: Iterable[float], unit: str = "ms", from_unit: str = "s") -> dict:
    """Summary statistics of `samples` (given in `from_unit`), converted to `unit`.

    Returns {count, p50, p90, p99, max, min, mean, std, unit}; with no samples the numbers are None
    (not 0, which would read as "instant"). Percentiles use linear interpolation (numpy's default).
    Non-finite samples are an error: a NaN latency means the measurement itself is broken.
    """
    if unit not in UNITS or from_unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r} or {from_unit!r}; expected one of {sorted(UNITS)}")
    arr = np.asarray(list(samples) if not isinstance(samples, np.ndarray) else samples, dtype=np.float64)
    arr = arr.ravel()
    out: dict = {"count": int(arr.size), "unit": unit}
    keys = [f"p{q}" for q in PERCENTILES] + ["max", "min", "mean", "std"]
    if arr.size == 0:
        out.update(dict.fromkeys(keys))
        return out
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{bad} of {arr.size} timing samples are not finite")
    arr = arr * (UNITS[unit] / UNITS[from_unit])
    pct = np.percentile(arr, PERCENTILES)
    for q, v in zip(PERCENTILES, pct, strict=True):
        out[f"p{q}"] = float(v)
    out.update(
        max=float(arr.max()),
        min=float(arr.min()),
        mean=float(arr.mean()),
        std=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
    )
    return out


@dataclass
class Timing:
    """Samples (seconds) of one measured operation plus how they were taken."""

    name: str
    samples_s: np.ndarray
    warmup: int
    clock: str = "time.perf_counter"
    extra: dict = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples_s)) if self.samples_s.size else math.nan

    def summary(self, unit: str = "ms") -> dict:
        return summarize(self.samples_s, unit=unit)

    def to_dict(self, unit: str = "ms", include_samples: bool = False) -> dict:
        """JSON-ready: the summary, the warm-up count and clock, optionally every sample."""
        d = {"name": self.name, **self.summary(unit), "warmup": self.warmup, "clock": self.clock}
        if include_samples:
            d[f"samples_{unit}"] = [float(x) * UNITS[unit] for x in self.samples_s]
        d.update(self.extra)
        return d


def measure(
    fn: Callable[[], object],
    *,
    name: str = "",
    repeats: int = 20,
    warmup: int = 3,
    min_time_s: float = 0.0,
    max_repeats: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time `fn()`: `warmup` untimed calls, then `repeats` timed calls, continuing (up to
    `max_repeats`) until `min_time_s` of timed calls have accumulated.

    Blocks for as long as the calls take; no timeout (the caller chooses repeats to fit a budget).
    Exceptions from `fn` propagate: a failing operation has no latency.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    cap = max_repeats if max_repeats is not None else max(repeats, 100_000)
    if cap < repeats:
        raise ValueError(f"max_repeats ({cap}) is smaller than repeats ({repeats})")
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    total = 0.0
    while len(samples) < repeats or (total < min_time_s and len(samples) < cap):
        t0 = clock()
        fn()
        dt = clock() - t0
        samples.append(dt)
        total += dt
    return Timing(name=name or getattr(fn, "__name__", "fn"), samples_s=np.asarray(samples), warmup=warmup)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing, non-finite or the denominator is 0."""
    if numerator is None or denominator is None:
        return None
    try:
        n, d = float(numerator), float(denominator)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(n) and math.isfinite(d)) or d == 0.0:
        return None
    return n / d
