"""Choosing the final architecture among the leaves' picks, and training it from scratch.

After the search every leaf has a pick (its best architecture by validation accuracy with the leaf's
weights). :func:`select_final` chooses one of them by

- ``"val_acc"``: the pick with the best validation accuracy (with its leaf's weights);
- ``"val_loss"``: the pick of the leaf with the lowest validation loss (Few-Shot NAS's supernet
  selection; GM-NAS used it on MobileNet): a leaf's loss is given (``leaf_losses``) or estimated as the
  mean validation loss of uniformly drawn architectures of the leaf (``LeafEvaluator.leaf_loss``);
- ``"successive_halving"`` (GM-NAS, its appendix C): the picks are trained from scratch and halved round
  by round (keep the top 4, then the top 2, then the best), each round with its own number of epochs.

Training from scratch is a user-suppliable ``train_fn(arch, epochs, seed) -> (val_acc, val_loss)``; the
default (:func:`scratch_train_fn`) trains the architecture alone on a freshly initialised supernet
(single-architecture sub-supernet, ``train_subsupernet``) and scores it on the validation split.
:func:`train_from_scratch` also reports the test accuracy and returns the plain network
(``lidsplit.supernet.materialize``).

Both resume: ``train_from_scratch(checkpoint=...)`` carries on from its last epoch, and
``scratch_train_fn(work_dir=...)`` keeps every finished (arch, epochs, seed) result in
``work_dir/results.json`` and a checkpoint per unfinished one, so an interrupted successive halving
repeats no finished training.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lidsplit.common.errors import ConfigError
from lidsplit.common.executor import Executor, LocalExecutor, make_executor
from lidsplit.common.io import atomic_write_text, read_json
from lidsplit.common.progress import progress_bar
from lidsplit.common.rundir import diff_identity, jsonable_identity
from lidsplit.common.seeds import derive_seed
from lidsplit.search.driver import Record, SearchResult
from lidsplit.search.evaluator import LeafEvaluator, Result
from lidsplit.search.strategies import rank_key
from lidsplit.supernet import Arch, SubSupernet, materialize, search_space
from lidsplit.train import evaluate_arch, reinitialize, train_subsupernet

__all__ = ["TrainFn", "Selection", "ScratchResult", "successive_halving", "select_final", "train_from_scratch",
           "scratch_train_fn", "CRITERIA"]

#: ``train_fn(arch, epochs, seed) -> (val_acc, val_loss)``: trains ``arch`` from scratch for ``epochs``.
TrainFn = Callable[[Arch, int, int], tuple[float, float]]

CRITERIA: tuple[str, ...] = ("val_acc", "val_loss", "successive_halving")


@dataclass(frozen=True)
class Selection:
    """The chosen architecture, its leaf, the criterion, each candidate's score under it (leaf -> score;
    successive halving: the last round each reached) and, for successive halving, the rounds
    (``{"epochs", "keep", "scores": [[arch, val_acc, val_loss], ...], "kept": [arch, ...]}``)."""

    arch: Arch
    leaf: int | None
    criterion: str
    scores: dict[int | None, float]
    rounds: list[dict[str, Any]] = field(default_factory=list)


def _rank(scored: Sequence[tuple[Arch, float, float]]) -> list[int]:
    """Indices sorted best first: accuracy, then lower loss, then the original order."""
    return sorted(range(len(scored)),
                  key=lambda i: (tuple(-v for v in rank_key(Result(scored[i][1], scored[i][2]))), i))


def successive_halving(
    candidates: Sequence[Sequence[int]],
    train_fn: TrainFn,
    *,
    keep: Sequence[int] = (4, 2, 1),
    epochs: Sequence[int] = (1, 2, 4),
    seed: int = 0,
    progress: bool = False,
    executor: str | Executor = "local",
    task_log: str | os.PathLike[str] | None = None,
) -> tuple[Arch, list[dict[str, Any]]]:
    """GM-NAS supernet selection: train the candidates from scratch and keep the best, round by round.

    Round r trains every remaining candidate from scratch for ``epochs[r]`` epochs
    (``train_fn(arch, epochs[r], seed)``, the same seed for all: a fair comparison), ranks them by
    validation accuracy (then lower loss, then candidate order) and keeps the top ``keep[r]``. A round
    that would keep every remaining candidate is skipped (nothing to train for). ``keep`` must decrease
    and end with 1. Returns the winner and the rounds run.

    executor: runs a round's trainings as independent tasks (:mod:`lidsplit.common.executor`; on Ray,
    ``train_fn`` must be picklable); the rounds are the same whichever runs them. ``task_log``: their records.
    """
    cands = [tuple(int(v) for v in c) for c in candidates]
    if not cands:
        raise ValueError("successive_halving: no candidates")
    if len(set(cands)) != len(cands):
        raise ValueError(f"successive_halving: candidates repeat an architecture: {cands}")
    keep, epochs = list(keep), list(epochs)
    if not keep or len(keep) != len(epochs):
        raise ValueError(f"successive_halving: keep {keep} and epochs {epochs} must be non-empty and of equal length")
    if any(not isinstance(k, int) or k < 1 for k in keep) or any(b <= a for a, b in zip(keep[1:], keep)) or keep[-1] != 1:
        raise ValueError(f"successive_halving: keep must be decreasing positive ints ending with 1, got {keep}")
    if any(not isinstance(e, int) or e < 0 for e in epochs):
        raise ValueError(f"successive_halving: epochs must be non-negative ints, got {epochs}")
    rounds: list[dict[str, Any]] = []
    alive = cands
    ex = make_executor(executor)
    try:
        for k, ep in zip(keep, epochs):
            if len(alive) <= k:
                continue
            bar = progress_bar(None, enabled=progress, total=len(alive),
                               desc=f"halving: {len(alive)} -> {k} ({ep} epochs)")
            scored = []
            results = ex.imap(_train_task, [(a, ep, seed) for a in alive], shared=train_fn, log=task_log,
                              names=[f"halving {list(a)} ({ep} epochs)" for a in alive])
            with closing(results):
                for a, (acc, loss) in zip(alive, results):
                    scored.append((a, float(acc), float(loss)))
                    bar.update(1)
            bar.close()
            order = _rank(scored)
            alive = [scored[i][0] for i in order[:k]]
            rounds.append({"epochs": ep, "keep": k, "scores": [[list(a), acc, loss] for a, acc, loss in scored],
                           "kept": [list(a) for a in alive]})
    finally:
        if ex is not executor:
            ex.close()
    return alive[0], rounds


def _train_task(train_fn: TrainFn, arch: Arch, epochs: int, seed: int) -> tuple[float, float]:
    """One training of successive halving (``train_fn``: shipped once per round)."""
    return train_fn(arch, epochs, seed)


def _picks_of(source: SearchResult | Mapping[Any, Record | Result | Sequence[int]],
              evaluator: LeafEvaluator | None) -> dict[int | None, tuple[Arch, Result | None]]:
    """leaf -> (pick, its search result if known)."""
    if isinstance(source, SearchResult):
        return {leaf: (r.arch, r.result) for leaf, r in source.picks().items()}
    if not isinstance(source, Mapping):
        raise TypeError(f"select_final: expected a SearchResult or a mapping leaf -> pick, got {type(source).__name__}")
    out: dict[int | None, tuple[Arch, Result | None]] = {}
    for leaf, p in source.items():
        if isinstance(p, Record):
            out[leaf] = (p.arch, p.result)
        elif isinstance(p, Result):
            raise TypeError(f"select_final: leaf {leaf}: a Result names no architecture; pass a Record or the arch")
        else:
            out[leaf] = (tuple(int(v) for v in p), None)
    if evaluator is not None:
        for leaf, (a, _) in out.items():
            if leaf is not None and evaluator.route(a) != leaf:
                raise ValueError(f"select_final: the pick {a} of leaf {leaf} lies in leaf {evaluator.route(a)}")
    return out


def select_final(
    picks: SearchResult | Mapping[Any, Record | Sequence[int]],
    criterion: str = "val_acc",
    *,
    evaluator: LeafEvaluator | None = None,
    leaf_losses: Mapping[int, float] | None = None,
    loss_samples: int = 8,
    train_fn: TrainFn | None = None,
    supernet: nn.Module | Callable[[], nn.Module] | None = None,
    loaders: Any = None,
    keep: Sequence[int] = (4, 2, 1),
    epochs: Sequence[int] = (1, 2, 4),
    seed: int = 0,
    progress: bool = False,
    executor: str | Executor = "local",
    task_log: str | os.PathLike[str] | None = None,
) -> Selection:
    """Choose the final architecture among the leaves' picks (see the module doc for the criteria).

    picks: a ``SearchResult`` (its per-leaf best records) or a mapping leaf id -> ``Record`` or arch.
    evaluator: scores picks without a recorded result (``val_acc``), estimates leaf losses
        (``val_loss`` without ``leaf_losses``), and checks each pick lies in its leaf.
    train_fn: successive halving's trainer; default ``scratch_train_fn(supernet, loaders)`` (``loaders``
        defaults to the evaluator's; pass ``scratch_train_fn(..., work_dir=...)`` to make it resumable).
    executor / task_log: successive halving's trainings as tasks (:func:`successive_halving`).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"select_final: criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    table = _picks_of(picks, evaluator)
    if not table:
        raise ValueError("select_final: no picks to choose from")
    leaves = list(table)
    if criterion == "val_acc":
        results = {}
        for leaf in leaves:
            a, r = table[leaf]
            if r is None:
                if evaluator is None:
                    raise ValueError(f"select_final: leaf {leaf}'s pick has no recorded result; pass an evaluator")
                r = evaluator.evaluate(a)
            results[leaf] = r
        best = max(leaves, key=lambda lf: (rank_key(results[lf]), -leaves.index(lf)))
        return Selection(table[best][0], best, criterion, {lf: results[lf].acc for lf in leaves})
    if criterion == "val_loss":
        losses: dict[int | None, float] = {}
        for leaf in leaves:
            if leaf_losses is not None and leaf in leaf_losses:
                losses[leaf] = float(leaf_losses[leaf])
            elif evaluator is not None and leaf is not None:
                losses[leaf] = evaluator.leaf_loss(leaf, loss_samples, seed=seed)
            else:
                raise ValueError(f"select_final: no validation loss for leaf {leaf}: pass leaf_losses or an evaluator")
        best = min(leaves, key=lambda lf: (math.inf if math.isnan(losses[lf]) else losses[lf], leaves.index(lf)))
        return Selection(table[best][0], best, criterion, losses)
    if train_fn is None:
        if supernet is None:
            raise ValueError("select_final: successive halving needs train_fn, or supernet (and loaders) for the "
                             "default trainer")
        loaders = loaders if loaders is not None else getattr(evaluator, "loaders", None)
        if loaders is None:
            raise ValueError("select_final: the default trainer needs loaders (or an evaluator holding them)")
        train_fn = scratch_train_fn(supernet, loaders)
    archs = [table[lf][0] for lf in leaves]
    winner, rounds = successive_halving(archs, train_fn, keep=keep, epochs=epochs, seed=seed, progress=progress,
                                        executor=executor, task_log=task_log)
    reached: dict[int | None, float] = {}
    for r in rounds:
        for a, acc, _ in r["scores"]:
            reached[leaves[archs.index(tuple(a))]] = acc
    return Selection(winner, leaves[archs.index(winner)], criterion, reached, rounds)


# ---- training from scratch -------------------------------------------------------------------------


@dataclass
class ScratchResult:
    """An architecture trained from scratch: validation / test accuracy and loss (test: NaN when not
    evaluated), the trained plain network (``materialize``d; None when not kept) and the training history."""

    arch: Arch
    epochs: int
    val_acc: float
    val_loss: float
    test_acc: float
    test_loss: float
    model: nn.Module | None
    history: list[dict[str, float]]


def _fresh_supernet(supernet: nn.Module | Callable[[], nn.Module], seed: int) -> nn.Module:
    """A freshly initialised supernet: a module is deep-copied and re-initialised from ``seed``; a factory is
    called with the global RNG seeded (and restored afterwards)."""
    init_seed = derive_seed("lidsplit.search.scratch", seed)
    if isinstance(supernet, nn.Module):
        return reinitialize(copy.deepcopy(supernet), seed=init_seed)
    if not callable(supernet):
        raise TypeError(f"supernet must be an nn.Module or a callable returning one, got {type(supernet).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = supernet()
    if not isinstance(model, nn.Module):
        raise TypeError(f"the supernet factory returned a {type(model).__name__}, not an nn.Module")
    return model


def train_from_scratch(
    arch: Sequence[int | str],
    supernet: nn.Module | Callable[[], nn.Module],
    loaders: Any,
    epochs: int,
    *,
    seed: int = 0,
    test: bool = True,
    keep_model: bool = True,
    progress: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    executor: str | Executor = "local",
    **hparams: Any,
) -> ScratchResult:
    """Train ``arch`` alone from freshly initialised weights and report validation (and test) accuracy.

    supernet: a supernet module (copied and re-initialised from ``seed``; never modified) or a factory.
        Training runs ``train_subsupernet`` on the single-architecture sub-supernet: every step takes
        ``arch``'s path, so only its weights train (exactly the standalone network's training).
    loaders: a ``DataLoaders`` (train / val / test).
    hparams: ``TrainConfig`` fields (``lr``, ``weight_decay``, ...); ``seed`` also seeds the config.
    test: also evaluate the test split (report only; never use it to choose).
    keep_model: return the trained network (``materialize``: a plain network without Choice modules).
    checkpoint: a file written after every epoch and resumed from when it exists (``train_subsupernet``'s
        checkpoint; refused with ``CheckpointError`` when it belongs to another training run).
    executor: where the training runs (:mod:`lidsplit.common.executor`): ``"ray"`` sends it to a Ray
        worker (a GPU one when the supernet is on cuda) as one task; the result travels back through the
        object store, the checkpoint is written where the worker sees ``checkpoint``.
    """
    ex = make_executor(executor)
    if not isinstance(ex, LocalExecutor):
        try:
            args = (tuple(arch), supernet, loaders, epochs, dict(hparams, seed=seed, test=test, keep_model=keep_model,
                                                                  checkpoint=checkpoint))
            return ex.map(_scratch_task, [args], names=[f"scratch {list(arch)} ({epochs} epochs)"])[0]
        finally:
            if ex is not executor:
                ex.close()
    for split in ("train", "val") + (("test",) if test else ()):
        if not hasattr(loaders, split):
            raise TypeError(f"train_from_scratch: loaders must be a DataLoaders with train / val / test loaders, got "
                            f"a {type(loaders).__name__} without '{split}'")
    model = _fresh_supernet(supernet, seed)
    space = search_space(model)
    a = space.validate_arch(arch)
    res = train_subsupernet(model, SubSupernet.from_arch(space, a), loaders, epochs, seed=seed, progress=progress,
                            checkpoint=checkpoint, **hparams)
    # BatchNorm statistics were accumulated on this one path while training: no recalibration needed
    val = evaluate_arch(model, a, loaders, split="val", recalibrate=False)
    tst = evaluate_arch(model, a, loaders, split="test", recalibrate=False) if test else None
    net = materialize(model, a) if keep_model else None
    return ScratchResult(a, int(epochs), val.accuracy, val.loss, tst.accuracy if tst else math.nan,
                         tst.loss if tst else math.nan, net, res.history)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive OS lock on ``path`` (blocking; a no-op without ``fcntl``) while the block runs."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: one process at a time there
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _scratch_task(_shared: None, arch: Arch, supernet: Any, loaders: Any, epochs: int,
                  kw: dict[str, Any]) -> ScratchResult:
    """:func:`train_from_scratch` as one executor task."""
    return train_from_scratch(arch, supernet, loaders, epochs, **kw)


def scratch_train_fn(
    supernet: nn.Module | Callable[[], nn.Module],
    loaders: Any,
    *,
    progress: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
    **hparams: Any,
) -> TrainFn:
    """The default ``train_fn`` of successive halving: :func:`train_from_scratch` without the test split,
    returning ``(val_acc, val_loss)``.

    work_dir: an existing directory that makes the trainer resumable: finished trainings are kept in
        ``results.json`` (keyed by arch, epochs and seed, with the hyper-parameters; another trainer's file
        is refused) and returned without training again; an unfinished one resumes from ``<key>.ckpt``.
    """
    results_path = ckpt_dir = None
    done: dict[str, list[float]] = {}
    if work_dir is not None:
        ckpt_dir = Path(work_dir)
        if not ckpt_dir.is_dir():
            raise FileNotFoundError(f"scratch_train_fn: work_dir {str(ckpt_dir)!r} is not a directory")
        results_path = ckpt_dir / "results.json"
        setup = {"hparams": {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                             for k, v in sorted(hparams.items())}}
        if results_path.exists():
            saved = read_json(results_path, what="successive-halving results file",
                              remedy="delete it (its trainings will be repeated) or use another work_dir")
            problems = diff_identity(saved.get("setup") if isinstance(saved, dict) else None, jsonable_identity(setup))
            if problems:
                raise ConfigError(f"scratch_train_fn: {results_path} was written with other settings; use another "
                                  "work_dir. Differences:\n  " + "\n  ".join(problems))
            done = saved["results"]

    def train_fn(arch: Arch, epochs: int, seed: int) -> tuple[float, float]:
        key = f"a{'-'.join(str(int(v)) for v in arch)}_e{int(epochs)}_s{int(seed)}"
        if key in done:
            return done[key][0], done[key][1]
        ckpt = ckpt_dir / f"{key}.ckpt" if ckpt_dir is not None else None
        r = train_from_scratch(arch, supernet, loaders, epochs, seed=seed, test=False, keep_model=False,
                               progress=progress, checkpoint=ckpt, **hparams)
        if results_path is not None:
            done[key] = [r.val_acc, r.val_loss]
            with _locked(ckpt_dir / ".results.lock"):  # trainings running in parallel (Ray) each add theirs
                if results_path.exists():
                    saved = read_json(results_path, what="successive-halving results file")
                    done.update({k: v for k, v in saved["results"].items() if k not in done})
                atomic_write_text(results_path, json.dumps({"setup": setup, "results": done}, indent=1) + "\n")
            ckpt.unlink(missing_ok=True)  # the result above is what the checkpoint was kept for
        return r.val_acc, r.val_loss

    return train_fn
