"""Memory and time per search step: TangleNAS weight superposition vs running every choice separately.

For each space, one DrNAS search step (a Dirichlet sample of the architecture weights, forward,
backward to the weights and the architecture parameters; no optimiser step) is measured for:

- ``superpose``: the entangled supernet, mixture computed once with the superposed weights (TangleNAS);
- ``explicit``: the SAME entangled supernet with ``set_mixture(model, "explicit")``: every choice (every
  combination of the op's dimensions) run separately on its slice of the shared weights and the
  outputs summed: the weight-sharing computation of the same space (shared weights, so the parameter
  memory is that of the entangled supernet; the activation memory is the weight-sharing one);
- NB201 also ``ws``: :func:`lidsplit.spaces.nb201`, the ordinary weight-sharing supernet (separate 1x1 and
  3x3 weights and BatchNorms), the paper's "DrNAS WS" baseline.

Method. Every (space, variant) runs in a fresh subprocess, with glibc told to mmap every allocation of
64 KiB or more (``MALLOC_MMAP_THRESHOLD_``), so freed tensors leave the RSS instead of staying on the
allocator's free lists. CPU: after ``--warmup`` steps and ``malloc_trim`` the process's peak resident
set size is reset (``/proc/self/clear_refs`` <- 5, Linux) and its current RSS recorded;
after ``--steps`` measured steps the peak (``VmHWM``) minus that baseline is the step's memory: every
byte the step makes resident (activations saved for backward, gradients, temporaries, allocator
slack), the model and the previous steps' retained state excluded. It is a process-level measure: it
counts allocator caching and page granularity, not just tensor bytes. CUDA (when available):
``torch.cuda.max_memory_allocated`` over the measured steps minus the memory allocated before them
(tensor bytes). Times come from one more subprocess per space in which the variants take turns step by
step (load changes on a shared machine hit them alike): median (and min) wall seconds per step,
threads fixed by ``--threads``.

Measured (CPU, 2 threads, a shared machine at load average ~5 on 2 cores, so times are noisy: medians
over 3 interleaved steps, min in brackets; ``--batch 16 --steps 3 --warmup 1 --N 1``, other defaults:
toy macro at half the paper's widths, 3x32x32 inputs; NB201 C=16 N=1; MobileNet 3 stages x 3 blocks,
kernels {3,5,7} x expansions {3,4,6}; GPT embed {96,128,192}, depth {2,3,4}, heads {4,6,8}, ratio {2,3,4},
64 tokens):

    space        variant     step memory   step time
    toy_macro    superpose      27.5 MiB   1627 ms (1058)
    toy_macro    explicit      111.6 MiB   3710 ms (3103)    superpose: 75% less memory
    nb201        superpose      57.8 MiB   2636 ms  (943)
    nb201        explicit       76.8 MiB   1251 ms (1217)    superpose: 25% less memory
    nb201        ws             87.5 MiB   1433 ms  (779)    superpose: 34% less memory (paper: 25%)
    mobilenet    superpose     102.6 MiB    908 ms  (857)
    mobilenet    explicit      687.1 MiB   5433 ms (5057)    superpose: 85% less memory, 6x faster
    transformer  superpose      76.2 MiB   1275 ms (1097)
    transformer  explicit      206.9 MiB   3836 ms (3435)    superpose: 63% less memory, 3x faster

The memory reductions match the paper's direction and size (25-35% on cell spaces, far more on macro
spaces). The NB201 times are within the noise of this machine (a 10-step rerun: superpose 1638 ms
median / 385 ms min, explicit 1385 / 550, ws 1783 / 443); no GPU was available for these numbers.

    python benchmarks/bench_tangle.py [--device cpu|cuda] [--spaces toy_macro,nb201,mobilenet,transformer]
        [--batch 32] [--steps 5] [--warmup 2] [--threads 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SPACES = ("toy_macro", "nb201", "mobilenet", "transformer")
VARIANTS = {"toy_macro": ("superpose", "explicit"), "nb201": ("superpose", "explicit", "ws"),
            "mobilenet": ("superpose", "explicit"), "transformer": ("superpose", "explicit")}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _malloc_trim() -> None:
    """Give the C allocator's free memory back to the OS (glibc), so the RSS baseline is live memory."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def build(space: str, variant: str, args):
    """(model, make_batch, loss) for a space / variant."""
    import torch
    import torch.nn.functional as F

    from lidsplit.data import CharCorpus, LMBatches, stdlib_text
    from lidsplit.spaces import lm_loss, mobilenet, nb201, toy_macro, transformer
    from lidsplit.supernet.entangled import set_mixture

    g = torch.Generator().manual_seed(0)
    if space == "transformer":
        corpus = CharCorpus(stdlib_text())
        model = transformer(corpus.vocab_size, block_size=args.block, embed=(96, 128, 192), depth=(2, 3, 4),
                              heads=(4, 6, 8), mlp_ratio=(2, 3, 4), head_dim=24)
        batches = LMBatches(corpus.train, args.block, args.batch, batches=10**6, seed=0)
        it = batches.iter_epoch(0)

        def batch():
            return next(it)

        loss = lm_loss
    else:
        if space == "toy_macro":
            model = toy_macro(in_channels=3, num_classes=10, width_mult=args.width)
        elif space == "nb201":
            model = nb201(C=args.C, N=args.N, in_channels=3, entangled=variant != "ws")
        elif space == "mobilenet":
            model = mobilenet(entangled=True, in_channels=3, first_channels=16, first_block_channels=16,
                              stages=((24, 3, 2), (40, 3, 2), (80, 3, 2)), feature_mix_channels=128,
                              expansions=(3, 4, 6))
        else:
            raise ValueError(space)
        x = torch.randn(args.batch, 3, args.image, args.image, generator=g)
        y = torch.randint(0, 10, (args.batch,), generator=g)

        def batch():
            return x, y

        loss = F.cross_entropy
    if variant == "explicit":
        set_mixture(model, "explicit")
    return model, batch, loss


def make_step(space: str, variant: str, args, dev):
    """(model, step function): one DrNAS step, forward + backward, gradients dropped afterwards."""
    import torch

    from lidsplit.search import arch_parameters, sample_weights
    from lidsplit.supernet import search_space, use_weighted

    torch.manual_seed(0)
    model, batch, loss_fn = build(space, variant, args)
    model.to(dev).train()
    space_ = search_space(model)
    alphas = arch_parameters(space_, init_std=1e-3, device=dev)

    def step():
        x, y = batch()
        x, y = x.to(dev), y.to(dev)
        w, sm, sub = sample_weights("drnas", alphas, space_)
        with use_weighted(model, w, softmax=sm, sub=sub):
            loss = loss_fn(model(x), y)
        loss.backward()
        for p in list(model.parameters()) + list(alphas.values()):
            p.grad = None

    return model, step


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timing(space: str, args) -> dict:
    """Median / min seconds per step of every variant of a space, the variants taking turns step by
    step (so load changes on a shared machine hit them alike)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    steps = {v: make_step(space, v, args, dev)[1] for v in VARIANTS[space]}
    times: dict[str, list[float]] = {v: [] for v in steps}
    for i in range(args.warmup + args.steps):
        for v, step in steps.items():
            _sync(dev)
            t0 = time.perf_counter()
            step()
            _sync(dev)
            if i >= args.warmup:
                times[v].append(time.perf_counter() - t0)
    return {v: {"step_s_median": statistics.median(t), "step_s_min": min(t)} for v, t in times.items()}


def worker(space: str, variant: str, args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    model, step = make_step(space, variant, args, dev)
    for _ in range(args.warmup):
        step()
    import gc

    gc.collect()
    _malloc_trim()
    times = []
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base_rss = _rss_kib("VmRSS")
        reset_ok = _reset_peak()
    for _ in range(args.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    out = {"space": space, "variant": variant, "device": str(dev),
           "params": sum(p.numel() for p in model.parameters()),
           "step_s_median": statistics.median(times), "step_s_min": min(times)}
    if dev.type == "cuda":
        out["peak_mib"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        out["memory_method"] = "cuda max_memory_allocated - allocated before the measured steps"
    else:
        hwm = _rss_kib("VmHWM")
        out["peak_mib"] = (hwm - base_rss) / 1024
        out["rss_base_mib"] = base_rss / 1024
        out["memory_method"] = ("peak RSS (VmHWM, reset via clear_refs) - RSS before the measured steps"
                                if reset_ok else "VmHWM - VmRSS (peak reset unavailable: includes earlier peaks)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--spaces", default=",".join(SPACES))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--image", type=int, default=32)
    ap.add_argument("--block", type=int, default=64, help="transformer context length")
    ap.add_argument("--width", type=float, default=0.5, help="toy_macro width multiplier (1 = the paper's)")
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", nargs=2, metavar=("SPACE", "VARIANT"), help=argparse.SUPPRESS)
    ap.add_argument("--timing", metavar="SPACE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker, args)))
        return
    if args.timing:
        print("RESULT " + json.dumps(timing(args.timing, args)))
        return
    passthrough = [a for a in sys.argv[1:]]
    rows = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {args.device}, batch {args.batch}, threads {args.threads}, load average {load:.2f}")
    for space in args.spaces.split(","):
        for variant in VARIANTS[space]:
            cmd = [sys.executable, __file__, *passthrough, "--worker", space, variant]
            # every allocation of 64 KiB or more is mmapped and unmapped when freed: the RSS follows live
            # memory instead of glibc's free lists (its dynamic threshold would keep freed blocks resident)
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if p.returncode != 0 or line is None:
                print(f"{space}/{variant} failed:\n{p.stderr[-2000:]}")
                continue
            r = json.loads(line[7:])
            rows.append(r)
        cmd = [sys.executable, __file__, *passthrough, "--timing", space]
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if p.returncode != 0 or line is None:
            print(f"{space} timing failed:\n{p.stderr[-2000:]}")
        else:
            for variant, t in json.loads(line[7:]).items():
                for r in rows:
                    if r["space"] == space and r["variant"] == variant:
                        r["alone_step_s_median"] = r.pop("step_s_median")
                        r["alone_step_s_min"] = r.pop("step_s_min")
                        r.update(t)
        for r in rows:
            if r["space"] == space and "step_s_median" in r:
                print(f"{space:12s} {r['variant']:10s} params {r['params'] / 1e6:7.3f}M  step {r['step_s_median'] * 1e3:8.1f} ms "
                      f"(min {r['step_s_min'] * 1e3:7.1f})  step memory {r['peak_mib']:8.1f} MiB")
    print()
    for space in args.spaces.split(","):
        got = {r["variant"]: r for r in rows if r["space"] == space}
        if "superpose" in got:
            for ref in ("explicit", "ws"):
                if ref in got:
                    s, e = got["superpose"], got[ref]
                    print(f"{space:12s} superpose vs {ref:8s}: memory {100 * (1 - s['peak_mib'] / e['peak_mib']):5.1f}% less, "
                          f"time {e['step_s_median'] / s['step_s_median']:.2f}x faster")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "load_average": load, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
