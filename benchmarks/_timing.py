"""Timing shared by the kernel benchmark scripts (``bench_gradient.py``, ``bench_masked_sum.py``)."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def timed(fns: dict[str, Callable[[], object]], device: torch.device, repeat: int,
          warmup: int = 1) -> dict[str, tuple[float, float]]:
    """Median and min seconds per function over ``repeat`` rounds after ``warmup`` rounds.

    The functions take turns inside each round, so a change of machine load hits all of them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeat):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}
