"""Data-parallel single-path training: steps/s with 1 vs N local processes, and the bytes all-reduced per step.

Two supernets: the README's (NB201 C=8 N=1 on the 8x8 digits, batch 64) and NB201 C=16 N=5 on
3x32x32 images (random, CIFAR-sized; batch 64). Both worlds run through the same launcher
(``lidsplit.train.run_data_parallel``): world 1 is one process with all of torch's threads, world N is
N processes with ``threads // N`` each, so the comparison is at equal cores; one process with
``threads // N`` threads is timed too (what each rank has). Steps/s is timed inside
the ranks, after ``--warmup`` steps (process start and the first steps excluded).

Bytes all-reduced per step (each rank's payload; a ring all-reduce sends about 2 (W-1)/W of it):
- DDP's gradient buckets: every trainable parameter in float32, also those of ops off the path (DDP
  reduces whole buckets; unused parameters travel as zeros and stay ``None`` afterwards), plus its
  unused-parameter bitmap (find_unused_parameters: one int32 per parameter tensor);
- synchronised BatchNorm: ``(2C + 1)`` float64 per BatchNorm call on the path, forward and backward;
- the step's path check and metrics (5 float64).
The BatchNorm and step collectives are counted by wrapping ``torch.distributed.all_reduce`` in the ranks;
the DDP part is computed from the parameters (DDP's reducer calls the process group from C++).

Usage: ``python benchmarks/bench_ddp.py [--nproc 2] [--steps 30] [--big-steps 10]``; prints a markdown
table with the load average before and after each timing (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch
import torch.distributed as dist

from lidsplit.data import Dataset, TensorLoader, digits
from lidsplit.spaces import nb201
from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train import DataParallel, run_data_parallel, train_subsupernet


def _setup(name: str, steps: int, batch: int) -> tuple[Any, Any]:
    torch.manual_seed(0)
    if name == "readme":
        model = nb201(C=8, N=1, num_classes=10, in_channels=1)
        train = digits(seed=0).train
        n = steps * batch
        reps = -(-n // len(train))
        x, y = train.x.repeat(reps, 1, 1, 1)[:n], train.y.repeat(reps)[:n]
        data = Dataset(x, y, 10)
    else:
        model = nb201(C=16, N=5, num_classes=10, in_channels=3)
        g = torch.Generator().manual_seed(0)
        data = Dataset(torch.randn(steps * batch, 3, 32, 32, generator=g), torch.randint(0, 10, (steps * batch,), generator=g), 10)
    return model, TensorLoader(data, batch, shuffle=True, seed=0)


def _rank(dp: DataParallel, name: str, steps: int, batch: int, warmup: int, sync_bn_calls: bool) -> dict[str, Any] | None:
    model, loader = _setup(name, steps, batch)
    sent = {"bytes": 0, "calls": 0, "on": False}
    real = dist.all_reduce

    def counting(t: torch.Tensor, *a: Any, **k: Any) -> Any:
        if sent["on"]:
            sent["bytes"] += t.numel() * t.element_size()
            sent["calls"] += 1
        return real(t, *a, **k)

    dist.all_reduce = counting  # the Python-level collectives: synced BatchNorm, step checks, metrics
    stamps: list[float] = []

    def on_step(ev: Any) -> None:
        stamps.append(time.perf_counter())
        sent["on"] = ev.step >= warmup  # count the steps after the warm-up

    try:
        train_subsupernet(model, SubSupernet.full(search_space(model)), loader, 1, progress=False,
                          parallel=dp if dp.world_size > 1 else None, on_step=on_step, seed=0)
    finally:
        dist.all_reduce = real
    if dp.rank != 0:
        return None
    timed = steps - warmup
    params = [p for p in model.parameters() if p.requires_grad]
    return {
        "steps_per_s": (timed - 1) / (stamps[-1] - stamps[warmup]),
        "ddp_bytes": sum(p.numel() * p.element_size() for p in params) + 4 * len(params) if dp.world_size > 1 else 0,
        "other_bytes": sent["bytes"] / max(timed - 1, 1),
        "other_calls": sent["calls"] / max(timed - 1, 1),
        "params": sum(p.numel() for p in params),
    }


def measure(name: str, nproc: int, threads: int, steps: int, batch: int, warmup: int) -> dict[str, Any]:
    before = os.getloadavg()[0]
    out = run_data_parallel(_rank, nproc, name, steps, batch, warmup, True, threads=threads)
    return out | {"load_before": before, "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40, help="steps of the README supernet (batch 64)")
    ap.add_argument("--big-steps", type=int, default=12, help="steps of NB201 C=16 N=5 (batch 64)")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    cores = torch.get_num_threads()
    print("| supernet | processes x threads | steps/s | DDP bytes/step | BN+check bytes/step (calls) | load before / after |")
    print("|---|---|---|---|---|---|")
    for name, steps, label in [("readme", args.steps, "NB201 C=8 N=1, digits 8x8"),
                               ("big", args.big_steps, "NB201 C=16 N=5, 3x32x32")]:
        for nproc, threads in ((1, cores), (1, max(1, cores // args.nproc)), (args.nproc, max(1, cores // args.nproc))):
            r = measure(name, nproc, threads, steps, 64, args.warmup)
            print(f"| {label} ({r['params']:,} params) | {nproc} x {threads} | {r['steps_per_s']:.2f} | {r['ddp_bytes']:,} | "
                  f"{r['other_bytes']:,.0f} ({r['other_calls']:.0f}) | {r['load_before']:.2f} / {r['load_after']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
