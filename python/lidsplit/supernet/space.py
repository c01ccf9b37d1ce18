"""Search spaces, architectures and sub-supernets: plain immutable values, no torch modules.

* An :class:`Edge` is one decision: a label and the names of its candidate ops.
* A :class:`SearchSpace` is the ordered tuple of edges. An *architecture* is a ``tuple[int, ...]`` holding
  one op index per edge, in edge order. Architectures are numbered in mixed radix with the FIRST edge most
  significant, i.e. in the order of ``itertools.product`` over the edges (``all_archs()`` yields them in
  index order). For NAS-Bench-201 this index is ours, not the benchmark file's row number.
* A :class:`SubSupernet` is a region of the space: per edge, the non-empty set of ops still enabled
  (NAS-LID's binary vector ``I_l``, GM-NAS's edges x ops matrix). Its architectures are the product of the
  masks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

Arch = tuple[int, ...]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or (
        isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point() and v.dtype != torch.bool
    )


@dataclass(frozen=True)
class Edge:
    """One decision of a search space: a label and its candidate op names (in op-index order)."""

    label: str
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"lidsplit: edge label must be a non-empty string, got {self.label!r}")
        ops = tuple(self.ops) if not isinstance(self.ops, str) else (self.ops,)
        if not ops:
            raise ValueError(f"lidsplit: edge {self.label!r} has no candidate ops")
        for name in ops:
            if not isinstance(name, str) or not name:
                raise ValueError(f"lidsplit: edge {self.label!r}: op names must be non-empty strings, got {name!r}")
        if len(set(ops)) != len(ops):
            dup = sorted({n for n in ops if ops.count(n) > 1})
            raise ValueError(f"lidsplit: edge {self.label!r}: duplicate op names {dup}")
        object.__setattr__(self, "ops", ops)

    @property
    def num_ops(self) -> int:
        return len(self.ops)


@dataclass(frozen=True)
class SearchSpace:
    """The ordered edges of a supernet. Frozen and hashable; two spaces are equal iff their edges are."""

    edges: tuple[Edge, ...]
    _label_index: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        edges = tuple(e if isinstance(e, Edge) else Edge(*e) for e in self.edges)
        if not edges:
            raise ValueError("lidsplit: a search space needs at least one edge")
        index: dict[str, int] = {}
        for i, e in enumerate(edges):
            if e.label in index:
                raise ValueError(f"lidsplit: duplicate edge label {e.label!r} in search space")
            index[e.label] = i
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "_label_index", index)

    # ---- edges ------------------------------------------------------------------------------------
    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(e.label for e in self.edges)

    @property
    def size(self) -> int:
        """Number of architectures (exact integer)."""
        return math.prod(e.num_ops for e in self.edges)

    def edge_index(self, edge: int | str) -> int:
        """The position of an edge given by position or label."""
        if isinstance(edge, str):
            try:
                return self._label_index[edge]
            except KeyError:
                raise KeyError(f"lidsplit: no edge labelled {edge!r}; labels are {list(self.labels)}") from None
        if not _is_int(edge):
            raise TypeError(f"lidsplit: an edge is an int position or a str label, got {type(edge).__name__}")
        e = int(edge)
        if not 0 <= e < self.num_edges:
            raise IndexError(f"lidsplit: edge index {e} out of range for a space of {self.num_edges} edges")
        return e

    def edge(self, edge: int | str) -> Edge:
        return self.edges[self.edge_index(edge)]

    def op_index(self, edge: int | str, name: str) -> int:
        e = self.edge(edge)
        try:
            return e.ops.index(name)
        except ValueError:
            raise KeyError(f"lidsplit: edge {e.label!r} has no op {name!r}; ops are {list(e.ops)}") from None

    # ---- architectures ----------------------------------------------------------------------------
    def validate_arch(self, arch: Iterable[int | str] | Mapping[str, int | str]) -> Arch:
        """Return `arch` as a tuple of op indices. Accepts op names in place of indices, and a label-keyed
        dict (``{"normal/2<-0": "sep_conv_3x3", ...}``, NNI / Optuna / Syne Tune style) holding every edge.
        Raises on error."""
        if isinstance(arch, (str, bytes)):
            raise TypeError("lidsplit: an architecture is a sequence of op indices (or names), not a string")
        if isinstance(arch, Mapping):
            return self.from_dict(arch)
        arch = tuple(arch)
        if len(arch) != self.num_edges:
            raise ValueError(
                f"lidsplit: architecture has {len(arch)} entries, the space has {self.num_edges} edges"
            )
        out = []
        for i, (e, a) in enumerate(zip(self.edges, arch)):
            if isinstance(a, str):
                out.append(self.op_index(i, a))
                continue
            if not _is_int(a):
                raise TypeError(f"lidsplit: architecture entry {i} ({e.label!r}) is {a!r}, expected an int")
            a = int(a)
            if not 0 <= a < e.num_ops:
                raise ValueError(
                    f"lidsplit: architecture entry {i} ({e.label!r}) is {a}, expected 0..{e.num_ops - 1}"
                )
            out.append(a)
        return tuple(out)

    def to_dict(self, arch: Iterable[int | str] | Mapping[str, int | str]) -> dict[str, str]:
        """`arch` as ``{edge label: op name}`` in edge order (the form NNI, Optuna and Syne Tune use)."""
        return dict(zip(self.labels, self.names(arch)))

    def from_dict(self, d: Mapping[str, int | str]) -> Arch:
        """The op-index tuple of a label-keyed architecture (values: op names or indices; every edge once)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"lidsplit: a label-keyed architecture is a mapping label -> op, got {type(d).__name__}")
        unknown = [k for k in d if k not in self._label_index]
        if unknown:
            raise KeyError(f"lidsplit: architecture names unknown edges {unknown}; labels are {list(self.labels)}")
        missing = [lb for lb in self.labels if lb not in d]
        if missing:
            raise KeyError(f"lidsplit: architecture has no op for edges {missing}")
        return self.validate_arch(tuple(d[lb] for lb in self.labels))

    def arch_to_index(self, arch: Sequence[int]) -> int:
        arch = self.validate_arch(arch)
        i = 0
        for e, a in zip(self.edges, arch):
            i = i * e.num_ops + a
        return i

    def index_to_arch(self, index: int) -> Arch:
        if not _is_int(index):
            raise TypeError(f"lidsplit: architecture index must be an int, got {type(index).__name__}")
        index = int(index)
        if not 0 <= index < self.size:
            raise ValueError(f"lidsplit: architecture index {index} out of range [0, {self.size})")
        out = []
        for e in reversed(self.edges):
            index, a = divmod(index, e.num_ops)
            out.append(a)
        return tuple(reversed(out))

    def names(self, arch: Sequence[int]) -> tuple[str, ...]:
        arch = self.validate_arch(arch)
        return tuple(e.ops[a] for e, a in zip(self.edges, arch))

    def all_archs(self) -> Iterator[Arch]:
        """Every architecture, in index order (only sensible for small spaces)."""
        return itertools.product(*(range(e.num_ops) for e in self.edges))

    def random_arch(self, generator: torch.Generator | None = None) -> Arch:
        return SubSupernet.full(self).sample(generator)

    # ---- JSON -------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"edges": [{"label": e.label, "ops": list(e.ops)} for e in self.edges]}

    @classmethod
    def from_json(cls, d: dict) -> SearchSpace:
        try:
            edges = tuple(Edge(str(e["label"]), tuple(e["ops"])) for e in d["edges"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"lidsplit: not a SearchSpace JSON object ({exc!r})") from None
        return cls(edges)

    def __repr__(self) -> str:
        return f"SearchSpace({self.num_edges} edges, {self.size} archs)"


def _mask(space: SearchSpace, i: int, mask: Iterable[int | str]) -> frozenset[int]:
    e = space.edges[i]
    if isinstance(mask, str):
        mask = (mask,)
    out = set()
    for a in mask:
        if isinstance(a, str):
            a = space.op_index(i, a)
        elif not _is_int(a):
            raise TypeError(f"lidsplit: mask of edge {e.label!r} holds {a!r}, expected op indices")
        a = int(a)
        if not 0 <= a < e.num_ops:
            raise ValueError(f"lidsplit: mask of edge {e.label!r} holds op {a}, expected 0..{e.num_ops - 1}")
        out.add(a)
    if not out:
        raise ValueError(f"lidsplit: mask of edge {e.label!r} is empty (every edge keeps at least one op)")
    return frozenset(out)


@dataclass(frozen=True)
class SubSupernet:
    """A region of a search space: per edge, the non-empty set of enabled op indices. Immutable, hashable."""

    space: SearchSpace
    masks: tuple[frozenset[int], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.space, SearchSpace):
            raise TypeError(f"lidsplit: SubSupernet.space must be a SearchSpace, got {type(self.space).__name__}")
        masks = tuple(self.masks)
        if len(masks) != self.space.num_edges:
            raise ValueError(f"lidsplit: {len(masks)} masks for a space of {self.space.num_edges} edges")
        object.__setattr__(self, "masks", tuple(_mask(self.space, i, m) for i, m in enumerate(masks)))

    @classmethod
    def full(cls, space: SearchSpace) -> SubSupernet:
        return cls(space, tuple(frozenset(range(e.num_ops)) for e in space.edges))

    @classmethod
    def from_arch(cls, space: SearchSpace, arch: Sequence[int]) -> SubSupernet:
        """The sub-supernet holding exactly one architecture."""
        return cls(space, tuple(frozenset((a,)) for a in space.validate_arch(arch)))

    # ---- queries ----------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return math.prod(len(m) for m in self.masks)

    def enabled(self, edge: int | str) -> tuple[int, ...]:
        return tuple(sorted(self.masks[self.space.edge_index(edge)]))

    def enabled_names(self, edge: int | str) -> tuple[str, ...]:
        i = self.space.edge_index(edge)
        return tuple(self.space.edges[i].ops[a] for a in sorted(self.masks[i]))

    def splittable_edges(self) -> tuple[int, ...]:
        return tuple(i for i, m in enumerate(self.masks) if len(m) > 1)

    def is_full(self) -> bool:
        return all(len(m) == e.num_ops for m, e in zip(self.masks, self.space.edges))

    def contains(self, arch: Sequence[int]) -> bool:
        try:
            arch = self.space.validate_arch(arch)
        except (ValueError, TypeError, KeyError):
            return False
        return all(a in m for a, m in zip(arch, self.masks))

    def __contains__(self, arch: Sequence[int]) -> bool:
        return self.contains(arch)

    def issubset(self, other: SubSupernet) -> bool:
        return self.space == other.space and all(a <= b for a, b in zip(self.masks, other.masks))

    def archs(self) -> Iterator[Arch]:
        """Every architecture inside, in index order."""
        return itertools.product(*(sorted(m) for m in self.masks))

    def sample(self, generator: torch.Generator | None = None) -> Arch:
        """One architecture drawn uniformly (independently per edge, uniformly inside each mask).

        One ``torch.randint`` call on the generator's device per sample, whatever the mask sizes, so a
        generator seeded the same way yields the same architectures.
        """
        device = generator.device if generator is not None else "cpu"
        draws = torch.randint(0, 2**62, (len(self.masks),), generator=generator, device=device).tolist()
        out = []
        for r, m in zip(draws, self.masks):
            opts = sorted(m)
            out.append(opts[r % len(opts)])  # bias <= len/2**62
        return tuple(out)

    # ---- derived sub-supernets --------------------------------------------------------------------
    def restrict(self, edge: int | str, ops: Iterable[int | str]) -> SubSupernet:
        """The same sub-supernet with the mask of `edge` replaced by `ops` (which must lie inside it)."""
        i = self.space.edge_index(edge)
        new = _mask(self.space, i, ops)
        if not new <= self.masks[i]:
            extra = sorted(new - self.masks[i])
            raise ValueError(
                f"lidsplit: ops {extra} are not enabled on edge {self.space.edges[i].label!r} "
                f"(enabled: {sorted(self.masks[i])})"
            )
        masks = list(self.masks)
        masks[i] = new
        return SubSupernet(self.space, tuple(masks))

    def split(self, edge: int | str, groups: Sequence[Sequence[int | str]]) -> list[SubSupernet]:
        """One child per group; the groups must partition the edge's current mask (op indices or names)."""
        i = self.space.edge_index(edge)
        label = self.space.edges[i].label
        if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
            raise TypeError(f"lidsplit: split groups must be a sequence of op groups, got {groups!r}")
        parts = []
        for g in groups:
            if isinstance(g, (int, str)) or not isinstance(g, Iterable):
                raise TypeError(f"lidsplit: each split group must be a sequence of ops, got {g!r}")
            g = list(g)
            if not g:
                raise ValueError(f"lidsplit: split of edge {label!r}: empty group in {groups!r}")
            idx = [self.space.op_index(i, a) if isinstance(a, str) else a for a in g]
            s = _mask(self.space, i, idx)
            if len(s) != len(idx):
                raise ValueError(f"lidsplit: split of edge {label!r}: group {g!r} repeats an op")
            parts.append(s)
        if not parts:
            raise ValueError(f"lidsplit: split of edge {label!r}: no groups")
        seen: set[int] = set()
        for s in parts:
            if s & seen:
                raise ValueError(
                    f"lidsplit: split of edge {label!r}: groups overlap on ops {sorted(s & seen)}"
                )
            seen |= s
        mask = self.masks[i]
        if seen != mask:
            missing, extra = sorted(mask - seen), sorted(seen - mask)
            raise ValueError(
                f"lidsplit: split of edge {label!r}: groups {[sorted(s) for s in parts]} do not partition "
                f"the enabled ops {sorted(mask)} (missing {missing}, not enabled {extra})"
            )
        out = []
        for s in parts:
            masks = list(self.masks)
            masks[i] = s
            out.append(SubSupernet(self.space, tuple(masks)))
        return out

    # ---- JSON -------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """``{"space": space.to_json(), "masks": [[op index, ...] per edge]}`` (masks sorted)."""
        return {"space": self.space.to_json(), "masks": [sorted(m) for m in self.masks]}

    @classmethod
    def from_json(cls, d: dict, space: SearchSpace | None = None) -> SubSupernet:
        """Inverse of :meth:`to_json`. With `space` given, the stored space (if any) must equal it."""
        if not isinstance(d, dict) or "masks" not in d:
            raise ValueError("lidsplit: not a SubSupernet JSON object (no 'masks')")
        stored = SearchSpace.from_json(d["space"]) if "space" in d else None
        if space is None:
            if stored is None:
                raise ValueError("lidsplit: SubSupernet JSON has no 'space'; pass the space explicitly")
            space = stored
        elif stored is not None and stored != space:
            raise ValueError("lidsplit: SubSupernet JSON was saved for a different search space")
        return cls(space, tuple(frozenset(m) for m in d["masks"]))

    def __str__(self) -> str:
        parts = []
        for e, m in zip(self.space.edges, self.masks):
            if len(m) == e.num_ops:
                continue
            parts.append(f"{e.label}:{{{','.join(e.ops[a] for a in sorted(m))}}}")
        return "SubSupernet(" + (" ".join(parts) if parts else "full") + f"; {self.size} archs)"

    __repr__ = __str__
