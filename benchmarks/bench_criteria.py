"""Split criteria: memory and time of LID vs gradient matching, and the partitions they choose.

Three measurements (all on CPU; ``--device cuda`` adds GPU peak memory where a GPU is present):

1. ``memory``: peak memory of characterising ONE edge of the NB201 supernet (R batches) with ``lid``
   (default: one variant profiled at a time; ``lid_batched``: the n variants' outputs kept for one
   ``lid_profile`` call; ``lid_grouped``: one grouped forward) and with ``gm``: same supernet, batch and
   input size. Method: each criterion runs in a fresh Python subprocess; after the imports, the model
   build, the data tensors and a warm-up of the criterion on a tiny batch (24 x 3 x 8 x 8: library
   initialisation and first-call imports), the subprocess reads its peak resident set size
   (``ru_maxrss``) as the baseline, scores the edge, reads the peak again; the number reported is
   ``peak - baseline`` (MiB). Fresh processes keep one criterion's allocator caches from hiding another's. NAS-LID reports 53% (128x3x32x32) to 86%
   (32x3x224x224) less GPU memory for LID than for GM-NAS on NB201 (C=16, N=5).
2. ``time``: wall time of characterising all 6 NB201 edges with ``lid`` (separate and grouped) and with
   ``gm`` on the same ScoringSet, and the share of the LID time spent in ``lidsplit.ops.lid_profile``.
3. ``partitions``: on the digits data, an NB201 supernet warmed up for a few epochs (uniform single-path
   training), every edge scored by ``gm`` and by ``lid`` on one ScoringSet (common random numbers); per
   edge the balanced 2-way partition each criterion picks, the edge each would split (lid: max intra,
   gm: min cut), and whether the two convolutions end up together, apart from the non-parametric ops
   (reported, not asserted).

Usage: ``python benchmarks/bench_criteria.py [memory|time|partitions|all] [--quick]``.

Measured (2-core shared CPU, heavily loaded by other jobs, torch 2.13 CPU, 2 threads; NB201 C=16, N=5,
1 batch; edge 0 for memory):

- memory, extra peak RSS for one edge: 128x3x32x32: lid 139 MiB, lid_batched 484, lid_grouped 468,
  gm 926 (lid 85.0% less than gm; batched 47.7%, grouped 49.5% less); 32x3x128x128: lid 520 MiB,
  lid_batched 1793, lid_grouped 1791, gm 3496 (lid 85.1% less; batched/grouped 48.7% / 48.8% less).
- time, all 6 edges at 128x3x32x32 (best of 2): lid 106.6 s (lid_profile 10.7 s = 10.1%), lid_batched
  121.7 s, lid_grouped 133.7 s, gm 268.4 s (gm/lid 2.5x; grouped/separate 1.25x: slower on CPU).
- partitions (digits, C=8, N=2, 10 warm-up epochs, 8 batches of 128): on edges 1<-0, 2<-1, 3<-1 gm and
  lid both pick {none,skip,pool} | {c1x1,c3x3}; on the other three edges gm picks {none,c1x1,c3x3} |
  {skip,pool} and lid puts one conv with 'none' and the other with skip/pool. gm would split 3<-2,
  lid 3<-1 (there: convs alone, apart from the non-parametric ops).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

NONPARAM = {0, 1, 4}  # none, skip_connect, avg_pool_3x3 (NB201 op indices)
CONVS = {2, 3}  # nor_conv_1x1, nor_conv_3x3


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _model(C: int, N: int, in_channels: int = 3, seed: int = 0):
    from lidsplit.spaces import nb201

    torch.manual_seed(seed)
    return nb201(C=C, N=N, in_channels=in_channels, num_classes=10)


def _random_scoring(sub, batches: int, batch: int, size: int, seed: int = 0, device: str = "cpu"):
    from lidsplit.split import scoring_set

    g = torch.Generator().manual_seed(seed)
    data = [(torch.randn(batch, 3, size, size, generator=g).to(device),
             torch.randint(0, 10, (batch,), generator=g).to(device)) for _ in range(batches)]
    return scoring_set(sub, data, batches, seed=seed)


def _criterion(name: str):
    from lidsplit.split import GMCriterion, LIDCriterion

    if name == "lid":
        return LIDCriterion()
    if name == "lid_batched":
        return LIDCriterion(batched=True)
    if name == "lid_grouped":
        return LIDCriterion(grouped=True)
    if name == "gm":
        return GMCriterion()
    raise ValueError(name)


# ---- 1. memory --------------------------------------------------------------------------------------


def _memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh subprocess: prints a JSON line with the baseline and the peak."""
    torch.set_num_threads(args.threads)
    from lidsplit.supernet import SubSupernet, search_space

    dev = args.device
    model = _model(args.C, args.N).to(dev)
    sub = SubSupernet.full(search_space(model))
    ss = _random_scoring(sub, args.batches, args.batch, args.size, device=dev)
    crit = _criterion(args.criterion)
    # warm-up on a tiny batch (library initialisation, first-call imports of the custom ops), so the
    # baseline holds every one-time cost and the difference is what the batch itself needs
    tiny = _random_scoring(sub, 1, 24, 8, seed=1, device=dev)
    crit.score_edge(model, tiny, args.edge)
    del tiny
    if dev == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        gpu0 = torch.cuda.memory_allocated()
    base = _peak_mib()
    t0 = time.perf_counter()
    crit.score_edge(model, ss, args.edge)
    secs = time.perf_counter() - t0
    out = {"criterion": args.criterion, "baseline_mib": base, "peak_mib": _peak_mib(), "seconds": secs}
    if dev == "cuda":
        torch.cuda.synchronize()
        out["gpu_peak_mib"] = (torch.cuda.max_memory_allocated() - gpu0) / 2**20
    print(json.dumps(out))


def memory(args: argparse.Namespace) -> dict:
    configs = [(128, 32), (32, 128)] if not args.quick else [(32, 16)]
    results = {}
    print(f"\n== memory: one NB201 edge (C={args.C}, N={args.N}), {args.batches} batch(es), "
          f"{args.threads} thread(s), device {args.device}")
    print("   method: peak RSS (ru_maxrss) of a fresh subprocess after scoring, minus its peak after imports, "
          "model, data and a warm-up on a tiny batch")
    for batch, size in configs:
        row = {}
        for crit in ("lid", "lid_batched", "lid_grouped", "gm"):
            cmd = [sys.executable, __file__, "_memory_child", "--criterion", crit, "--batch", str(batch),
                   "--size", str(size), "--C", str(args.C), "--N", str(args.N), "--batches", str(args.batches),
                   "--threads", str(args.threads), "--device", args.device, "--edge", str(args.edge)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            row[crit] = json.loads(out)
        extra = {c: row[c]["peak_mib"] - row[c]["baseline_mib"] for c in row}
        gm = extra["gm"]
        print(f"   input {batch}x3x{size}x{size}: extra peak RSS " + " | ".join(f"{c} {v:.1f} MiB" for c, v in extra.items()))
        print("      less memory than gm: " + ", ".join(f"{c} {100 * (1 - v / gm):.1f}%" for c, v in extra.items() if c != "gm"))
        if args.device == "cuda":
            g = {c: row[c]["gpu_peak_mib"] for c in row}
            print("   GPU extra peak allocated: " + " | ".join(f"{c} {v:.1f} MiB" for c, v in g.items()))
        results[f"{batch}x3x{size}x{size}"] = row
    return results


# ---- 2. time ----------------------------------------------------------------------------------------


def timing(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    from lidsplit.supernet import SubSupernet, search_space

    batch, size = (128, 32) if not args.quick else (32, 16)
    model = _model(args.C, args.N).to(args.device)
    sub = SubSupernet.full(search_space(model))
    ss = _random_scoring(sub, args.batches, batch, size, device=args.device)
    print(f"\n== time: all 6 NB201 edges (C={args.C}, N={args.N}), {args.batches} batch(es) of {batch}x3x{size}x{size}, "
          f"{args.threads} thread(s), device {args.device}")
    print(f"   best of {args.repeat} interleaved repetitions (the least disturbed by other load); median in brackets")
    names = ("lid", "lid_batched", "lid_grouped", "gm")
    runs: dict[str, list] = {n: [] for n in names}
    for n in names:
        _criterion(n).score_edge(model, _random_scoring(sub, 1, 24, 8, seed=1, device=args.device), 0)  # warm-up
    for _ in range(args.repeat):
        for name in names:
            t0 = time.perf_counter()
            scores = _criterion(name).score_edges(model, ss)
            total = time.perf_counter() - t0
            parts: dict[str, float] = {}
            for s in scores.values():
                for k, v in s.timings.items():
                    parts[k] = parts.get(k, 0.0) + v
            runs[name].append((total, parts))
    out = {}
    for name in names:
        total, parts = min(runs[name], key=lambda r: r[0])
        med = float(np.median([r[0] for r in runs[name]]))
        out[name] = {"seconds": total, "median": med, "parts": parts}
        share = f", LID (lid_profile) {100 * parts.get('lid', 0.0) / total:4.1f}% of it" if "lid" in parts else ""
        print(f"   {name:12s} {total:8.2f} s [{med:.2f}]  ({', '.join(f'{k} {v:.2f} s' for k, v in parts.items())}){share}")
    print(f"   gm / lid time: {out['gm']['seconds'] / out['lid']['seconds']:.2f}x; lid grouped / separate: "
          f"{out['lid_grouped']['seconds'] / out['lid']['seconds']:.2f}x; lid batched / separate: "
          f"{out['lid_batched']['seconds'] / out['lid']['seconds']:.2f}x")
    return out


# ---- 3. partitions on digits --------------------------------------------------------------------------


def partitions(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    from lidsplit.data import digits
    from lidsplit.spaces import NB201_OPS, nb201
    from lidsplit.split import GMCriterion, LIDCriterion, scoring_set, select_edge, separability, split_distance
    from lidsplit.supernet import SubSupernet, search_space
    from lidsplit.train import train_subsupernet

    data = digits()
    C, N, epochs, R = (8, 2, 10, 8) if not args.quick else (4, 1, 2, 2)
    torch.manual_seed(0)
    model = nb201(C=C, N=N, in_channels=1, num_classes=10)
    sub = SubSupernet.full(search_space(model))
    t0 = time.perf_counter()
    res = train_subsupernet(model, sub, data.loaders(64, seed=0), epochs, progress=False, seed=0)
    print(f"\n== partitions on digits: NB201 C={C} N={N}, {epochs} warm-up epochs ({time.perf_counter() - t0:.0f} s, "
          f"last train acc of sampled paths {res.history[-1]['train_acc']:.3f}); {R} scoring batches of 128 "
          "shared by both criteria")
    ss = scoring_set(sub, data, R, batch_size=128, seed=0)
    crits = {"gm": GMCriterion(), "lid": LIDCriterion()}
    scores = {n: c.score_edges(model, ss) for n, c in crits.items()}
    rules = {"gm": "min_cut", "lid": "max_intra"}
    out: dict = {}
    short = ["none", "skip", "c1x1", "c3x3", "pool"]
    assert list(NB201_OPS) == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]

    def fmt(groups):
        return " | ".join("{" + ",".join(short[o] for o in g) + "}" for g in groups)

    for n in ("gm", "lid"):
        choice = select_edge({e: s.similarity for e, s in scores[n].items()}, 2, rules[n])
        out[n] = {"edge": choice.edge, "edges": {}}
        print(f"   {n}: splits edge {choice.edge} '{sub.space.edges[choice.edge].label}' into {fmt(choice.partition.groups)} "
              f"(rule {rules[n]})")
        for e, p in choice.partitions.items():
            conv_together = any(CONVS <= set(g) for g in p.groups)
            convs_apart = any(CONVS <= set(g) and not set(g) & NONPARAM for g in p.groups)
            d = separability(scores[n][e].similarity)
            out[n]["edges"][e] = {"groups": [list(g) for g in p.groups], "convs_together": conv_together,
                                  "convs_apart_from_nonparam": convs_apart, "separability": d,
                                  "score": choice.scores[e]}
            print(f"     edge {e} {sub.space.edges[e].label:5s} {fmt(p.groups):32s} convs together: "
                  f"{'yes' if conv_together else 'no '}, apart from the non-parametric ops: "
                  f"{'yes' if convs_apart else 'no '}  separability D {d:.4g}  score {choice.scores[e]:.4g}")
    agree = [split_distance(out["gm"]["edges"][e]["groups"], out["lid"]["edges"][e]["groups"]) for e in range(6)]
    print(f"   split distance gm vs lid per edge (0 = same partition): {[round(a, 2) for a in agree]}")
    for n in ("gm", "lid"):
        tog = sum(out[n]["edges"][e]["convs_together"] for e in range(6))
        apart = sum(out[n]["edges"][e]["convs_apart_from_nonparam"] for e in range(6))
        print(f"   {n}: convolutions together on {tog}/6 edges, alone (apart from none/skip/pool) on {apart}/6")
    out["split_distance"] = agree
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=["memory", "time", "partitions", "all", "_memory_child"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--edge", type=int, default=0)
    ap.add_argument("--criterion", default="lid")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.what == "_memory_child":
        _memory_child(args)
        return
    if args.quick:
        args.C, args.N = 4, 1
    res = {}
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.what in ("memory", "all"):
        res["memory"] = memory(args)
    if args.what in ("time", "all"):
        res["time"] = timing(args)
    if args.what in ("partitions", "all"):
        res["partitions"] = partitions(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


if __name__ == "__main__":
    main()
