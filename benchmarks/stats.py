"""Latency statistics and the interleaved timing loop that keeps ratios honest on noisy machines."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """mean, p50, p90, p99 and min in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        raise ValueError("no timings to summarise")
    return {
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "min_ms": float(ms.min()),
    }


def time_interleaved(cases: dict[str, Callable[[], object]], warmup: int, iters: int,
                     on_step: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Time several callables round-robin: each iteration runs every case once, in rotating order.

    Interleaving spreads background noise over all cases alike, so ratios between them are taken
    from one run under the same conditions.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iters):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
        if on_step is not None:
            on_step()
    return times
