"""The split run: warm up, score, split, level after level, then fine-tune the leaves.

Entry point: ``lidsplit.run_split(model, data, criterion="lid", policy=2, ...)`` (also
``lidsplit.split.run_split``; the old names ``lidsplit.split.split`` and the callable package
``lidsplit.split(...)`` still work, the latter with a DeprecationWarning). It builds a frozen
:class:`SplitConfig` (what decides the result: the run's identity) and runs a :class:`SplitRun`, whose steps
are the units an executor (a Ray scheduler, say) can run one by one: :meth:`SplitRun.warm_up`,
:meth:`SplitRun.score`, :meth:`SplitRun.choose` and :meth:`SplitRun.fine_tune`, each taking a node id,
each idempotent given the run directory. It returns a :class:`SplitResult`: the split tree plus where
each leaf's final weights are and how long each step took.

1. The tree starts as one root node (the full space, or ``root``). Level ``l = 0, 1, ...``: the policy
   (:mod:`lidsplit.split.policy`) gives a branching factor per current leaf (tree order); ``None`` ends
   the splitting. Each leaf with a factor ``b > 1``:

   a. starts from its parent's weights after the parent's warm-up (inherit; the root: the model given),
   b. is warmed up for ``warmup_epochs[l]`` epochs (``train_subsupernet``: uniform single-path training
      inside its masks; 0 = no training),
   c. is scored: a :class:`~lidsplit.split.criteria.ScoringSet` (R batches and R sampled paths, seeded
      from the run seed and the node id) is built once and the criterion scores every candidate edge on
      it (common random numbers),
   d. is split: :func:`~lidsplit.split.selection.select_edge` picks the edge (``rule``) among the
      informative candidates and partitions its ops exactly into ``b`` groups (``exhaustive``: one group
      per op); the node records the criterion, the scores and the seed.

   Candidate edges (``candidates="unsplit"``, NAS-LID / GM-NAS): the edges still holding all their
   ops; when none is left, any edge with >= 2 ops. ``"splittable"``: any edge with >= 2 ops. A leaf's
   capacity (largest factor) is the most ops on a candidate edge.

2. After the last split every leaf starts from its parent's warmed-up weights, or, with
   ``restart=True`` (GM-NAS), from fresh weights (``reinitialize``, one seed for every leaf), and is
   fine-tuned for ``finetune_epochs`` epochs.

Training hyper-parameters: ``train`` (a ``TrainConfig`` or a dict of its fields; ``epochs``, ``seed``
and the schedule segment are set per stage: seed derived from the run seed and the node). The learning
rate across stages (``lr_schedule``):

- ``"restart"``: every stage (each warm-up, each fine-tune) has its own cosine from ``lr`` to ``lr_min``.
- ``"continued"``: every path from the root to a leaf follows ONE cosine over the epochs trained on it
  (``sum(warmup_epochs[:D]) + finetune_epochs`` for the planned depth ``D``); a node's warm-up at level
  ``l`` takes the segment after its ancestors' epochs, and a leaf's fine-tune the last segment (it ends
  at ``lr_min``). This is what GM-NAS's code does, and what a one-shot supernet trained for the same
  epochs per path sees. A leaf that stops splitting early (capacity) finishes on its own shorter cosine.

``carry_optimizer=True`` hands a node's optimiser state (momentum) to its children (GM-NAS's code);
``False`` gives every stage a fresh optimiser. A restarted leaf (``restart=True``) always starts a fresh
optimiser and its own cosine. Named protocols of the papers: :mod:`lidsplit.split.schedule`.

Run directory (``run_dir``; optional but needed to resume)::

    run.json                 identity of the run (its arguments), status, per-node wall times
    tree.json                the tree, rewritten (atomically) after every split and every fine-tuned leaf
    init.pt                  the model's initial weights
    nodes/<id>/warmup.pt     train_subsupernet checkpoint of the node's warm-up (resumable mid-epoch)
    nodes/<id>/trained.pt    the node's weights after its warm-up (its children start from them)
    nodes/<id>/optim.pt      its optimiser state after the warm-up (``carry_optimizer=True`` only)
    nodes/<id>/finetune.pt   train_subsupernet checkpoint of a leaf's fine-tuning
    nodes/<id>/final.pt      a leaf's final weights (``node.info["weights"]``, relative to run_dir)
    tasks.jsonl              one record per task run (what, where, when: ``lidsplit.common.executor``)

Executors (``executor=``, :mod:`lidsplit.common.executor`): a level's nodes (warm-up + scoring) are one
batch of independent tasks, and the leaves' fine-tunes another; ``"local"`` runs them here one after
another (the order above), ``"ray"`` as Ray tasks, ``workers`` at a time. Each task reads its start
weights from the run directory (its parent's ``trained.pt``) and writes its own artefacts there; the
driver applies the splits and writes ``tree.json`` / ``run.json`` in tree order, so the files are the
same byte for byte whichever executor ran them (every seed derives from the run seed and the node id).

Every step is deterministic and skipped when its output exists, so re-running the same call after an
interruption (an exception, a kill) resumes where it stopped and gives the same tree and weights as an
uninterrupted run (CPU; GPU: cuDNN non-determinism aside). A call with different arguments on an existing
run directory raises :class:`SplitRunError` listing the differences (nothing is overwritten); a
finished run is loaded and returned. Without ``run_dir`` nothing is written and the leaves' final
weights are kept in memory: ``result.states[node_id]`` (a state dict), also through :func:`load_leaf`.

``callback(event)`` receives a :class:`SplitEvent` after each warm-up, split and fine-tuned leaf, and
at the end; an exception raised there stops the run (the run directory stays consistent).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing, nullcontext
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import lidsplit.train as _train  # looked up at call time: tests and tools may wrap train_subsupernet
from lidsplit.common.batch import model_device
from lidsplit.common.errors import RunMismatchError
from lidsplit.common.executor import TASK_LOG, Executor, make_executor
from lidsplit.common.progress import progress_bar
from lidsplit.common.rundir import RunDir, StateFormat
from lidsplit.common.seeds import derive_seed
from lidsplit.data.core import Dataset, DataSplits, TensorLoader
from lidsplit.split.criteria import Criterion, EdgeScore, ScoringSet, make_criterion, scoring_set
from lidsplit.split.partition import Partition, partition
from lidsplit.split.policy import SplitPolicy, levels, rounds
from lidsplit.split.selection import RULES, select_edge, separability
from lidsplit.split.tree import SplitTree, to_jsonable
from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train.loop import _loader_signature

__all__ = ["run_split", "split", "SplitConfig", "SplitRun", "SplitResult", "SplitEvent", "SplitRunError",
           "load_leaf", "candidate_edges", "LR_SCHEDULES"]

FORMAT = "lidsplit.split_run"
VERSION = 1
#: learning rate across stages (module docstring)
LR_SCHEDULES = ("restart", "continued")


class SplitRunError(RunMismatchError):
    """A run directory that cannot be used for this call (another run's, or not a split run)."""


#: The run directory's state file (``run.json``): header, refusals (``lidsplit.common.rundir``).
SPLIT_RUN = StateFormat(FORMAT, VERSION, "split-run state file", SplitRunError,
                        remedy="pick another run directory, or delete this one to split again")


@dataclass
class SplitEvent:
    """Passed to ``callback``: ``kind`` is ``"warmup"`` (a node was warmed up), ``"split"`` (a node was
    split and the tree saved), ``"finetune"`` (a leaf was fine-tuned) or ``"done"``."""

    kind: str
    level: int | None
    node: int | None
    tree: SplitTree
    info: dict[str, Any] = field(default_factory=dict)


# ---- helpers -------------------------------------------------------------------------------------


def candidate_edges(sub: SubSupernet, mode: str = "unsplit") -> tuple[int, ...]:
    """The edges a split of ``sub`` may choose (module docstring)."""
    splittable = sub.splittable_edges()
    if mode == "splittable":
        return splittable
    if mode != "unsplit":
        raise ValueError(f"candidates: expected 'unsplit' or 'splittable', got {mode!r}")
    full = tuple(e for e in splittable if len(sub.masks[e]) == sub.space.edges[e].num_ops)
    return full or splittable


def _capacity(sub: SubSupernet, mode: str) -> int:
    es = candidate_edges(sub, mode)
    return max((len(sub.masks[e]) for e in es), default=1)


def _policy(policy: SplitPolicy | int | Sequence[int]) -> SplitPolicy:
    if isinstance(policy, SplitPolicy):
        return policy
    if isinstance(policy, int) and not isinstance(policy, bool):
        return rounds(policy)
    if isinstance(policy, Sequence) and not isinstance(policy, (str, bytes)):
        return levels(list(policy))
    raise TypeError(f"policy: expected a SplitPolicy, an int (rounds) or a list of branching factors, got {policy!r}")


def _loaders(data: Any, batch_size: int, seed: int, device: torch.device) -> Any:
    """The training loader(s): DataSplits -> its seeded loaders; anything else as given."""
    if isinstance(data, DataSplits):
        return data.loaders(batch_size, seed=derive_seed("lidsplit.split.train", seed), device=device)
    if isinstance(data, Dataset):
        return TensorLoader(data, batch_size, shuffle=True, seed=derive_seed("lidsplit.split.train", seed),
                            device=device)
    return data


def _data_signature(data: Any) -> dict[str, Any]:
    loader = getattr(data, "train", data)
    if isinstance(loader, Dataset):
        sig: dict[str, Any] = {"type": "Dataset", "samples": len(loader)}
        ds = loader
    else:
        sig = _loader_signature(loader)
        ds = getattr(loader, "dataset", None)
    x = getattr(ds, "x", None)
    if isinstance(x, torch.Tensor):
        h = hashlib.sha256(x.detach().cpu().numpy().tobytes())
        h.update(ds.y.detach().cpu().numpy().tobytes())
        sig["data_sha"] = h.hexdigest()[:16]
    return sig


def _state_sha(state: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(f"{k}:{tuple(v.shape)}:{v.dtype};".encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()[:16]


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _partition_json(p: Any) -> dict[str, Any]:
    return {"groups": [list(g) for g in p.groups], "intra": p.intra, "cut": p.cut, "ncut": p.ncut,
            "mean_intra": p.mean_intra, "mean_cut": p.mean_cut, "count": p.count, "num_optimal": p.num_optimal,
            "balanced": p.balanced}


def _history(res: Any) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in res.history]


# ---- the configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitConfig:
    """What decides a split run's result (with the model, the data and the root): its identity.

    Built from the arguments of :func:`run_split` (see there); ``__post_init__`` checks them and resolves
    the defaults, so every field holds its final value: ``criterion`` a :class:`Criterion` (a name is built
    with ``criterion_options``), ``policy`` a :class:`SplitPolicy` (an int ``T``: ``rounds(T)``; a list:
    ``levels``), ``warmup_epochs`` one int per level (the last repeats), ``train`` a ``TrainConfig``,
    ``batches`` / ``score_batch_size`` / ``rule`` / ``balanced`` the criterion's defaults when None.
    """

    criterion: Criterion | str = "lid"
    policy: SplitPolicy | int | Sequence[int] = 2
    warmup_epochs: int | Sequence[int] = 1
    finetune_epochs: int = 0
    restart: bool = False
    lr_schedule: str = "restart"
    carry_optimizer: bool = False
    train: Any = None
    batch_size: int = 64
    batches: int | None = None
    score_batch_size: int | None = None
    rule: str | None = None
    balanced: bool | None = None
    candidates: str = "unsplit"
    seed: int = 0
    criterion_options: InitVar[Mapping[str, Any] | None] = None

    def __post_init__(self, criterion_options: Mapping[str, Any] | None) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed: expected an int, got {self.seed!r}")
        crit = make_criterion(self.criterion, **dict(criterion_options or {}))
        warm = [int(self.warmup_epochs)] if isinstance(self.warmup_epochs, int) else [int(w) for w in self.warmup_epochs]
        if not warm or any(w < 0 for w in warm):
            raise ValueError(f"warmup_epochs: expected ints >= 0, got {self.warmup_epochs!r}")
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs: expected >= 0, got {self.finetune_epochs}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule: expected one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not isinstance(self.carry_optimizer, bool):
            raise TypeError(f"carry_optimizer: expected a bool, got {self.carry_optimizer!r}")
        rule = crit.rule if self.rule is None else self.rule
        allowed = ("ordered", "random") if crit.exhaustive else RULES
        if rule not in allowed:
            raise ValueError(f"rule: expected one of {allowed} for criterion {crit.name!r}, got {rule!r}")
        if self.candidates not in ("unsplit", "splittable"):
            raise ValueError(f"candidates: expected 'unsplit' or 'splittable', got {self.candidates!r}")
        resolved = {
            "criterion": crit, "policy": _policy(self.policy), "warmup_epochs": tuple(warm),
            "finetune_epochs": int(self.finetune_epochs), "restart": bool(self.restart), "train": _train_config(self.train),
            "batch_size": int(self.batch_size), "rule": rule,
            "batches": crit.default_batches if self.batches is None else int(self.batches),
            "score_batch_size": crit.default_batch_size if self.score_batch_size is None else int(self.score_batch_size),
            "balanced": crit.balanced if self.balanced is None else bool(self.balanced),
        }
        for k, v in resolved.items():
            object.__setattr__(self, k, v)

    def warmup(self, level: int) -> int:
        """The warm-up epochs of ``level`` (the last value repeats)."""
        w = self.warmup_epochs
        return w[min(level, len(w) - 1)]  # type: ignore[index]

    def trained_before(self, level: int) -> int:
        """The warm-up epochs a node of ``level`` inherits from its ancestors."""
        return sum(self.warmup(j) for j in range(level))


def _train_config(train: Any) -> Any:
    if train is None:
        return _train.TrainConfig(epochs=0)
    if isinstance(train, _train.TrainConfig):
        return train
    if isinstance(train, Mapping):
        return _train.TrainConfig(**{"epochs": 0, **dict(train)})
    raise TypeError(f"train: expected a TrainConfig or a dict of its fields, got {type(train).__name__}")


# ---- the run directory ---------------------------------------------------------------------------


class _RunStore:
    """The split run's state (run.json: format, version, identity, status, timings), its tree and its node
    weights / checkpoints: in a run directory (:class:`~lidsplit.common.rundir.RunDir`), or in memory
    (nothing written). Refuses a directory that holds another run or anything else."""

    def __init__(self, run_dir: str | os.PathLike[str] | None) -> None:
        self.rd = None if run_dir is None else RunDir(run_dir, flag="run_dir")
        self.dir = None if self.rd is None else self.rd.path
        self.mem: dict[str, Any] = {}

    def open(self, identity: dict[str, Any], init_state: dict[str, torch.Tensor]) -> tuple[dict[str, Any], SplitTree | None]:
        """The run's state and saved tree (None: a new run), after checking the directory's identity."""
        state = SPLIT_RUN.header(identity, status="running", timings={})
        tree = None
        if self.rd is not None:
            self.rd.create()
            if self.rd.has("run.json"):
                state = SPLIT_RUN.read(self.rd / "run.json")
                SPLIT_RUN.refuse_changed(self.rd / "run.json", state.get("identity"), identity,
                                         whose="a split run with different arguments")
                if self.rd.has("tree.json"):
                    tree = SplitTree.load(self.rd / "tree.json")
            elif not self.rd.is_empty():
                raise SplitRunError(f"{self.dir} is not empty and holds no split run (run.json); pick an empty directory")
            if not self.has("init.pt"):
                self.save("init.pt", init_state)
        return state, tree

    def lock(self) -> Any:
        """The run directory's lock for the whole run (the driver process only; re-entrant)."""
        return nullcontext() if self.rd is None else self.rd.lock("lidsplit.run_split")

    def save_state(self, state: dict[str, Any]) -> None:
        if self.rd is not None:
            self.rd.save_json("run.json", to_jsonable(state))

    def save_tree(self, tree: SplitTree) -> None:
        if self.rd is not None:
            tree.save(self.rd / "tree.json")

    def node_path(self, node: int, name: str) -> Path | None:
        if self.rd is None:
            return None
        d = self.rd / "nodes" / str(node)
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def has(self, key: str) -> bool:
        return key in self.mem if self.rd is None else self.rd.has(key)

    def save(self, key: str, state: dict[str, Any]) -> None:
        if self.rd is None:
            self.mem[key] = state
        else:
            self.rd.save_state(key, state)

    def load(self, key: str) -> dict[str, Any]:
        if self.rd is None:
            return self.mem[key]
        return self.rd.load_state(key, what="split-run weights file", remedy="delete the run directory to split again")


# ---- the result ----------------------------------------------------------------------------------


class SplitResult(SplitTree):
    """What a split run returns: the split tree itself (every :class:`SplitTree` method and ``==`` work on
    it; its JSON is the tree's) plus where the leaves' final weights are and the steps' wall times.

    run_dir: the run directory (None: the run kept everything in memory).
    weights: leaf id -> its final weights file (in ``run_dir``; empty without one).
    states: leaf id -> its final state dict (in memory; empty with a run directory).
    timings: node id (str) -> seconds of its steps (``warmup``, ``score``, ``per_edge``, ``finetune``...).
    """

    def __init__(self, root: Any, *, info: Mapping[str, Any] | None = None) -> None:
        super().__init__(root, info=info)
        self.run_dir: Path | None = None
        self.weights: dict[int, Path] = {}
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self.timings: dict[str, dict[str, Any]] = {}

    @classmethod
    def of(cls, tree: SplitTree, store: _RunStore, timings: Mapping[str, Any]) -> SplitResult:
        """The result of a finished run: ``tree``'s nodes (shared, not copied) and the store's weights."""
        res = cls(tree.root.sub)
        res.nodes = tree.nodes
        res.run_dir = store.dir
        res.timings = dict(timings)
        for leaf in res.leaves():
            key = leaf.info.get("weights")
            if store.dir is None:
                res.states[leaf.id] = store.mem[f"nodes/{leaf.id}/final.pt"]
            elif key is not None:
                res.weights[leaf.id] = store.dir / key
        return res

    def load_leaf(self, model: nn.Module, node_id: int) -> nn.Module:
        """Load leaf ``node_id``'s final weights into ``model`` (in place; returned)."""
        return load_leaf(model, self, node_id)


def load_leaf(model: nn.Module, tree: SplitTree, node_id: int, run_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """Load leaf ``node_id``'s final weights into ``model`` (in place; returned): from the result's
    in-memory states when the run kept them, else from ``run_dir`` (default: the result's run directory)
    ``/ node.info["weights"]``."""
    if isinstance(tree, SplitResult) and node_id in tree.states:
        model.load_state_dict(tree.states[node_id])
        return model
    rel = tree.node(node_id).info.get("weights")
    if rel is None:
        raise KeyError(f"split tree: node {node_id} has no final weights (not a fine-tuned leaf?)")
    if run_dir is None:
        run_dir = tree.run_dir if isinstance(tree, SplitResult) and tree.run_dir is not None else "."
    model.load_state_dict(torch.load(Path(run_dir) / rel, map_location="cpu", weights_only=True))
    return model


# ---- the engine ----------------------------------------------------------------------------------


@dataclass
class NodeScores:
    """What :meth:`SplitRun.score` measured on one node: the candidate edges, their scores, the scoring
    set's description and seed, and the wall time."""

    candidates: tuple[int, ...]
    scores: dict[int, EdgeScore]
    scoring: dict[str, Any]
    seed: int
    seconds: float


class SplitRun:
    """One split run of ``model`` (not modified: the run trains a copy) on ``data`` with ``config``.

    The steps (each takes a node id, is idempotent given the run directory, and returns plain data):
    :meth:`warm_up`, :meth:`score`, :meth:`choose`, :meth:`fine_tune`; :meth:`run` chains them level by
    level (module docstring) and returns the :class:`SplitResult`. ``score_data``: the scoring batches'
    source (default ``data``); ``root``: the sub-supernet to split (default the full space); ``executor``:
    runs the steps (:mod:`lidsplit.common.executor`; default in this process), which :meth:`run` hands
    one level's nodes, then the leaves, at a time. ``nproc``:
    every training (warm-ups, fine-tunes) runs data-parallel on that many local processes
    (``lidsplit.train.train_data_parallel``); scoring stays in this process. Not part of the run's identity:
    the weights equal one process's up to float rounding, and a run may resume with another ``nproc``.
    An executor that runs the steps as tasks (Ray) makes a task a data-parallel group by giving it N
    devices and calling the step on a ``SplitRun(..., nproc=N)``; ranks spread over machines call
    ``train_subsupernet(..., parallel=init_data_parallel(rank, W, init_method=...))`` themselves.
    """

    def __init__(self, model: nn.Module, data: Any, config: SplitConfig, *, score_data: Any = None,
                 root: SubSupernet | None = None, run_dir: str | os.PathLike[str] | None = None,
                 progress: bool = True, callback: Callable[[SplitEvent], None] | None = None,
                 executor: Executor | None = None, nproc: int = 1) -> None:
        if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
            raise ValueError(f"nproc: expected an int >= 1 (data-parallel processes per training), got {nproc!r}")
        self.nproc = nproc
        cfg = self.config = config
        self.executor = make_executor(executor)
        space = search_space(model)
        root_sub = SubSupernet.full(space) if root is None else root
        if not isinstance(root_sub, SubSupernet) or root_sub.space != space:
            raise ValueError("root: expected a SubSupernet of the model's search space")
        self.progress, self.callback = progress, callback
        self.device = model_device(model)
        self.model = copy.deepcopy(model)
        self.init_state = _clone_state(self.model)
        self.loaders = _loaders(data, cfg.batch_size, cfg.seed, self.device)
        self.score_data = data if score_data is None else score_data
        # the epochs trained on every root-to-leaf path (the span of a "continued" learning rate)
        shape = cfg.policy.simulate(_capacity(root_sub, cfg.candidates))  # nodes per level, root first
        self.path_epochs = cfg.trained_before(len(shape) - 1) + cfg.finetune_epochs
        self.planned_steps = sum(shape)  # splits (every inner node) + fine-tuned leaves, for the progress bar
        identity = self._identity(model, root_sub, score_data)
        self.store = _RunStore(run_dir)
        self.state, tree = self.store.open(identity, self.init_state)
        if tree is None:
            tree = SplitTree(root_sub, info={"criterion": cfg.criterion.config(), "seed": cfg.seed})
        elif tree.root.sub != root_sub:
            raise SplitRunError(f"{self.store.dir}/tree.json does not start from the requested root sub-supernet")
        self.tree = tree
        self._save()

    def _identity(self, model: nn.Module, root: SubSupernet, score_data: Any) -> dict[str, Any]:
        cfg = self.config
        identity = {
            "space": root.space.to_json(),
            "root": [sorted(m) for m in root.masks],
            "model": {"type": type(model).__name__, "weights_sha": _state_sha(self.init_state)},
            "criterion": to_jsonable(cfg.criterion.config()),
            "policy": to_jsonable(dataclasses.asdict(cfg.policy)),
            "warmup_epochs": list(cfg.warmup_epochs),
            "finetune_epochs": cfg.finetune_epochs,
            "restart": cfg.restart,
            "train": cfg.train.to_json() | {"epochs": None, "seed": None},
            "batch_size": cfg.batch_size,
            "scoring": {"batches": cfg.batches, "batch_size": cfg.score_batch_size,
                        "data": _data_signature(score_data) if score_data is not None else "train"},
            "data": _data_signature(self.loaders),
            "rule": cfg.rule,
            "balanced": cfg.balanced,
            "candidates": cfg.candidates,
            "seed": cfg.seed,
        }
        # non-default schedule settings only, so run directories made before they existed stay valid
        if cfg.lr_schedule != "restart":
            identity["lr_schedule"] = cfg.lr_schedule
        if cfg.carry_optimizer:
            identity["carry_optimizer"] = True
        return identity

    # ---- the steps ----------------------------------------------------------------------------------
    def warm_up(self, node: int, level: int) -> dict[str, Any]:
        """Train ``node`` from its parent's warmed-up weights (the root: the initial ones) for the warm-up
        epochs of ``level``; saves ``nodes/<node>/trained.pt`` and returns ``{"epochs", "history",
        "seconds"}`` (resumed from the warm-up checkpoint, so a repeated call trains no further). With
        ``carry_optimizer`` it starts from the parent's optimiser state and saves its own
        (``nodes/<node>/optim.pt``)."""
        t0 = time.perf_counter()
        self.model.load_state_dict(self._start_state(node))
        epochs = self.config.warmup(level)
        hist, optim = self._train(node, "warmup", epochs, "warmup.pt", self._segment(level, epochs, leaf=False),
                                  self._start_optimizer(node))
        if self.config.carry_optimizer and optim is not None:
            self.store.save(f"nodes/{node}/optim.pt", copy.deepcopy(optim))
        self.store.save(f"nodes/{node}/trained.pt", _clone_state(self.model))
        return {"epochs": epochs, "history": hist, "seconds": time.perf_counter() - t0}

    def score(self, node: int) -> NodeScores:
        """Score the candidate edges of ``node`` (its warmed-up weights) on one seeded ScoringSet."""
        cfg, crit = self.config, self.config.criterion
        sub = self.tree.nodes[node].sub
        node_seed = derive_seed("lidsplit.split.node", cfg.seed, node) % (2**62)
        t0 = time.perf_counter()
        self.model.load_state_dict(self.store.load(f"nodes/{node}/trained.pt"))
        scoring: ScoringSet = scoring_set(sub, self.score_data, cfg.batches, batch_size=cfg.score_batch_size,
                                          seed=node_seed, device=self.device)
        cands = candidate_edges(sub, cfg.candidates)
        dev = self.device
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(node_seed % (2**31))
            scores = crit.score_edges(self.model if crit.needs_model else None, scoring, cands, progress=self.progress)
        return NodeScores(cands, scores, scoring.describe(), node_seed, time.perf_counter() - t0)

    def choose(self, node: int, b: int, scored: NodeScores) -> dict[str, Any]:
        """Split ``node`` into ``b`` groups on the edge the rule picks among the informative candidates
        (exhaustive: one group per op); records the scores on the node and returns that record. A node
        already split is left as it is (its record returned)."""
        n = self.tree.nodes[node]
        if n.children:
            return n.scores
        record = _split_record(self.config, n.sub, b, scored)
        part_groups = record.pop("_groups")
        self.tree.split(node, record["edge"], part_groups, criterion=self.config.criterion.name, scores=record,
                        seed=int(scored.seed))
        return record

    def fine_tune(self, leaf: int) -> dict[str, Any]:
        """Train ``leaf`` after the last split (from its parent's warmed-up weights, or fresh ones with
        ``restart``) for ``finetune_epochs``; saves ``nodes/<leaf>/final.pt`` and returns the leaf's
        ``finetune`` record. A leaf already fine-tuned is not trained again."""
        n = self.tree.nodes[leaf]
        if "weights" in n.info and self.store.has(f"nodes/{leaf}/final.pt"):
            return n.info["finetune"]
        record, seconds = self._fine_tune_train(leaf)
        return self._finish_leaf(leaf, record, seconds)

    def _fine_tune_train(self, leaf: int) -> tuple[dict[str, Any], float]:
        """The training of :meth:`fine_tune` (what a worker runs): saves the leaf's final weights and returns
        its ``finetune`` record and the seconds taken; the tree is left to :meth:`_finish_leaf`."""
        cfg = self.config
        t0 = time.perf_counter()
        self.model.load_state_dict(self._start_state(leaf))
        if cfg.restart:  # fresh weights, fresh optimiser, own cosine
            fresh = _train.child_weights(self.model, "restart", seed=derive_seed("lidsplit.split.restart", cfg.seed) % (2**31))
            self.model.load_state_dict(fresh.state_dict())
            del fresh
            sched, optim = {}, None
        else:
            sched = self._segment(self.tree.depth(leaf), cfg.finetune_epochs, leaf=True)
            optim = self._start_optimizer(leaf)
        hist, _ = self._train(leaf, "finetune", cfg.finetune_epochs, "finetune.pt", sched, optim)
        self.store.save(f"nodes/{leaf}/final.pt", _clone_state(self.model))
        return {"epochs": cfg.finetune_epochs, "restart": cfg.restart, "history": hist}, time.perf_counter() - t0

    def _finish_leaf(self, leaf: int, record: dict[str, Any], seconds: float) -> dict[str, Any]:
        n = self.tree.nodes[leaf]
        n.info["finetune"] = record
        n.info["weights"] = f"nodes/{leaf}/final.pt"
        self.state["timings"].setdefault(str(leaf), {})["finetune"] = seconds
        return record

    # ---- the run ------------------------------------------------------------------------------------
    def run(self) -> SplitResult:
        """Every level's splits, then every leaf's fine-tuning; the finished run's result (a finished run
        directory: loaded, nothing recomputed)."""
        with self.store.lock():
            self._run_levels_and_leaves()
        result = SplitResult.of(self.tree, self.store, self.state["timings"])
        if self.callback is not None:
            self.callback(SplitEvent("done", None, None, result, {}))
        return result

    def _run_levels_and_leaves(self) -> None:
        done = sum(1 for n in self.tree.nodes if n.children or "weights" in n.info)
        status = progress_bar(None, enabled=self.progress, desc="split", total=self.planned_steps, initial=done)
        if self.state.get("status") != "done":
            self._split_levels(status)
            todo = [leaf.id for leaf in self.tree.leaves()
                    if not ("weights" in leaf.info and self.store.has(f"nodes/{leaf.id}/final.pt"))]
            tasks = self._tasks(_finetune_task, [(leaf,) for leaf in todo], [f"finetune leaf {leaf}" for leaf in todo])
            with closing(tasks):
                for leaf, (record, seconds, mem) in zip(todo, tasks):
                    self.store.mem.update(mem)
                    info = self._finish_leaf(leaf, record, seconds)
                    self._save()
                    status.update(1)
                    self._emit("finetune", None, leaf, history=info["history"])
            self.state["status"] = "done"
            self.store.save_state(self.state)
        status.close()

    def _split_levels(self, status: Any) -> None:
        """Level after level: the level's nodes to split are warmed up and scored as independent tasks
        (the executor's); their splits are applied and saved in tree order."""
        frontier, level = [0], 0
        while True:
            caps = [_capacity(self.tree.nodes[i].sub, self.config.candidates) for i in frontier]
            plan = self.config.policy.plan(level, len(frontier), caps)
            if plan is None:
                return
            todo = [(nid, b) for nid, b in zip(frontier, plan) if b > 1 and not self.tree.nodes[nid].children]
            tasks = self._tasks(_node_task, [(nid, level) for nid, _ in todo],
                                [f"warmup+score node {nid} (level {level})" for nid, _ in todo])
            with closing(tasks):
                for (nid, b), (warm, scored, mem) in zip(todo, tasks):
                    self.store.mem.update(mem)
                    self._apply_split(nid, level, b, warm, scored, status)
            nxt: list[int] = []
            for nid, b in zip(frontier, plan):
                nxt.extend(self.tree.nodes[nid].children if b > 1 else [nid])
            frontier = nxt
            level += 1

    def _tasks(self, fn: Callable[..., Any], args: list[tuple[Any, ...]], names: list[str]) -> Any:
        """The executor's results of ``fn(run, *a)`` for ``a`` in ``args``, in order. Locally ``run`` is this
        run; a remote worker gets a copy of it (its model, data and tree as they are now; no callback)."""
        log = None if self.store.dir is None else self.store.dir / TASK_LOG
        if self.executor.name == "local":
            return self.executor.imap(fn, args, names=names, shared=self, log=log)
        return self.executor.imap(fn, args, names=names, shared=self._worker_copy(), log=log)

    def _worker_copy(self) -> SplitRun:
        """What a worker gets: this run without the driver-only parts, its run directory made absolute (a
        worker's working directory is not the driver's)."""
        w = copy.copy(self)
        w.callback, w.executor, w.progress = None, None, False
        w.store = copy.copy(self.store)
        if self.store.rd is not None:
            w.store.rd = RunDir(self.store.dir.absolute(), flag="run_dir")
            w.store.dir = w.store.rd.path
        return w

    def _apply_split(self, nid: int, level: int, b: int, warm: dict[str, Any], scored: NodeScores,
                     status: Any) -> None:
        node = self.tree.nodes[nid]
        node.info["warmup"] = {"epochs": warm["epochs"], "history": warm["history"]}
        self._emit("warmup", level, nid, epochs=warm["epochs"], history=warm["history"])
        self.choose(nid, b, scored)
        self.state["timings"][str(nid)] = {
            "warmup": warm["seconds"], "score": scored.seconds,
            "per_edge": {str(e): scored.scores[e].seconds for e in scored.candidates},
            "breakdown": {str(e): scored.scores[e].timings for e in scored.candidates},
        }
        self._save()
        status.set_postfix(node=nid, edge=node.edge, refresh=False)
        status.update(1)
        self._emit("split", level, nid, edge=node.edge, groups=node.groups)

    def _start_state(self, nid: int) -> dict[str, torch.Tensor]:
        parent = self.tree.nodes[nid].parent
        return self.init_state if parent is None else self.store.load(f"nodes/{parent}/trained.pt")

    def _start_optimizer(self, nid: int) -> dict[str, Any] | None:
        parent = self.tree.nodes[nid].parent
        if not self.config.carry_optimizer or parent is None or not self.store.has(f"nodes/{parent}/optim.pt"):
            return None
        return self.store.load(f"nodes/{parent}/optim.pt")

    def _segment(self, level: int, epochs: int, leaf: bool) -> dict[str, int]:
        """TrainConfig schedule fields of a stage at ``level`` (a leaf's fine-tune: ``leaf``)."""
        if self.config.lr_schedule == "restart":
            return {}
        start = self.config.trained_before(level)
        span = start + epochs if leaf else max(self.path_epochs, start + epochs)
        return {"schedule_start": start, "schedule_epochs": span}

    def _train(self, nid: int, kind: str, epochs: int, ckpt_name: str, sched: dict[str, int],
               optim: dict[str, Any] | None) -> tuple[list[dict[str, float]], dict[str, Any] | None]:
        if epochs <= 0:
            return [], optim
        seed = derive_seed("lidsplit.split", kind, self.config.seed, nid) % (2**31)
        c = dataclasses.replace(self.config.train, epochs=epochs, seed=seed, **sched)
        kw = {"config": c, "optimizer_state": optim, "checkpoint": self.store.node_path(nid, ckpt_name),
              "progress": self.progress}
        sub = self.tree.nodes[nid].sub
        res = (_train.train_data_parallel(self.nproc, self.model, sub, self.loaders, **kw) if self.nproc > 1
               else _train.train_subsupernet(self.model, sub, self.loaders, **kw))
        return _history(res), res.optimizer_state

    def _save(self) -> None:
        self.store.save_state(self.state)
        self.store.save_tree(self.tree)

    def _emit(self, kind: str, level: int | None, node: int | None, **info: Any) -> None:
        if self.callback is not None:
            self.callback(SplitEvent(kind, level, node, self.tree, info))


def _written(store: _RunStore, before: Mapping[str, Any]) -> dict[str, Any]:
    """The in-memory artefacts a task wrote (a run without run directory: they travel back with its result)."""
    return {k: v for k, v in store.mem.items() if before.get(k) is not v}


def _node_task(run: SplitRun, nid: int, level: int) -> tuple[dict[str, Any], NodeScores, dict[str, Any]]:
    """One split task: warm ``nid`` up and score its candidate edges (the split itself is the driver's)."""
    before = dict(run.store.mem)
    warm = run.warm_up(nid, level)
    scored = run.score(nid)
    return warm, scored, _written(run.store, before)


def _finetune_task(run: SplitRun, leaf: int) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """One leaf's fine-tuning task."""
    before = dict(run.store.mem)
    record, seconds = run._fine_tune_train(leaf)
    return record, seconds, _written(run.store, before)


def _split_record(cfg: SplitConfig, sub: SubSupernet, b: int, scored: NodeScores) -> dict[str, Any]:
    """The edge and partition the rule picks for a split into ``b`` groups, and the JSON record of every
    candidate's score (``_groups``: the chosen partition's groups, for ``SplitTree.split``)."""
    crit, scores, cands = cfg.criterion, scored.scores, scored.candidates
    # informative edges that can take b groups first; all candidates if none is left
    informative = [e for e in cands if scores[e].informative and len(scores[e].ops) >= (2 if crit.exhaustive else b)]
    informative = informative or list(cands)
    rng = np.random.default_rng(derive_seed("lidsplit.split.rule", scored.seed))
    ops = {e: scores[e].ops for e in cands}
    choice_scores: dict[int, float] | None
    parts: dict[int, Partition]
    if crit.exhaustive:
        eligible = [e for e in informative if len(ops[e]) >= 2]
        if cfg.rule == "random":
            edge = eligible[int(rng.integers(len(eligible)))]
        elif cfg.rule == "ordered":
            edge = eligible[0]
        else:
            raise ValueError(f"exhaustive: rule must be 'ordered' or 'random', got {cfg.rule!r}")
        part = partition(scores[edge].similarity, len(ops[edge]), balanced=True, ops=ops[edge])
        choice_scores, parts = None, {edge: part}
    else:
        ch = select_edge({e: scores[e].similarity for e in informative}, b, cfg.rule, balanced=cfg.balanced,
                         seed=rng, ops={e: ops[e] for e in informative})
        edge, part, choice_scores = ch.edge, ch.partition, ch.scores
        parts = dict(ch.partitions) if ch.partitions is not None else {edge: part}
    edges_json: dict[str, Any] = {}
    for e in cands:
        d = scores[e].to_json()
        d["separability"] = separability(scores[e].similarity) if scores[e].n >= 2 else 0.0
        if e in parts:
            d["partition"] = _partition_json(parts[e])
        if choice_scores is not None and e in choice_scores:
            d["score"] = choice_scores[e]
        edges_json[str(e)] = d
    return {
        "rule": cfg.rule, "b": len(part.groups), "balanced": part.balanced, "edge": edge,
        "label": sub.space.edges[edge].label, "partition": _partition_json(part),
        "separability": edges_json[str(edge)]["separability"], "candidates": list(cands),
        "informative": list(informative), "edges": edges_json, "scoring": scored.scoring,
        "criterion_config": crit.config(), "_groups": [list(g) for g in part.groups],
    }


# ---- the entry point -----------------------------------------------------------------------------


def run_split(
    model: nn.Module,
    data: Any,
    criterion: str | Criterion = "lid",
    policy: SplitPolicy | int | Sequence[int] = 2,
    *,
    warmup_epochs: int | Sequence[int] = 1,
    finetune_epochs: int = 0,
    restart: bool = False,
    lr_schedule: str = "restart",
    carry_optimizer: bool = False,
    train: Any = None,
    batch_size: int = 64,
    batches: int | None = None,
    score_batch_size: int | None = None,
    score_data: Any = None,
    rule: str | None = None,
    balanced: bool | None = None,
    candidates: str = "unsplit",
    root: SubSupernet | None = None,
    seed: int = 0,
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    callback: Callable[[SplitEvent], None] | None = None,
    criterion_options: Mapping[str, Any] | None = None,
    nproc: int = 1,
    executor: str | Executor = "local",
    workers: int = 1,
    ray_address: str | None = None,
) -> SplitResult:
    """Split ``model`` (a supernet; not modified: the run trains a copy) into sub-supernets; returns the
    :class:`SplitResult` (the split tree, its leaves' weights, the timings). See the module docstring for
    the procedure, resuming and the run directory; ``SplitRun(model, data, SplitConfig(...)).run()`` is the
    same with the configuration as one object.

    data: ``DataSplits`` (loaders built with ``batch_size``, seeded), ``DataLoaders`` or a loader
        (its ``train``) for training; scoring batches come from ``score_data`` (default: the training
        data; see :func:`~lidsplit.split.criteria.scoring_set`).
    criterion: a registered name (``lidsplit.split.criterion_names()``: ``lid``, ``gm``, the zero-cost
        proxies, ``exhaustive``, ``random``, ...) with ``criterion_options``, or a Criterion.
    policy: a ``SplitPolicy``, an int ``T`` (``rounds(T)``: T levels of 2-way splits) or a list of
        branching factors (``levels``).
    warmup_epochs: per level (an int: every level; a list: the last value repeats).
    finetune_epochs / restart: the leaves' training after the last split (restart: fresh weights).
    lr_schedule / carry_optimizer: ``"restart"`` or ``"continued"`` learning rate across stages, and
        whether children inherit the optimiser state (module docstring).
    train: ``TrainConfig`` or dict of its fields (epochs/seed are set per stage).
    batches / score_batch_size: R and the batch size of every ScoringSet (default: the criterion's,
        e.g. lid 50 x 128, gm 100 x 64, proxies 1 x 64).
    rule / balanced: edge-selection rule and partition constraint (default: the criterion's:
        lid max_intra balanced, gm min_cut balanced, proxies random unbalanced, exhaustive ordered,
        random random).
    candidates: ``"unsplit"`` | ``"splittable"``; root: the sub-supernet to split (default: the full space).
    seed: every random choice of the run derives from it.
    run_dir: directory for checkpoints / resume (created if missing).
    progress: tqdm bars; callback: see :class:`SplitEvent`.
    nproc: data-parallel processes for every training (:class:`SplitRun`); 1: this process.
    executor / workers / ray_address: where the steps run (:mod:`lidsplit.common.executor`): ``"local"``
        (this process, one after another) or ``"ray"`` (Ray tasks, ``workers`` at a time, on the cluster at
        ``ray_address`` or a local one started for this call); an :class:`Executor` is used as given (and
        not closed). The result is the same, byte for byte, whatever runs it; with a run directory every
        task is recorded in ``run_dir/tasks.jsonl``. Ray workers on other machines need ``run_dir`` on
        storage they mount at the same path (without a run directory, weights travel through Ray's
        object store).

    The model (the supernet contract, :class:`~lidsplit.supernet.Choice`): any module holding Choices (or
    another codebase's supernet after :func:`~lidsplit.supernet.adapt`). ``lid`` profiles
    ``model.feature_layers()`` (or ``criterion_options={"layers": callable(model)}``); ``gm`` matches the
    gradients of ``model.shared_modules()`` (default: the whole model, with a ``SharedModulesWarning``).
    """
    config = SplitConfig(criterion, policy, warmup_epochs, finetune_epochs, restart, lr_schedule, carry_optimizer,
                         train, batch_size, batches, score_batch_size, rule, balanced, candidates, seed,
                         criterion_options)
    ex = make_executor(executor, workers=workers, address=ray_address, device=model_device(model))
    try:
        return SplitRun(model, data, config, score_data=score_data, root=root, run_dir=run_dir, progress=progress,
                        callback=callback, executor=ex, nproc=nproc).run()
    finally:
        if ex is not executor:  # made here: a local Ray cluster started for this call is shut down
            ex.close()


#: the old name of :func:`run_split` (``lidsplit.split.split``), kept
split = run_split


def _deprecated_call(*args: Any, **kwargs: Any) -> SplitResult:
    warnings.warn("calling the lidsplit.split package is deprecated; call lidsplit.run_split(...)",
                  DeprecationWarning, stacklevel=3)
    return run_split(*args, **kwargs)
