"""The run report: the split tree drawn, the leaves' layer-wise LID profiles, the separability of every
candidate edge, the search progress; PNG files and a JSON summary.

Two functions (the command line calls them; usable from Python as well):

- :func:`leaf_lid_profiles` measures, for each leaf of a split tree, the layer-wise LID profile (NAS-LID
  Fig. 1: mean LID of every feature layer's output, ``lidsplit.ops.lid_profile``) of a few architectures
  sampled inside the leaf, with the leaf's weights, on one fixed validation batch shared by all leaves.
- :func:`write_report` writes into a directory::

      tree.png             the split tree: per node the ops kept, size, the split edge and its separability;
                           leaves coloured as in the other plots, with their best validation accuracy
      lid_profiles.png     one curve per leaf over the feature layers, shaded +- std over its archs, the
                           archs themselves as thin lines (NAS-LID Fig. 1)
      separability.png     per split node, the separability (NAS-LID eq. 7) of every candidate edge, the
                           chosen edge highlighted; for a cell space whose edge labels read "i<-j" (NB201)
                           also the cell DAG with each edge annotated (NAS-LID Fig. 4)
      op_lid_profiles.png  per split node, the LID profiles of the chosen edge's one-op sub-supernets,
                           coloured by the group (child) they went to (only when the criterion measured
                           LID profiles, i.e. ``lid``)
      search_progress.png  every evaluation of the search (validation accuracy, coloured by leaf) and the
                           best so far; evaluations per leaf
      summary.json         the numbers behind the plots (module doc of write_report)

Plots need matplotlib (``pip install 'lidsplit[plot]'``); without it only ``summary.json`` is written and
``summary["skipped"]`` says why. Drawing uses matplotlib's object API (``Figure`` + ``FigureCanvasAgg``),
never pyplot's global state, so it is safe in threads and leaves no figure open. Every file is written
atomically (temp file, fsync, ``os.replace``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lidsplit.common.batch import model_device
from lidsplit.common.io import atomic_write, atomic_write_text
from lidsplit.common.progress import progress_bar
from lidsplit.common.seeds import derive_seed
from lidsplit.data.core import DataLoaders, DataSplits, Dataset, TensorLoader
from lidsplit.ops.lid import ESTIMATORS
from lidsplit.search.driver import FORMAT as HISTORY_FORMAT
from lidsplit.search.driver import Record, SearchResult
from lidsplit.search.evaluator import Result
from lidsplit.search.strategies import rank_key
from lidsplit.split.criteria import feature_outputs
from lidsplit.split.criteria import lid_profiles as _lid_profiles
from lidsplit.split.tree import SplitNode, SplitTree, to_jsonable
from lidsplit.supernet import SubSupernet, record_outputs, search_space, use_path
from lidsplit.train.evaluate import preserved_state, recalibrate_bn

__all__ = ["leaf_lid_profiles", "write_report", "PLOTS", "NO_MATPLOTLIB"]

FORMAT = "lidsplit.report"
VERSION = 1

#: The PNG files :func:`write_report` can write, in the order it writes them.
PLOTS = ("tree.png", "lid_profiles.png", "separability.png", "op_lid_profiles.png", "search_progress.png")
#: The reason given in ``summary["skipped"]`` for every plot when matplotlib cannot be imported.
NO_MATPLOTLIB = "matplotlib not installed: pip install 'lidsplit[plot]'"


# ---- LID profiles of the leaves ------------------------------------------------------------------


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    return v


def _fixed_batch(ds: Dataset | tuple[Tensor, Tensor], batch_size: int, seed: int) -> Tensor:
    """The images of the profiled batch: all samples when there are at most ``batch_size``, else a subset
    drawn by a generator seeded from ``seed`` (the same for every leaf and every call)."""
    x = ds.x if isinstance(ds, Dataset) else ds[0]
    n = int(x.shape[0])
    if n <= batch_size:
        return x
    g = torch.Generator().manual_seed(derive_seed("lidsplit.report.batch", seed))
    idx = torch.randperm(n, generator=g)[:batch_size]
    return x[idx.to(x.device)]


def _profile_data(data: Any, batch_size: int, seed: int) -> tuple[Tensor, Any]:
    """``(x, calibration loader)`` of :func:`leaf_lid_profiles` (its docstring says which)."""
    if isinstance(data, DataSplits):
        calib = TensorLoader(data.train, batch_size, shuffle=True, seed=derive_seed("lidsplit.report.calib", seed))
        return _fixed_batch(data.val, batch_size, seed), calib
    if isinstance(data, DataLoaders):
        return _fixed_batch(data.val.dataset, batch_size, seed), data.train
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        if x.dim() < 2 or not x.is_floating_point():
            raise ValueError(f"data: x must be a floating-point tensor (N, ...) with at least 2 dimensions, got "
                             f"{x.dtype} {tuple(x.shape)}")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"data: y must be a 1-D tensor of {x.shape[0]} labels (one per image), got "
                             f"{y.dtype} {tuple(y.shape)} on {y.device}")
        calib = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, int(x.shape[0]), batch_size)]
        return _fixed_batch((x, y), batch_size, seed), calib
    raise TypeError(f"data: expected a DataSplits, a DataLoaders or an (x, y) tensor pair, got {type(data).__name__}")


def _leaf_archs(sub: SubSupernet, count: int, seed: int, leaf: int) -> list[tuple[int, ...]]:
    """``count`` distinct architectures of ``sub`` drawn uniformly (seeded per leaf), in draw order; every
    architecture (index order) when ``sub`` holds at most ``count``."""
    if sub.size <= count:
        return list(sub.archs())
    g = torch.Generator().manual_seed(derive_seed("lidsplit.report.archs", seed, leaf))
    out: list[tuple[int, ...]] = []
    while len(out) < count:  # terminates: sub holds more than `count` archs
        a = sub.sample(g)
        if a not in out:
            out.append(a)
    return out


def _layer_names(model: nn.Module, layers: Sequence[nn.Module]) -> list[str]:
    names = {id(m): n for n, m in model.named_modules()}
    return [names.get(id(m), f"layer{i}") or type(m).__name__ for i, m in enumerate(layers)]


def leaf_lid_profiles(
    tree: SplitTree,
    load_leaf: Callable[[int], nn.Module],
    data: Any,
    *,
    archs_per_leaf: int = 4,
    batch_size: int = 256,
    k: int = 20,
    seed: int = 0,
    progress: bool = True,
    recalibrate: bool = True,
    calib_batches: int = 10,
    estimator: str = "mle",
) -> dict[str, Any]:
    """Layer-wise LID profile of each leaf of ``tree`` (NAS-LID Fig. 1, one curve per leaf).

    For every leaf (tree order) ``load_leaf(leaf_id)`` gives the supernet with the leaf's weights (called
    once per leaf); ``archs_per_leaf`` distinct architectures are drawn uniformly inside the leaf (seeded
    from ``seed`` and the leaf id; all of them when the leaf holds fewer). Each runs as a single path on
    one fixed batch ``x`` of ``n`` images, the same for every leaf, and the outputs of
    ``model.feature_layers()`` (L layers) are recorded; their mean LID (``k`` neighbours, ``estimator``;
    :func:`lidsplit.split.criteria.lid_profiles`, so a layer whose outputs are all equal, e.g. a cell
    reached only through ``none`` ops, gets LID 0 and is counted in ``degenerate``) gives the
    architecture's profile ``(L,)``; the leaf's ``mean`` / ``std`` (population) are over its archs.

    Model state: as :func:`lidsplit.train.evaluate_arch` (what the search scores with), BatchNorm
    statistics are recalibrated for each architecture on ``calib_batches`` training batches
    (``recalibrate=False``: the leaf's stored running statistics) and the forward runs in eval mode.
    The model's state is restored afterwards.

    data: where ``x`` and the calibration batches come from:

    - ``DataSplits``: ``x`` = ``batch_size`` images of ``val`` (a seeded subset; all of ``val`` when it
      is smaller); calibration: ``train`` in batches of ``batch_size``, shuffled with a seed from ``seed``.
    - ``DataLoaders``: ``x`` from ``val.dataset`` as above; calibration: the ``train`` loader as given
      (the first ``calib_batches`` batches of its epoch 0, as ``evaluate_arch``).
    - an ``(x, y)`` tensor pair ``(N, ...)``, ``(N,)``: ``x`` = ``batch_size`` of its images as above;
      calibration: the pair itself in batches of ``batch_size`` (no other data is known).

    Returns JSON values::

        {"layers": [L feature-layer names], "k": k, "batch": n, "estimator": ..., "seed": seed,
         "bn": "recalibrated" | "running", "archs_per_leaf": ...,
         "leaves": {"<leaf id>": {"archs": [[op index per edge], ...], "arch_names": [[op names], ...],
                                  "profiles": [[L floats] per arch], "mean": [L floats], "std": [L floats],
                                  "degenerate": number of layer outputs given LID 0}}}
    """
    if not isinstance(tree, SplitTree):
        raise TypeError(f"tree: expected a SplitTree, got {type(tree).__name__}")
    if not callable(load_leaf):
        raise TypeError(f"load_leaf: expected a callable leaf id -> nn.Module, got {type(load_leaf).__name__}")
    _check_int("archs_per_leaf", archs_per_leaf, 1)
    _check_int("batch_size", batch_size, 2)
    _check_int("k", k, 1)
    _check_int("calib_batches", calib_batches, 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    if estimator not in ESTIMATORS:  # checked here: lid_profiles reads a refused matrix as degenerate (LID 0)
        raise ValueError(f"estimator: expected one of {list(ESTIMATORS)}, got {estimator!r}")
    x_cpu, calib = _profile_data(data, batch_size, seed)
    n = int(x_cpu.shape[0])
    if n <= k:
        raise ValueError(f"leaf_lid_profiles: the profiled batch holds {n} images (batch_size={batch_size}, "
                         f"validation data of {n if n < batch_size else 'more'} samples) but LID with k={k} "
                         f"neighbours needs more than {k}: lower k or give more validation data")

    leaves = tree.leaves()
    plans = [(leaf, _leaf_archs(leaf.sub, archs_per_leaf, seed, leaf.id)) for leaf in leaves]
    bar = progress_bar(None, enabled=progress, desc="leaf LID", total=sum(len(a) for _, a in plans))
    names: list[str] | None = None
    out: dict[str, Any] = {}
    try:
        for leaf, archs in plans:
            model = load_leaf(leaf.id)
            if not isinstance(model, nn.Module):
                raise TypeError(f"load_leaf({leaf.id}) returned a {type(model).__name__}, expected an nn.Module")
            if search_space(model) != tree.space:
                raise ValueError(f"load_leaf({leaf.id}): the model's search space differs from the tree's "
                                 f"({search_space(model).num_edges} vs {tree.space.num_edges} edges, or other ops)")
            feature_layers = getattr(model, "feature_layers", None)
            if not callable(feature_layers):
                raise TypeError(f"load_leaf({leaf.id}): {type(model).__name__} has no feature_layers()")
            layers = list(feature_layers())
            if not layers:
                raise ValueError(f"load_leaf({leaf.id}): feature_layers() is empty")
            these = _layer_names(model, layers)
            if names is None:
                names = these
            elif these != names:
                raise ValueError(f"load_leaf({leaf.id}): feature layers {these} differ from the first leaf's {names}")
            x = x_cpu.to(model_device(model))
            profs, bad = [], 0
            for arch in archs:
                with preserved_state(model):
                    if recalibrate:
                        recalibrate_bn(model, arch, calib, calib_batches)
                    model.eval()
                    with torch.no_grad(), use_path(model, arch), record_outputs(layers) as rec:
                        model(x)
                    feats = feature_outputs(rec, len(layers), "leaf_lid_profiles")
                p, nb = _lid_profiles([feats], k, estimator)
                del feats
                profs.append(p[0])
                bad += nb
                bar.update(1)
            a = np.stack(profs)
            out[str(leaf.id)] = {
                "archs": [list(t) for t in archs],
                "arch_names": [list(tree.space.names(t)) for t in archs],
                "profiles": a.tolist(),
                "mean": a.mean(0).tolist(),
                "std": a.std(0).tolist(),
                "degenerate": int(bad),
            }
    finally:
        bar.close()
    return {"layers": names, "k": k, "batch": n, "estimator": estimator, "seed": seed,
            "bn": "recalibrated" if recalibrate else "running", "archs_per_leaf": archs_per_leaf, "leaves": out}


# ---- inputs of the report ------------------------------------------------------------------------


def _check_profiles(p: Any, tree: SplitTree) -> dict[str, Any]:
    """``p`` (a :func:`leaf_lid_profiles` result) as JSON values, checked against ``tree``."""
    if not isinstance(p, Mapping) or not isinstance(p.get("leaves"), Mapping) or "layers" not in p:
        raise ValueError("lid_profiles: expected the dict returned by leaf_lid_profiles (keys 'layers', 'leaves', ...)")
    p = to_jsonable(dict(p))
    layers = p["layers"]
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"lid_profiles: 'layers' must be a non-empty list of names, got {layers!r}")
    leaf_ids = {str(i) for i in tree.leaf_ids()}
    for key, d in p["leaves"].items():
        if key not in leaf_ids:
            raise ValueError(f"lid_profiles: leaf {key} is not a leaf of the tree (leaves {sorted(leaf_ids, key=int)}); "
                             "were the profiles measured on another tree?")
        for f in ("mean", "std"):
            v = d.get(f) if isinstance(d, Mapping) else None
            if not isinstance(v, list) or len(v) != len(layers):
                raise ValueError(f"lid_profiles: leaf {key}'s {f!r} must be a list of {len(layers)} numbers "
                                 f"(one per layer), got {v!r}")
    return p


def _search_records(search: Any) -> tuple[list[Record], list[float | None] | None, bool]:
    """``(records, oracle values or None, finished)`` from a SearchResult, a history dict or its path."""
    if isinstance(search, SearchResult):
        return list(search.records), search.oracle, bool(search.finished)
    if isinstance(search, (str, os.PathLike)):
        path = Path(search)
        if not path.is_file():
            raise FileNotFoundError(f"search: history file {path} does not exist")
        try:
            search = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"search: {path} is not JSON ({e})") from None
    if isinstance(search, Mapping):
        if search.get("format") != HISTORY_FORMAT:
            raise ValueError(f"search: not a lidsplit search history (expected format {HISTORY_FORMAT!r}, got "
                             f"{search.get('format')!r})")
        records = [Record.from_json(r) for r in search.get("records") or []]
        oracle = search.get("oracle")
        if oracle is not None and (not isinstance(oracle, list) or len(oracle) != len(records)):
            raise ValueError(f"search: the history's 'oracle' must be a list of {len(records)} values or null")
        return records, oracle, bool(search.get("finished", False))
    raise TypeError(f"search: expected a SearchResult, a search history dict or its JSON path, got "
                    f"{type(search).__name__}")


# ---- summary ---------------------------------------------------------------------------------------


def _masks(tree: SplitTree, node: SplitNode) -> dict[str, list[str]]:
    return {e.label: [e.ops[i] for i in sorted(m)] for e, m in zip(tree.space.edges, node.sub.masks)}


def _restricted(tree: SplitTree, node: SplitNode) -> dict[str, list[str]]:
    return {e.label: [e.ops[i] for i in sorted(m)] for e, m in zip(tree.space.edges, node.sub.masks)
            if len(m) != e.num_ops}


def _edge_scores(node: SplitNode) -> dict[int, Mapping[str, Any]]:
    """The node's recorded per-candidate-edge scores (``scores["edges"]``), keyed by edge index."""
    edges = node.scores.get("edges") if isinstance(node.scores, Mapping) else None
    if not isinstance(edges, Mapping):
        return {}
    out = {}
    for key, d in edges.items():
        try:
            out[int(key)] = d
        except (TypeError, ValueError):
            continue
    return dict(sorted(out.items()))


def _measured(d: Mapping[str, Any]) -> bool:
    """Whether an edge's similarity came from measurements (exhaustive / random record 0 batches)."""
    return int(d.get("batches", 0) or 0) > 0


def _tree_summary(tree: SplitTree) -> dict[str, Any]:
    space = tree.space
    leaves = []
    for leaf in tree.leaves():
        leaves.append({"id": leaf.id, "size": leaf.size, "depth": tree.depth(leaf.id), "path": tree.path(leaf.id),
                       "masks": _masks(tree, leaf), "restricted": _restricted(tree, leaf),
                       "describe": tree.describe(leaf.id), "weights": leaf.info.get("weights")})
    splits = []
    for node in tree.nodes:
        if not node.children:
            continue
        e = space.edges[node.edge]  # type: ignore[index]
        es = _edge_scores(node)
        splits.append({
            "node": node.id, "depth": tree.depth(node.id), "size": node.size, "edge": node.edge, "label": e.label,
            "criterion": node.criterion, "rule": node.scores.get("rule"), "children": list(node.children),
            "groups": [[e.ops[i] for i in g] for g in node.groups],  # type: ignore[union-attr]
            "separability": node.scores.get("separability"),
            "separabilities": {space.edges[i].label: d.get("separability") for i, d in es.items()},
            "informative": [space.edges[i].label for i, d in es.items() if d.get("informative", True)],
            "measured": any(_measured(d) for d in es.values()) if es else None,
            "partition": node.scores.get("partition"),
        })
    crits = sorted({n.criterion for n in tree.nodes if n.criterion is not None})
    return {
        "space": {"edges": [e.label for e in space.edges], "ops": [list(e.ops) for e in space.edges],
                  "size": space.size},
        "nodes": len(tree), "num_leaves": len(leaves),
        "criterion": crits[0] if len(crits) == 1 else (crits or None),
        "leaves": leaves, "splits": splits, "text": tree.render(),
    }


def _record_json(tree: SplitTree, r: Record) -> dict[str, Any]:
    return {"arch": list(r.arch), "arch_names": list(tree.space.names(r.arch)), "acc": r.acc, "loss": r.loss,
            "leaf": r.leaf, "n": r.n}


def _search_summary(tree: SplitTree, records: list[Record], oracle: list[float | None] | None,
                    finished: bool) -> dict[str, Any]:
    for r in records:
        if len(r.arch) != tree.space.num_edges:
            raise ValueError(f"search: record arch {list(r.arch)} has {len(r.arch)} edges, the tree's space "
                             f"{tree.space.num_edges}; is the history from another space?")
    res = SearchResult(records, oracle, finished)
    best = res.best
    order = {leaf: k for k, leaf in enumerate(tree.leaf_ids())}
    picks = sorted(res.picks().items(), key=lambda t: order.get(t[0], len(order)))  # type: ignore[arg-type]
    per_leaf: dict[str, int] = {}
    for r in records:
        if not r.reused:
            per_leaf[str(r.leaf)] = per_leaf.get(str(r.leaf), 0) + 1
    return {
        "records": len(records), "evaluations": res.evaluations, "finished": finished,
        "best": None if best is None else _record_json(tree, best) | {"oracle": res.oracle_of(best)},
        "best_per_leaf": {str(leaf): _record_json(tree, r) | {"oracle": res.oracle_of(r)}
                          for leaf, r in picks},
        "evaluations_per_leaf": per_leaf,
    }


# ---- plotting ----------------------------------------------------------------------------------------


class _Skip(Exception):
    """A plot whose input is missing (the message is the reason listed in ``summary["skipped"]``)."""


def _mpl() -> tuple[Any, Any] | None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def _leaf_colours(tree: SplitTree) -> dict[int, Any]:
    from matplotlib import colormaps

    ids = tree.leaf_ids()
    cmap = colormaps["tab10" if len(ids) <= 10 else "tab20"]
    return {i: cmap(k % cmap.N) for k, i in enumerate(ids)}


def _short(name: str) -> str:
    """Compact op names for legends (NB201: nor_conv_3x3 -> conv3x3, skip_connect -> skip, ...)."""
    return (name.replace("nor_conv_", "conv").replace("skip_connect", "skip").replace("avg_pool_", "avgpool")
            .replace("max_pool_", "maxpool").replace("sep_conv_", "sep").replace("dil_conv_", "dil"))


def _size(n: int) -> str:
    """An architecture count, exact up to a million (DARTS-sized spaces in scientific notation)."""
    return str(n) if n < 10**6 else f"{float(n):.3g}"


def _leaf_label(tree: SplitTree, leaf_id: int) -> str:
    node = tree.node(leaf_id)
    kept = ", ".join(f"{lab}={{{','.join(_short(o) for o in ops)}}}" for lab, ops in _restricted(tree, node).items())
    return f"[{leaf_id}] {_size(node.size)} archs" + (f": {kept}" if kept else "")


def _wrap_ops(ops: Sequence[str], width: int = 30) -> list[str]:
    """``{a,b,c}`` split over lines of at most about ``width`` characters."""
    lines, cur = [], ""
    for k, o in enumerate(ops):
        piece = o + ("," if k < len(ops) - 1 else "")
        if cur and len(cur) + len(piece) > width:
            lines.append(cur)
            cur = ""
        cur += piece
    lines.append(cur)
    lines[0] = "{" + lines[0]
    lines[-1] += "}"
    return lines


def _tree_fig(Figure: Any, tree: SplitTree, picks: Mapping[str, Mapping[str, Any]] | None) -> Any:
    """The split tree, top down; each box: id, the ops kept on the edge its parent split, size; leaves
    filled with their colour in the other plots (and their best validation accuracy when searched)."""
    xs, depth = tree.layout()
    max_d = max(depth.values())
    labels: dict[int, list[str]] = {}
    for n in tree.nodes:
        if n.parent is None:
            lines = [f"[{n.id}] root"]
        else:
            p = tree.nodes[n.parent]
            e = tree.space.edges[p.edge]  # type: ignore[index]
            ops = [_short(e.ops[a]) for a in n.sub.enabled(p.edge)]  # type: ignore[arg-type]
            lines = [f"[{n.id}] {e.label}", *_wrap_ops(ops)]
        lines.append(f"{_size(n.size)} archs")
        if n.children:
            measured = any(_measured(d) for d in _edge_scores(n).values())
            sep = n.scores.get("separability") if measured else None
            lines.append(f"split {tree.space.edges[n.edge].label}"  # type: ignore[index]
                         + (f", D={_fmt(float(sep))}" if isinstance(sep, (int, float)) else ""))
        elif picks and str(n.id) in picks:
            lines.append(f"best val acc {picks[str(n.id)]['acc']:.4f}")
        labels[n.id] = lines
    chars = max(len(line) for lines in labels.values() for line in lines)
    nlines = max(len(lines) for lines in labels.values())
    nleaves = len(tree.leaf_ids())
    fig = Figure(figsize=(max(4.0, (0.075 * chars + 0.5) * nleaves), max(2.4, (0.22 * nlines + 0.7) * (max_d + 1))))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    colours = _leaf_colours(tree)
    for n in tree.nodes:
        for c in n.children:
            ax.plot([xs[n.id], xs[c]], [-depth[n.id], -depth[c]], color="0.55", lw=1.2, zorder=1)
    for n in tree.nodes:
        fc, ec = ("white", "0.3")
        if n.is_leaf:  # the leaf's colour, lightened but opaque (the edges end under the box)
            rgb = np.asarray(colours[n.id][:3])
            fc, ec = tuple(0.8 + 0.2 * rgb), tuple(rgb)
        ax.text(xs[n.id], -depth[n.id], "\n".join(labels[n.id]), ha="center", va="center", fontsize=8, zorder=2,
                bbox={"boxstyle": "round,pad=0.4", "fc": fc, "ec": ec, "lw": 1.6 if n.is_leaf else 1.0})
    ax.set_xlim(-0.6, nleaves - 0.4)
    ax.set_ylim(-max_d - 0.55, 0.55)
    crits = sorted({str(n.criterion) for n in tree.nodes if n.criterion})
    ax.set_title(f"Split tree ({', '.join(crits)}): {nleaves} leaves of a {_size(tree.space.size)}-arch space"
                 if crits else f"Split tree: {_size(tree.space.size)} archs, not split", fontsize=10)
    fig.tight_layout()
    return fig


def _lid_profiles_fig(Figure: Any, tree: SplitTree, profiles: Mapping[str, Any] | None) -> Any:
    if profiles is None:
        raise _Skip("no LID profiles given (lid_profiles=None; see leaf_lid_profiles)")
    leaves = sorted((int(k) for k in profiles["leaves"]), key=tree.leaf_ids().index)
    if not leaves:
        raise _Skip("the LID profiles hold no leaf")
    layers = list(profiles["layers"])
    L = len(layers)
    colours = _leaf_colours(tree)
    labels = {i: _leaf_label(tree, i) for i in leaves}
    chars = max(len(v) for v in labels.values())
    # the legend gets its own row under the plot (one line per leaf): long leaf labels never hide it
    leg_h = 0.2 * len(leaves) + 0.2
    fig = Figure(figsize=(max(6.0, 0.7 * L + 3.0, 0.066 * chars + 1.0), 4.6 + leg_h))
    gs = fig.add_gridspec(2, 1, height_ratios=[4.6, leg_h])
    ax = fig.add_subplot(gs[0, 0])
    xs = np.arange(1, L + 1)
    band = 0.18 if len(leaves) <= 4 else 0.1
    handles = []
    for lid in leaves:
        d, c = profiles["leaves"][str(lid)], colours[lid]
        for prof in d.get("profiles") or []:
            ax.plot(xs, prof, color=c, lw=0.7, alpha=0.35, zorder=1)
        mean, std = np.asarray(d["mean"], float), np.asarray(d["std"], float)
        ax.fill_between(xs, mean - std, mean + std, color=c, alpha=band, lw=0, zorder=2)
        handles.append(ax.plot(xs, mean, color=c, lw=2.2, marker="o", ms=4, zorder=3)[0])
    ax.set_xticks(xs)
    tilt = L > 6 or max(len(s) for s in layers) > 10
    ax.set_xticklabels(layers, rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    ax.set_xlim(0.7, L + 0.3)
    ax.set_xlabel("feature layer (input -> output)")
    ax.set_ylabel("LID (MLE)")
    ax.grid(alpha=0.3)
    per, bn = profiles.get("archs_per_leaf"), profiles.get("bn")
    ax.set_title(f"Layer-wise LID of the leaves: mean ± std over {per or '?'} sampled archs per leaf "
                 f"(thin lines)\nk={profiles.get('k')}, {profiles.get('batch')} validation images"
                 + (f", BN {bn}" if bn else ""), fontsize=10)
    lax = fig.add_subplot(gs[1, 0])
    lax.set_axis_off()
    lax.legend(handles, [labels[i] for i in leaves], loc="upper center", fontsize=8, frameon=False, ncol=1)
    fig.tight_layout()
    return fig


_DAG_LABEL = re.compile(r"^(\d+)\s*<-\s*(\d+)$")


def _dag_edges(tree: SplitTree) -> dict[int, tuple[int, int]] | None:
    """Edge index -> (to, from) when every edge label of the space reads "i<-j" (one cell, e.g. NB201) and
    the cell is small enough to draw legibly; else None."""
    out = {}
    for i, e in enumerate(tree.space.edges):
        m = _DAG_LABEL.match(e.label)
        if m is None:
            return None
        out[i] = (int(m.group(1)), int(m.group(2)))
    return out if len(out) <= 10 else None


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.2e}"


def _draw_dag(ax: Any, tree: SplitTree, node: SplitNode, dag: dict[int, tuple[int, int]],
              es: Mapping[int, Mapping[str, Any]]) -> None:
    """The cell as NAS-LID Fig. 4 draws it: nodes on a line, an arc per edge annotated with its
    separability; the chosen edge red; edges that are not candidates here (split above) dashed grey."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import FancyArrowPatch

    vals = {i: float(d.get("separability", math.nan)) for i, d in es.items()}
    finite = [v for v in vals.values() if math.isfinite(v)]
    pos_vals = [v for v in finite if v > 0]
    if pos_vals and len(pos_vals) == len(finite) and max(pos_vals) / min(pos_vals) > 100:
        norm: Any = LogNorm(min(pos_vals), max(pos_vals))
    else:
        norm = Normalize(min(finite, default=0.0), max(finite, default=1.0) if finite else 1.0)
    viridis = colormaps["viridis"]

    def cmap(v: float) -> Any:  # viridis without its pale yellow end, which vanishes on white
        return viridis(0.85 * v)

    cell_nodes = sorted({a for t in dag.values() for a in t})
    for j in cell_nodes:
        ax.scatter([j], [0], s=420, color="white", edgecolors="0.2", zorder=4)
        ax.text(j, 0, str(j), ha="center", va="center", fontsize=10, zorder=5)
    for i, (to, frm) in dag.items():
        span = to - frm
        # span-1 edges straight; even spans arc above the line, odd ones below, so labels do not collide
        rad = 0.0 if span == 1 else -0.6 if span % 2 == 0 else 0.45
        v = vals.get(i)
        chosen = i == node.edge
        if v is None:
            colour, lw, ls = "0.7", 1.0, "--"
        else:
            colour = "tab:red" if chosen else cmap(norm(v)) if math.isfinite(v) else "0.5"
            lw, ls = (3.0 if chosen else 2.0), "-"
        ax.add_patch(FancyArrowPatch((frm, 0), (to, 0), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=12, lw=lw, ls=ls, color=colour, shrinkA=11, shrinkB=11, zorder=2))
        # midpoint of the quadratic Bezier arc3 draws: half-way to its control point
        mx, my = (frm + to) / 2, -0.5 * rad * span
        text = ("split above" if v is None else _fmt(v))
        ax.text(mx, my - (0.2 if span == 1 else 0.0), f"{tree.space.edges[i].label}\n{text}", ha="center",
                va="center", fontsize=7, color="tab:red" if chosen else "0.1", zorder=6,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    lo, hi = min(cell_nodes), max(cell_nodes)
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.set_ylim(-0.25 * (hi - lo) - 0.4, 0.3 * (hi - lo) + 0.35)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title("cell DAG: separability per edge", fontsize=9)


def _separability_fig(Figure: Any, tree: SplitTree, notes: list[str]) -> Any:
    split_nodes = [n for n in tree.nodes if n.children]
    if not split_nodes:
        raise _Skip("the tree has no split node")
    rows = []
    for n in split_nodes:
        es = _edge_scores(n)
        if not es or not any("separability" in d for d in es.values()):
            notes.append(f"node {n.id}: no per-edge separability recorded")
        elif not any(_measured(d) for d in es.values()):
            notes.append(f"node {n.id} (criterion {n.criterion!r}): no measurement behind its similarities, "
                         "separability not shown")
        else:
            rows.append((n, es))
    if not rows:
        raise _Skip("no split node has measured separabilities: " + "; ".join(notes))
    dag = _dag_edges(tree)
    ncand = max(len(es) for _, es in rows)
    bar_w = max(4.5, 0.55 * ncand + 1.5)
    dag_w = 4.2 if dag else 0.0
    fig = Figure(figsize=(bar_w + dag_w, 3.0 * len(rows) + 0.6))
    gs = fig.add_gridspec(len(rows), 2 if dag else 1, width_ratios=[bar_w, dag_w] if dag else None)
    space = tree.space
    for r, (node, es) in enumerate(rows):
        ax = fig.add_subplot(gs[r, 0])
        idx = list(es)
        vals = np.array([float(es[i].get("separability", math.nan)) for i in idx])
        finite = vals[np.isfinite(vals)]
        log = finite.size > 0 and (finite > 0).all() and finite.max() / finite.min() > 100
        colours = []
        for i in idx:
            d = es[i]
            if i == node.edge:
                colours.append("tab:red")
            elif not d.get("informative", True):
                colours.append("0.75")
            else:
                colours.append("tab:blue")
        xs = np.arange(len(idx))
        bars = ax.bar(xs, np.where(np.isfinite(vals), vals, 0.0), color=colours, edgecolor="0.2", lw=0.6)
        for i, b in zip(idx, bars):
            if not es[i].get("informative", True):
                b.set_hatch("//")
        for x, v in zip(xs, vals):
            ax.text(x, v if math.isfinite(v) and v > 0 else (1.0 if log else 0.0), _fmt(v), ha="center",
                    va="bottom", fontsize=7)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(finite.min() / 3, finite.max() * 8)
        else:
            top = float(finite.max()) if finite.size else 1.0
            ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)
        ax.set_xticks(xs)
        ax.set_xticklabels([space.edges[i].label for i in idx], rotation=30 if len(idx) > 8 else 0,
                           ha="right" if len(idx) > 8 else "center", fontsize=8)
        ax.set_ylabel("separability D" + (" (log)" if log else ""), fontsize=9)
        e = space.edges[node.edge]  # type: ignore[index]
        groups = " | ".join(",".join(_short(e.ops[i]) for i in g) for g in node.groups)  # type: ignore[union-attr]
        kinds = sorted({str(d.get("criterion", node.criterion)) for d in es.values()})
        random_note = " (random similarity)" if node.criterion == "random" else ""
        ax.set_title(f"node [{node.id}] ({_size(node.size)} archs, {', '.join(kinds)}{random_note}): split {e.label} "
                     f"into {{{groups}}}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if r == 0:
            from matplotlib.patches import Patch

            handles = [Patch(fc="tab:red", ec="0.2", label="chosen edge"), Patch(fc="tab:blue", ec="0.2",
                       label="candidate")]
            if any(not d.get("informative", True) for d in es.values()):
                handles.append(Patch(fc="0.75", ec="0.2", hatch="//", label="uninformative"))
            ax.legend(handles=handles, fontsize=7, loc="upper left", framealpha=0.8)
        if dag:
            _draw_dag(fig.add_subplot(gs[r, 1]), tree, node, dag, es)
    fig.suptitle("Separability of the candidate edges per split node (NAS-LID eq. 7; higher: easier to split)",
                 fontsize=10)
    _tight_under_suptitle(fig)
    return fig


def _op_lid_fig(Figure: Any, tree: SplitTree, layers: Sequence[str] | None) -> Any:
    rows = []
    for n in tree.nodes:
        if not n.children:
            continue
        d = _edge_scores(n).get(n.edge)  # type: ignore[arg-type]
        lid = ((d or {}).get("measurements") or {}).get("lid")
        if lid is not None and np.asarray(lid, dtype=float).ndim == 2:
            rows.append((n, d, np.asarray(lid, dtype=float)))
    if not rows:
        crit = sorted({str(n.criterion) for n in tree.nodes if n.children}) or ["none"]
        raise _Skip(f"no split node recorded per-op LID profiles (criterion {', '.join(crit)}; only 'lid' measures them)")
    ncols = min(3, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    L = max(a.shape[1] for _, _, a in rows)
    fig = Figure(figsize=(max(4.8, 0.45 * L + 3.0) * ncols, 3.9 * nrows + 0.5))
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    for r, (node, d, lid) in enumerate(rows):
        ax = fig.add_subplot(nrows, ncols, r + 1)
        ops = list(d.get("ops") or range(lid.shape[0]))
        names = list(d.get("op_names") or [str(o) for o in ops])
        xs = np.arange(1, lid.shape[1] + 1)
        for g, (grp, child) in enumerate(zip(node.groups, node.children)):  # type: ignore[arg-type]
            for m, op in enumerate(grp):
                if op not in ops:
                    continue
                row = ops.index(op)
                ax.plot(xs, lid[row], color=cmap(g % 10), ls=styles[m % 4], marker=markers[m % 7], ms=4, lw=1.6,
                        label=f"{_short(names[row])} -> [{child}]")
        ax.set_xticks(xs)
        if layers is not None and len(layers) == lid.shape[1]:
            ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=7)
        else:
            ax.set_xlabel("feature layer", fontsize=8)
        ax.set_ylabel("LID (MLE)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="op -> child", title_fontsize=7, framealpha=0.8)
        nb = d.get("batches")
        ax.set_title(f"node [{node.id}]: edge {d.get('label')} ({nb} batch{'' if nb == 1 else 'es'})", fontsize=9)
    fig.suptitle("LID profiles of the chosen edge's one-op sub-supernets (colour: the group / child it went to)",
                 fontsize=10)
    _tight_under_suptitle(fig)
    return fig


def _search_fig(Figure: Any, tree: SplitTree, records: list[Record] | None,
                oracle: list[float | None] | None) -> Any:
    if records is None:
        raise _Skip("no search given (search=None)")
    evals = [(r, None if oracle is None else oracle[k]) for k, r in enumerate(records) if not r.reused]
    if not evals:
        raise _Skip("the search history holds no evaluation")
    colours = _leaf_colours(tree)
    fig = Figure(figsize=(10.0, 5.2))
    gs = fig.add_gridspec(1, 2, width_ratios=[3.2, 1.0])
    ax = fig.add_subplot(gs[0, 0])
    xs = np.arange(1, len(evals) + 1)
    best, best_x, curve, curve_oracle = None, 0, [], []
    for x, (r, o) in zip(xs, evals):
        if best is None or rank_key(Result(r.acc, r.loss)) > rank_key(Result(best[0].acc, best[0].loss)):
            best, best_x = (r, o), int(x)
        curve.append(best[0].acc)
        curve_oracle.append(math.nan if best[1] is None else best[1])
    leaves_seen = []
    for leaf in [*tree.leaf_ids(), None]:
        sel = [(x, r.acc) for x, (r, _) in zip(xs, evals) if r.leaf == leaf]
        if not sel:
            continue
        leaves_seen.append(leaf)
        px, py = zip(*sel)
        ax.scatter(px, py, s=14, color=colours.get(leaf, "0.5") if leaf is not None else "0.5", alpha=0.75,
                   edgecolors="none", label=f"leaf [{leaf}]" if leaf is not None else "no leaf", zorder=2)
    others = [(x, r.acc) for x, (r, _) in zip(xs, evals) if r.leaf is not None and r.leaf not in tree.leaf_ids()]
    if others:
        px, py = zip(*others)
        ax.scatter(px, py, s=14, color="0.5", marker="x", label="leaf not in the tree", zorder=2)
    ax.step(xs, curve, where="post", color="black", lw=1.8, label="best so far (val acc)", zorder=3)
    if any(math.isfinite(v) for v in curve_oracle):
        ax.step(xs, curve_oracle, where="post", color="tab:purple", lw=1.3, ls="--",
                label="oracle acc of best so far (not used by the search)", zorder=3)
    if best is not None and math.isfinite(best[0].acc):
        ax.scatter([best_x], [best[0].acc], marker="*", s=180, color="gold", edgecolors="black", zorder=4,
                   label=f"best: {best[0].acc:.4f} (leaf [{best[0].leaf}])")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("validation accuracy (leaf weights)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    ax.set_title(f"Search progress: {len(evals)} evaluations", fontsize=10)
    # evaluations per leaf
    ax2 = fig.add_subplot(gs[0, 1])
    counts = [sum(r.leaf == leaf for r, _ in evals) for leaf in tree.leaf_ids()]
    ys = np.arange(len(counts))
    ax2.barh(ys, counts, color=[colours[i] for i in tree.leaf_ids()], edgecolor="0.2", lw=0.6)
    ax2.set_yticks(ys)
    ax2.set_yticklabels([f"[{i}] {_size(tree.node(i).size)}" for i in tree.leaf_ids()], fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("evaluations")
    ax2.set_title("per leaf ([id] archs)", fontsize=9)
    ax2.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _tight_under_suptitle(fig: Any) -> None:
    """tight_layout leaving 0.45 in at the top for the suptitle (it ignores suptitles otherwise)."""
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / fig.get_figheight()))


def _save_fig(fig: Any, FigureCanvasAgg: Any, path: Path, dpi: int) -> None:
    FigureCanvasAgg(fig)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi), binary=True)


# ---- the report ------------------------------------------------------------------------------------


def write_report(
    out_dir: str | os.PathLike[str],
    tree: SplitTree,
    *,
    lid_profiles: Mapping[str, Any] | None = None,
    search: SearchResult | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    final: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    dpi: int = 120,
    plots: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write the report of a run into ``out_dir`` (created): the PNG files of the module doc and
    ``summary.json``; returns the summary.

    lid_profiles: the result of :func:`leaf_lid_profiles` (its leaves must be leaves of ``tree``).
    search: a ``SearchResult``, a loaded search-history dict or the history's JSON path
        (``lidsplit.search.driver`` format).
    final: the chosen architecture, e.g. ``{"arch": [...], "leaf": 3, "val_acc": .., "test_acc": ..,
        "selection": "val_acc"}`` (JSON values; ``arch_names`` added from ``arch`` when missing).
    config: the run's resolved configuration (JSON values).
    dpi: resolution of the PNG files.
    plots: which of :data:`PLOTS` to draw (default all); the others are listed as not requested.

    Each plot whose input is missing is skipped and listed in ``summary["skipped"]`` (file name ->
    reason); without matplotlib no PNG is written and every plot is listed with :data:`NO_MATPLOTLIB`.
    Summary keys: ``format``, ``version``, ``tree`` (space, node and leaf counts, criterion, ``leaves``:
    id / size / depth / path / masks and restricted masks in op names / weights; ``splits``: node, edge
    label, criterion, rule, children, groups in op names, the chosen edge's separability and every
    candidate's; the text rendering), ``search`` (records, evaluations, best, best
    per leaf, evaluations per leaf; None without a search), ``final``, ``lid_profiles``, ``config``,
    ``files`` (written, relative to ``out_dir``, ``summary.json`` last), ``skipped``, ``notes``.
    """
    if not isinstance(tree, SplitTree):
        raise TypeError(f"tree: expected a SplitTree, got {type(tree).__name__}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 1200:
        raise ValueError(f"dpi: expected an int in [10, 1200], got {dpi!r}")
    if isinstance(out_dir, (str, os.PathLike)):
        out = Path(out_dir)
    else:
        raise TypeError(f"out_dir: expected a path, got {type(out_dir).__name__}")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir: {out} exists and is not a directory")
    wanted = PLOTS if plots is None else tuple(plots) if not isinstance(plots, str) else (plots,)
    unknown = [p for p in wanted if p not in PLOTS]
    if unknown:
        raise ValueError(f"plots: unknown {unknown}; expected names among {list(PLOTS)}")
    for name, v in (("final", final), ("config", config)):
        if v is not None and not isinstance(v, Mapping):
            raise TypeError(f"{name}: expected a mapping (JSON object) or None, got {type(v).__name__}")
    profiles = None if lid_profiles is None else _check_profiles(lid_profiles, tree)
    records, oracle, finished = (None, None, False) if search is None else _search_records(search)
    fin = None
    if final is not None:
        fin = to_jsonable(dict(final))
        if "arch" in fin and "arch_names" not in fin:
            fin["arch_names"] = list(tree.space.names(tree.space.validate_arch(fin["arch"])))
    try:
        cfg = None if config is None else to_jsonable(dict(config))
    except TypeError as e:
        raise TypeError(f"config: {e}") from None

    summary: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "tree": _tree_summary(tree),
        "search": None if records is None else _search_summary(tree, records, oracle, finished),
        "final": fin, "lid_profiles": profiles, "config": cfg,
        "files": [], "skipped": {}, "notes": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    mpl = _mpl()
    if mpl is None:
        for name in PLOTS:
            summary["skipped"][name] = NO_MATPLOTLIB
    else:
        Figure, Canvas = mpl
        layers = None if profiles is None else profiles["layers"]
        sep_notes: list[str] = []
        picks = None if summary["search"] is None else summary["search"]["best_per_leaf"]
        makers: dict[str, Callable[[], Any]] = {
            "tree.png": lambda: _tree_fig(Figure, tree, picks),
            "lid_profiles.png": lambda: _lid_profiles_fig(Figure, tree, profiles),
            "separability.png": lambda: _separability_fig(Figure, tree, sep_notes),
            "op_lid_profiles.png": lambda: _op_lid_fig(Figure, tree, layers),
            "search_progress.png": lambda: _search_fig(Figure, tree, records, oracle),
        }
        for name in PLOTS:
            if name not in wanted:
                summary["skipped"][name] = "not requested (plots=...)"
                continue
            try:
                _save_fig(makers[name](), Canvas, out / name, dpi)
            except _Skip as s:
                summary["skipped"][name] = str(s)
                continue
            summary["files"].append(name)
        summary["notes"] += [f"separability.png: {n}" for n in sep_notes if "separability.png" not in summary["skipped"]]
    summary["files"].append("summary.json")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
