"""NAS-Bench-201 with the 1x1 and 3x3 convolutions entangled (TangleNAS section 4.2).

Same space as :func:`lidsplit.spaces.nb201` (6 edges, ops none / skip_connect / nor_conv_1x1 /
nor_conv_3x3 / avg_pool_3x3, same labels and op names, same stem / ResNet blocks / classifier); on every
edge ``nor_conv_1x1`` is the centre of ``nor_conv_3x3``'s kernel (one weight, one BatchNorm).

Architecture weights are matched to kernels BY NAME: the op named ``nor_conv_{k}x{k}`` uses the k x k
centre, whatever the op order (the authors' code pairs them by position and gets 1x1 <-> 3x3 swapped).

Mixture on an edge: ``sum over non-conv ops w_j op_j(x) + conv_group(x)``, where conv_group is
ReLU -> conv with the superposed kernel ``w_1x1 pad(W_1x1) + w_3x3 W_3x3`` -> BatchNorm. With
``bn_scale="after"`` (default) the kernel is normalised by the group weight ``t = w_1x1 + w_3x3`` and
the BatchNorm output multiplied by t, so the group keeps its weight against skip / pool;
``bn_scale="before"`` is the authors' variant (t normalised away by the BatchNorm).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import Tensor, nn

from lidsplit.spaces.nb201 import NB201_EDGES, NB201_OPS, NB201Cell, NB201Supernet, nb201_op
from lidsplit.supernet import Choice
from lidsplit.supernet.choice import Mixture, _masked_sum
from lidsplit.tangle.core import Sel
from lidsplit.tangle.modules import SuperConv2d

_CONV = re.compile(r"^nor_conv_(\d+)x(\d+)$")


class NB201EntangledEdge(Choice):
    """One NB201 edge with its conv ops entangled (see the module doc)."""

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
        from lidsplit import ops as lops

        sel = Sel.from_mixture(mixture, range(len(self))).subset(self.conv_ops, self.kernels) if self.conv_ops else None
        rest = [j for j in mixture.active if j not in self.conv_ops and not self.is_zero(j)]
        outs = [self.plain[self.op_names[j]](x) for j in rest]
        y = None
        if outs:
            w = mixture.weights[..., rest]
            y = _masked_sum(lops, outs, w)
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


class NB201EntangledCell(NB201Cell):
    def __init__(self, c: int, affine: bool = False, track: bool = True, ops: Sequence[str] = NB201_OPS,
                 bn_scale: str = "after"):
        nn.Module.__init__(self)
        self.edges = nn.ModuleList(NB201EntangledEdge(lb, c, ops, affine, track, bn_scale) for lb in NB201_EDGES)


def nb201_entangled(
    C: int = 8,
    N: int = 1,
    num_classes: int = 10,
    in_channels: int = 1,
    affine: bool = False,
    track_running_stats: bool = True,
    ops: Sequence[str] = NB201_OPS,
    bn_scale: str = "after",
) -> NB201Supernet:
    """NAS-Bench-201 supernet with entangled 1x1 / 3x3 convs (arguments as :func:`lidsplit.spaces.nb201`)."""
    net = NB201Supernet(C, N, num_classes, in_channels, affine, track_running_stats, ops)
    c = C
    for i, cell in enumerate(net.cells):
        if isinstance(cell, NB201Cell):
            net.cells[i] = NB201EntangledCell(c, affine, track_running_stats, ops, bn_scale)
        else:  # ResNet reduction block
            c *= 2
    return net
