"""Zero-cost proxies against straightforward hand implementations; state preservation; degenerate cases."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lidsplit.split.proxies import (
    PROXIES,
    DegenerateProxyError,
    compute_proxy,
    gradnorm,
    grasp,
    jacob_cov,
    linear_regions,
    ntk,
    proxy_similarity,
    prunable_layers,
    snip,
    synflow,
)


def mlp(seed: int = 0, bias: bool = True, din: int = 5, h: int = 7, dout: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(din, h, bias=bias), nn.ReLU(), nn.Linear(h, h, bias=bias), nn.ReLU(), nn.Linear(h, dout, bias=bias))


def cnn(seed: int = 0, dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(6, 4),
    )


def batch(seed: int = 1, n: int = 8, shape: tuple[int, ...] = (5,), classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def layer_weights(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in prunable_layers(model)]


# ---- gradnorm / snip / grasp ---------------------------------------------------------------------


def test_gradnorm_hand() -> None:
    m = mlp()
    x, y = batch()
    ref = copy.deepcopy(m)
    F.cross_entropy(ref(x), y).backward()
    want = sum(float(w.grad.norm()) for w in layer_weights(ref))
    assert gradnorm(m, x, y) == pytest.approx(want, rel=1e-5)


def test_snip_hand_masks() -> None:
    """SNIP as in the paper: |dL/dc| of a multiplicative mask c = 1 on every weight."""
    m = mlp()
    x, y = batch()
    lins = layer_weights(m)
    masks = [torch.ones_like(w, requires_grad=True) for w in lins]
    h = x
    layers = [mod for mod in m if isinstance(mod, nn.Linear)]
    for i, (lin, c) in enumerate(zip(layers, masks)):
        h = F.linear(h, lin.weight.detach() * c, lin.bias.detach())
        if i < len(layers) - 1:
            h = F.relu(h)
    F.cross_entropy(h, y).backward()
    want = sum(float(c.grad.abs().sum()) for c in masks)
    assert snip(m, x, y) == pytest.approx(want, rel=1e-5)


def test_grasp_hand_hessian() -> None:
    m = mlp(bias=False, din=3, h=4, dout=3).double()
    x, y = batch(n=6, shape=(3,))
    x = x.double()
    ws = [w.detach().clone() for w in layer_weights(m)]
    shapes = [w.shape for w in ws]
    sizes = [w.numel() for w in ws]
    flat = torch.cat([w.reshape(-1) for w in ws])

    def loss_of(v: torch.Tensor) -> torch.Tensor:
        parts = torch.split(v, sizes)
        h = x
        for i, (p, s) in enumerate(zip(parts, shapes)):
            h = F.linear(h, p.reshape(s))
            if i < len(shapes) - 1:
                h = F.relu(h)
        return F.cross_entropy(h, y)

    g = torch.autograd.functional.jacobian(loss_of, flat)
    hess = torch.autograd.functional.hessian(loss_of, flat)
    want = float(-(flat * (hess @ g)).sum())
    assert grasp(m, x, y) == pytest.approx(want, rel=1e-8, abs=1e-12)


# ---- synflow --------------------------------------------------------------------------------------


def synflow_hand(model: nn.Module, shape: tuple[int, ...]) -> float:
    ref = copy.deepcopy(model).double()
    with torch.no_grad():
        for p in ref.parameters():
            p.abs_()
    out = ref(torch.ones(1, *shape, dtype=torch.float64))
    out.sum().backward()
    return sum(float((w.detach() * w.grad).abs().sum()) for w in layer_weights(ref))


def test_synflow_hand_and_euler() -> None:
    m = mlp(bias=True)
    x, _ = batch()
    assert synflow(m, x) == pytest.approx(synflow_hand(m, (5,)), rel=1e-10)
    # bias-free ReLU net with positive weights and input: each layer contributes R (Euler), total L * R
    nb = mlp(bias=False)
    r = torch.ones(1, 5, dtype=torch.float64)
    for w in layer_weights(nb):
        r = r @ w.detach().double().abs().T
    assert synflow(nb, x) == pytest.approx(3 * float(r.sum()), rel=1e-10)
    assert synflow(nb, x, log=True) == pytest.approx(math.log(3 * float(r.sum())), rel=1e-10)


def test_synflow_bn_is_identity() -> None:
    m = cnn()
    x, _ = batch(shape=(3, 6, 6), classes=4)
    no_bn = nn.Sequential(*[mod for mod in copy.deepcopy(m) if not isinstance(mod, nn.BatchNorm2d)])
    assert synflow(m, x) == pytest.approx(synflow_hand(no_bn, (3, 6, 6)), rel=1e-10)
    assert math.isfinite(synflow(m, x, bn=True))


def test_synflow_deep_is_finite_in_float64() -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(50):
        lin = nn.Linear(16, 16)
        nn.init.uniform_(lin.weight, 0.0, 1.0)  # gain ~8 per layer: 8^50 ~ 1e45 > float32 max
        layers += [lin, nn.ReLU()]
    deep = nn.Sequential(*layers, nn.Linear(16, 2))
    x = torch.randn(4, 16)
    v = synflow(deep, x)
    assert math.isfinite(v) and v > 3.4e38
    assert synflow(deep, x, log=True) == pytest.approx(math.log(v))
    with torch.no_grad():  # the same net run in float32 overflows
        assert not torch.isfinite(deep(torch.ones(1, 16)).sum())
    # narrow default-init net: tiny but positive and finite
    torch.manual_seed(0)
    narrow = nn.Sequential(*[l for _ in range(50) for l in (nn.Linear(4, 4), nn.ReLU())], nn.Linear(4, 2))
    v = synflow(narrow, torch.randn(3, 4))
    assert math.isfinite(v) and v > 0


def test_synflow_overflow_raises() -> None:
    layers: list[nn.Module] = []
    for _ in range(400):
        lin = nn.Linear(16, 16, bias=False)
        nn.init.constant_(lin.weight, 1.0)  # gain 16 per layer: 16^400 = 1e481
        layers.append(lin)
    with pytest.raises(DegenerateProxyError, match="overflow"):
        synflow(nn.Sequential(*layers), torch.randn(2, 16))


# ---- jacob_cov / ntk / linear regions -------------------------------------------------------------


def test_jacob_cov_hand() -> None:
    m = mlp(dout=4)
    x, _ = batch(n=6)
    rows = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        m(xi).sum().backward()
        rows.append(xi.grad.reshape(-1).numpy().astype(np.float64))
    jm = np.stack(rows)
    corr = np.corrcoef(jm)
    v, _ = np.linalg.eig(corr)  # Mellor et al.'s code
    v = np.real(v)
    k = 1e-5
    want = -np.sum(np.log(v + k) + 1.0 / (v + k))
    assert jacob_cov(m, x) == pytest.approx(want, rel=1e-4)


def test_ntk_hand() -> None:
    m = mlp(dout=3).double()
    x, _ = batch(n=5)
    x = x.double()
    params = {n: p.detach() for n, p in m.named_parameters() if "weight" in n}
    others = {n: p.detach() for n, p in m.named_parameters() if "weight" not in n}

    def f(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.func.functional_call(m, {**ps, **others}, (x,)).sum(1)

    jac = torch.func.jacrev(f)(params)
    jm = torch.cat([jac[n].reshape(x.shape[0], -1) for n in params], 1).numpy()
    e = np.linalg.eigvalsh(jm @ jm.T)
    assert ntk(m, x) == pytest.approx(e[-1] / e[0], rel=1e-6)


def test_ntk_singular_is_capped() -> None:
    m = nn.Sequential(nn.Linear(2, 1, bias=False))  # 2 weights, 6 samples: rank <= 2
    x, _ = batch(n=6, shape=(2,))
    assert ntk(m, x) == pytest.approx(1e12, rel=1e-6)
    assert ntk(m, x, ntk_floor=1e-6) == pytest.approx(1e6, rel=1e-6)


def test_linear_regions_hand() -> None:
    lin = nn.Linear(1, 3)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.copy_(torch.tensor([0.0, -1.0, -2.0]))  # thresholds 0, 1, 2
    m = nn.Sequential(lin, nn.ReLU(), nn.Linear(3, 2))
    x = torch.tensor([[-0.5], [0.5], [0.6], [1.5], [2.5], [3.0]])
    # regions hit: x<0, 0<x<1 (twice), 1<x<2, x>2 (twice) -> 4 distinct patterns
    assert linear_regions(m, x) == pytest.approx(4 / 6)
    assert linear_regions(m, x, normalise=False) == 4.0


def test_linear_regions_counts_all_relu_layers() -> None:
    m = mlp()
    x, _ = batch(n=32)
    pats = []

    def hook(mod: nn.Module, inp: object, out: torch.Tensor) -> None:
        pats.append((out > 0).numpy())

    hs = [mod.register_forward_hook(hook) for mod in m if isinstance(mod, nn.ReLU)]
    with torch.no_grad():
        m(x)
    for h in hs:
        h.remove()
    codes = {tuple(np.concatenate([p[i] for p in pats]).tolist()) for i in range(32)}
    assert linear_regions(m, x, normalise=False) == len(codes)


# ---- state, determinism, degenerate cases -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_state_unchanged(name: str) -> None:
    m = cnn(dropout=0.5)
    m.train()
    m[4].eval()  # mixed modes must survive too
    x, y = batch(shape=(3, 6, 6), classes=4)
    for p in m.parameters():
        p.grad = torch.full_like(p, 0.25)  # pre-existing gradients must survive
    m[0].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    grads = [p.grad.clone() for p in m.parameters()]
    modes = [mod.training for mod in m.modules()]
    rng = torch.get_rng_state()
    v1 = compute_proxy(name, m, x, y)
    assert math.isfinite(v1)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, m.parameters()))
    assert [mod.training for mod in m.modules()] == modes
    assert not m[0].bias.requires_grad and m[0].weight.requires_grad
    assert torch.equal(rng, torch.get_rng_state())
    assert not m[1]._forward_hooks and not m[2]._forward_hooks
    assert compute_proxy(name, m, x, y) == v1  # deterministic (dropout seeded)


def test_seed_changes_dropout_only() -> None:
    m = cnn(dropout=0.5)
    x, y = batch(shape=(3, 6, 6), classes=4)
    assert gradnorm(m, x, y, seed=0) == gradnorm(m, x, y, seed=0)
    assert gradnorm(m, x, y, seed=0) != gradnorm(m, x, y, seed=1)
    m.eval()
    assert gradnorm(m, x, y, seed=0) == gradnorm(m, x, y, seed=1)


def test_degenerate_cases() -> None:
    x, y = batch()
    zero = mlp()
    with torch.no_grad():
        for p in zero.parameters():
            p.zero_()
    with pytest.raises(DegenerateProxyError, match="jacob_cov"):
        jacob_cov(zero, x)
    with pytest.raises(DegenerateProxyError, match="ntk"):
        ntk(nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2)).apply(lambda mod: [nn.init.zeros_(p) for p in mod.parameters(recurse=False)]), x)
    with pytest.raises(DegenerateProxyError, match="linear_regions"):
        linear_regions(nn.Sequential(nn.Linear(5, 2), nn.Tanh()), x)
    with pytest.raises(DegenerateProxyError, match="no Conv/Linear"):
        gradnorm(nn.Sequential(nn.Flatten()), x, y)
    with pytest.raises(DegenerateProxyError, match="log undefined"):
        synflow(zero, x, log=True)
    with pytest.raises(ValueError, match="targets"):
        snip(mlp(), x)
    with pytest.raises(ValueError, match="unknown"):
        compute_proxy("zen", mlp(), x, y)


def test_supernet_mode_applies() -> None:
    """The proxies keep module identities, so a supernet forward mode set around the call applies."""
    sn = pytest.importorskip("lidsplit.supernet")

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.stem = nn.Linear(5, 6)
            self.a = nn.Linear(6, 6)
            self.b = nn.Sequential(nn.ReLU(), nn.Linear(6, 6))
            self.choice = sn.Choice("e0", [("a", self.a), ("b", self.b)])
            self.head = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.choice(self.stem(x)))

    net = Net()
    x, y = batch()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for op, inner in [(0, net.a), (1, net.b)]:
        plain = nn.Sequential(net.stem, inner, net.head)
        with sn.use_path(net, (op,)):
            for name in ("gradnorm", "snip", "grasp", "synflow", "jacob_cov", "ntk") + (("linear_regions",) if op else ()):
                assert compute_proxy(name, net, x, y) == pytest.approx(compute_proxy(name, plain, x, y), rel=1e-6)
    # ops registered twice (as attributes and inside the Choice) are restored once, correctly
    assert all(torch.equal(before[k], v) and v.dtype == before[k].dtype for k, v in net.state_dict().items())
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_proxy_similarity() -> None:
    s = proxy_similarity([1.0, 3.0, 2.0])
    assert np.allclose(s, -np.array([[0, 2, 1], [2, 0, 1], [1, 1, 0]]))
    s = proxy_similarity(torch.tensor([1.0, 3.0]), reference=2.0)
    assert np.allclose(s, -np.array([[0, 1.0], [1.0, 0]]))
    with pytest.raises(ValueError, match="reference"):
        proxy_similarity([1.0, 2.0], reference=0.0)
    with pytest.raises(ValueError, match="non-finite"):
        proxy_similarity([1.0, float("nan")])


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_device_agrees_with_cpu(name: str, device: str) -> None:
    m = cnn()
    x, y = batch(shape=(3, 6, 6), classes=4)
    ref = compute_proxy(name, m, x, y)
    got = compute_proxy(name, copy.deepcopy(m).to(device), x.to(device), y.to(device))
    assert got == pytest.approx(ref, rel=2e-2 if device != "cpu" else 1e-12)


def test_ntk_batched_equals_loop() -> None:
    m = cnn()
    x, _ = batch(shape=(3, 6, 6), classes=4)
    assert ntk(m, x, batched=True) == pytest.approx(ntk(m, x), rel=1e-6)
