"""Supernets written the way other NAS codebases write them (no lidsplit import): the tests adapt them.

* DARTS (quark0/darts ``model_search.py``): ``MixedOp`` holds its candidates in ``self._ops`` and is
  called ``op(x, weights)``; ``Cell`` passes one row of the softmaxed alphas per edge; all normal cells share
  ``alphas_normal``, all reduction cells ``alphas_reduce`` (plain tensors, not registered parameters).
* AutoDL NB201 (``NAS201SearchCell`` / ``TinyNetworkDarts``): each edge is an ``nn.ModuleList`` in the
  ``edges`` ModuleDict; the cell mixes the candidates itself; GDAS / SETN (random) / ENAS-style (select) /
  fixed-structure forwards index and iterate the edge lists. The architecture parameter is registered.
* AutoDL NASNet (``MixedOp`` with ``forward_darts`` / ``forward_gdas``, ``NASNetSearchCell``).
* NNI's ``LayerChoice`` interface (a stand-in used when nni cannot be imported): candidates are children
  named ``"0"``, ``"1"``, ... (or the dict keys), ``names`` lists them, ``label`` is a read-only property,
  it indexes / iterates / has ``len``, and its forward runs the first candidate.

Sizes are tiny (C = 4, 8 x 8 inputs) so that every test runs in seconds on one thread.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

# ---- DARTS ---------------------------------------------------------------------------------------

PRIMITIVES = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3"]


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class FactorizedReduce(nn.Module):
    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


OPS = {
    "none": lambda C, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": lambda C, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
}


class MixedOp(nn.Module):
    def __init__(self, C, stride):
        super().__init__()
        self._ops = nn.ModuleList()
        for primitive in PRIMITIVES:
            op = OPS[primitive](C, stride, False)
            if "pool" in primitive:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class Cell(nn.Module):
    def __init__(self, steps, multiplier, C_prev_prev, C_prev, C, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._steps = steps
        self._multiplier = multiplier
        self._ops = nn.ModuleList()
        for i in range(self._steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self._ops.append(MixedOp(C, stride))

    def forward(self, s0, s1, weights):
        s0 = self.preprocess0(s0)
        s1 = self.preprocess1(s1)
        states = [s0, s1]
        offset = 0
        for i in range(self._steps):
            s = sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier :], dim=1)


class Network(nn.Module):
    def __init__(self, C=4, num_classes=4, layers=3, steps=2, multiplier=2, stem_multiplier=2, in_channels=3):
        super().__init__()
        self._C, self._num_classes, self._layers = C, num_classes, layers
        self._steps, self._multiplier = steps, multiplier
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            if i in [layers // 3, 2 * layers // 3]:
                C_curr *= 2
                reduction = True
            else:
                reduction = False
            cell = Cell(steps, multiplier, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells += [cell]
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self._initialize_alphas()

    def forward(self, input):
        s0 = s1 = self.stem(input)
        for cell in self.cells:
            weights = F.softmax(self.alphas_reduce if cell.reduction else self.alphas_normal, dim=-1)
            s0, s1 = s1, cell(s0, s1, weights)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1))

    def _initialize_alphas(self):
        k = sum(1 for i in range(self._steps) for n in range(2 + i))
        self.alphas_normal = (1e-3 * torch.randn(k, len(PRIMITIVES))).requires_grad_(True)
        self.alphas_reduce = (1e-3 * torch.randn(k, len(PRIMITIVES))).requires_grad_(True)
        self._arch_parameters = [self.alphas_normal, self.alphas_reduce]

    def arch_parameters(self):
        return self._arch_parameters


def darts_label(net: Network):
    """The label of ``cells.<c>._ops.<k>``: ``normal/<i>-<j>`` or ``reduce/...`` (lidsplit's DARTS labels), so
    that every normal cell shares one decision per edge, as DARTS's alphas do."""
    pairs = [(i + 2, j) for i in range(net._steps) for j in range(2 + i)]

    def label(name: str, module: nn.Module) -> str:
        _, c, _, k = name.split(".")
        kind = "reduce" if net.cells[int(c)].reduction else "normal"
        i, j = pairs[int(k)]
        return f"{kind}/{i}<-{j}"

    return label


# ---- AutoDL NB201 --------------------------------------------------------------------------------

NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


class AutoZero(nn.Module):
    def __init__(self, C_in, C_out, stride):
        super().__init__()
        self.C_in, self.C_out, self.stride = C_in, C_out, stride
        self.is_zero = True

    def forward(self, x):
        if self.C_in == self.C_out:
            return x.mul(0.0) if self.stride == 1 else x[:, :, :: self.stride, :: self.stride].mul(0.0)
        shape = list(x.shape)
        shape[1] = self.C_out
        return x.new_zeros(shape, dtype=x.dtype, device=x.device)


class AutoPooling(nn.Module):
    def __init__(self, C, stride):
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x):
        return self.op(x)


AUTO_OPS = {
    "none": lambda C, stride: AutoZero(C, C, stride),
    "skip_connect": lambda C, stride: nn.Identity(),
    "nor_conv_1x1": lambda C, stride: ReLUConvBN(C, C, 1, stride, 0, affine=False),
    "nor_conv_3x3": lambda C, stride: ReLUConvBN(C, C, 3, stride, 1, affine=False),
    "avg_pool_3x3": lambda C, stride: AutoPooling(C, stride),
}


class NAS201SearchCell(nn.Module):
    def __init__(self, C, max_nodes, op_names):
        super().__init__()
        self.op_names = list(op_names)
        self.max_nodes = max_nodes
        self.edges = nn.ModuleDict()
        for i in range(1, max_nodes):
            for j in range(i):
                self.edges["{:}<-{:}".format(i, j)] = nn.ModuleList([AUTO_OPS[n](C, 1) for n in op_names])
        self.edge_keys = sorted(self.edges.keys())
        self.edge2index = {key: i for i, key in enumerate(self.edge_keys)}
        self.num_edges = len(self.edges)

    def _dag(self, inputs, edge_out):
        """Node i = sum over j < i of ``edge_out(node_str, node j)``."""
        nodes = [inputs]
        for i in range(1, self.max_nodes):
            nodes.append(sum(edge_out("{:}<-{:}".format(i, j), nodes[j]) for j in range(i)))
        return nodes[-1]

    def forward(self, inputs, weightss):
        def mix(node_str, x):
            weights = weightss[self.edge2index[node_str]]
            return sum(layer(x) * w for layer, w in zip(self.edges[node_str], weights))

        return self._dag(inputs, mix)

    def forward_gdas(self, inputs, hardwts, index):
        def pick(node_str, x):
            weights = hardwts[self.edge2index[node_str]]
            argmaxs = index[self.edge2index[node_str]].item()
            return sum(weights[_ie] * edge(x) if _ie == argmaxs else weights[_ie]
                       for _ie, edge in enumerate(self.edges[node_str]))

        return self._dag(inputs, pick)

    def forward_urs(self, inputs):
        nodes = [inputs]
        for i in range(1, self.max_nodes):
            while True:
                sops, has_non_zero = [], False
                for j in range(i):
                    select_op = random.choice(self.edges["{:}<-{:}".format(i, j)])
                    sops.append(select_op)
                    if not hasattr(select_op, "is_zero") or select_op.is_zero is False:
                        has_non_zero = True
                if has_non_zero:
                    break
            nodes.append(sum(op(nodes[j]) for j, op in enumerate(sops)))
        return nodes[-1]

    def forward_select(self, inputs, weightss):
        return self._dag(inputs, lambda node_str, x: self.edges[node_str][
            weightss[self.edge2index[node_str]].argmax().item()](x))

    def forward_dynamic(self, inputs, structure):
        """structure: per node i (1..), a list of (op name, j) pairs."""
        nodes = [inputs]
        for i in range(1, self.max_nodes):
            inter_nodes = []
            for op_name, j in structure[i - 1]:
                op_index = self.op_names.index(op_name)
                inter_nodes.append(self.edges["{:}<-{:}".format(i, j)][op_index](nodes[j]))
            nodes.append(sum(inter_nodes))
        return nodes[-1]


class TinyNetworkDarts(nn.Module):
    def __init__(self, C=4, N=1, max_nodes=4, num_classes=4, search_space=NB201_OPS, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList([NAS201SearchCell(C, max_nodes, search_space) for _ in range(N)])
        self.op_names = list(search_space)
        self.edge2index = self.cells[0].edge2index
        self.lastact = nn.Sequential(nn.BatchNorm2d(C), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)
        self.arch_parameters = nn.Parameter(1e-3 * torch.randn(len(self.edge2index), len(search_space)))

    def forward(self, inputs):
        alphas = F.softmax(self.arch_parameters, dim=-1)
        feature = self.stem(inputs)
        for cell in self.cells:
            feature = cell(feature, alphas)
        out = self.global_pooling(self.lastact(feature))
        out = out.view(out.size(0), -1)
        return out, self.classifier(out)


def nb201_edge(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.ModuleList) and ".edges." in f".{name}"


# ---- AutoDL NASNet-space MixedOp ------------------------------------------------------------------


class AutoMixedOp(nn.Module):
    def __init__(self, space, C, stride):
        super().__init__()
        self._ops = nn.ModuleList([AUTO_OPS[p](C, stride) for p in space])

    def forward_gdas(self, x, weights, index):
        return self._ops[index](x) * weights[index]

    def forward_darts(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class NASNetSearchCell(nn.Module):
    def __init__(self, space, steps, C):
        super().__init__()
        self.op_names = list(space)
        self.preprocess0 = ReLUConvBN(C, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C, C, 1, 1, 0, affine=False)
        self._steps = steps
        self.edges = nn.ModuleDict()
        for i in range(steps):
            for j in range(2 + i):
                self.edges["{:}<-{:}".format(i, j)] = AutoMixedOp(space, C, 1)
        self.edge_keys = sorted(self.edges.keys())
        self.edge2index = {key: i for i, key in enumerate(self.edge_keys)}

    def forward_darts(self, s0, s1, weightss):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            clist = []
            for j, h in enumerate(states):
                node_str = "{:}<-{:}".format(i, j)
                clist.append(self.edges[node_str].forward_darts(h, weightss[self.edge2index[node_str]]))
            states.append(sum(clist))
        return torch.cat(states[-2:], dim=1)

    def forward_gdas(self, s0, s1, weightss, indexs):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            clist = []
            for j, h in enumerate(states):
                node_str = "{:}<-{:}".format(i, j)
                k = self.edge2index[node_str]
                clist.append(self.edges[node_str].forward_gdas(h, weightss[k], indexs[k].item()))
            states.append(sum(clist))
        return torch.cat(states[-2:], dim=1)


class NASNetworkDARTS(nn.Module):
    def __init__(self, C=4, steps=2, num_classes=4, search_space=NB201_OPS, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cell = NASNetSearchCell(search_space, steps, C)
        self.squeeze = nn.Conv2d(2 * C, C, 1, bias=False)
        self.classifier = nn.Linear(C, num_classes)
        self.arch_normal_parameters = nn.Parameter(1e-3 * torch.randn(len(self.cell.edge2index), len(search_space)))
        self.tau = 1.0

    def forward(self, inputs):
        s = self.stem(inputs)
        out = self.squeeze(self.cell.forward_darts(s, s, F.softmax(self.arch_normal_parameters, dim=-1)))
        return out, self.classifier(out.mean((2, 3)))

    def forward_gdas(self, inputs):
        gumbels = -torch.empty_like(self.arch_normal_parameters).exponential_().log()
        probs = F.softmax((self.arch_normal_parameters.log_softmax(dim=1) + gumbels) / self.tau, dim=1)
        index = probs.max(-1, keepdim=True)[1]
        one_h = torch.zeros_like(probs).scatter_(-1, index, 1.0)
        hardwts = one_h - probs.detach() + probs
        s = self.stem(inputs)
        out = self.squeeze(self.cell.forward_gdas(s, s, hardwts, index))
        return out, self.classifier(out.mean((2, 3)))


# ---- NNI LayerChoice stand-in (the interface of nni.nas.nn.pytorch.LayerChoice, NNI 3.0) ---------------

_AUTO_LABEL = [0]


class LayerChoice(nn.Module):
    def __init__(self, candidates, *, weights=None, label=None):
        super().__init__()
        if isinstance(candidates, dict):
            names, modules = list(candidates), list(candidates.values())
        else:
            names, modules = list(range(len(candidates))), list(candidates)
        for n, m in zip(names, modules):
            self.add_module(str(n), m)
        if label is None:
            _AUTO_LABEL[0] += 1
            label = f"layerchoice_{_AUTO_LABEL[0]}"
        self._label = label
        self.names = names

    @property
    def label(self):
        return self._label

    def __getitem__(self, idx):
        if idx not in self.names:
            raise KeyError(f"{idx!r} is not found in {self.names!r}.")
        return self._modules[str(idx)]

    def __len__(self):
        return len(self.names)

    def __iter__(self):
        return map(lambda name: self._modules[str(name)], self.names)

    def forward(self, x):
        return self._modules[str(self.names[0])](x)
