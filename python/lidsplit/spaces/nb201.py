"""NAS-Bench-201 cell space: 5 ops on 6 edges shared by every cell (5^6 = 15625 architectures).

Network (as NB201): stem 3x3 conv + BN, N cells at C, ResNet reduction block to 2C, N cells, reduction
block to 4C, N cells, BN-ReLU, global average pool, linear classifier. A cell has nodes 0..3, node i the sum
of edges ``i<-j`` (j < i) applied to node j; its output is node 3. Every cell's edge ``i<-j`` is one Choice
labelled ``"i<-j"``, so the space has exactly 6 edges, in the canonical order
1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2, and 5 ops in NB201's order:
none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3.

Architecture index: ``SearchSpace.arch_to_index`` (mixed radix, first edge most significant); this is NOT
the row number of the NAS-Bench-201 benchmark file. Use :func:`to_nb201_string` to look architectures up.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lidsplit.supernet import BatchNorm2d, Choice, Edge, SearchSpace
from lidsplit.spaces.common import Pool, ReLUConvBN, Supernet, Zero

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


class NB201Cell(nn.Module):
    def __init__(self, c: int, affine: bool = False, track: bool = True, ops: Sequence[str] = NB201_OPS):
        super().__init__()
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
    def __init__(
        self,
        C: int = 8,
        N: int = 1,
        num_classes: int = 10,
        in_channels: int = 1,
        affine: bool = False,
        track_running_stats: bool = True,
        ops: Sequence[str] = NB201_OPS,
    ):
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
            cells.extend(NB201Cell(c, affine, track, ops) for _ in range(N))
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


def nb201(
    C: int = 8,
    N: int = 1,
    num_classes: int = 10,
    in_channels: int = 1,
    affine: bool = False,
    track_running_stats: bool = True,
    ops: Sequence[str] = NB201_OPS,
) -> NB201Supernet:
    """NAS-Bench-201 supernet (NB201 uses C=16, N=5, in_channels=3). Search-cell BatchNorms are
    affine-free by default (as NB201's search models); stem, reduction blocks and the last BN are affine.
    `ops` may list a subset of the NB201 ops (in any order) for reduced spaces."""
    return NB201Supernet(C, N, num_classes, in_channels, affine, track_running_stats, ops)


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
