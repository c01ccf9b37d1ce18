"""Zero-cost-proxy criteria on a large space: time per edge of ``others="sum"`` (the default before) and
``others="path"`` (the default now) against ``lid``, on the DARTS supernet of ``lidsplit.spaces``.

What is timed: ``Criterion.score_edge`` on the first ``--edges`` edges of the full DARTS sub-supernet
(28 edges, 8 ops), on random ``3 x size x size`` batches, one thread, after one untimed warm-up edge; the
number reported is seconds per edge, and x 28 the cost of one split round over all edges. Each row is
one criterion configuration; ``lid`` runs at ``--lid-batches`` (its default, 50 batches of 128, costs 50
times its per-batch time) and the proxies at their default of 1 batch of 64 plus, for a like-for-like
row, at ``--lid-batches`` batches. The machine's load average (``os.getloadavg``) is printed with every
row: on a shared machine the seconds mean little without it.

Usage: ``python benchmarks/bench_proxies.py [--edges 2] [--size 16] [--lid-batches 2] [--json out.json]``.
Results and the profile that explains them: ``benchmarks/bench_proxies.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def _model(C: int, layers: int, seed: int = 0) -> torch.nn.Module:
    from lidsplit.spaces import darts

    torch.manual_seed(seed)
    return darts(C=C, layers=layers, in_channels=3, num_classes=10)


def _scoring(model: torch.nn.Module, batches: int, batch: int, size: int, seed: int = 0):
    from lidsplit.split import scoring_set
    from lidsplit.supernet import SubSupernet, search_space

    g = torch.Generator().manual_seed(seed)
    data = [(torch.randn(batch, 3, size, size, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(batches)]
    return scoring_set(SubSupernet.full(search_space(model)), data, batches, seed=seed)


def _row(name: str, options: dict, batches: int | None, args: argparse.Namespace) -> dict:
    from lidsplit.split import make_criterion

    crit = make_criterion(name, **options)
    r = crit.default_batches if batches is None else batches
    b = crit.default_batch_size
    model = _model(args.channels, args.layers)
    edges = list(range(1, 1 + args.edges))
    crit.score_edge(model, _scoring(model, 1, b, 8), 0)  # warm-up (first-call costs), on small inputs
    sc = _scoring(model, r, b, args.size)
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    for e in edges:
        crit.score_edge(model, sc, e)
    per_edge = (time.perf_counter() - t) / len(edges)
    row = {"criterion": name, "others": getattr(crit, "others", None), "batches": r, "batch_size": b,
           "s_per_edge": round(per_edge, 3), "s_28_edges": round(28 * per_edge, 1),
           "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    print(f"{name:8s} others={row['others']!s:5s} R={r:<3d} B={b:<4d} {per_edge:8.2f} s/edge  "
          f"x28 = {row['s_28_edges']:7.1f} s   load {row['load_avg_1min'][0]:.2f} -> {row['load_avg_1min'][1]:.2f}",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edges", type=int, default=2, help="edges timed per row (after one warm-up edge)")
    ap.add_argument("--size", type=int, default=16, help="input side (3 x size x size)")
    ap.add_argument("--channels", type=int, default=8, help="DARTS C")
    ap.add_argument("--layers", type=int, default=5, help="DARTS cells")
    ap.add_argument("--lid-batches", type=int, default=2, help="batches of the lid rows and the like-for-like proxy rows")
    ap.add_argument("--proxies", default="snip,synflow", help="comma-separated proxy criteria")
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, DARTS C={args.channels} layers={args.layers}, "
          f"input 3x{args.size}x{args.size}, {args.edges} edges per row; load average {os.getloadavg()}")
    rows = []
    for p in args.proxies.split(","):
        rows.append(_row(p, {"others": "sum"}, None, args))  # the default before
        rows.append(_row(p, {}, None, args))  # the default now (others="path")
        rows.append(_row(p, {}, args.lid_batches, args))  # like for like with the lid row
    rows.append(_row("lid", {}, args.lid_batches, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
