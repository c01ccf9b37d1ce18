"""The split run: warm up, score, split, level after level, then fine-tune the leaves. One call.

``lidsplit.split(model, data, criterion="lid", policy=2, ...)`` (also ``lidsplit.split.split`` and
``lidsplit.run_split``) returns the :class:`~lidsplit.split.tree.SplitTree`. What it does:

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

Every step is deterministic and skipped when its output exists, so re-running the same call after an
interruption (an exception, a kill) resumes where it stopped and gives the same tree and weights as an
uninterrupted run (CPU; GPU: cuDNN non-determinism aside). A call with different arguments on an existing
run directory raises :class:`SplitRunError` listing the differences (nothing is overwritten); a
finished run is loaded and returned. Without ``run_dir`` nothing is written and the leaves' final
weights are kept in memory: ``tree.states[node_id]`` (a state dict), also through :func:`load_leaf`.

``callback(event)`` receives a :class:`SplitEvent` after each warm-up, split and fine-tuned leaf, and
at the end; an exception raised there stops the run (the run directory stays consistent).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lidsplit._io import atomic_torch_save, atomic_write_text
from lidsplit.data.core import Dataset, DataSplits, TensorLoader, derive_seed
from lidsplit.split.criteria import (
    Criterion,
    EdgeScore,
    ScoringSet,
    make_criterion,
    scoring_set,
)
from lidsplit.split.partition import partition
from lidsplit.split.policy import SplitPolicy, levels, rounds
from lidsplit.split.selection import RULES, select_edge, separability
from lidsplit.split.tree import SplitTree, to_jsonable
from lidsplit.supernet import SubSupernet, search_space

__all__ = ["split", "SplitEvent", "SplitRunError", "load_leaf", "candidate_edges"]

FORMAT = "lidsplit.split_run"
VERSION = 1
#: learning rate across stages (module docstring)
LR_SCHEDULES = ("restart", "continued")


class SplitRunError(RuntimeError):
    """A run directory that cannot be used for this call (another run's, or not a split run)."""


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
    from lidsplit.train.loop import _loader_signature

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


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: saved {json.dumps(a)[:100]} != now {json.dumps(b)[:100]}"]


def _partition_json(p: Any) -> dict[str, Any]:
    return {"groups": [list(g) for g in p.groups], "intra": p.intra, "cut": p.cut, "ncut": p.ncut,
            "mean_intra": p.mean_intra, "mean_cut": p.mean_cut, "count": p.count, "num_optimal": p.num_optimal,
            "balanced": p.balanced}


def _history(res: Any) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in res.history]


class _Store:
    """Node weights and checkpoints: in a run directory, or in memory."""

    def __init__(self, run_dir: Path | None) -> None:
        self.dir = run_dir
        self.mem: dict[str, dict[str, torch.Tensor]] = {}

    def path(self, key: str) -> Path | None:
        return None if self.dir is None else self.dir / key

    def node_path(self, node: int, name: str) -> Path | None:
        if self.dir is None:
            return None
        d = self.dir / "nodes" / str(node)
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def has(self, key: str) -> bool:
        return key in self.mem if self.dir is None else (self.dir / key).exists()

    def save(self, key: str, state: dict[str, torch.Tensor]) -> None:
        if self.dir is None:
            self.mem[key] = state
            return

        p = self.dir / key
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(state, p)

    def load(self, key: str) -> dict[str, torch.Tensor]:
        if self.dir is None:
            return self.mem[key]
        return torch.load(self.dir / key, map_location="cpu", weights_only=True)


def load_leaf(model: nn.Module, tree: SplitTree, node_id: int, run_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """Load leaf ``node_id``'s final weights into ``model`` (in place; returned): from ``tree.states`` when
    the run kept them in memory, else from ``run_dir / node.info["weights"]``."""
    states = getattr(tree, "states", None)
    if states and node_id in states:
        model.load_state_dict(states[node_id])
        return model
    rel = tree.node(node_id).info.get("weights")
    if rel is None:
        raise KeyError(f"split tree: node {node_id} has no final weights (not a fine-tuned leaf?)")
    base = Path(run_dir) if run_dir is not None else Path(getattr(tree, "run_dir", "."))
    model.load_state_dict(torch.load(base / rel, map_location="cpu", weights_only=True))
    return model


# ---- the run -------------------------------------------------------------------------------------


def split(
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
) -> SplitTree:
    """Split ``model`` (a supernet; not modified: the run trains a copy) into sub-supernets; returns the
    split tree. See the module docstring for the procedure, resuming and the run directory.

    data: ``DataSplits`` (loaders built with ``batch_size``, seeded), ``DataLoaders`` or a loader
        (its ``train``) for training; scoring batches come from ``score_data`` (default: the training
        data; see :func:`~lidsplit.split.criteria.scoring_set`).
    criterion: a name (``lid``, ``gm``, ``gradnorm``, ``snip``, ``grasp``, ``synflow``, ``jacob_cov``,
        ``ntk``, ``linear_regions``, ``exhaustive``, ``random``) with ``criterion_options``, or a Criterion.
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
    """
    from lidsplit.train import TrainConfig, child_weights, train_subsupernet
    from lidsplit.train._util import model_device, progress_bar

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    crit = make_criterion(criterion, **dict(criterion_options or {}))
    pol = _policy(policy)
    space = search_space(model)
    root_sub = SubSupernet.full(space) if root is None else root
    if not isinstance(root_sub, SubSupernet) or root_sub.space != space:
        raise ValueError("root: expected a SubSupernet of the model's search space")
    warm = [int(warmup_epochs)] if isinstance(warmup_epochs, int) else [int(w) for w in warmup_epochs]
    if not warm or any(w < 0 for w in warm):
        raise ValueError(f"warmup_epochs: expected ints >= 0, got {warmup_epochs!r}")
    if finetune_epochs < 0:
        raise ValueError(f"finetune_epochs: expected >= 0, got {finetune_epochs}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule: expected one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if not isinstance(carry_optimizer, bool):
        raise TypeError(f"carry_optimizer: expected a bool, got {carry_optimizer!r}")
    rule = crit.rule if rule is None else rule
    allowed = ("ordered", "random") if crit.exhaustive else RULES
    if rule not in allowed:
        raise ValueError(f"rule: expected one of {allowed} for criterion {crit.name!r}, got {rule!r}")
    balanced = crit.balanced if balanced is None else bool(balanced)
    R = crit.default_batches if batches is None else int(batches)
    sbs = crit.default_batch_size if score_batch_size is None else int(score_batch_size)
    if train is None:
        cfg = TrainConfig(epochs=0)
    elif isinstance(train, TrainConfig):
        cfg = train
    elif isinstance(train, Mapping):
        cfg = TrainConfig(**{"epochs": 0, **dict(train)})
    else:
        raise TypeError(f"train: expected a TrainConfig or a dict of its fields, got {type(train).__name__}")
    candidate_edges(root_sub, candidates)  # validates the mode

    device = model_device(model)
    work = copy.deepcopy(model)
    init_state = _clone_state(work)
    loaders = _loaders(data, batch_size, seed, device)
    sdata = data if score_data is None else score_data

    identity = {
        "space": space.to_json(),
        "root": [sorted(m) for m in root_sub.masks],
        "model": {"type": type(model).__name__, "weights_sha": _state_sha(init_state)},
        "criterion": to_jsonable(crit.config()),
        "policy": to_jsonable(dataclasses.asdict(pol)),
        "warmup_epochs": warm,
        "finetune_epochs": int(finetune_epochs),
        "restart": bool(restart),
        "train": cfg.to_json() | {"epochs": None, "seed": None},
        "batch_size": int(batch_size),
        "scoring": {"batches": R, "batch_size": sbs,
                    "data": _data_signature(sdata) if score_data is not None else "train"},
        "data": _data_signature(loaders),
        "rule": rule,
        "balanced": balanced,
        "candidates": candidates,
        "seed": seed,
    }
    # non-default schedule settings only, so run directories made before they existed stay valid
    if lr_schedule != "restart":
        identity["lr_schedule"] = lr_schedule
    if carry_optimizer:
        identity["carry_optimizer"] = True

    rd = None if run_dir is None else Path(run_dir)
    store = _Store(rd)
    state: dict[str, Any] = {"format": FORMAT, "version": VERSION, "identity": identity, "status": "running",
                             "timings": {}}
    tree: SplitTree | None = None
    if rd is not None:
        rd.mkdir(parents=True, exist_ok=True)
        sp = rd / "run.json"
        if sp.exists():
            try:
                saved = json.loads(sp.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise SplitRunError(f"{sp} is not a readable split-run state file ({e}); refusing to overwrite it") from e
            if not isinstance(saved, dict) or saved.get("format") != FORMAT:
                raise SplitRunError(f"{sp} is not a lidsplit split-run state file; refusing to overwrite it")
            if saved.get("version") != VERSION:
                raise SplitRunError(f"{sp}: split-run format version {saved.get('version')} is not supported")
            problems = _diff(saved.get("identity"), json.loads(json.dumps(identity)))
            if problems:
                raise SplitRunError(
                    f"{rd} holds a split run with different arguments; refusing to resume or overwrite it. "
                    "Differences:\n  " + "\n  ".join(problems))
            state = saved
            if (rd / "tree.json").exists():
                tree = SplitTree.load(rd / "tree.json")
        elif any(rd.iterdir()):
            raise SplitRunError(f"{rd} is not empty and holds no split run (run.json); pick an empty directory")
        if not store.has("init.pt"):
            store.save("init.pt", init_state)
    if tree is None:
        tree = SplitTree(root_sub, info={"criterion": crit.config(), "seed": seed})
    else:
        if tree.root.sub != root_sub:
            raise SplitRunError(f"{rd}/tree.json does not start from the requested root sub-supernet")

    def save_state() -> None:
        if rd is not None:
            atomic_write_text(rd / "run.json", json.dumps(to_jsonable(state), indent=1))

    def save_tree() -> None:
        if rd is not None:
            tree.save(rd / "tree.json")

    save_state()
    save_tree()

    def emit(kind: str, level: int | None, node: int | None, **info: Any) -> None:
        if callback is not None:
            callback(SplitEvent(kind, level, node, tree, info))

    def start_state(nid: int) -> dict[str, torch.Tensor]:
        parent = tree.nodes[nid].parent
        return init_state if parent is None else store.load(f"nodes/{parent}/trained.pt")

    def start_optimizer(nid: int) -> dict[str, Any] | None:
        parent = tree.nodes[nid].parent
        if not carry_optimizer or parent is None or not store.has(f"nodes/{parent}/optim.pt"):
            return None
        return store.load(f"nodes/{parent}/optim.pt")

    def warm_at(level: int) -> int:
        return warm[min(level, len(warm) - 1)]

    def trained_before(depth: int) -> int:
        return sum(warm_at(j) for j in range(depth))

    depth_planned = len(pol.simulate(_capacity(root_sub, candidates))) - 1
    path_epochs = trained_before(depth_planned) + int(finetune_epochs)

    def segment(level: int, epochs: int, leaf: bool) -> dict[str, int]:
        """TrainConfig schedule fields of a stage at ``level`` (a leaf's fine-tune: ``leaf``)."""
        if lr_schedule == "restart":
            return {}
        start = trained_before(level)
        span = start + epochs if leaf else max(path_epochs, start + epochs)
        return {"schedule_start": start, "schedule_epochs": span}

    def train_stage(nid: int, kind: str, epochs: int, ckpt_name: str, sched: dict[str, int],
                    optim: dict[str, Any] | None) -> tuple[list[dict[str, float]], dict[str, Any] | None]:
        if epochs <= 0:
            return [], optim
        c = dataclasses.replace(cfg, epochs=epochs, seed=derive_seed("lidsplit.split", kind, seed, nid) % (2**31),
                                **sched)
        res = train_subsupernet(work, tree.nodes[nid].sub, loaders, config=c, optimizer_state=optim,
                                checkpoint=store.node_path(nid, ckpt_name), progress=progress)
        return _history(res), res.optimizer_state

    status = progress_bar(None, enabled=progress, desc="split", total=None)
    if state.get("status") != "done":
        # ---- splitting levels ----
        frontier = [0]
        level = 0
        while True:
            caps = [_capacity(tree.nodes[i].sub, candidates) for i in frontier]
            plan = pol.plan(level, len(frontier), caps)
            if plan is None:
                break
            nxt: list[int] = []
            for nid, b in zip(frontier, plan):
                node = tree.nodes[nid]
                if b <= 1:
                    nxt.append(nid)
                    continue
                if not node.children:
                    t0 = time.perf_counter()
                    work.load_state_dict(start_state(nid))
                    ep = warm_at(level)
                    hist, optim = train_stage(nid, "warmup", ep, "warmup.pt", segment(level, ep, leaf=False),
                                              start_optimizer(nid))
                    if carry_optimizer and optim is not None:
                        store.save(f"nodes/{nid}/optim.pt", copy.deepcopy(optim))
                    store.save(f"nodes/{nid}/trained.pt", _clone_state(work))
                    node.info["warmup"] = {"epochs": ep, "history": hist}
                    t1 = time.perf_counter()
                    emit("warmup", level, nid, epochs=ep, history=hist)
                    _split_node(tree, nid, work, crit, sdata, R, sbs, seed, b, rule, balanced, candidates,
                                device, progress, state, t1 - t0)
                    save_tree()
                    save_state()
                    status.set_postfix(node=nid, edge=tree.nodes[nid].edge, refresh=False)
                    status.update(1)
                    emit("split", level, nid, edge=tree.nodes[nid].edge, groups=tree.nodes[nid].groups)
                nxt.extend(tree.nodes[nid].children)
            frontier = nxt
            level += 1

        # ---- leaves ----
        restart_seed = derive_seed("lidsplit.split.restart", seed) % (2**31)
        for leaf in tree.leaves():
            nid = leaf.id
            key = f"nodes/{nid}/final.pt"
            if "weights" in leaf.info and store.has(key):
                continue
            t0 = time.perf_counter()
            work.load_state_dict(start_state(nid))
            if restart:  # fresh weights, fresh optimiser, own cosine
                fresh = child_weights(work, "restart", seed=restart_seed)
                work.load_state_dict(fresh.state_dict())
                del fresh
                sched, optim = {}, None
            else:
                sched, optim = segment(tree.depth(nid), int(finetune_epochs), leaf=True), start_optimizer(nid)
            hist, _ = train_stage(nid, "finetune", int(finetune_epochs), "finetune.pt", sched, optim)
            store.save(key, _clone_state(work))
            leaf.info["finetune"] = {"epochs": int(finetune_epochs), "restart": bool(restart), "history": hist}
            leaf.info["weights"] = key
            state["timings"].setdefault(str(nid), {})["finetune"] = time.perf_counter() - t0
            save_tree()
            save_state()
            status.update(1)
            emit("finetune", None, nid, history=hist)
        state["status"] = "done"
        save_state()
    status.close()
    if rd is None:
        tree.states = {leaf.id: store.mem[f"nodes/{leaf.id}/final.pt"] for leaf in tree.leaves()}  # type: ignore[attr-defined]
    else:
        tree.run_dir = str(rd)  # type: ignore[attr-defined]
    emit("done", None, None)
    return tree


def _split_node(
    tree: SplitTree, nid: int, model: nn.Module, crit: Criterion, data: Any, R: int, bs: int, seed: int, b: int,
    rule: str, balanced: bool, candidates: str, device: torch.device, progress: bool, state: dict[str, Any],
    warm_seconds: float,
) -> None:
    """Score the candidate edges of node ``nid`` on one ScoringSet and split it (records the scores)."""
    node = tree.nodes[nid]
    sub = node.sub
    node_seed = derive_seed("lidsplit.split.node", seed, nid) % (2**62)
    t0 = time.perf_counter()
    scoring: ScoringSet = scoring_set(sub, data, R, batch_size=bs, seed=node_seed, device=device)
    cands = candidate_edges(sub, candidates)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(node_seed % (2**31))
        scores: dict[int, EdgeScore] = crit.score_edges(model if crit.needs_model else None, scoring, cands,
                                                         progress=progress)
    t1 = time.perf_counter()
    # informative edges that can take b groups first; all candidates if none is left
    informative = [e for e in cands if scores[e].informative and len(scores[e].ops) >= (2 if crit.exhaustive else b)]
    informative = informative or list(cands)
    rng = np.random.default_rng(derive_seed("lidsplit.split.rule", node_seed))
    ops = {e: scores[e].ops for e in cands}
    if crit.exhaustive:
        eligible = [e for e in informative if len(ops[e]) >= 2]
        if rule == "random":
            edge = eligible[int(rng.integers(len(eligible)))]
        elif rule == "ordered":
            edge = eligible[0]
        else:
            raise ValueError(f"exhaustive: rule must be 'ordered' or 'random', got {rule!r}")
        part = partition(scores[edge].similarity, len(ops[edge]), balanced=True, ops=ops[edge])
        choice_scores, parts = None, {edge: part}
    else:
        ch = select_edge({e: scores[e].similarity for e in informative}, b, rule, balanced=balanced,
                         seed=rng, ops={e: ops[e] for e in informative})
        edge, part, choice_scores = ch.edge, ch.partition, ch.scores
        parts = dict(ch.partitions) if ch.partitions is not None else {edge: part}
    edges_json: dict[str, Any] = {}
    for e in cands:
        sc = scores[e]
        d = sc.to_json()
        d["separability"] = separability(sc.similarity) if sc.n >= 2 else 0.0
        if e in parts:
            d["partition"] = _partition_json(parts[e])
        if choice_scores is not None and e in choice_scores:
            d["score"] = choice_scores[e]
        edges_json[str(e)] = d
    record = {
        "rule": rule,
        "b": len(part.groups),
        "balanced": part.balanced,
        "edge": edge,
        "label": sub.space.edges[edge].label,
        "partition": _partition_json(part),
        "separability": edges_json[str(edge)]["separability"],
        "candidates": list(cands),
        "informative": list(informative),
        "edges": edges_json,
        "scoring": scoring.describe(),
        "criterion_config": crit.config(),
    }
    tree.split(nid, edge, [list(g) for g in part.groups], criterion=crit.name, scores=record, seed=int(node_seed))
    state["timings"][str(nid)] = {
        "warmup": warm_seconds, "score": t1 - t0, "per_edge": {str(e): scores[e].seconds for e in cands},
        "breakdown": {str(e): scores[e].timings for e in cands},
    }
