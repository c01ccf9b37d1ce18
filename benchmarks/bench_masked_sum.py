"""Benchmark lidsplit.ops.masked_sum against plain-PyTorch baselines measured in the same run.

Cases (issue 19): forward + backward of 5 tensors of (64, 16, 32, 32) float32 with (5,) weights that
require grad, against ``torch.compile`` of the Python sum (the target: lidsplit at most its time), the
eager Python sum ``sum(w[j] * x[j])`` and ``torch.einsum`` over ``torch.stack``, and against the traffic
floor: ``buf.sum()`` of one buffer as large as the 3n + 2 tensors a fused forward + backward must move
(forward: n reads, 1 write; backward: grad and the n inputs read, n gradients written; target: lidsplit
<= 1.5x). Then a constant 0/1 mask (the supernet ``sum`` mode: weights need no grad), one-hot
[1, 0, 0, 0, 0] against all ones, to show what masked-out inputs cost (eager CPU: nothing, their
gradient is None); then the per-call cost on tiny tensors, where the public function's eager fast path
is compared with the registered op's dispatcher route. Times are medians over repeats (min in
brackets); ratios are baseline median / lidsplit median. The methods of a table take turns within each
repeat, so load changes on a shared machine hit them alike; the load average is printed.

    python benchmarks/bench_masked_sum.py [--device cpu|cuda] [--repeat 15] [--threads N]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch

import lidsplit
from _timing import timed
from lidsplit.ops import masked_sum


def python_sum(xs, w):
    return sum(w[j] * x for j, x in enumerate(xs))


def stack_einsum(xs, w):
    return torch.einsum("n,n...->...", w, torch.stack(xs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch and lidsplit (0: default)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)  # one OpenMP runtime: lidsplit's kernels follow
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

    compiled = torch.compile(python_sum)
    methods = [("lidsplit masked_sum", masked_sum), ("torch.compile sum", compiled), ("python sum(w*x)", python_sum),
               ("stack + einsum", stack_einsum)]
    floor_buf = torch.randn((3 * n + 2) * base[0].numel(), device=device)
    weights = torch.rand(n, device=device)

    # correctness in this run
    ref = python_sum(base, weights)
    assert torch.allclose(masked_sum(base, weights), ref, rtol=1e-5, atol=1e-5)

    rows = []
    print("\n1) forward + backward, weights (5,) require grad")
    print(f"{'method':<30}{'median ms':>11}{'(min)':>9}{'baseline/lidsplit':>19}")
    fns = {name: fwd_bwd(fn, weights, True) for name, fn in methods}
    fns[f"traffic floor ({3 * n + 2} tensors)"] = floor_buf.sum
    res = timed(fns, device, args.repeat, warmup=3)
    ours = res[methods[0][0]][0]
    for name, (med, mn) in res.items():
        rows.append((name, med, mn))
        print(f"{name:<30}{med * 1e3:>11.2f}{mn * 1e3:>9.2f}{med / ours:>19.2f}")
    print(f"lidsplit / traffic floor: {ours / res[f'traffic floor ({3 * n + 2} tensors)'][0]:.2f}; "
          f"lidsplit / torch.compile: {ours / res['torch.compile sum'][0]:.2f}")

    print("\n2) constant 0/1 mask (weights need no grad): one-hot [1,0,0,0,0] vs all ones")
    print(f"{'method / pass':<34}{'ones ms':>9}{'one-hot ms':>12}{'one-hot/ones':>14}")
    ones = torch.ones(n, device=device)
    onehot = torch.zeros(n, device=device)
    onehot[0] = 1
    for name, fn in methods[:3]:
        for label, make in (("forward", lambda fn, w: fwd(fn, w)), ("fwd + bwd", lambda fn, w: fwd_bwd(fn, w, False))):
            res = timed({"ones": make(fn, ones), "onehot": make(fn, onehot)}, device, args.repeat, warmup=3)
            t_ones, t_hot = res["ones"][0], res["onehot"][0]
            print(f"{name + ', ' + label:<34}{t_ones * 1e3:>9.2f}{t_hot * 1e3:>12.2f}{t_hot / t_ones:>14.2f}")
    print("\nNote: with a 0 weight, lidsplit's forward never reads that input, and its eager CPU backward gives it\n"
          "no gradient (None); on CUDA and through torch.compile it writes a zero gradient (a fill, no read).")

    # per-call overhead on tiny tensors, including the registered op's dispatcher route
    small = [torch.randn(8, 16, device=device) for _ in range(n)]
    small_up = torch.randn(8, 16, device=device)
    w_small = torch.rand(n, device=device)
    routes = [("lidsplit masked_sum", masked_sum), ("torch.ops.lidsplit (dispatcher)", torch.ops.lidsplit.masked_sum),
              ("python sum(w*x)", python_sum)]

    def small_step(fn, grad: bool) -> Callable[[], None]:
        xs = [x.clone().requires_grad_(grad) for x in small]
        w = w_small.clone().requires_grad_(grad)
        if not grad:
            return lambda: fn(xs, w)
        return lambda: fn(xs, w).backward(small_up)

    print(f"\n3) per-call cost, 5 x (8, 16) float32 (microseconds, median of {args.repeat * 20})")
    print(f"{'method':<34}{'forward':>9}{'fwd + bwd':>11}")
    fw = timed({name: small_step(fn, False) for name, fn in routes}, device, args.repeat * 20, warmup=20)
    fb = timed({name: small_step(fn, True) for name, fn in routes}, device, args.repeat * 20, warmup=20)
    for name, _ in routes:
        print(f"{name:<34}{fw[name][0] * 1e6:>9.1f}{fb[name][0] * 1e6:>11.1f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
