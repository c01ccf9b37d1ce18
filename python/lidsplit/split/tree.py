"""The split tree: how a supernet was split into sub-supernets, and which leaf owns an architecture.

A :class:`SplitTree` starts as one root node holding a :class:`~lidsplit.supernet.SubSupernet` (the full
space by default). :meth:`SplitTree.split` splits a leaf on one edge into one child per op group
(``SubSupernet.split``: the groups partition the edge's enabled ops), so the leaves always partition the
root: every architecture of the root routes to exactly one leaf (:meth:`SplitTree.route`).

The split decision is recorded on the node that was split: ``edge``, ``groups`` (child ``i`` keeps
``groups[i]``), ``criterion`` (a name), ``scores`` (whatever chose it, e.g. the similarity matrix and the
partition score: JSON values; tensors and numpy arrays are converted to lists) and ``seed``. Each node
also has a free ``info`` dict (JSON values) for its users (checkpoint path, training metrics, ...).

The tree is saved as JSON (:meth:`SplitTree.save`, atomic: temp file + ``os.replace``) and reloads
losslessly (:meth:`SplitTree.load`); loading re-checks that every split is a partition. Non-finite
floats are written as the JSON extensions ``NaN`` / ``Infinity`` (as Python's ``json`` does).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lidsplit._io import atomic_write_text
from lidsplit.common.errors import DamagedFileError
from lidsplit.common.io import read_json
from lidsplit.supernet import SearchSpace, SubSupernet

__all__ = ["SplitNode", "SplitTree"]

FORMAT = "lidsplit.SplitTree"
VERSION = 1


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: tensors / numpy arrays -> (nested) lists, numpy scalars -> numbers,
    tuples -> lists, mapping keys must be strings. Raises TypeError on anything else."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"split tree: JSON object keys must be strings, got {k!r}")
            out[k] = to_jsonable(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    tolist = getattr(obj, "tolist", None)  # torch.Tensor, numpy.ndarray, numpy scalars
    if callable(tolist):
        return to_jsonable(tolist())
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(obj)]
    raise TypeError(f"split tree: {type(obj).__name__} is not JSON-serialisable ({obj!r})")


@dataclass(eq=True)
class SplitNode:
    """One sub-supernet of the tree. ``edge``/``groups``/``criterion``/``scores``/``seed`` describe how
    this node was split (all ``None``/empty while it is a leaf); ``children[i]`` keeps ``groups[i]``."""

    id: int
    sub: SubSupernet
    parent: int | None = None
    children: list[int] = field(default_factory=list)
    edge: int | None = None
    groups: list[list[int]] | None = None
    criterion: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def size(self) -> int:
        return self.sub.size

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "children": list(self.children),
            "masks": [sorted(m) for m in self.sub.masks],
            "edge": self.edge,
            "groups": None if self.groups is None else [list(g) for g in self.groups],
            "criterion": self.criterion,
            "scores": to_jsonable(self.scores),
            "seed": self.seed,
            "info": to_jsonable(self.info),
        }


class SplitTree:
    """Nodes numbered 0 (root), 1, 2, ... in creation order. See the module doc."""

    def __init__(self, root: SubSupernet | SearchSpace, *, info: Mapping[str, Any] | None = None) -> None:
        sub = SubSupernet.full(root) if isinstance(root, SearchSpace) else root
        if not isinstance(sub, SubSupernet):
            raise TypeError(f"SplitTree needs a SubSupernet or a SearchSpace, got {type(root).__name__}")
        self.space: SearchSpace = sub.space
        self.nodes: list[SplitNode] = [SplitNode(0, sub, info=to_jsonable(dict(info or {})))]

    # ---- structure --------------------------------------------------------------------------------
    @property
    def root(self) -> SplitNode:
        return self.nodes[0]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[SplitNode]:
        return iter(self.nodes)

    def __getitem__(self, node_id: int) -> SplitNode:
        return self.node(node_id)

    def node(self, node_id: int) -> SplitNode:
        if isinstance(node_id, SplitNode):
            node_id = node_id.id
        if not isinstance(node_id, int) or not 0 <= node_id < len(self.nodes):
            raise KeyError(f"split tree has no node {node_id!r} (ids 0..{len(self.nodes) - 1})")
        return self.nodes[node_id]

    def leaves(self) -> list[SplitNode]:
        """The leaves, left to right (depth-first, children in group order)."""
        return [self.nodes[i] for i in self._dfs() if self.nodes[i].is_leaf]

    def leaf_ids(self) -> list[int]:
        return [n.id for n in self.leaves()]

    def path(self, node_id: int) -> list[int]:
        """Node ids from the root down to ``node_id``."""
        out = [self.node(node_id).id]
        while self.nodes[out[-1]].parent is not None:
            out.append(self.nodes[out[-1]].parent)  # type: ignore[arg-type]
        return out[::-1]

    def depth(self, node_id: int) -> int:
        return len(self.path(node_id)) - 1

    def layout(self) -> tuple[dict[int, float], dict[int, int]]:
        """Drawing positions: node id -> x (leaves at 0, 1, ... left to right, a parent centred over its
        children) and node id -> depth (the root 0)."""
        xs: dict[int, float] = {leaf: float(k) for k, leaf in enumerate(self.leaf_ids())}
        for i in reversed(self._dfs()):
            if self.nodes[i].children:
                xs[i] = sum(xs[c] for c in self.nodes[i].children) / len(self.nodes[i].children)
        return xs, {n.id: self.depth(n.id) for n in self.nodes}

    def _dfs(self) -> list[int]:
        order, stack = [], [0]
        while stack:
            i = stack.pop()
            order.append(i)
            stack.extend(reversed(self.nodes[i].children))
        return order

    # ---- growing ----------------------------------------------------------------------------------
    def split(
        self,
        node_id: int,
        edge: int | str,
        groups: Sequence[Sequence[int | str]],
        *,
        criterion: str | None = None,
        scores: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> list[int]:
        """Split leaf ``node_id`` on ``edge`` into one child per group; returns the children's ids.

        ``groups`` (op indices or names) must partition the edge's enabled ops in that node
        (``SubSupernet.split`` checks it). ``scores`` must be JSON-convertible (see ``to_jsonable``).
        """
        node = self.node(node_id)
        if not node.is_leaf:
            raise ValueError(f"split tree: node {node.id} is already split (on edge {node.edge})")
        e = self.space.edge_index(edge)
        subs = node.sub.split(e, groups)
        gs = [list(s.enabled(e)) for s in subs]
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"split tree: seed must be an int or None, got {seed!r}")
        js = to_jsonable(dict(scores or {}))
        node.edge, node.groups, node.criterion, node.scores, node.seed = e, gs, criterion, js, seed
        ids = []
        for s in subs:
            child = SplitNode(len(self.nodes), s, parent=node.id)
            self.nodes.append(child)
            ids.append(child.id)
        node.children = ids
        return ids

    # ---- routing ----------------------------------------------------------------------------------
    def route(self, arch: Sequence[int | str]) -> int:
        """The id of the one leaf whose sub-supernet contains ``arch`` (ValueError if the root does not)."""
        a = self.space.validate_arch(arch)
        if not self.root.sub.contains(a):
            raise ValueError(f"split tree: architecture {a} is outside the root sub-supernet {self.root.sub}")
        node = self.root
        while node.children:
            op = a[node.edge]  # type: ignore[index]
            for g, c in zip(node.groups, node.children):  # type: ignore[arg-type]
                if op in g:
                    node = self.nodes[c]
                    break
            else:  # pragma: no cover - impossible for a tree built by split()/from_json()
                raise RuntimeError(f"split tree: node {node.id} has no child for op {op} of edge {node.edge}")
        return node.id

    def leaf_for(self, arch: Sequence[int | str]) -> SplitNode:
        return self.nodes[self.route(arch)]

    # ---- JSON -------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "space": self.space.to_json(),
            "nodes": [n.to_json() for n in self.nodes],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SplitTree:
        """Rebuild a tree from :meth:`to_json`, re-checking every split (children = parent split)."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ValueError(f"not a lidsplit split tree (expected format {FORMAT!r})")
        if d.get("version") != VERSION:
            raise ValueError(f"split tree format version {d.get('version')!r} is not supported (expected {VERSION})")
        space = SearchSpace.from_json(d["space"])
        raw = list(d["nodes"])
        if not raw or raw[0]["parent"] is not None:
            raise ValueError("split tree JSON: node 0 must be the root")
        tree = cls(SubSupernet(space, tuple(frozenset(m) for m in raw[0]["masks"])))
        for i, nd in enumerate(raw):
            if nd["id"] != i:
                raise ValueError(f"split tree JSON: node {i} has id {nd['id']}")
        # replay the splits in creation order (by the id of their first child)
        for nd in sorted((nd for nd in raw if nd["children"]), key=lambda nd: nd["children"][0]):
            i = nd["id"]
            first = len(tree.nodes)
            if i >= first or nd["children"] != list(range(first, first + len(nd["children"]))):
                raise ValueError(f"split tree JSON: node {i}'s children {nd['children']} are not numbered "
                                 "in creation order")
            tree.split(i, nd["edge"], nd["groups"], criterion=nd["criterion"], scores=nd["scores"],
                       seed=nd["seed"])
            if tree.nodes[i].groups != [list(g) for g in nd["groups"]]:
                raise ValueError(f"split tree JSON: node {i}'s groups are not sorted op indices")
        if len(tree.nodes) != len(raw):
            raise ValueError("split tree JSON: some listed nodes are not reachable from the root")
        for i, nd in enumerate(raw):
            node = tree.nodes[i]
            if node.sub != SubSupernet(space, tuple(frozenset(m) for m in nd["masks"])):
                raise ValueError(f"split tree JSON: node {i}'s masks do not follow from its parent's split")
            if node.parent != nd["parent"]:
                raise ValueError(f"split tree JSON: node {i}'s parent is inconsistent")
            if not nd["children"] and (nd["edge"] is not None or nd["groups"] is not None):
                raise ValueError(f"split tree JSON: leaf {i} records a split")
            node.info = to_jsonable(nd.get("info") or {})
        return tree

    def to_json_str(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_json(), indent=indent)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON atomically (temp file in the same directory, fsync, ``os.replace``)."""
        path = Path(path)
        text = self.to_json_str()
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SplitTree:
        """The tree saved at ``path``; a file that is not a readable split tree raises ``DamagedFileError``
        naming it."""
        remedy = "delete it (or the split run's directory) and split again"
        data = read_json(path, what="split tree", remedy=remedy)
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise DamagedFileError(path, "split tree", f"not a split tree: {type(e).__name__}: {e}", remedy) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SplitTree) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]  (mutable)

    # ---- text -------------------------------------------------------------------------------------
    def describe(self, node_id: int) -> str:
        """One line: id, size, the ops kept on every restricted edge, and the split decision if any."""
        n = self.node(node_id)
        kept = []
        for i, (e, m) in enumerate(zip(self.space.edges, n.sub.masks)):
            if len(m) != e.num_ops:
                kept.append(f"{e.label}={{{','.join(e.ops[a] for a in sorted(m))}}}")
        text = f"[{n.id}] {n.size} archs" + (": " + " ".join(kept) if kept else " (all ops)" if n.id == 0 else "")
        if n.children:
            e = self.space.edges[n.edge]  # type: ignore[index]
            how = f" by {n.criterion}" if n.criterion else ""
            seed = f", seed {n.seed}" if n.seed is not None else ""
            text += f"  -> split edge {n.edge} '{e.label}' into {len(n.children)}{how}{seed}"
        return text

    def render(self) -> str:
        """A directory-tree drawing of the nodes (see :meth:`describe` for each line)."""
        leaves = self.leaves()
        lines = [f"SplitTree: {len(self.nodes)} nodes, {len(leaves)} leaves, space of {self.space.size} archs "
                 f"({self.space.num_edges} edges)", self.describe(0)]

        def walk(i: int, prefix: str) -> None:
            kids = self.nodes[i].children
            for k, c in enumerate(kids):
                last = k == len(kids) - 1
                lines.append(prefix + ("└── " if last else "├── ") + self.describe(c))
                walk(c, prefix + ("    " if last else "│   "))

        walk(0, "")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"SplitTree({len(self.nodes)} nodes, {len(self.leaves())} leaves, space {self.space!r})"

    # ---- plot -------------------------------------------------------------------------------------
    def plot(self, path: str | os.PathLike[str], *, title: str | None = None, dpi: int = 150) -> Path:
        """Draw the tree to an image file (format from the suffix). Needs matplotlib (``lidsplit[plot]``).

        Each box shows the node id, its size and the ops kept on the edge its parent split. The drawing
        is :func:`lidsplit.report.plotting.draw_split_tree` (the one plotting place).
        """
        from lidsplit.report.plotting import draw_split_tree  # the plotting place sits above split

        return draw_split_tree(self, path, title=title, dpi=dpi)

