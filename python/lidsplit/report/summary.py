"""The report's numbers: the split tree, the search and the LID profiles as JSON values (``summary.json``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lidsplit.common.io import read_json
from lidsplit.search.driver import HISTORY, Record, SearchResult
from lidsplit.split.tree import SplitNode, SplitTree, to_jsonable

__all__ = ["check_profiles", "search_records", "tree_summary", "search_summary", "restricted_masks", "edge_scores",
           "is_measured"]


def check_profiles(p: Any, tree: SplitTree) -> dict[str, Any]:
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


def search_records(search: Any) -> tuple[list[Record], list[float | None] | None, bool]:
    """``(records, oracle values or None, finished)`` from a SearchResult, a history dict or its path."""
    if isinstance(search, SearchResult):
        return list(search.records), search.oracle, bool(search.finished)
    if isinstance(search, (str, os.PathLike)):
        path = Path(search)
        if not path.is_file():
            raise FileNotFoundError(f"search: history file {path} does not exist")
        search = read_json(path, what="search history", remedy="delete the search/ folder and re-run the search")
    if isinstance(search, Mapping):
        if search.get("format") != HISTORY.name:
            raise ValueError(f"search: not a lidsplit search history (expected format {HISTORY.name!r}, got "
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


def restricted_masks(tree: SplitTree, node: SplitNode) -> dict[str, list[str]]:
    return {e.label: [e.ops[i] for i in sorted(m)] for e, m in zip(tree.space.edges, node.sub.masks)
            if len(m) != e.num_ops}


def edge_scores(node: SplitNode) -> dict[int, Mapping[str, Any]]:
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


def is_measured(d: Mapping[str, Any]) -> bool:
    """Whether an edge's similarity came from measurements (exhaustive / random record 0 batches)."""
    return int(d.get("batches", 0) or 0) > 0


def tree_summary(tree: SplitTree) -> dict[str, Any]:
    space = tree.space
    leaves = []
    for leaf in tree.leaves():
        leaves.append({"id": leaf.id, "size": leaf.size, "depth": tree.depth(leaf.id), "path": tree.path(leaf.id),
                       "masks": _masks(tree, leaf), "restricted": restricted_masks(tree, leaf),
                       "describe": tree.describe(leaf.id), "weights": leaf.info.get("weights")})
    splits = []
    for node in tree.nodes:
        if not node.children:
            continue
        e = space.edges[node.edge]  # type: ignore[index]
        es = edge_scores(node)
        splits.append({
            "node": node.id, "depth": tree.depth(node.id), "size": node.size, "edge": node.edge, "label": e.label,
            "criterion": node.criterion, "rule": node.scores.get("rule"), "children": list(node.children),
            "groups": [[e.ops[i] for i in g] for g in node.groups],  # type: ignore[union-attr]
            "separability": node.scores.get("separability"),
            "separabilities": {space.edges[i].label: d.get("separability") for i, d in es.items()},
            "informative": [space.edges[i].label for i, d in es.items() if d.get("informative", True)],
            "measured": any(is_measured(d) for d in es.values()) if es else None,
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
    return {"arch": list(r.arch), "arch_names": list(tree.space.names(r.arch)),
            "arch_ops": tree.space.to_dict(r.arch), "acc": r.acc, "loss": r.loss,
            "leaf": r.leaf, "n": r.n}


def search_summary(tree: SplitTree, records: list[Record], oracle: list[float | None] | None,
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
