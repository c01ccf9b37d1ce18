"""NAS-Bench-201 cell space: 5 ops on 6 edges shared by every cell (5^6 = 15625 architectures).

Network (as NB201): stem 3x3 conv + BN, N cells at C, ResNet reduction block to 2C, N cells, reduction
block to 4C, N cells, BN-ReLU, global average pool, linear classifier. A cell has nodes 0..3, node i the sum
of edges ``i<-j`` (j < i) applied to node j; its output is node 3. Every cell's edge ``i<-j`` is one Choice
labelled ``"i<-j"``, so the space has exactly 6 edges, in the canonical order
1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2, and 5 ops in NB201's order:
none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3.

``entangled=True`` (TangleNAS section 4.2): the same space (edges, ops, labels, stem, blocks, classifier)
with ``nor_conv_1x1`` the centre of ``nor_conv_3x3``'s kernel on every edge (one weight, one BatchNorm;
:class:`NB201EntangledEdge`). Architecture weights are matched to kernels BY NAME: the op named
``nor_conv_{k}x{k}`` uses the k x k centre, whatever the op order (the authors' code pairs them by
position and gets 1x1 <-> 3x3 swapped). Mixture on an edge: ``sum over non-conv ops w_j op_j(x) +
conv_group(x)``, conv_group being ReLU -> conv with the superposed kernel ``w_1x1 pad(W_1x1) + w_3x3
W_3x3`` -> BatchNorm. With ``bn_scale="after"`` (default) the kernel is normalised by the group weight
``t = w_1x1 + w_3x3`` and the BatchNorm output multiplied by t, so the group keeps its weight against
skip / pool; ``bn_scale="before"`` is the authors' variant (t normalised away by the BatchNorm).

Architecture index: ``SearchSpace.arch_to_index`` (mixed radix, first edge most significant); this is NOT
the row number of the NAS-Bench-201 benchmark file. Use :func:`to_nb201_string` to look architectures up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import Tensor, nn

from lidsplit.ops import masked_sum
from lidsplit.spaces.common import Pool, ReLUConvBN, Supernet, Zero
from lidsplit.spaces.registry import register_space
from lidsplit.supernet import BatchNorm2d, Choice, Edge, Mixture, SearchSpace
from lidsplit.supernet.entangled import Sel, SuperConv2d

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES: tuple[str, ...] = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
NB201_SPACE = SearchSpace(tuple(Edge(lb, NB201_OPS) for lb in NB201_EDGES))


def nb201_op(name: str, c: int, affine: bool, track: bool) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, 0, affine=affine, track=track, bias=not affine)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, 1, affine=affine, track=track, bias=not affine)
    if name == "avg_pool_3x3":
        return Pool("avg", c, c, 1, affine=affine, track=track)
    raise ValueError(f"lidsplit: unknown NB201 op {name!r}; ops are {list(NB201_OPS)}")


_CONV = re.compile(r"^nor_conv_(\d+)x(\d+)$")


class NB201EntangledEdge(Choice):
    """One NB201 edge with its conv ops entangled (``entangled=True``, see the module doc)."""

    def __init__(self, label: str, c: int, ops: Sequence[str] = NB201_OPS, affine: bool = False, track: bool = True,
                 bn_scale: str = "after"):
        super().__init__(label, list(ops))
        self.conv_ops: tuple[int, ...] = ()
        kernels = []
        plain = {}
        for j, name in enumerate(self.op_names):
            m = _CONV.match(name)
            if m:
                if m.group(1) != m.group(2):
                    raise ValueError(f"lidsplit: {name!r}: only square kernels")
                self.conv_ops += (j,)
                kernels.append(int(m.group(1)))
            else:
                plain[name] = nb201_op(name, c, affine, track)
        self.kernels = tuple(kernels)
        self.plain = nn.ModuleDict(plain)
        self.relu = nn.ReLU(inplace=False)
        self.conv = (SuperConv2d(c, c, max(kernels), bias=not affine, bn=True, bn_affine=affine,
                                 track_running_stats=track, bn_scale=bn_scale) if kernels else None)

    def _conv_group(self, x: Tensor, sel: Sel) -> Tensor:
        return self.conv(self.relu(x), sel, Sel.fixed(self.conv.out_channels))

    def is_zero(self, index: int) -> bool:
        name = self.op_names[index]
        return name in self.plain and bool(getattr(self.plain[name], "is_zero", False))

    def run_op(self, index: int, x: Tensor) -> Tensor:
        if index in self.conv_ops:
            return self._conv_group(x, Sel.one(self.conv_ops.index(index), self.kernels))
        return self.plain[self.op_names[index]](x)

    def mix(self, mixture: Mixture, x: Tensor) -> Tensor:
        sel = Sel.from_mixture(mixture, range(len(self))).subset(self.conv_ops, self.kernels) if self.conv_ops else None
        rest = [j for j in mixture.active if j not in self.conv_ops and not self.is_zero(j)]
        outs = [self.plain[self.op_names[j]](x).contiguous() for j in rest]
        y = masked_sum(outs, mixture.weights[..., rest].to(outs[0].dtype)) if outs else None
        if sel is not None:
            c = self._conv_group(x, sel)
            y = c if y is None else y + c
        if y is None:  # only zero ops enabled
            return self.run_op(mixture.active[0], x)
        return y

    def fixed(self, index: int) -> nn.Module:
        if index in self.conv_ops:
            return _FixedConv(self.relu, self.conv, self.conv_ops.index(index), self.kernels)
        return self.plain[self.op_names[index]]


class _FixedConv(nn.Module):
    def __init__(self, relu: nn.Module, conv: SuperConv2d, index: int, kernels: tuple[int, ...]):
        super().__init__()
        self.relu, self.conv, self.index, self.kernels = relu, conv, index, kernels

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.relu(x), Sel.one(self.index, self.kernels), Sel.fixed(self.conv.out_channels))


class NB201Cell(nn.Module):
    """One NB201 cell: its 6 edges are ``Choice`` s of NB201 ops, or :class:`NB201EntangledEdge` s."""

    def __init__(self, c: int, affine: bool = False, track: bool = True, ops: Sequence[str] = NB201_OPS,
                 entangled: bool = False, bn_scale: str = "after"):
        super().__init__()
        if entangled:
            self.edges = nn.ModuleList(NB201EntangledEdge(lb, c, ops, affine, track, bn_scale) for lb in NB201_EDGES)
        else:
            self.edges = nn.ModuleList(
                Choice(lb, [(op, nb201_op(op, c, affine, track)) for op in ops]) for lb in NB201_EDGES
            )

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        k = 0
        for i in range(1, 4):
            s = None
            for j in range(i):
                y = self.edges[k](nodes[j])
                s = y if s is None else s + y
                k += 1
            nodes.append(s)
        return nodes[-1]


class ResNetBlock(nn.Module):
    """NB201's reduction block: ReLUConvBN 3x3 stride 2, ReLUConvBN 3x3, plus avgpool-1x1conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2, track: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1, affine=True, track=track)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine=True, track=track)
        if stride == 2:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(2, 2, 0), nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False)
            )
        elif c_in != c_out:
            self.downsample = ReLUConvBN(c_in, c_out, 1, 1, 0, affine=True, track=track)
        else:
            self.downsample = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Supernet(Supernet):
    """The NAS-Bench-201 supernet (arguments: :func:`nb201`)."""

    def __init__(self, C: int = 8, N: int = 1, num_classes: int = 10, in_channels: int = 1, affine: bool = False,
                 track_running_stats: bool = True, ops: Sequence[str] = NB201_OPS, entangled: bool = False,
                 bn_scale: str = "after"):
        super().__init__()
        if C < 1 or N < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(f"lidsplit: nb201 needs C, N, num_classes, in_channels >= 1 (got {C}, {N}, {num_classes}, {in_channels})")
        track = track_running_stats
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), BatchNorm2d(C, track_running_stats=track))
        cells: list[nn.Module] = []
        c = C
        for stage in range(3):
            if stage > 0:
                cells.append(ResNetBlock(c, 2 * c, 2, track=track))
                c *= 2
            cells.extend(NB201Cell(c, affine, track, ops, entangled, bn_scale) for _ in range(N))
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(BatchNorm2d(c, track_running_stats=track), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        x = self.pool(self.lastact(x)).flatten(1)
        return self.classifier(x)

    def feature_layers(self) -> list[nn.Module]:
        """Every cell output and both ResNet reduction blocks, in forward order (3N + 2 modules)."""
        return list(self.cells)

    def shared_modules(self) -> list[nn.Module]:
        """The cells and reduction blocks (GM-NAS: stem, final BN and classifier excluded)."""
        return list(self.cells)


@register_space("nb201", aliases=("nasbench201",))
def nb201(C: int = 8, N: int = 1, num_classes: int = 10, in_channels: int = 1, affine: bool = False,
          track_running_stats: bool = True, ops: Sequence[str] = NB201_OPS, entangled: bool = False,
          bn_scale: str = "after") -> NB201Supernet:
    """NAS-Bench-201 supernet (NB201 uses C=16, N=5, in_channels=3). Search-cell BatchNorms are
    affine-free by default (as NB201's search models); stem, reduction blocks and the last BN are affine.
    `ops` may list a subset of the NB201 ops (in any order) for reduced spaces. ``entangled=True``: the
    1x1 and 3x3 convs of each edge share one kernel (TangleNAS; ``bn_scale``: see the module doc)."""
    return NB201Supernet(C, N, num_classes, in_channels, affine, track_running_stats, ops, entangled, bn_scale)


# ---- canonical strings ----------------------------------------------------------------------------


def to_nb201_string(arch: Sequence[int | str]) -> str:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` from an arch (op indices into NB201_OPS, or names)."""
    names = NB201_SPACE.names(arch)
    it = iter(names)
    nodes = []
    for i in range(1, 4):
        nodes.append("|" + "|".join(f"{next(it)}~{j}" for j in range(i)) + "|")
    return "+".join(nodes)


def from_nb201_string(s: str) -> tuple[int, ...]:
    """Inverse of :func:`to_nb201_string` (op indices into NB201_OPS, edge order of NB201_EDGES)."""
    if not isinstance(s, str):
        raise TypeError(f"lidsplit: an NB201 architecture string is a str, got {type(s).__name__}")
    nodes = s.strip().split("+")
    if len(nodes) != 3:
        raise ValueError(f"lidsplit: NB201 string {s!r} must have 3 nodes separated by '+', got {len(nodes)}")
    arch: list[int] = []
    for i, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise ValueError(f"lidsplit: NB201 string {s!r}: node {i} {node!r} must look like |op~j|...|")
        by_input: dict[int, int] = {}
        for item in node[1:-1].split("|"):
            op, sep, j = item.partition("~")
            if not sep or not j.isdigit():
                raise ValueError(f"lidsplit: NB201 string {s!r}: bad entry {item!r} (expected op~input)")
            if op not in NB201_OPS:
                raise ValueError(f"lidsplit: NB201 string {s!r}: unknown op {op!r}; ops are {list(NB201_OPS)}")
            jj = int(j)
            if jj >= i or jj in by_input:
                raise ValueError(f"lidsplit: NB201 string {s!r}: node {i} has a bad or repeated input {jj}")
            by_input[jj] = NB201_OPS.index(op)
        if sorted(by_input) != list(range(i)):
            raise ValueError(f"lidsplit: NB201 string {s!r}: node {i} must have inputs 0..{i - 1}")
        arch.extend(by_input[j] for j in range(i))
    return tuple(arch)
