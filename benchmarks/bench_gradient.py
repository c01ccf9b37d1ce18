"""Benchmark lidsplit.ops.gradient_cosine against concatenation + matmul: time and peak extra memory.

n = 5 gradient vectors of M float32 elements each, split over 50 tensors of log-uniformly spread sizes
(like a network's parameters). Methods:

- ``lidsplit``: ``gradient_cosine(grads)``, one streaming pass, float64 accumulation.
- ``cat+stack+matmul``: ``V = stack([cat(g) for g in grads]); V @ V.T`` (float32), then the cosine.
- ``cat+dots``: ``vs = [cat(g) for g in grads]``, the 15 pair dots ``torch.dot(vs[i], vs[j])`` (float32):
  the same baseline without the stacked copy.

Each (M, method) runs in its own subprocess, so that one method's allocations cannot hide another's.
Memory on the CPU is the resident-set high-water mark: the child builds its inputs, resets the
kernel's high-water mark (``echo 5 > /proc/self/clear_refs``), runs the method, and reports
``VmHWM - VmRSS(before)`` from /proc/self/status (whole process: any allocator slack or thread stack
counts too). On CUDA it is ``torch.cuda.max_memory_allocated()`` minus the allocation before the run.
M <= 1e7: one warm-up call, then the median of 3; larger M: a single call (no warm-up), the peak
covering it. "max |diff|" compares each method's cosine matrix with lidsplit's (float64 accumulation).
The machine may be shared: the load average is printed.

    python benchmarks/bench_gradient.py [--sizes 1e7 5e7] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import time

import torch

N_VECTORS = 5
N_TENSORS = 50


def param_sizes(total: int, count: int = N_TENSORS, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    raw = [math.exp(rng.uniform(0.0, 8.0)) for _ in range(count)]
    sizes = [max(1, int(r / sum(raw) * total)) for r in raw]
    sizes[-1] += total - sum(sizes)
    return sizes


def make_grads(total: int, device: torch.device) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    sizes = param_sizes(total)
    return [[torch.randn(s, generator=gen).to(device) for s in sizes] for _ in range(N_VECTORS)]


def cosine_from_gram(g: torch.Tensor) -> torch.Tensor:
    g = g.double()
    d = g.diagonal().sqrt()
    return g / (d[:, None] * d[None, :])


def lidsplit_method(grads):
    from lidsplit.ops import gradient_cosine

    return gradient_cosine(grads)


def cat_stack_matmul(grads):
    v = torch.stack([torch.cat([t.reshape(-1) for t in g]) for g in grads])
    return cosine_from_gram(v @ v.T)


def cat_dots(grads):
    vs = [torch.cat([t.reshape(-1) for t in g]) for g in grads]
    n = len(vs)
    gram = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i, n):
            gram[i, j] = gram[j, i] = float(torch.dot(vs[i], vs[j]))
    return cosine_from_gram(gram)


METHODS = {"lidsplit": lidsplit_method, "cat+stack+matmul": cat_stack_matmul, "cat+dots": cat_dots}


def proc_status() -> dict[str, int]:
    text = open("/proc/self/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+) kB", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}


def child(method: str, total: int, device: torch.device) -> None:
    grads = make_grads(total, device)
    fn = METHODS[method]
    runs = 3 if total <= 10**7 else 1
    warmup = 1 if total <= 10**7 else 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = proc_status()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
            f.write("5")
    times = []
    for i in range(warmup + runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        cos = fn(grads)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = proc_status()["VmHWM"] - base
    print(json.dumps({"time": statistics.median(times), "runs": runs, "peak": peak, "cos": cos.cpu().tolist()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e7, 5e7])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch and lidsplit (0: default)")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "M"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)  # one OpenMP runtime: lidsplit's kernels follow
    if args.child:
        child(args.child[0], int(float(args.child[1])), device)
        return

    import lidsplit

    print(f"gradient_cosine benchmark: n = {N_VECTORS} vectors of M float32 elements over {N_TENSORS} tensors, "
          f"device {device}; torch {torch.__version__}, {args.threads or lidsplit._C.max_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")
    mem = "peak extra GPU memory" if device.type == "cuda" else "peak extra RSS"
    print(f"{'M':>8} {'method':<18}{'time s':>9}{'runs':>6}{'time/lidsplit':>15}{mem + ' MiB':>24}{'max |diff|':>12}")
    for total in args.sizes:
        results = {}
        for method in METHODS:
            cmd = [sys.executable, __file__, "--device", args.device, "--threads", str(args.threads), "--child", method,
                   str(int(total))]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[method] = json.loads(out.strip().splitlines()[-1])
        ref = torch.tensor(results["lidsplit"]["cos"], dtype=torch.float64)
        t_ours = results["lidsplit"]["time"]
        for method, r in results.items():
            diff = float((torch.tensor(r["cos"], dtype=torch.float64) - ref).abs().max())
            print(f"{total:>8.0e} {method:<18}{r['time']:>9.3f}{r['runs']:>6}{r['time'] / t_ours:>15.2f}"
                  f"{r['peak'] / 2**20:>24.1f}{diff:>12.1e}")
    print(f"\nInputs: {N_VECTORS} x M x 4 bytes (1e7: {N_VECTORS * 4e7 / 2**30:.2f} GiB, "
          f"5e7: {N_VECTORS * 2e8 / 2**30:.2f} GiB), excluded from the peaks.")


if __name__ == "__main__":
    main()
