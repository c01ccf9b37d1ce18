"""Build a ground-truth table (``nb201_digits``, ``nb201_colour``): standalone training of a seeded sample of NB201 cells.

NAS-Bench-201's tables cannot be downloaded here, so this script makes small ones on harder tasks
derived from scikit-learn's digits: ``--task hard_digits`` (:func:`lidsplit.data.hard_digits`, 1 x 8 x 8,
the ``nb201_digits`` table) or ``--task colour_digits`` (:func:`lidsplit.data.colour_digits`, 3 x 8 x 8,
the ``nb201_colour`` table). Every sampled architecture is
built as a plain network (``materialize`` of ``nb201(C, N=1)``: stem, one cell per stage, NB201's
ResNet reduction blocks) and trained from scratch with several seeds; each (arch, seed) run appends one
JSON line to ``<run-dir>/runs.jsonl``. Finished (arch, seed) pairs are never redone, so the script
resumes where it stopped; a run directory refuses a different protocol.

Usage (from the repository root)::

    python benchmarks/ground_truth/make_table.py --run-dir benchmarks/ground_truth/runs/nb201_digits \
        --archs 240 --seeds 2                       # train (resumable; re-run the same line to resume)
    python benchmarks/ground_truth/make_table.py --run-dir ... --archs 240 --seeds 2 \
        --write-table python/lidsplit/data/tables/nb201_digits.json   # aggregate + write the table
    python benchmarks/ground_truth/make_table.py --task colour_digits --run-dir benchmarks/ground_truth/runs/nb201_colour \
        --archs 310 --seeds 2 --sample-seed 1       # the second table (its name defaults to nb201_colour)

``--pilot`` prints the seed-to-seed Kendall tau of what is finished so far.

A seed fixes the network initialisation and the data order; the data themselves and the architecture
sample are fixed by ``--data-seed`` and ``--sample-seed``. The test set is also scored in ``--folds``
folds by source image (copies of one source digit stay in one fold): the fold-to-fold tau of one run
measures the evaluation noise, the seed-to-seed tau the training noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lidsplit.common.executor import EXECUTORS, TASK_LOG, make_executor
from lidsplit.data import DataSplits, colour_digits, derive_seed, hard_digits
from lidsplit.data.colour import COLOUR_DIGITS_DEFAULTS
from lidsplit.spaces import NB201_SPACE, nb201, to_nb201_string
from lidsplit.supernet import materialize

TABLE_VERSION = 1
#: = lidsplit.data.distorted.HARD_DIGITS_DEFAULTS overrides (spelled out: they are part of the protocol).
DEFAULT_MAGNITUDES = {"noise_max": 0.1, "background_max": 0.1, "contrast_min": 0.7}
#: task -> (default table name, table description)
TASKS = {
    "hard_digits": ("nb201_digits", "Standalone-trained NB201 cells on hard_digits (distorted scikit-learn digits); "
                                    "made by benchmarks/ground_truth/make_table.py"),
    "colour_digits": ("nb201_colour", "Standalone-trained NB201 cells on colour_digits (3-channel scikit-learn digits "
                                      "under projective warps, random colours, stripes, salt-and-pepper); "
                                      "made by benchmarks/ground_truth/make_table.py"),
}


# ---- architectures --------------------------------------------------------------------------------


def is_degenerate(arch: tuple[int, ...]) -> bool:
    """True when the cell has no path of non-``none`` edges from its input (node 0) to its output
    (node 3): its output is identically zero and the network is at chance."""
    ops = NB201_SPACE.names(arch)
    edges = [(int(lb.split("<-")[1]), int(lb.split("<-")[0])) for lb in NB201_SPACE.labels]
    reach = {0}
    for (src, dst), op in zip(edges, ops):  # edges are listed in topological order of dst
        if op != "none" and src in reach:
            reach.add(dst)
    return 3 not in reach


def sample_archs(n: int, seed: int) -> list[tuple[int, ...]]:
    """`n` distinct architectures drawn uniformly from NB201_SPACE (seeded), in draw order."""
    g = torch.Generator().manual_seed(derive_seed("nb201_digits.sample", int(seed)))
    order = torch.randperm(NB201_SPACE.size, generator=g)[:n].tolist()
    return [NB201_SPACE.index_to_arch(i) for i in order]


# ---- one run -----------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cross-entropy (N,) and correctness (N,) of `net` in eval mode."""
    net.eval()
    losses, correct = [], []
    for i in range(0, x.shape[0], batch):
        logits = net(x[i:i + batch])
        losses.append(F.cross_entropy(logits, y[i:i + batch], reduction="none"))
        correct.append(logits.argmax(1) == y[i:i + batch])
    return torch.cat(losses), torch.cat(correct)


def train_one(arch: tuple[int, ...], seed: int, data: DataSplits, proto: dict[str, Any], folds: torch.Tensor) -> dict[str, Any]:
    """Train `arch` from scratch with `seed`; return its metrics (accuracies in %, mean CE losses)."""
    # Common random numbers: the supernet builds every op of every edge in a fixed order, so with the
    # torch seed a function of `seed` alone, all architectures of one seed start from the same weights
    # on their shared parts (stem, reduction blocks, classifier, and each op they have in common) and
    # see the same batches. Differences between architectures of one seed are then not blurred by
    # unrelated initialisation noise.
    torch.manual_seed(derive_seed("nb201_digits.init", int(seed)))
    net = materialize(nb201(C=proto["C"], N=1, num_classes=10, in_channels=data.in_channels, affine=True), arch)
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=proto["lr"], momentum=0.9, nesterov=True,
                          weight_decay=proto["weight_decay"])
    xtr, ytr = data.train.x, data.train.y
    n, bs = xtr.shape[0], proto["batch_size"]
    steps_per_epoch = n // bs  # drop_last: equal-size batches for BatchNorm
    total = steps_per_epoch * proto["epochs"]
    g = torch.Generator().manual_seed(derive_seed("nb201_digits.order", int(seed)))
    step, t0, train_loss = 0, time.perf_counter(), float("nan")
    for _ in range(proto["epochs"]):
        net.train()
        perm = torch.randperm(n, generator=g)
        run_loss = 0.0
        for b in range(steps_per_epoch):
            lr = 0.5 * proto["lr"] * (1.0 + math.cos(math.pi * step / total))  # cosine to 0
            for pg in opt.param_groups:
                pg["lr"] = lr
            idx = perm[b * bs:(b + 1) * bs]
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            run_loss += loss.item()
            step += 1
        train_loss = run_loss / steps_per_epoch
    train_s = time.perf_counter() - t0
    vl, vc = evaluate(net, data.val.x, data.val.y)
    tl, tc = evaluate(net, data.test.x, data.test.y)
    k = int(folds.max()) + 1
    return {
        "arch": to_nb201_string(arch),
        "index": NB201_SPACE.arch_to_index(arch),
        "seed": int(seed),
        "degenerate": is_degenerate(arch),
        "params": int(params),
        "train_loss": train_loss,
        "val_acc": 100.0 * float(vc.float().mean()),
        "val_loss": float(vl.mean()),
        "test_acc": 100.0 * float(tc.float().mean()),
        "test_loss": float(tl.mean()),
        "test_fold_acc": [100.0 * float(tc[folds == f].float().mean()) for f in range(k)],
        "test_fold_loss": [float(tl[folds == f].mean()) for f in range(k)],
        "train_seconds": round(train_s, 3),
    }


# ---- statistics ------------------------------------------------------------------------------------


def _train_task(shared: tuple[DataSplits, dict[str, Any], torch.Tensor], arch: tuple[int, ...], seed: int
                ) -> dict[str, Any]:
    """One (arch, seed) training as an executor task."""
    data, proto, folds = shared
    return train_one(arch, seed, data, proto, folds)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b of two equally long score lists."""
    from scipy.stats import kendalltau

    if len(a) < 2:
        return float("nan")
    return float(kendalltau(np.asarray(a), np.asarray(b)).statistic)


def seed_taus(runs: list[dict[str, Any]], seeds: list[int], key: str) -> dict[str, Any]:
    """Kendall tau of `key` between every pair of seeds over the non-degenerate archs run with both."""
    by = {}
    for r in runs:
        if not r["degenerate"]:
            by.setdefault(r["arch"], {})[r["seed"]] = r[key]
    pairs = {}
    for i, s in enumerate(seeds):
        for t in seeds[i + 1:]:
            common = sorted(a for a, d in by.items() if s in d and t in d)
            x, y = [by[a][s] for a in common], [by[a][t] for a in common]
            pearson = float(np.corrcoef(x, y)[0, 1]) if len(common) > 2 else float("nan")
            pairs[f"{s}-{t}"] = {"tau": kendall_tau(x, y), "pearson": pearson, "n": len(common)}
    vals = [p["tau"] for p in pairs.values() if not math.isnan(p["tau"])]
    out: dict[str, Any] = {"pairs": pairs, "mean": float(np.mean(vals)) if vals else float("nan")}
    if vals and len(seeds) > 1:
        # Rank reliability of the table's seed means: tau -> Gaussian-equivalent correlation
        # (Greiner: r = sin(pi tau / 2)), Spearman-Brown to the mean of len(seeds) seeds, and back to tau.
        # An estimate of how well the seed means would agree with an independent replicate of the table.
        r1 = math.sin(math.pi * out["mean"] / 2)
        k = len(seeds)
        rk = k * r1 / (1 + (k - 1) * r1)
        out["estimated_tau_of_seed_means"] = float(2 / math.pi * math.asin(max(-1.0, min(1.0, rk))))
    return out


def fold_tau(runs: list[dict[str, Any]], key: str) -> float:
    """Mean Kendall tau between test folds within the same seed (evaluation noise only)."""
    out = []
    seeds = sorted({r["seed"] for r in runs})
    for s in seeds:
        rs = [r for r in runs if r["seed"] == s and not r["degenerate"]]
        if len(rs) < 3:
            continue
        k = len(rs[0][key])
        for i in range(k):
            for j in range(i + 1, k):
                out.append(kendall_tau([r[key][i] for r in rs], [r[key][j] for r in rs]))
    return float(np.mean(out)) if out else float("nan")


# ---- table -----------------------------------------------------------------------------------------


def build_table(name: str, description: str, runs: list[dict[str, Any]], archs: list[tuple[int, ...]],
                seeds: list[int], proto: dict[str, Any], data_meta: dict[str, Any], run_seconds: float) -> dict[str, Any]:
    order = {to_nb201_string(a): i for i, a in enumerate(archs)}
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["arch"], {})[r["seed"]] = r
    entries = {}
    for a in sorted(by, key=order.__getitem__):
        rs = [by[a][s] for s in seeds if s in by[a]]
        if len(rs) < len(seeds):  # unfinished architecture: not in the table
            continue
        e: dict[str, Any] = {"index": rs[0]["index"], "degenerate": rs[0]["degenerate"], "params": rs[0]["params"],
                             "seeds": [r["seed"] for r in rs]}
        for key in ("test_acc", "test_loss", "val_acc", "val_loss", "train_loss"):
            v = [r[key] for r in rs]
            e[key] = [round(x, 5) for x in v]
            e[key + "_mean"] = round(float(np.mean(v)), 5)
            e[key + "_std"] = round(float(np.std(v)), 5)
        entries[a] = e
    nd = [e for e in entries.values() if not e["degenerate"]]
    taus = {k: seed_taus(runs, seeds, k) for k in ("test_acc", "test_loss", "val_acc")}
    acc = [e["test_acc_mean"] for e in nd]
    return {
        "name": name,
        "version": TABLE_VERSION,
        "description": description,
        "space": {"name": "nb201", "edges": list(NB201_SPACE.labels),
                  "ops": list(NB201_SPACE.edges[0].ops), "size": NB201_SPACE.size,
                  "arch_string": "NB201 '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' "
                                 "(lidsplit.spaces.to_nb201_string / from_nb201_string)"},
        "protocol": proto,
        "data": {k: v for k, v in data_meta.items() if k != "source_index"},
        "seeds": seeds,
        "num_archs": len(entries),
        "num_degenerate": len(entries) - len(nd),
        "kendall_tau": {
            "note": "Kendall tau-b between two training seeds, over the non-degenerate archs (a cell with "
                    "a path from input to output); 'test_loss' ranks by test cross-entropy",
            "seed_to_seed": taus,
            "fold_to_fold_test_acc": fold_tau(runs, "test_fold_acc"),
        },
        "summary": {
            "test_acc_min": min(acc) if acc else None, "test_acc_max": max(acc) if acc else None,
            "test_acc_median": float(np.median(acc)) if acc else None,
            "mean_seed_std_test_acc": float(np.mean([e["test_acc_std"] for e in nd])) if nd else None,
            "train_seconds_total": round(run_seconds, 1),
        },
        "archs": entries,
    }


# ---- main ------------------------------------------------------------------------------------------


def protocol_from(args: argparse.Namespace) -> dict[str, Any]:
    """The protocol, hashed (sorted keys) into the run directory's key. hard_digits' dict is the
    nb201_digits table's, key for key: change it and that run directory refuses the script."""
    colour = args.task == "colour_digits"
    task = {"data": args.task, "data_seed": args.data_seed, "image_size": args.image_size, "strength": args.strength}
    if colour:
        task["magnitudes"] = {k: float(v) for k, v in {**COLOUR_DIGITS_DEFAULTS, **args.magnitudes}.items()}
    else:
        task.update(occlusion=args.occlusion, magnitudes=args.magnitudes)
    return {
        "network": f"materialize(nb201(C, N=1, in_channels={3 if colour else 1}, affine=True), arch): stem 3x3 "
                   "conv + BN, one cell per stage, NB201 ResNet reduction blocks, BN-ReLU, global pool, linear",
        "C": args.C, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay,
        "optimizer": "SGD momentum 0.9 nesterov, per-step cosine lr to 0, grad-norm clip 5, drop_last batches",
        **task,
        "variants": list(args.variants),
        "sample_seed": args.sample_seed, "folds": args.folds,
        "seed_meaning": "seed fixes the initialisation (the same for every arch: common random numbers) "
                        "and the data order",
        "metrics": "accuracy in %, mean cross-entropy; test = all test images, folds by source image",
    }


def load_runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: that run is simply redone
                    continue
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--task", choices=sorted(TASKS), default="hard_digits", help="the data the table is trained on")
    p.add_argument("--name", default=None, help="table name (default: nb201_digits / nb201_colour by --task)")
    p.add_argument("--archs", type=int, default=240, help="number of sampled architectures")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per architecture (0..S-1)")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--image-size", type=int, default=8)
    p.add_argument("--strength", type=float, default=1.0)
    p.add_argument("--occlusion", type=float, default=None, help="hard_digits only (default 0.2)")
    p.add_argument("--magnitudes", type=json.loads, default=None,
                   help="JSON object overriding the task's defaults (lidsplit.data.distorted.HARD_DIGITS_DEFAULTS "
                        f"or lidsplit.data.colour.COLOUR_DIGITS_DEFAULTS); hard_digits' default {DEFAULT_MAGNITUDES}")
    p.add_argument("--variants", type=int, nargs=3, default=(10, 4, 32))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-train", action="store_true", help="only aggregate what is finished")
    p.add_argument("--executor", default="local", choices=EXECUTORS, help="where the (arch, seed) trainings run: "
                   "local (one after another) or ray (Ray tasks, --workers at a time, --threads CPUs each)")
    p.add_argument("--workers", type=int, default=1, help="trainings at once (ray)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--pilot", action="store_true", help="print the seed-to-seed taus of finished runs")
    p.add_argument("--write-table", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.magnitudes is not None and not isinstance(args.magnitudes, dict):
        p.error(f"--magnitudes must be a JSON object, got {args.magnitudes!r}")
    if args.task == "hard_digits":
        args.occlusion = 0.2 if args.occlusion is None else args.occlusion
        args.magnitudes = DEFAULT_MAGNITUDES if args.magnitudes is None else args.magnitudes
    else:
        if args.occlusion is not None:
            p.error("--occlusion is a hard_digits option; colour_digits' stripes are set with --magnitudes")
        args.magnitudes = {} if args.magnitudes is None else args.magnitudes
        unknown = sorted(set(args.magnitudes) - set(COLOUR_DIGITS_DEFAULTS))
        if unknown:
            p.error(f"--magnitudes: unknown colour_digits magnitudes {unknown}; known {sorted(COLOUR_DIGITS_DEFAULTS)}")
    name = args.name or TASKS[args.task][0]

    proto = protocol_from(args)
    key = hashlib.sha256(json.dumps(proto, sort_keys=True).encode()).hexdigest()[:16]
    args.run_dir.mkdir(parents=True, exist_ok=True)
    proto_file = args.run_dir / "protocol.json"
    if proto_file.exists():
        old = json.loads(proto_file.read_text())
        if old.get("key") != key:
            print(f"error: {args.run_dir} holds runs of another protocol ({old.get('protocol')}); "
                  f"use another --run-dir", file=sys.stderr)
            return 2
    else:
        proto_file.write_text(json.dumps({"key": key, "protocol": proto}, indent=1))

    t0 = time.perf_counter()
    if args.task == "colour_digits":
        data = colour_digits(args.data_seed, image_size=args.image_size, strength=args.strength,
                             variants=args.variants, magnitudes=args.magnitudes)
    else:
        data = hard_digits(args.data_seed, image_size=args.image_size, strength=args.strength,
                           variants=args.variants, occlusion=args.occlusion, magnitudes=args.magnitudes)
    n_src = data.meta["source_sizes"][2]
    folds = (torch.arange(len(data.test)) % n_src) % args.folds  # copies are variant-major: i -> source i % n_src
    print(f"data {data} in {time.perf_counter() - t0:.1f}s", flush=True)
    archs = sample_archs(args.archs, args.sample_seed)
    seeds = list(range(args.seeds))
    runs_file = args.run_dir / "runs.jsonl"
    runs = load_runs(runs_file)
    done = {(r["arch"], r["seed"]) for r in runs}
    todo = [(a, s) for a in archs for s in seeds if (to_nb201_string(a), s) not in done]
    print(f"{len(done)} runs done, {len(todo)} to do", flush=True)
    if not args.no_train:
        t_start = time.perf_counter()
        # every (arch, seed) is an independent task (lidsplit.common.executor); lines are appended in task order
        with open(runs_file, "a") as f, make_executor(args.executor, workers=args.workers, address=args.ray_address,
                                                      threads=args.threads) as ex:
            results = ex.imap(_train_task, todo, shared=(data, proto, folds), log=args.run_dir / TASK_LOG,
                              names=[f"train {to_nb201_string(a)} seed {s}" for a, s in todo])
            for i, ((a, s), r) in enumerate(zip(todo, results)):
                f.write(json.dumps(r) + "\n")
                f.flush()
                os.fsync(f.fileno())
                runs.append(r)
                el = time.perf_counter() - t_start
                eta = el / (i + 1) * (len(todo) - i - 1)
                print(f"[{i + 1}/{len(todo)}] {r['arch']} seed {s}: test {r['test_acc']:.2f}% "
                      f"loss {r['test_loss']:.4f} ({r['train_seconds']:.1f}s; eta {eta / 60:.1f} min)", flush=True)
    wanted = {to_nb201_string(a) for a in archs}
    runs = [r for r in runs if r["arch"] in wanted and r["seed"] in seeds]
    if args.pilot or args.write_table is not None:
        for k in ("test_acc", "test_loss", "val_acc"):
            t = seed_taus(runs, seeds, k)
            print(f"seed-to-seed tau {k}: mean {t['mean']:.3f} {t['pairs']}")
        print(f"fold-to-fold tau test_acc: {fold_tau(runs, 'test_fold_acc'):.3f}")
        nd = [r["test_acc"] for r in runs if not r["degenerate"]]
        if nd:
            print(f"non-degenerate test acc: min {min(nd):.2f} median {np.median(nd):.2f} max {max(nd):.2f}")
    if args.write_table is not None:
        total = sum(r["train_seconds"] for r in runs)
        table = build_table(name, TASKS[args.task][1], runs, archs, seeds, proto, data.meta, total)
        args.write_table.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.write_table.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, indent=1) + "\n")
        os.replace(tmp, args.write_table)
        print(f"wrote {args.write_table} ({table['num_archs']} archs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
