"""Benchmark lidsplit.ops.masked_sum against plain-PyTorch baselines measured in the same run.

Cases (the issue's): forward + backward of 5 tensors of (64, 16, 32, 32) float32 with (5,) weights that
require grad, against the Python sum ``sum(w[j] * x[j])`` and ``torch.einsum`` over ``torch.stack``;
then a constant 0/1 mask (the supernet ``sum`` mode: weights need no grad), one-hot [1, 0, 0, 0, 0]
against all ones, to show what masked-out inputs cost. Times are medians over repeats (min in
brackets); ratios are baseline median / lidsplit median. The machine may be shared: the load average
is printed with the results.

    python benchmarks/bench_masked_sum.py [--device cpu|cuda] [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

import lidsplit
from lidsplit.ops import masked_sum


def python_sum(xs, w):
    return sum(w[j] * x for j, x in enumerate(xs))


def stack_einsum(xs, w):
    return torch.einsum("n,n...->...", w, torch.stack(xs))


def timed(fn: Callable[[], None], device: torch.device, repeat: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    shape, n = (64, 16, 32, 32), 5
    base = [torch.randn(shape, device=device) for _ in range(n)]
    upstream = torch.randn(shape, device=device)

    print(f"masked_sum benchmark: {n} x {shape} float32 on {device}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, {lidsplit._C.max_threads()} OpenMP threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")

    def fwd_bwd(fn, w0: torch.Tensor, w_grad: bool) -> Callable[[], None]:
        xs = [b.clone().requires_grad_() for b in base]
        w = w0.clone().requires_grad_(w_grad)

        def step() -> None:
            for x in xs:
                x.grad = None
            w.grad = None
            fn(xs, w).backward(upstream)

        return step

    def fwd(fn, w0: torch.Tensor) -> Callable[[], None]:
        xs = [b.clone() for b in base]
        return lambda: fn(xs, w0)

    methods = [("lidsplit masked_sum", masked_sum), ("python sum(w*x)", python_sum), ("stack + einsum", stack_einsum)]
    weights = torch.rand(n, device=device)

    # correctness in this run
    ref = python_sum(base, weights)
    assert torch.allclose(masked_sum(base, weights), ref, rtol=1e-5, atol=1e-5)

    rows = []
    print("\n1) forward + backward, weights (5,) require grad")
    print(f"{'method':<22}{'median ms':>11}{'(min)':>9}{'baseline/lidsplit':>19}")
    res = {name: timed(fwd_bwd(fn, weights, True), device, args.repeat) for name, fn in methods}
    ours = res[methods[0][0]][0]
    for name, (med, mn) in res.items():
        rows.append((name, med, mn))
        print(f"{name:<22}{med * 1e3:>11.2f}{mn * 1e3:>9.2f}{med / ours:>19.2f}")

    print("\n2) constant 0/1 mask (weights need no grad): one-hot [1,0,0,0,0] vs all ones")
    print(f"{'method / pass':<34}{'ones ms':>9}{'one-hot ms':>12}{'one-hot/ones':>14}")
    ones = torch.ones(n, device=device)
    onehot = torch.zeros(n, device=device)
    onehot[0] = 1
    for name, fn in methods[:2]:
        for label, make in (("forward", lambda fn, w: fwd(fn, w)), ("forward + backward", lambda fn, w: fwd_bwd(fn, w, False))):
            t_ones = timed(make(fn, ones), device, args.repeat)[0]
            t_hot = timed(make(fn, onehot), device, args.repeat)[0]
            print(f"{name + ', ' + label:<34}{t_ones * 1e3:>9.2f}{t_hot * 1e3:>12.2f}{t_hot / t_ones:>14.2f}")
    print("\nNote: with a 0 weight, lidsplit's forward never reads that input; its backward still writes a zero\n"
          "gradient for it (a fill, no read of the upstream gradient).")


if __name__ == "__main__":
    main()
