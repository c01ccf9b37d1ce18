"""Ranking correlation of supernet-predicted accuracies with a ground truth: one-shot vs split trees.

For every seed and every method the script builds the NB201 supernet from the seed (same initial weights
for every method of a seed), trains it with the SAME training budget, predicts the accuracy of every
non-degenerate architecture of the ground-truth table with the weights of the leaf that contains it
(``lidsplit.search.LeafEvaluator``: BatchNorm recalibrated per architecture on 10 training batches), and
reports Kendall tau-b and Spearman rho against the table (``lidsplit.search.ranking.rank_correlations``:
all architectures, and the top 20 % / 10 % by TRUE accuracy, NAS-LID's convention).

Methods
    one-shot     the full supernet, uniform single-path training (RSPS / SPOS), no split.
    lid          NAS-LID: ``lidsplit.run_split(criterion="lid")``, 2 rounds of 2-way splits -> 4 leaves.
    gm           GM-NAS gradient matching, same tree shape (2 rounds of 2-way splits, 4 leaves).
    exhaustive   Few-shot NAS: one edge split into one leaf per op -> 5 leaves.
    random       control: random edge, random balanced 2-way partition, 2 rounds -> 4 leaves.
    Split trees use the criterion's defaults (lid: max-intra balanced; gm: min-cut balanced; exhaustive:
    the first unsplit edge), R = ``--batches`` scoring batches per node, no restart (the leaves go on from
    their parent's weights: with a few epochs per leaf a GM-NAS restart would train them from scratch).

Training protocol (``--preset``, ``--epochs E``; :mod:`lidsplit.split.schedule`). ``equal-budget`` (the
default, the first version's setting): the total number of supernet-epochs summed over every trained node
is ``E`` for every method (one epoch = one pass over the training images at ``--batch-size``: 9,010
digits images at 64 are 141 optimiser steps, one sampled path per step); B = 20: lid / gm / random:
root 10, 2 level-1 nodes x 1, 4 leaves x 2; exhaustive: root 10, 5 leaves x 2; every stage its own
cosine. Other presets (``split-finetune``, ``nas-lid``, ``nas-lid-code``, ``gm-nas``, ``few-shot``) follow
the papers' protocols and cost more than ``E``; beside them run the two one-shot controls:
``one-shot-path`` (one-shot trained for the protocol's epochs per path) and ``one-shot-total`` (one-shot
trained for the protocol's total epochs, i.e. the same compute). One-shot runs are shared between
protocols (rows ``one-shot`` = E epochs, ``one-shot-e<N>``). ``--split-kw`` overrides ``run_split``
arguments for an ablation, named by ``--label`` (e.g. ``'{"lr_schedule": "continued"}' --label cont``).
The split criterion's scoring (forward passes / gradients on R batches per candidate edge) is not
training and is not counted; its wall time is reported separately. Training: ``TrainConfig`` defaults
(SGD lr 0.025 -> 0.001, momentum 0.9, nesterov, weight decay 5e-4, grad clip 5).

Beside Kendall / Spearman over all architectures and the top sets, a split row reports the tau inside
its leaves (pair-weighted), the one-shot reference's tau inside the same leaves (``one-shot-path`` if
run, else ``one-shot``), and the overall tau after replacing each leaf's mean prediction by the
reference's mean over the leaf (a calibration across leaves that needs no truth) or by the leaf's true
mean (an upper bound of any such calibration): together they say how much of a split tree's ranking is
lost inside the leaves and how much between them.

Prediction vs truth (nb201_digits). The table scores standalone networks on 20,128 test images in 5 folds
by source digit (``benchmarks/ground_truth``). The supernet predicts on test folds 0-1 (8,064 images);
the headline truth (``disjoint``) is the standalone test accuracy on folds 2-4 only (12,064 images,
mean of the table's 2 seeds, from ``benchmarks/ground_truth/runs/nb201_digits/runs.jsonl``): prediction
and truth share no image and no source digit. The validation split (1,068 images) would also be
disjoint but ranks poorly even for standalone networks (seed-to-seed tau 0.50 vs 0.69 on test). Also
reported: ``table``, the table's test accuracy on all 20,128 images (shares folds 0-1 with the
prediction). The table's own seed-to-seed tau (0.69) bounds what any predictor can reach.

NAS-Bench-201 (``--nb201 PATH`` or ``LIDSPLIT_NB201``; needs the optional ``nas_201_api`` package and
CIFAR-10 python batches, ``--cifar`` / the paths ``lidsplit.data.cifar10`` looks in): truth = NB201's
CIFAR-10 test accuracy (200 epochs), a seeded sample of ``--archs`` non-degenerate architectures
(default 1000), supernet NB201 C=16 N=5 on lidsplit's CIFAR-10 train half, predictions on its
validation half (CIFAR-10 training images, disjoint from the test images of the truth).

Resuming: split runs live in ``<work-dir>/<config>/<method>/seed<s>`` (``run_split``'s run directory;
the one-shot run a ``train_subsupernet`` checkpoint), so a killed run goes on where it stopped; each
finished (method, seed) writes ``<results-dir>/<method>-seed<s>.json`` (atomic) and is skipped next time;
a results file of another configuration is refused. ``<results-dir>/summary.json`` holds the table.

Usage::

    python benchmarks/bench_ranking.py --seeds 0 1 2 --epochs 20 --results-dir benchmarks/ranking/results
    python benchmarks/bench_ranking.py --preset split-finetune --methods lid one-shot-path one-shot-total \
        --seeds 0 1 2 3 4 --results-dir benchmarks/ranking/results   # a protocol beside its controls
    python benchmarks/bench_ranking.py --truth <table> ...   # another shipped ground truth
    python benchmarks/bench_ranking.py --quick          # tiny smoke setting (seconds)

Measured numbers: benchmarks/ranking/README.md.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import lidsplit
from lidsplit._io import atomic_torch_save, atomic_write_text
from lidsplit.common.executor import EXECUTORS, TASK_LOG, make_executor
from lidsplit.data import derive_seed, ground_truth
from lidsplit.data.core import DataLoaders, Dataset, DataSplits, TensorLoader
from lidsplit.search.evaluator import LeafEvaluator
from lidsplit.search.ranking import kendall_tau, rank_correlations
from lidsplit.spaces import NB201_EDGES, NB201_OPS, NB201_SPACE, from_nb201_string, nb201, to_nb201_string
from lidsplit.split import SplitTree
from lidsplit.split.run import load_leaf
from lidsplit.split.schedule import PRESETS, preset
from lidsplit.supernet import SubSupernet
from lidsplit.train import TrainConfig, train_subsupernet

METHODS: tuple[str, ...] = ("one-shot", "lid", "gm", "exhaustive", "random")
#: tree shape per split method: (criterion, policy for run_split, nodes per level)
SHAPES: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "lid": ("lid", 2, (1, 2, 4)),
    "gm": ("gm", 2, (1, 2, 4)),
    "random": ("random", 2, (1, 2, 4)),
    "exhaustive": ("exhaustive", 1, (1, 5)),  # one level; exhaustive ignores the factor: one leaf per op
    "lid16": ("lid", 4, (1, 2, 4, 8, 16)),  # NAS-LID's ranking experiment: 4 rounds, 16 leaves
}
#: methods run only when named (lid16 trains 16 leaves)
EXTRA_METHODS: tuple[str, ...] = ("lid16",)
TOPS = (0.2, 0.1)
PREDICT_FOLDS = (0, 1)
TRUTH_FOLDS = (2, 3, 4)
GROUND_TRUTH_RUNS = Path(__file__).resolve().parent / "ground_truth" / "runs"
RUNS_JSONL = GROUND_TRUTH_RUNS / "nb201_digits" / "runs.jsonl"
FORMAT = "lidsplit.bench_ranking"
#: the one-shot controls of a split protocol (module docstring)
CONTROLS: tuple[str, ...] = ("one-shot-path", "one-shot-total")


class BenchError(RuntimeError):
    """A setting or input the benchmark cannot use (printed without a traceback by ``main``)."""


# ---- the task: data, architectures, truths --------------------------------------------------------


@dataclass
class Task:
    """What the supernets are trained on and scored against.

    data: train split = supernet training and BatchNorm calibration images.
    predict: the images the supernet's accuracy predictions are measured on.
    archs: architectures (op-index tuples of NB201_SPACE) to rank.
    truths: name -> {arch: true accuracy}; the first one is the headline.
    """

    name: str
    data: DataSplits
    predict: Dataset
    archs: list[tuple[int, ...]]
    truths: dict[str, dict[tuple[int, ...], float]]
    model_kw: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON identity of the task (part of the results' configuration)."""
        h = hashlib.sha256(repr(sorted(self.archs)).encode()).hexdigest()[:12]
        return {"name": self.name, "archs": len(self.archs), "archs_sha": h, "train_images": len(self.data.train),
                "predict_images": len(self.predict), "truths": list(self.truths), "model": self.model_kw, **self.info}


def is_degenerate(arch: Sequence[int]) -> bool:
    """No path of non-``none`` edges from the NB201 cell's input (node 0) to its output (node 3)."""
    reach = {0}
    for label, op in zip(NB201_EDGES, NB201_SPACE.names(arch)):  # edges in topological order of dst
        dst, src = (int(t) for t in label.split("<-"))
        if op != "none" and src in reach:
            reach.add(dst)
    return 3 not in reach


def digits_task(*, quick: bool = False, archs: int | None = None, sample_seed: int = 0,
                runs_jsonl: Path | None = None, name: str = "nb201_digits") -> Task:
    """A shipped digits-derived table, ``nb201_digits`` by default (module docstring: prediction folds
    0-1, truths 'disjoint' on folds 2-4 from the raw runs ``ground_truth/runs/<name>/runs.jsonl``, and
    'table' on all test images)."""
    table = ground_truth(name)
    runs_jsonl = GROUND_TRUTH_RUNS / name / "runs.jsonl" if runs_jsonl is None else runs_jsonl
    if tuple(table.edges) != NB201_EDGES or tuple(table.ops) != NB201_OPS:
        raise BenchError(f"table {table.name!r}: edges/ops {table.edges}/{table.ops} differ from lidsplit's NB201")
    data = table.dataset()
    n_src = int(table.meta["data"]["source_sizes"][2])
    k = int(table.protocol["folds"])
    n_test = len(data.test)
    if n_test % n_src:
        raise BenchError(f"test set of {n_test} images is not {n_src} sources x copies; cannot rebuild its folds")
    fold = (torch.arange(n_test) % n_src) % k  # make_table.py: copies are variant-major, fold by source
    pred_idx = torch.nonzero(torch.isin(fold, torch.tensor(PREDICT_FOLDS))).flatten()
    sizes = {f: int((fold == f).sum()) for f in range(k)}
    names = table.archs()
    if archs is not None:
        names = names[:archs]  # the table's sampling order is already a seeded random order
    arch_t = [from_nb201_string(s) for s in names]
    truths: dict[str, dict[tuple[int, ...], float]] = {}
    per_run: dict[str, list[float]] = {}
    if runs_jsonl.is_file():
        w = np.array([sizes[f] for f in TRUTH_FOLDS], dtype=np.float64)
        with runs_jsonl.open(encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                acc = np.asarray(r["test_fold_acc"], dtype=np.float64)[list(TRUTH_FOLDS)]
                per_run.setdefault(r["arch"], []).append(float((acc * w).sum() / w.sum()))
        missing = [s for s in names if len(per_run.get(s, ())) != len(table[s].seeds)]
        if missing:
            raise BenchError(f"{runs_jsonl}: fold accuracies missing for {len(missing)} table archs ({missing[:2]})")
        truths["disjoint"] = {a: float(np.mean(per_run[s])) for a, s in zip(arch_t, names)}
    else:
        print(f"note: {runs_jsonl} not found: no fold-disjoint truth, only the table's test accuracy", file=sys.stderr)
    truths["table"] = {a: table.accuracy(s) for a, s in zip(arch_t, names)}
    train, predict = data.train, data.test.subset(pred_idx)
    if quick:  # tiny smoke setting: a few training batches, a few hundred prediction images
        g = torch.Generator().manual_seed(derive_seed("bench_ranking.quick", sample_seed))
        train = train.subset(torch.randperm(len(train), generator=g)[:256])
        predict = predict.subset(torch.arange(256))
    data = DataSplits(train, data.val, data.test, name=data.name, meta=data.meta)
    info = {"predict": f"test folds {list(PREDICT_FOLDS)} of {k} (by source digit)",
            "truth_disjoint": f"standalone test accuracy on folds {list(TRUTH_FOLDS)}, mean of seeds {list(table.meta['seeds'])}",
            "truth_table": "table test_acc (all test images, mean of seeds)", "table_tau": table.tau, "quick": quick}
    return Task(name, data, predict, arch_t, truths,
                {"C": int(table.protocol["C"]), "N": 1, "in_channels": int(data.train.x.shape[1]),
                 "num_classes": 10}, info)


def nb201_task(path: str | os.PathLike[str], *, cifar: str | None = None, archs: int | None = 1000,
               sample_seed: int = 0) -> Task:
    """NAS-Bench-201 CIFAR-10 test accuracy as the truth (module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"--nb201 / LIDSPLIT_NB201: no NAS-Bench-201 benchmark file at {str(p)!r}")
    from lidsplit.complexity.table import AccuracyTable

    try:
        table = AccuracyTable.load(p, NB201_SPACE, loader="nb201", dataset="cifar10", metric="test-accuracy")
    except ImportError as e:
        raise BenchError(f"--nb201: {e}") from e
    try:
        data = lidsplit.data.cifar10(cifar)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise BenchError(f"--nb201 needs CIFAR-10 python batches (--cifar or LIDSPLIT_CIFAR10): {e}") from e
    pool = [a for a in table.archs() if not is_degenerate(a)]
    if archs is not None and archs < len(pool):
        rng = np.random.default_rng(derive_seed("bench_ranking.nb201_sample", sample_seed))
        pool = [pool[i] for i in sorted(rng.choice(len(pool), size=archs, replace=False))]
    info = {"predict": "lidsplit cifar10 validation half (training images)",
            "truth_nb201": "NAS-Bench-201 cifar10 test-accuracy (hp 200)", "file": str(p)}
    return Task("nb201_cifar10", data, data.val, pool, {"nb201": {a: table[a] for a in pool}},
                {"C": 16, "N": 5, "in_channels": 3, "num_classes": 10}, info)


def resolve_nb201(arg: str | None) -> str | None:
    """The NAS-Bench-201 path: ``--nb201``, else ``LIDSPLIT_NB201``, else None (the digits table)."""
    if arg:
        return arg
    env = os.environ.get("LIDSPLIT_NB201", "").strip()
    return env or None


# ---- budget ---------------------------------------------------------------------------------------


def schedule(method: str, cfg: "Config") -> dict[str, Any]:
    """What ``method`` trains under ``cfg`` (module docstring). One-shot methods: ``{"one_shot_epochs": N,
    "leaves": 1, "total": N}``; split methods: the resolved ``SplitSchedule.to_json()`` plus ``leaves`` and
    ``total`` (supernet-epochs over every trained node)."""
    if method in ("one-shot",) + CONTROLS:
        n = cfg.budget if method == "one-shot" else _control_epochs(method, cfg)
        return {"one_shot_epochs": n, "leaves": 1, "total": n}
    if method not in SHAPES:
        raise BenchError(f"unknown method {method!r}; expected one of {list(METHODS + EXTRA_METHODS + CONTROLS)}")
    try:
        sched = preset(cfg.preset, cfg.budget, SHAPES[method][2])
    except ValueError as e:
        raise BenchError(f"{method}: {e}") from e
    return {**sched.to_json(), **dict(cfg.split_kw), "leaves": sched.shape[-1], "total": sched.total_epochs}


def _control_epochs(method: str, cfg: "Config") -> int:
    """One-shot epochs of a control: the default split shape's epochs per path, or its total epochs."""
    sched = preset(cfg.preset, cfg.budget, SHAPES["lid"][2])
    return sched.epochs_per_path if method == "one-shot-path" else sched.total_epochs


# ---- one (method, seed) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """budget: the base epochs E of the preset (``equal-budget``: the total supernet-epochs of every
    method). ``split_kw``: extra ``run_split`` keyword arguments (ablations; ``criterion_options`` goes
    to the criterion), ``label`` names such a variant in file names."""

    budget: int
    batch_size: int = 64
    batches: int = 8
    lr: float = 0.025
    calib_batches: int = 10
    preset: str = "equal-budget"
    split_kw: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    def base_json(self) -> dict[str, Any]:
        """The settings every method shares (the one-shot runs' identity)."""
        return {"budget_epochs": self.budget, "batch_size": self.batch_size, "score_batches": self.batches,
                "lr": self.lr, "calib_batches": self.calib_batches}

    def to_json(self) -> dict[str, Any]:
        d = self.base_json()
        if self.preset != "equal-budget":  # the first version's results keep their identity
            d["preset"] = self.preset
        if self.split_kw:
            d["split_kw"] = dict(self.split_kw)
        return d

    def tag(self) -> str:
        """File-name suffix of a split method's results under this protocol."""
        parts = [p for p in (("" if self.preset == "equal-budget" else self.preset), self.label) if p]
        return "".join(f"-{p}" for p in parts)


def build_model(task: Task, seed: int) -> nn.Module:
    """The seed's initial supernet (the same for every method: common random numbers)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nb201(**task.model_kw)


def train_one_shot(epochs: int, seed: int, task: Task, cfg: Config, run_dir: Path, *, progress: bool
                   ) -> tuple[SplitTree, Callable[[int], nn.Module], dict[str, Any]]:
    """The full supernet trained ``epochs`` epochs by uniform single-path sampling (one cosine)."""
    model = build_model(task, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    final = run_dir / "final.pt"
    if not final.exists():
        # the data order of run_split's root warm-up (same loader seed)
        loaders = task.data.loaders(cfg.batch_size, seed=derive_seed("lidsplit.split.train", seed))
        tc = TrainConfig(epochs=epochs, lr=cfg.lr, seed=derive_seed("bench_ranking.one-shot", seed) % 2**31)
        train_subsupernet(model, SubSupernet.full(NB201_SPACE), loaders, config=tc,
                          checkpoint=run_dir / "train.pt", progress=progress)
        atomic_torch_save(model.state_dict(), final)
    model.load_state_dict(torch.load(final, map_location="cpu", weights_only=True))
    timings = {"train": time.perf_counter() - t0, "score": 0.0}
    return SplitTree(NB201_SPACE), (lambda leaf: model), {"timings": timings}


def train_method(method: str, seed: int, task: Task, cfg: Config, run_dir: Path, *, progress: bool
                 ) -> tuple[SplitTree, Callable[[int], nn.Module], dict[str, Any]]:
    """Train ``method``'s supernet(s) for ``seed``; returns the tree, a leaf -> model loader and timings."""
    sched = schedule(method, cfg)
    if "one_shot_epochs" in sched:
        tree, load, info = train_one_shot(sched["one_shot_epochs"], seed, task, cfg, run_dir, progress=progress)
        return tree, load, {"schedule": sched, **info}
    model = build_model(task, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    crit, policy, _ = SHAPES[method]
    kw = {**preset(cfg.preset, cfg.budget, SHAPES[method][2]).run_kwargs(), **dict(cfg.split_kw)}
    tree = lidsplit.run_split(model, task.data, crit, policy, train={"lr": cfg.lr}, batch_size=cfg.batch_size,
                              batches=cfg.batches, seed=seed, run_dir=run_dir, progress=progress, **kw)
    state = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    tm = state.get("timings", {})
    score = sum(float(v.get("score", 0.0)) for v in tm.values())
    train = sum(float(v.get("warmup", 0.0)) + float(v.get("finetune", 0.0)) for v in tm.values())
    if len(tree.leaves()) != sched["leaves"]:
        raise BenchError(f"{method}: expected {sched['leaves']} leaves, the split made {len(tree.leaves())}")

    def load(leaf: int) -> nn.Module:
        return load_leaf(copy.deepcopy(model), tree, leaf, run_dir)

    return tree, load, {"schedule": sched, "timings": {"train": train, "score": score,
                                                       "wall": time.perf_counter() - t0}}


def predict(tree: SplitTree, load: Callable[[int], nn.Module], task: Task, seed: int, cfg: Config, *,
            progress: bool) -> dict[tuple[int, ...], tuple[float, float, int]]:
    """Accuracy (%), loss and leaf of every task architecture with its leaf's weights, on the prediction
    images (BatchNorm recalibrated on ``cfg.calib_batches`` training batches, the same for every arch)."""
    calib = TensorLoader(task.data.train, cfg.batch_size, shuffle=True, seed=derive_seed("bench_ranking.calib", seed))
    pred = TensorLoader(task.predict, 1024)
    ev = LeafEvaluator(tree, load, DataLoaders(train=calib, val=pred, test=pred), split="test", cache_size=1,
                       calib_batches=cfg.calib_batches)
    order = sorted(task.archs, key=lambda a: (tree.route(a), a))  # each leaf loaded once
    out: dict[tuple[int, ...], tuple[float, float, int]] = {}
    bar = _bar(order, progress, desc="predict")
    for a in bar:
        r = ev.evaluate(a)
        out[a] = (100.0 * r.acc, r.loss, int(r.leaf))
    return out


def _bar(it: Sequence[Any], enabled: bool, **kw: Any) -> Any:
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(it, leave=False, dynamic_ncols=True, **kw)
        except ImportError:
            pass
    return it


def run_one(method: str, seed: int, task: Task, cfg: Config, work: Path, row: str, *, progress: bool
            ) -> dict[str, Any]:
    """Train, predict and correlate one (method, seed); returns its JSON record. Run directory:
    ``work / row / seed<s>``."""
    t0 = time.perf_counter()
    tree, load, info = train_method(method, seed, task, cfg, work / row / f"seed{seed}", progress=progress)
    t1 = time.perf_counter()
    preds = predict(tree, load, task, seed, cfg, progress=progress)
    t2 = time.perf_counter()
    acc = {a: v[0] for a, v in preds.items()}
    neg_loss = {a: -v[1] for a, v in preds.items()}
    corr = {name: rank_correlations(acc, truth, tops=TOPS) for name, truth in task.truths.items()}
    corr_loss = {name: rank_correlations(neg_loss, truth, tops=TOPS) for name, truth in task.truths.items()}
    steps_per_epoch = len(TensorLoader(task.data.train, cfg.batch_size))
    return {
        "format": FORMAT, "method": method, "row": row, "seed": seed,
        "budget": {**info["schedule"], "steps_per_epoch": steps_per_epoch,
                   "optimizer_steps": info["schedule"]["total"] * steps_per_epoch},
        "timings": {**info["timings"], "train_total_wall": t1 - t0, "predict": t2 - t1, "total": t2 - t0},
        "leaves": [{"id": n.id, "archs": n.sub.size, "masks": [sorted(m) for m in n.sub.masks]} for n in tree.leaves()],
        "correlations": corr,
        "correlations_by_loss": corr_loss,
        "mean_predicted_acc": float(np.mean(list(acc.values()))),
        "predictions": {to_nb201_string(a): {"acc": v[0], "loss": v[1], "leaf": v[2]} for a, v in preds.items()},
    }


# ---- results --------------------------------------------------------------------------------------


def config_key(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def load_result(path: Path, identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The finished record at ``path`` (None if absent); BenchError if it belongs to another configuration."""
    if not path.exists():
        return None
    rec = json.loads(path.read_text(encoding="utf-8"))
    if rec.get("format") != FORMAT:
        raise BenchError(f"{path} is not a bench_ranking result; refusing to overwrite it")
    if rec.get("config") != json.loads(json.dumps(identity)):
        raise BenchError(f"{path} holds a result of another configuration (budget, task, ...); use another "
                         "--results-dir or remove it")
    return rec


def within_leaf_tau(rec: Mapping[str, Any], truth: Mapping[tuple[int, ...], float],
                    acc_from: Mapping[str, Any] | None = None) -> float:
    """Kendall tau-b between predicted and true accuracy inside each leaf of ``rec``'s tree (leaves with
    >= 3 ranked archs), averaged with weights = number of pairs: the ranking quality without the offsets
    between leaves' predictions. ``acc_from``: take the predicted accuracies from this record instead (the
    one-shot run of the same seed: the shared supernet's ranking inside the same groups of archs, the fair
    reference, since a leaf holds a narrower range of accuracies than the whole table)."""
    preds = (acc_from or rec)["predictions"]
    by_leaf: dict[int, list[tuple[float, float]]] = {}
    for s, p in rec["predictions"].items():
        by_leaf.setdefault(int(p["leaf"]), []).append((float(preds[s]["acc"]), truth[from_nb201_string(s)]))
    num = den = 0.0
    for pairs in by_leaf.values():
        n = len(pairs)
        if n < 3:
            continue
        t = kendall_tau([a for a, _ in pairs], [b for _, b in pairs])
        if not math.isnan(t):
            num += t * n * (n - 1) / 2
            den += n * (n - 1) / 2
    return num / den if den else math.nan


def offset_taus(rec: Mapping[str, Any], truth: Mapping[tuple[int, ...], float],
                ref: Mapping[str, Any]) -> dict[str, float]:
    """Kendall tau of ``rec``'s predictions after replacing each leaf's mean prediction: ``calibrated``
    with the mean that ``ref`` (a one-shot record of the same seed) predicts for the leaf's architectures
    (a calibration across leaves that needs no truth), ``oracle`` with the leaf's mean TRUE accuracy (an
    upper bound of any offset calibration: what is left is the within-leaf ranking)."""
    names = list(rec["predictions"])
    p = np.array([rec["predictions"][n]["acc"] for n in names], dtype=np.float64)
    q = np.array([ref["predictions"][n]["acc"] for n in names], dtype=np.float64)
    t = np.array([truth[from_nb201_string(n)] for n in names], dtype=np.float64)
    leaf = np.array([rec["predictions"][n]["leaf"] for n in names])
    cal, orc = p.copy(), p.copy()
    for lf in np.unique(leaf):
        m = leaf == lf
        cal[m] += q[m].mean() - p[m].mean()
        orc[m] += t[m].mean() - p[m].mean()
    return {"calibrated": kendall_tau(cal.tolist(), t.tolist()), "oracle": kendall_tau(orc.tolist(), t.tolist())}


def _stat(vals: list[float]) -> tuple[float, float]:
    v = [x for x in vals if not math.isnan(x)]
    if not v:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def summarize(records: list[dict[str, Any]], rows: Sequence[str],
              truths: Mapping[str, Mapping[tuple[int, ...], float]], reference: str = "one-shot") -> dict[str, Any]:
    """Mean and sample std (ddof=1) over seeds, per row (a method under a protocol, :func:`plan`) and
    truth, of every correlation and timing, and the within-leaf tau (:func:`within_leaf_tau`; the one-shot
    reference inside the same leaves comes from row ``reference``). NaN correlations (a constant
    prediction) are left out of the mean; ``nan_seeds`` counts them."""
    out: dict[str, Any] = {}
    oneshot = {r["seed"]: r for r in records if r.get("row", r["method"]) == reference}
    for m in rows:
        rs = [r for r in records if r.get("row", r["method"]) == m]
        if not rs:
            continue
        entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in rs), "budget": rs[0]["budget"]}
        for kind in ("correlations", "correlations_by_loss"):
            entry[kind] = {}
            for t in truths:
                entry[kind][t] = {}
                for sub in rs[0][kind][t]:
                    entry[kind][t][sub] = {"n": rs[0][kind][t][sub]["n"]}
                    for stat in ("kendall", "spearman"):
                        vals = [r[kind][t][sub][stat] for r in rs]
                        mu, sd = _stat(vals)
                        entry[kind][t][sub][stat] = {"mean": mu, "std": sd,
                                                     "nan_seeds": sum(math.isnan(v) for v in vals)}
        entry["within_leaf_kendall"] = {t: dict(zip(("mean", "std"), _stat([within_leaf_tau(r, truths[t])
                                                                            for r in rs]))) for t in truths}
        shared = [(r, oneshot[r["seed"]]) for r in rs if r["seed"] in oneshot]
        if not m.startswith("one-shot") and shared:
            entry["within_leaf_kendall_one_shot"] = {
                t: dict(zip(("mean", "std"), _stat([within_leaf_tau(r, truths[t], o) for r, o in shared])))
                for t in truths}
            entry["offsets"] = {t: {k: dict(zip(("mean", "std"), _stat([offset_taus(r, truths[t], o)[k]
                                                                       for r, o in shared])))
                                    for k in ("calibrated", "oracle")} for t in truths}
        entry["timings"] = {k: dict(zip(("mean", "std"), _stat([r["timings"][k] for r in rs])))
                            for k in ("train", "score", "predict", "total")}
        entry["mean_predicted_acc"] = dict(zip(("mean", "std"), _stat([r["mean_predicted_acc"] for r in rs])))
        out[m] = entry
    return out


def render(summary: Mapping[str, Any], truth: str, kind: str = "correlations") -> str:
    """A markdown table of mean ± std per method for one truth."""
    subs = [("all", "all")] + [(f"top{100 * t:g}%", f"top{100 * t:g}%") for t in TOPS]
    head = (["method"] + [f"tau {s}" for s, _ in subs] + [f"rho {s}" for s, _ in subs]
            + ["tau within leaves", "one-shot tau within the same leaves", "tau, leaf means calibrated",
               "tau, true leaf means", "leaves", "total epochs", "train s", "score s", "predict s"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, e in summary.items():
        c = e[kind][truth]
        cells = [m]
        for stat in ("kendall", "spearman"):
            for key, _ in subs:
                v = c[key][stat]
                cells.append(f"{v['mean']:.3f} ± {v['std']:.3f}")
        w = e["within_leaf_kendall"][truth]
        cells.append(f"{w['mean']:.3f} ± {w['std']:.3f}")
        o = e.get("within_leaf_kendall_one_shot", {}).get(truth)
        cells.append(f"{o['mean']:.3f} ± {o['std']:.3f}" if o else "–")
        for k in ("calibrated", "oracle"):
            o = e.get("offsets", {}).get(truth, {}).get(k)
            cells.append(f"{o['mean']:.3f} ± {o['std']:.3f}" if o else "–")
        cells.append(str(e["budget"]["leaves"]))
        cells.append(str(e["budget"]["total"]))
        for k in ("train", "score", "predict"):
            cells.append(f"{e['timings'][k]['mean']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + EXTRA_METHODS + CONTROLS,
                   help="one-shot-path / one-shot-total: the one-shot controls of the protocol")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20, help="base epochs E of the preset (equal-budget: the "
                   "total supernet-epochs of every method)")
    p.add_argument("--preset", default="equal-budget", choices=sorted(PRESETS),
                   help="split protocol (lidsplit.split.schedule)")
    p.add_argument("--split-kw", type=json.loads, default={}, help="JSON object of run_split overrides for an "
                   "ablation (e.g. '{\"lr_schedule\": \"restart\"}'); needs --label")
    p.add_argument("--label", default="", help="name of the --split-kw variant in result file names")
    p.add_argument("--calib-batches", type=int, default=10, help="BatchNorm recalibration batches per arch")
    p.add_argument("--truth", default="nb201_digits", help="shipped ground-truth table to rank against")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=8, help="scoring batches R per split node (lid, gm)")
    p.add_argument("--lr", type=float, default=0.025)
    p.add_argument("--archs", type=int, default=None, help="rank only this many archs (digits: table order; "
                   "nb201: seeded sample, default 1000)")
    p.add_argument("--work-dir", default=None, help="split runs / checkpoints (default: a temp dir, see --results-dir)")
    p.add_argument("--results-dir", default=None, help="per-(method, seed) results and summary.json "
                   "(default: <work-dir>/results)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--nb201", default=None, help="NAS-Bench-201 benchmark file (else env LIDSPLIT_NB201; "
                   "neither: the shipped nb201_digits table)")
    p.add_argument("--cifar", default=None, help="CIFAR-10 python batches for --nb201")
    p.add_argument("--quick", action="store_true", help="tiny smoke setting (budget 8, 256 train images, "
                   "12 archs, 256 prediction images, R=2)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--executor", default="local", choices=EXECUTORS, help="where the (method, seed) runs go: local "
                   "(one after another) or ray (Ray tasks, --workers at a time, --threads CPUs each)")
    p.add_argument("--workers", type=int, default=1, help="(method, seed) runs at once (ray)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--compare", action="store_true", help="train nothing: one table of every protocol's rows "
                   "found in --results-dir, with 95 %% intervals and paired differences to one-shot")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.batches = 8, 2
        args.archs = 12 if args.archs is None else args.archs
    if args.epochs < 1 or args.batch_size < 1 or args.batches < 1 or args.threads < 1:
        p.error("--epochs, --batch-size, --batches and --threads must be >= 1")
    if not isinstance(args.split_kw, dict) or (args.split_kw and not args.label):
        p.error("--split-kw must be a JSON object and needs --label")
    if args.label and not args.label.replace("_", "").replace(".", "").isalnum():
        p.error("--label: letters, digits, '_' and '.' only")
    if args.archs is not None and args.archs < 10:
        p.error("--archs must be >= 10 (the top-10% subset needs 2 architectures)")
    return args


def build_task(args: argparse.Namespace) -> Task:
    nb = resolve_nb201(args.nb201)
    if nb is not None:
        return nb201_task(nb, cifar=args.cifar, archs=1000 if args.archs is None else args.archs)
    try:
        return digits_task(quick=args.quick, archs=args.archs, name=args.truth)
    except (ValueError, FileNotFoundError) as e:
        raise BenchError(f"--truth: {e}") from e


def plan(method: str, seed: int, task: Task, cfg: Config) -> tuple[str, dict[str, Any]]:
    """The row name and identity of one (method, seed) record. One-shot runs are shared by every protocol
    of one base configuration (``one-shot``: ``budget`` epochs, ``one-shot-e<N>``: N epochs); a split
    method's row carries the protocol's tag (:meth:`Config.tag`)."""
    base = {"task": task.describe(), **cfg.base_json()}
    if method == "one-shot" or method in CONTROLS:
        n = schedule(method, cfg)["one_shot_epochs"]
        return ("one-shot", base) if n == cfg.budget else (f"one-shot-e{n}", {**base, "one_shot_epochs": n})
    return method + cfg.tag(), {"task": task.describe(), **cfg.to_json()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every missing (method, seed), then summarise all of them; returns the summary."""
    cfg = Config(budget=args.epochs, batch_size=args.batch_size, batches=args.batches, lr=args.lr,
                 calib_batches=args.calib_batches, preset=args.preset,
                 split_kw=tuple(sorted(args.split_kw.items())), label=args.label)
    for m in args.methods:
        schedule(m, cfg)  # refuses a budget too small before anything runs
    task = build_task(args)
    work = Path(args.work_dir) if args.work_dir else Path(os.environ.get("TMPDIR", "/tmp")) / "lidsplit-bench-ranking"
    head_identity = {"task": task.describe(), **cfg.to_json()}
    results = Path(args.results_dir) if args.results_dir else work / "results" / config_key(head_identity)
    results.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    print(f"task {task.name}: {len(task.archs)} archs, {len(task.data.train)} train / {len(task.predict)} "
          f"prediction images; preset {cfg.preset}, base epochs {cfg.budget}; results in {results}", flush=True)
    records, rows = [], []
    todo: list[tuple[str, int, str, dict[str, Any], Path]] = []  # (method, seed, row, identity, results file)
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for seed in args.seeds:
        for m in args.methods:
            row, identity = plan(m, seed, task, cfg)
            rows += [] if row in rows else [row]
            path = results / f"{row}-seed{seed}.json"
            rec = load_result(path, identity)
            if rec is None and any(t[1:3] == (seed, row) for t in todo):
                continue  # two methods sharing one row (a one-shot control): one run
            if rec is None:
                print(f"[{row} seed {seed}] schedule {schedule(m, cfg)}", flush=True)
                todo.append((m, seed, row, identity, path))
            else:
                print(f"[{row} seed {seed}] done earlier ({path.name})", flush=True)
                found[(row, seed)] = rec
    # every missing (method, seed) is an independent task (lidsplit.common.executor); each writes its own
    # results file, so a killed sweep keeps what finished
    with make_executor(args.executor, workers=args.workers, address=args.ray_address, threads=args.threads) as ex:
        tasks = ex.imap(_run_one_task, [t[:4] + (str(t[4]),) for t in todo], shared=(task, cfg, work, progress),
                        names=[f"{row} seed {seed}" for _, seed, row, _, _ in todo], log=results / TASK_LOG)
        for (m, seed, row, _, _), rec in zip(todo, tasks):
            found[(row, seed)] = rec
            head = next(iter(task.truths))
            c = rec["correlations"][head]
            print(f"[{row} seed {seed}] {head}: tau {c['all']['kendall']:.3f} rho {c['all']['spearman']:.3f} "
                  f"tau top20% {c['top20%']['kendall']:.3f} top10% {c['top10%']['kendall']:.3f}; "
                  f"train {rec['timings']['train']:.0f}s score {rec['timings']['score']:.0f}s "
                  f"predict {rec['timings']['predict']:.0f}s", flush=True)
    for seed in args.seeds:
        for m in args.methods:
            row = plan(m, seed, task, cfg)[0]
            rec = found[(row, seed)]
            rec["row"] = row
            records.append(rec)
    reference = plan("one-shot-path", 0, task, cfg)[0] if "one-shot-path" in args.methods else "one-shot"
    summary = {"format": FORMAT + ".summary", "config": head_identity, "rows": rows,
               "methods": summarize(records, rows, task.truths, reference)}
    name = "summary.json" if not cfg.tag() else f"summary{cfg.tag()}.json"
    atomic_write_text(results / name, json.dumps(summary, indent=1) + "\n")
    for t in task.truths:
        print(f"\n{t} truth ({task.info.get('truth_' + t, '')}); mean ± std over seeds {sorted(set(args.seeds))}:")
        print(render(summary["methods"], t))
    return summary


def _run_one_task(shared: tuple[Task, Config, Path, bool], method: str, seed: int, row: str,
                  identity: dict[str, Any], path: str) -> dict[str, Any]:
    """One (method, seed) as an executor task: its record, also written (atomically) to ``path``."""
    task, cfg, work, progress = shared
    rec = run_one(method, seed, task, cfg, work / config_key(identity), row, progress=progress)
    rec["config"] = identity
    atomic_write_text(path, json.dumps(rec, indent=1) + "\n")
    return rec


def _ci(vals: Sequence[float]) -> str:
    """``mean ± half-width of the 95 % t-interval`` (n = 1: the value alone)."""
    from scipy.stats import t as student

    v = np.asarray([x for x in vals if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.3f}"
    half = float(student.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return f"{v.mean():.3f} ± {half:.3f}"


def _epochs_per_path(budget: Mapping[str, Any]) -> int:
    """Epochs a leaf's weights were trained on the way from the initial weights (records of the first
    version give the equal-budget stages as root / level1 / leaf)."""
    if "epochs_per_path" in budget:
        return int(budget["epochs_per_path"])
    if "one_shot_epochs" in budget:
        return int(budget["one_shot_epochs"])
    return int(budget.get("root", budget["total"])) + int(budget.get("level1", 0)) + int(budget.get("leaf", 0))


def compare(results: Path, task: Task, truth: str | None = None) -> str:
    """One markdown table of every row in ``results`` (all protocols of one task): mean ± 95 % interval
    over seeds of Kendall tau (all, top 20 %), the tau inside the leaves, the one-shot reference's tau
    inside the same leaves and the leaf-offset taus (the one-shot row of the same seed with the same
    epochs per path, else ``one-shot``), and the paired difference to that reference's overall tau."""
    truth = truth or next(iter(task.truths))
    recs: dict[str, dict[int, dict[str, Any]]] = {}
    for f in sorted(results.glob("*-seed*.json")):
        rec = json.loads(f.read_text(encoding="utf-8"))
        if rec.get("format") == FORMAT and rec.get("config", {}).get("task", {}).get("name") == task.name:
            recs.setdefault(rec.get("row", rec["method"]), {})[int(rec["seed"])] = rec
    tr = task.truths[truth]
    head = ["row", "seeds", "total epochs", "epochs per path", "tau all", "tau top20%", "tau within leaves",
            "one-shot tau within the same leaves", "tau, leaf means calibrated", "tau, true leaf means",
            "tau all minus reference (paired)", "reference"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, by_seed in sorted(recs.items(), key=lambda kv: (not kv[0].startswith("one-shot"), kv[0])):
        first = next(iter(by_seed.values()))
        b = first["budget"]
        path = _epochs_per_path(b)
        ref_row = "one-shot" if path == first["config"].get("budget_epochs") else f"one-shot-e{path}"
        ref_row = ref_row if ref_row in recs else "one-shot"  # equal-budget rows: the same total epochs
        ref = recs.get(ref_row, {})
        seeds = sorted(by_seed)
        tau = [by_seed[s]["correlations"][truth]["all"]["kendall"] for s in seeds]
        top = [by_seed[s]["correlations"][truth]["top20%"]["kendall"] for s in seeds]
        within = [within_leaf_tau(by_seed[s], tr) for s in seeds]
        paired = [s for s in seeds if s in ref and not row.startswith("one-shot")]
        ref_within = [within_leaf_tau(by_seed[s], tr, ref[s]) for s in paired]
        offs = [offset_taus(by_seed[s], tr, ref[s]) for s in paired]
        diff = [by_seed[s]["correlations"][truth]["all"]["kendall"] - ref[s]["correlations"][truth]["all"]["kendall"]
                for s in paired]
        cells = [row, ",".join(map(str, seeds)), str(b["total"]), str(path), _ci(tau), _ci(top), _ci(within),
                 _ci(ref_within), _ci([o["calibrated"] for o in offs]), _ci([o["oracle"] for o in offs]),
                 _ci(diff), ref_row if paired else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if args.compare:
            task = build_task(args)
            results = Path(args.results_dir) if args.results_dir else None
            if results is None or not results.is_dir():
                raise BenchError("--compare needs --results-dir, an existing directory of results")
            for t in task.truths:
                print(f"\n{t} truth; mean ± 95 % interval over seeds:\n" + compare(results, task, t))
            return 0
        run(args)
    except BenchError as e:
        print(f"bench_ranking: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
