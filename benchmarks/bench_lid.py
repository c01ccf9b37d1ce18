"""Benchmark of lidsplit's knn / lid_mle / lid_profile on the CPU against baselines, in one run.

    python benchmarks/bench_lid.py [--repeat 9] [--k 20] [--no-memory] [--json out.json]

Per shape (b, m), float32, k = 20, all timed in the same process with the methods interleaved round
by round (so a burst of load from elsewhere hits all of them alike), median of --repeat rounds:

    floor      one float32 x @ x.T of the same shape (the GEMM every exact method must pay)
    lid_mle    lidsplit.ops.lid_mle(x, k)                     (mean MLE LID)
    knn        lidsplit.ops.knn(x, k)
    (a) cdist  torch.cdist + topk + log-ratio mean
    (b) mm     matmul expansion |x|^2 + |y|^2 - 2 x y^T (in place) + topk + log-ratio mean
    (c) skdim  skdim.id.MLE(comb="mean") (scikit-dimension; skipped if not installed)
    (d) faiss  faiss IndexFlatL2 search of k + 1 + log-ratio mean (faiss-cpu; skipped if missing)

and lid_profile on a batch of 30 matrices (256, 4096) against the sum of their floors and a Python
loop of (b). Targets (the issue): lid_mle <= 1.3x floor where the floor > 1 ms; >= 2x faster than (a)
at (4096, 256); never slower than (b); lid_profile <= 1.2x the sum of floors; lid_mle <= 2x floor on
small matrices (128, 256) (issue 19: a supernet's layer outputs are often this small).

Memory: peak RSS above the starting point during one call, each in a fresh process (the kernel's
high-water mark reset through /proc/self/clear_refs; Linux only), against the b x b float32 matrix.

The machine may be shared: the load average is printed before and after; ratios from a loaded
machine are noisy (OpenMP regions wait for their slowest thread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

import lidsplit
from lidsplit.ops import knn, lid_mle, lid_profile

SHAPES = [(128, 256), (128, 16384), (512, 4096), (2048, 1024), (4096, 256)]
PROFILE = (30, 256, 4096)

try:  # optional baselines
    import skdim  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import failure means "not available"
    skdim = None
try:
    import faiss  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001
    faiss = None


# ---- baselines ---------------------------------------------------------------------------------------


def floor(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.mm(x, x.T)


def base_cdist(x: torch.Tensor, k: int) -> torch.Tensor:
    r = torch.cdist(x, x).topk(k + 1, largest=False).values[:, 1:]
    return (-k / torch.log(r / r[:, -1:]).sum(1)).mean()


def base_mm(x: torch.Tensor, k: int) -> torch.Tensor:
    n = (x * x).sum(1)
    d2 = torch.mm(x, x.T)
    d2.mul_(-2).add_(n[:, None]).add_(n[None, :]).clamp_(min=0)
    v = d2.topk(k + 1, largest=False).values[:, 1:]
    return (-k / (0.5 * torch.log(v / v[:, -1:])).sum(1)).mean()


def base_skdim(x: torch.Tensor, k: int) -> float:
    return skdim.id.MLE().fit(x.numpy(), n_neighbors=k, comb="mean").dimension_


def base_faiss(x: torch.Tensor, k: int) -> torch.Tensor:
    xn = x.numpy()
    index = faiss.IndexFlatL2(xn.shape[1])
    index.add(xn)
    d2, _ = index.search(xn, k + 1)
    v = torch.from_numpy(d2[:, 1:]).clamp(min=1e-30)
    return (-k / (0.5 * torch.log(v / v[:, -1:])).sum(1)).mean()


def ours_lid(x: torch.Tensor, k: int) -> torch.Tensor:
    return lid_mle(x, k)


def ours_knn(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return knn(x, k)


METHODS: dict[str, Callable] = {
    "floor": floor,
    "lid_mle": ours_lid,
    "knn": ours_knn,
    "(a) cdist": base_cdist,
    "(b) mm": base_mm,
}
if skdim is not None:
    METHODS["(c) skdim"] = base_skdim
if faiss is not None:
    METHODS["(d) faiss"] = base_faiss


# ---- timing ------------------------------------------------------------------------------------------


CLOCK = time.perf_counter  # --clock cpu: time.thread_time (with --threads 1: immune to other load)


def interleaved(fns: dict[str, Callable[[], object]], repeat: int, slow: set[str] = frozenset()) -> dict[str, float]:
    """Median time (ms) of each function, the functions run in turn `repeat` rounds (slow ones 3 rounds)."""
    for f in fns.values():
        f()  # warm-up (allocator, thread pool, numba compilation)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeat):
        for name, f in fns.items():
            if name in slow and r >= 3:
                continue
            t0 = CLOCK()
            f()
            times[name].append((CLOCK() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


MEM_SCRIPT = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[4])
import bench_lid as B
b, m, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fn = B.METHODS[name]
torch.manual_seed(0)
x = torch.randn(b, m)
fn(torch.randn(300, m), 20)  # warm up thread pools, allocator, lazy imports
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
h0 = hwm()
fn(x, 20)
print(json.dumps(hwm() - h0))
"""


def peak_extra_mib(b: int, m: int, name: str) -> float | None:
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, "-c", MEM_SCRIPT, str(b), str(m), name, here], capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1]) / 2**20


def fmt(v: float | None, width: int = 9, digits: int = 3) -> str:
    return f"{'-':>{width}}" if v is None or v != v else f"{v:{width}.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch (and faiss) threads; default: torch's")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: perf_counter; cpu: CPU time of the calling thread (use with --threads 1 on a "
                         "loaded machine: other processes then barely change the numbers)")
    ap.add_argument("--shapes", type=str, default=None, help="e.g. 128x256,4096x256 (default: the issue's)")
    args = ap.parse_args()
    k = args.k
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if torch.get_num_threads() != 1:
            ap.error("--clock cpu measures the calling thread only: use it with --threads 1")
        CLOCK = time.thread_time
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")] if args.shapes else SHAPES
    torch.manual_seed(0)
    print(f"lidsplit {lidsplit.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, clock {args.clock}")
    print(f"load average at start: {os.getloadavg()}; skdim: {'yes' if skdim else 'NOT INSTALLED (skipped)'}; "
          f"faiss: {'yes' if faiss else 'NOT INSTALLED (skipped)'}")
    if faiss is not None:
        faiss.omp_set_num_threads(torch.get_num_threads())
    results: dict[str, dict] = {}
    names = list(METHODS)
    print()
    print(f"time in ms (median of {args.repeat} interleaved rounds; skdim 3); ratio columns: lid_mle / other")
    header = f"{'b':>5} {'m':>6} " + " ".join(f"{n:>10}" for n in names)
    header += f" | {'/floor':>7} {'/(a)':>6} {'/(b)':>6}" + (" /(c)  " if skdim else "") + (" /(d)  " if faiss else "")
    print(header)
    checks: list[tuple[str, bool]] = []
    for b, m in shapes:
        x = torch.randn(b, m)
        fns = {n: (lambda f=METHODS[n]: f(x, k)) for n in names}
        t = interleaved(fns, args.repeat, slow={"(c) skdim"})
        results[f"{b}x{m}"] = t
        ours = t["lid_mle"]
        row = f"{b:>5} {m:>6} " + " ".join(fmt(t[n], 10) for n in names)
        row += f" | {ours / t['floor']:7.2f} {ours / t['(a) cdist']:6.2f} {ours / t['(b) mm']:6.2f}"
        if skdim:
            row += f" {ours / t['(c) skdim']:6.3f}"
        if faiss:
            row += f" {ours / t['(d) faiss']:6.2f}"
        print(row, flush=True)
        if (b, m) == (128, 256):
            checks.append((f"lid_mle <= 2x floor at (128, 256): {ours / t['floor']:.2f}", ours <= 2 * t["floor"]))
        if t["floor"] > 1.0:
            checks.append((f"lid_mle <= 1.3x floor at ({b}, {m}): {ours / t['floor']:.2f}", ours <= 1.3 * t["floor"]))
        checks.append((f"lid_mle not slower than (b) at ({b}, {m}): {ours / t['(b) mm']:.2f}", ours <= t["(b) mm"]))
        if (b, m) == (4096, 256):
            checks.append((f"lid_mle >= 2x faster than (a) at (4096, 256): {t['(a) cdist'] / ours:.2f}x",
                           t["(a) cdist"] >= 2 * ours))

    # lid_profile on a batch of matrices
    n, b, m = PROFILE
    xs = [torch.randn(b, m) for _ in range(n)]
    fns = {
        "sum of floors": lambda: [torch.mm(x, x.T) for x in xs],
        "lid_profile": lambda: lid_profile(xs, k),
        "loop of lid_mle": lambda: [lid_mle(x, k) for x in xs],
        "loop of (b)": lambda: [base_mm(x, k) for x in xs],
    }
    t = interleaved(fns, max(3, args.repeat // 2))
    results["profile"] = t
    print()
    print(f"lid_profile of {n} matrices ({b}, {m}), ms: " + ", ".join(f"{kk} {v:.2f}" for kk, v in t.items()))
    ratio = t["lid_profile"] / t["sum of floors"]
    print(f"  lid_profile / sum of floors = {ratio:.2f}; / loop of (b) = {t['lid_profile'] / t['loop of (b)']:.2f}")
    checks.append((f"lid_profile <= 1.2x sum of floors: {ratio:.2f}", ratio <= 1.2))

    if not args.no_memory:
        print()
        print("peak extra memory in MiB during one call (fresh process; b x b float32 for scale)")
        mem_names = ["lid_mle", "knn", "(a) cdist", "(b) mm"] + (["(d) faiss"] if faiss else [])
        print(f"{'b':>5} {'m':>6} {'b x b':>8} " + " ".join(f"{nm:>10}" for nm in mem_names))
        for b, m in [(2048, 1024), (4096, 256)]:
            mem = {nm: peak_extra_mib(b, m, nm) for nm in mem_names}
            results[f"mem {b}x{m}"] = mem
            print(f"{b:>5} {m:>6} {b * b * 4 / 2**20:8.1f} " + " ".join(fmt(mem[nm], 10, 1) for nm in mem_names))
            if mem["lid_mle"] is not None:
                bb = b * b * 4 / 2**20
                checks.append((f"lid_mle peak extra memory at ({b}, {m}) below half of b x b ({bb:.0f} MiB): "
                               f"{mem['lid_mle']:.1f} MiB", mem["lid_mle"] < bb / 2))

    print()
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")
    print(f"load average at end: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "checks": checks}, f, indent=1)


if __name__ == "__main__":
    main()
