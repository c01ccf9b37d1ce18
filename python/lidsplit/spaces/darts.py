"""DARTS cell space: 8 ops, 14 edges per cell type, normal and reduction cells (28 decisions).

A cell takes the outputs of the two previous cells (states 0 = c_{k-2} and 1 = c_{k-1}, preprocessed to C
channels), computes `steps` (4) intermediate nodes 2..5, node i the sum over j < i of edge ``i<-j`` applied
to state j, and outputs the channel concatenation of the intermediate nodes. Edges are labelled
``"normal/i<-j"`` and ``"reduce/i<-j"``: all normal cells share one set of 14 decisions, all reduction cells
another; the space lists the 14 normal edges first, in DARTS's order (node 2: inputs 0,1; node 3: 0,1,2;
...), then the 14 reduce edges. Ops, in DARTS's PRIMITIVES order: none, max_pool_3x3, avg_pool_3x3,
skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5. As in DARTS's search model, pooling
ops are followed by an affine-free BN, op BNs are affine-free, and in reduction cells the edges from the two
inputs have stride 2 (``skip_connect`` becomes FactorizedReduce, ``none`` halves the size).

Architectures and genotypes
---------------------------
A supernet architecture is one op per edge (28 ints). A DARTS ``Genotype`` keeps exactly two incoming
non-``none`` edges per node. The mapping:

* ``genotype_to_arch(g)``: each (op, j) of node i sets edge ``i<-j`` to op; every other edge is ``none``.
  Injective; rejects genotypes an arch cannot hold (``none`` ops, two ops on one input, bad inputs, wrong
  concat).
* ``arch_to_genotype(arch, strengths=None)``: per node, the incoming edges whose op is not ``none``. With
  exactly two it is lossless: ``genotype_to_arch(arch_to_genotype(a)) == a`` for every arch with exactly
  two non-``none`` inputs per node ("genotype-form" archs), and ``arch_to_genotype(genotype_to_arch(g))``
  equals g up to the order of the two pairs of a node (we list them by input index; DARTS sums them, so the
  order carries no meaning). With more than two, the two strongest are kept: by `strengths` (a score per
  edge, e.g. DARTS's softmax weight of the chosen op) if given, else the two lowest input indices
  (lossy, documented). With fewer than two the arch has no genotype and a ValueError is raised.
* ``derive_genotype(weights)``: the DARTS rule from architecture weights (per edge, the best non-none op;
  per node, the two edges whose best op is strongest).
"""

from __future__ import annotations

import ast
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lidsplit.supernet import BatchNorm2d, Choice, Edge, SearchSpace
from lidsplit.spaces.common import DilConv, FactorizedReduce, Pool, ReLUConvBN, SepConv, Supernet, Zero
from lidsplit.spaces.registry import register_space

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


def cell_edges(steps: int = 4) -> tuple[tuple[int, int], ...]:
    """(node i, input j) of every edge of a cell, in DARTS's order."""
    return tuple((i, j) for i in range(2, steps + 2) for j in range(i))


def darts_labels(steps: int = 4) -> tuple[str, ...]:
    return tuple(f"{kind}/{i}<-{j}" for kind in ("normal", "reduce") for i, j in cell_edges(steps))


def darts_space(steps: int = 4, ops: Sequence[str] = DARTS_OPS) -> SearchSpace:
    return SearchSpace(tuple(Edge(lb, tuple(ops)) for lb in darts_labels(steps)))


DARTS_SPACE = darts_space()


def darts_op(name: str, c: int, stride: int, affine: bool = False, track: bool = True) -> nn.Module:
    if name == "none":
        return Zero(c, stride)
    if name == "max_pool_3x3":
        return Pool("max", c, c, stride, affine, track, bn_after=True)
    if name == "avg_pool_3x3":
        return Pool("avg", c, c, stride, affine, track, bn_after=True)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine, track)
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1, affine, track)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2, affine, track)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2, affine, track)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2, affine, track)
    raise ValueError(f"lidsplit: unknown DARTS op {name!r}; ops are {list(DARTS_OPS)}")


class DartsCell(nn.Module):
    def __init__(self, steps, c_pp, c_p, c, reduction, reduction_prev, affine=False, track=True, ops=DARTS_OPS):
        super().__init__()
        self.reduction, self.steps = reduction, steps
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(c_pp, c, affine, track)
        else:
            self.preprocess0 = ReLUConvBN(c_pp, c, 1, 1, 0, affine=affine, track=track)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=affine, track=track)
        kind = "reduce" if reduction else "normal"
        self.edges = nn.ModuleList()
        for i, j in cell_edges(steps):
            stride = 2 if reduction and j < 2 else 1
            self.edges.append(Choice(f"{kind}/{i}<-{j}", [(op, darts_op(op, c, stride, affine, track)) for op in ops]))

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        k = 0
        for _ in range(self.steps):
            s = None
            for h in list(states):
                y = self.edges[k](h)
                s = y if s is None else s + y
                k += 1
            states.append(s)
        return torch.cat(states[2:], dim=1)


class DartsSupernet(Supernet):
    """The DARTS search supernet: a stem (``stem_multiplier * C`` channels), ``layers`` cells of ``steps``
    nodes (every node sums one :class:`~lidsplit.supernet.Choice` of ``ops`` per earlier state), reduction
    cells at ``layers // 3`` and ``2 * layers // 3``, global pooling and a linear classifier for
    ``num_classes``; ``affine`` / ``track_running_stats``: the ops' BatchNorm."""

    def __init__(
        self,
        C: int = 8,
        layers: int = 5,
        num_classes: int = 10,
        in_channels: int = 1,
        steps: int = 4,
        stem_multiplier: int = 3,
        affine: bool = False,
        track_running_stats: bool = True,
        ops: Sequence[str] = DARTS_OPS,
    ):
        super().__init__()
        if layers < 3:
            raise ValueError(f"lidsplit: darts needs layers >= 3 (a normal cell before the reductions), got {layers}")
        if C < 1 or steps < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError("lidsplit: darts needs C, steps, num_classes, in_channels >= 1")
        track = track_running_stats
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), BatchNorm2d(c_curr, track_running_stats=track)
        )
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(DartsCell(steps, c_pp, c_p, c_curr, reduction, reduction_prev, affine, track, ops))
            reduction_prev = reduction
            c_pp, c_p = c_p, steps * c_curr
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))

    def feature_layers(self) -> list[nn.Module]:
        """Every cell output, in forward order."""
        return list(self.cells)

    def shared_modules(self) -> list[nn.Module]:
        return list(self.cells)


@register_space("darts")
def darts(**kw: Any) -> DartsSupernet:
    """DARTS search supernet; see :class:`DartsSupernet` for the arguments (small defaults: C=8, layers=5,
    in_channels=1; DARTS itself uses C=16, layers=8, in_channels=3). Reduction cells at layers//3 and
    2*layers//3; input sides must stay >= 1 after two halvings."""
    return DartsSupernet(**kw)


# ---- genotypes ------------------------------------------------------------------------------------


def _steps_of(n_edges_per_cell: int) -> int:
    steps, total = 0, 0
    while total < n_edges_per_cell:
        total += steps + 2
        steps += 1
    if total != n_edges_per_cell:
        raise ValueError(f"lidsplit: {n_edges_per_cell} edges per cell is not a DARTS cell")
    return steps


def _cell_genotype(names: Sequence[str], steps: int, strengths: Sequence[float] | None) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    k = 0
    for i in range(2, steps + 2):
        incoming = [(j, names[k + j], None if strengths is None else float(strengths[k + j])) for j in range(i)]
        k += i
        live = [t for t in incoming if t[1] != "none"]
        if len(live) < 2:
            raise ValueError(
                f"lidsplit: node {i} has {len(live)} non-none input(s); a DARTS genotype needs 2 per node"
            )
        if len(live) > 2:
            if strengths is None:
                live = live[:2]
            else:  # strongest first; ties to the lower input
                live = sorted(sorted(live, key=lambda t: t[0]), key=lambda t: -t[2])[:2]
        out.extend((op, j) for j, op, _ in sorted(live, key=lambda t: t[0]))
    return out


def arch_to_genotype(arch: Sequence[int | str], strengths: Sequence[float] | None = None, steps: int | None = None) -> Genotype:
    """Genotype of a 28-edge (2 x cell edges) supernet arch; see the module docstring for the rule."""
    arch = tuple(arch)
    if len(arch) % 2:
        raise ValueError(f"lidsplit: a DARTS arch has an even number of entries (normal + reduce), got {len(arch)}")
    per_cell = len(arch) // 2
    steps = _steps_of(per_cell) if steps is None else steps
    names = darts_space(steps).names(arch)
    if strengths is not None and len(strengths) != len(arch):
        raise ValueError(f"lidsplit: {len(strengths)} strengths for {len(arch)} edges")
    s_n = None if strengths is None else list(strengths)[:per_cell]
    s_r = None if strengths is None else list(strengths)[per_cell:]
    concat = list(range(2, steps + 2))
    return Genotype(
        normal=_cell_genotype(names[:per_cell], steps, s_n),
        normal_concat=concat,
        reduce=_cell_genotype(names[per_cell:], steps, s_r),
        reduce_concat=list(concat),
    )


def _cell_arch(pairs, concat, steps: int, what: str) -> list[int]:
    pairs = list(pairs)
    if len(pairs) != 2 * steps:
        raise ValueError(f"lidsplit: genotype {what} has {len(pairs)} pairs, expected 2 per node ({2 * steps})")
    if list(concat) != list(range(2, steps + 2)):
        raise ValueError(f"lidsplit: genotype {what}_concat {list(concat)} must be {list(range(2, steps + 2))}")
    edges = cell_edges(steps)
    pos = {e: k for k, e in enumerate(edges)}
    arch = [0] * len(edges)  # none
    for n in range(steps):
        i = n + 2
        for op, j in pairs[2 * n : 2 * n + 2]:
            if op not in DARTS_OPS or op == "none":
                raise ValueError(f"lidsplit: genotype {what}: node {i} has op {op!r} (expected a non-none DARTS op)")
            if not isinstance(j, int) or not 0 <= j < i:
                raise ValueError(f"lidsplit: genotype {what}: node {i} has input {j!r}, expected 0..{i - 1}")
            if arch[pos[(i, j)]] != 0:
                raise ValueError(f"lidsplit: genotype {what}: node {i} takes input {j} twice; an arch holds one op per edge")
            arch[pos[(i, j)]] = DARTS_OPS.index(op)
    return arch


def genotype_to_arch(genotype: Genotype) -> tuple[int, ...]:
    """The supernet arch (op indices into DARTS_OPS, normal edges then reduce) of a DARTS genotype."""
    steps = len(genotype.normal) // 2
    return tuple(
        _cell_arch(genotype.normal, genotype.normal_concat, steps, "normal")
        + _cell_arch(genotype.reduce, genotype.reduce_concat, steps, "reduce")
    )


def canonical_genotype(genotype: Genotype) -> Genotype:
    """The genotype with each node's two pairs ordered by input index and concat as lists."""

    def cell(pairs):
        pairs = list(pairs)
        return [p for n in range(0, len(pairs), 2) for p in sorted(map(tuple, pairs[n : n + 2]), key=lambda t: t[1])]

    return Genotype(cell(genotype.normal), list(genotype.normal_concat), cell(genotype.reduce), list(genotype.reduce_concat))


def derive_genotype(weights: Mapping[str, Tensor], steps: int = 4) -> Genotype:
    """DARTS's parse: for each edge the best non-none op by weight, for each node the two edges whose best
    op is strongest. `weights` maps every DARTS label to a (8,) tensor (alphas or softmaxed weights)."""
    labels = darts_labels(steps)
    names, strengths = [], []
    for lb in labels:
        w = torch.as_tensor(weights[lb]).detach().float().softmax(-1).cpu()
        w[DARTS_OPS.index("none")] = float("-inf")
        k = int(torch.argmax(w))
        names.append(DARTS_OPS[k])
        strengths.append(float(w[k]))
    return arch_to_genotype(names, strengths, steps)


def parse_genotype(s: str) -> Genotype:
    """A Genotype from its repr (``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)``),
    parsed without eval."""
    tree = ast.parse(s.strip(), mode="eval").body
    if not (isinstance(tree, ast.Call) and getattr(tree.func, "id", None) == "Genotype"):
        raise ValueError(f"lidsplit: not a Genotype(...) expression: {s[:60]!r}")

    def value(node):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
            return list(range(*[ast.literal_eval(a) for a in node.args]))
        return [tuple(p) if isinstance(p, (list, tuple)) else p for p in ast.literal_eval(node)]

    fields = dict(zip(Genotype._fields, (value(a) for a in tree.args)))
    for kw in tree.keywords:
        fields[kw.arg] = value(kw.value)
    missing = [f for f in Genotype._fields if f not in fields]
    if missing:
        raise ValueError(f"lidsplit: genotype string lacks {missing}")
    return Genotype(**{f: fields[f] for f in Genotype._fields})
