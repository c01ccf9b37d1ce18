"""Benchmark lidsplit.ops.gradient_gram against the plain PyTorch code it replaces, in the same run.

n gradient vectors (n = 2, 5, 8, 16 by default) of M float32 elements each, over P tensors of
log-uniformly spread sizes, in two mixes: ``huge`` (P = 50, the largest tensors tens of MB) and
``tiny`` (P = 2000, most tensors a few hundred elements or fewer: every tensor's fixed cost shows).
Methods, all timed in this process and taking turns within each repeat (so that load changes on a
shared machine hit them alike):

- ``lidsplit``: ``gradient_gram(grads)``: one streaming pass, float64 accumulation.
- ``dot loop``: for each parameter, the n(n+1)/2 ``torch.dot`` of its slices (float32 accumulation),
  summed per pair: the per-parameter loop a user would write.
- ``cat+matmul``: ``V = stack([cat(g) for g in grads]); V @ V.T`` (float32 GEMM; copies every vector).
- ``read floor``: ``buf.sum()`` of one contiguous float32 buffer of n x M elements: one streaming read
  of as many bytes as the inputs, the least any method can cost.

Reported: the median over repeats (milliseconds) and, per row, lidsplit / read floor and baseline /
lidsplit (how many times faster lidsplit is), all from the same run. The load average (1 min) is
printed before and after; the machine may be shared. Targets (issue 19): lidsplit <= 1.5x the read
floor and >= 2x faster than the dot loop. "max rel diff" compares lidsplit's gram with the dot loop's.

    python benchmarks/bench_gradient.py [--n 2 5 8 16] [--size 1e7] [--repeat 5] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math
import os
import random

import torch

import lidsplit
from _timing import timed
from lidsplit.ops import gradient_gram

MIXES = {"huge": 50, "tiny": 2000}


def param_sizes(total: int, count: int, seed: int = 0) -> list[int]:
    """count sizes summing to total, log-uniform over a range of e^8 (like a network's parameters)."""
    rng = random.Random(seed)
    raw = [math.exp(rng.uniform(0.0, 8.0)) for _ in range(count)]
    sizes = [max(1, int(r / sum(raw) * total)) for r in raw]
    sizes[-1] += total - sum(sizes)
    return sizes


def make_grads(n: int, total: int, count: int, device: torch.device) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    sizes = param_sizes(total, count)
    return [[torch.randn(s, generator=gen).to(device) for s in sizes] for _ in range(n)]


def dot_loop(grads: list[list[torch.Tensor]]) -> torch.Tensor:
    n, P = len(grads), len(grads[0])
    dots = [torch.dot(grads[i][p], grads[j][p]) for p in range(P) for i in range(n) for j in range(i, n)]
    packed = torch.stack(dots).view(P, -1).double().sum(0)
    gram = torch.empty(n, n, dtype=torch.float64, device=packed.device)
    k = 0
    for i in range(n):
        for j in range(i, n):
            gram[i, j] = gram[j, i] = packed[k]
            k += 1
    return gram


def cat_matmul(grads: list[list[torch.Tensor]]) -> torch.Tensor:
    v = torch.stack([torch.cat([t.reshape(-1) for t in g]) for g in grads])
    return (v @ v.T).double()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", nargs="+", type=int, default=[2, 5, 8, 16])
    ap.add_argument("--size", type=float, default=1e7, help="M, elements per gradient vector")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch and lidsplit (0: default)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)  # one OpenMP runtime: lidsplit's kernels follow
    total = int(args.size)
    print(f"gradient_gram benchmark: n vectors of M = {total:.0e} float32 elements, device {device}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {lidsplit._C.max_threads()} OpenMP "
          f"threads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine); "
          f"medians of {args.repeat} interleaved repeats, ms")
    print(f"{'n':>3} {'mix':<5}{'P':>6}{'floor':>9}{'lidsplit':>10}{'dot loop':>10}{'cat+mm':>9}"
          f"{'lidsplit/floor':>16}{'loop/lidsplit':>15}{'cat/lidsplit':>14}{'max rel diff':>14}")
    for n in args.n:
        for mix, count in MIXES.items():
            grads = make_grads(n, total, count, device)
            buf = torch.randn(n * total, device=device)
            res = timed({"floor": buf.sum, "lidsplit": lambda: gradient_gram(grads), "loop": lambda: dot_loop(grads),
                         "cat": lambda: cat_matmul(grads)}, device, args.repeat)
            ours = gradient_gram(grads)
            d = ours.diagonal().sqrt()
            diff = float(((dot_loop(grads) - ours).abs() / (d[:, None] * d[None, :])).max())
            ms = {k: med * 1e3 for k, (med, _) in res.items()}
            print(f"{n:>3} {mix:<5}{count:>6}{ms['floor']:>9.2f}{ms['lidsplit']:>10.2f}{ms['loop']:>10.2f}"
                  f"{ms['cat']:>9.2f}{ms['lidsplit'] / ms['floor']:>16.2f}{ms['loop'] / ms['lidsplit']:>15.2f}"
                  f"{ms['cat'] / ms['lidsplit']:>14.2f}{diff:>14.1e}", flush=True)
            del grads, buf
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
