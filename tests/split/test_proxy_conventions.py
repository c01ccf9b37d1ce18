"""fisher and the ZC-split code's proxies (``convention="zc-split-code"``) against small hand-written
references of each definition; the convention through the criterion registry and the pipeline config."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lidsplit.split import ProxyCriterion, make_criterion
from lidsplit.split.proxies import (
    CODE_PROXIES,
    PROXIES,
    compute_proxy,
    fisher,
    gradnorm_code,
    jacob_cov_code,
    ntk_code,
    snip,
    synflow,
    synflow_code,
)


class Net(nn.Module):
    """C = 4 (the gcd of the conv widths, the code's ``net._C``); ``spare`` is never called (its gradient:
    zeros)."""

    def __init__(self, inplace: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=inplace)
        self.bn2 = nn.BatchNorm2d(8)
        self.spare = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn1(self.stem(x)).relu()
        h = self.bn2(self.relu(self.conv(h)))
        return self.head(h.mean((2, 3)))


def batch(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


def layers(m: nn.Module) -> list[nn.Module]:
    return [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]


# ---- hand references ---------------------------------------------------------------------------


def fisher_ref(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Turner et al. as zero-cost-nas: per layer the output's .grad after loss.backward(), per-channel
    0.5 * mean_n (sum_spatial act * grad)^2, broadcast over the channel's weights, everything summed."""
    m = copy.deepcopy(model)
    acts = {}

    def keep(mod, inp, out):
        out.retain_grad()
        acts[mod] = out

    hs = [mod.register_forward_hook(keep) for mod in layers(m)]
    F.cross_entropy(m(x), y).backward()
    for h in hs:
        h.remove()
    total = 0.0
    for mod, a in acts.items():
        g_nk = (a * a.grad).sum((2, 3)) if a.dim() == 4 else a * a.grad
        per_ch = 0.5 * g_nk.detach().pow(2).mean(0)
        total += float(torch.stack([torch.full(mod.weight.shape[1:], float(v)) for v in per_ch]).double().sum())
    return total


def code_matrix(model: nn.Module, x: torch.Tensor, c: int) -> torch.Tensor:
    """The ZC-split GradientCollector: eval mode, backward of ones over the logits, per layer w.grad (or
    zeros) viewed as (C, -1), concatenated."""
    m = copy.deepcopy(model).eval()
    m(x).backward(torch.ones(x.shape[0], 5))
    return torch.cat([(mod.weight.grad if mod.weight.grad is not None else torch.zeros_like(mod.weight)).view(c, -1)
                      for mod in layers(m)], -1).double()


def test_fisher_hand() -> None:
    m, (x, y) = Net(), batch()
    m.train()
    assert fisher(m, x, y) == pytest.approx(fisher_ref(m, x, y), rel=1e-6)
    # an in-place op right after a layer must not change what the layer output was
    assert fisher(Net(inplace=True), x, y) == pytest.approx(fisher(Net(inplace=False), x, y), rel=1e-12)
    assert fisher(m, x, y) > 0


def test_fisher_linear_only_and_errors() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    a0 = m[0](x)
    a0.retain_grad()
    a2 = m[2](m[1](a0))
    a2.retain_grad()
    F.cross_entropy(a2, y).backward()
    ref = sum(0.5 * float((a.detach() * a.grad).pow(2).mean(0).sum()) * lay.weight.shape[1]
              for a, lay in ((a0, m[0]), (a2, m[2])))
    assert fisher(m, x, y) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="targets"):
        fisher(m, x)


def test_gradnorm_code_hand() -> None:
    m, (x, _) = Net(), batch()
    g = code_matrix(m, x, 4)
    assert gradnorm_code(m.eval(), x) == pytest.approx(float(torch.linalg.norm(torch.stack([g], 0))), rel=1e-6)


def test_jacob_cov_code_hand() -> None:
    m, (x, _) = Net(), batch()
    g = code_matrix(m, x, 4)
    e = torch.linalg.eig(torch.corrcoef(g))[0]
    ref = -torch.sum(torch.log(e + 1e-8) + 1 / (e + 1e-8))
    assert abs(float(ref.imag)) < 1e-9
    assert jacob_cov_code(m.eval(), x) == pytest.approx(float(ref.real), rel=1e-6)


def test_ntk_code_hand() -> None:
    m, (x, _) = Net(), batch()
    g = code_matrix(m, x, 4)
    e = torch.linalg.eigvalsh(g @ g.T)
    assert ntk_code(m.eval(), x) == pytest.approx(float(e[-1] / e[0]), rel=1e-6)
    # rows: the gcd of the conv widths (4, 8) by default; another divisor is another matrix; a non-divisor
    # is an error
    g2 = code_matrix(m, x, 2)
    e2 = torch.linalg.eigvalsh(g2 @ g2.T)
    assert ntk_code(m.eval(), x, rows=2) == pytest.approx(float(e2[-1] / e2[0]), rel=1e-6)
    with pytest.raises(ValueError, match="rows=3 does not divide"):
        ntk_code(m, x, rows=3)


def test_code_rows_default_on_darts() -> None:
    from lidsplit.spaces import darts
    from lidsplit.supernet import SubSupernet, search_space, use_sum

    torch.manual_seed(0)
    net = darts(C=4, layers=3, steps=2, num_classes=5, in_channels=3)
    x, _ = batch(n=6)
    with use_sum(net, SubSupernet.full(search_space(net))):
        assert ntk_code(net, x) == pytest.approx(ntk_code(net, x, rows=4), rel=1e-12)
        with pytest.raises(ValueError, match="rows=12 does not divide"):
            ntk_code(net, x, rows=12)  # the stem's width 3C


def test_code_convention_runs_in_eval_mode_and_restores() -> None:
    m, (x, y) = Net(), batch()
    with torch.no_grad():  # running statistics far from (0, 1): eval mode differs from batch statistics
        m.bn1.running_mean.fill_(0.3)
        m.bn1.running_var.fill_(2.0)
    m.train()
    m.bn2.eval()
    modes = [mod.training for mod in m.modules()]
    ev = copy.deepcopy(m).eval()
    for name in ("snip", "grasp", "linear_regions", "fisher"):  # same definition, eval mode
        got = compute_proxy(name, m, x, y, convention="zc-split-code")
        assert got == pytest.approx(compute_proxy(name, ev, x, y), rel=1e-9)
    assert compute_proxy("snip", m, x, y, convention="zc-split-code") != pytest.approx(snip(m, x, y), rel=1e-3)
    assert compute_proxy("synflow", m, x, y, convention="zc-split-code") == pytest.approx(synflow(ev, x, bn=True), rel=1e-12)
    assert synflow_code(ev, x) != synflow(ev, x)
    assert compute_proxy("gradnorm", m, x, y, convention="zc-split-code") == pytest.approx(gradnorm_code(ev, x), rel=1e-12)
    assert [mod.training for mod in m.modules()] == modes
    with pytest.raises(ValueError, match="convention"):
        compute_proxy("snip", m, x, y, convention="zc")
    assert set(CODE_PROXIES) == set(PROXIES)


def test_convention_through_registry_and_criterion(monkeypatch) -> None:
    crit = make_criterion("jacobcov", convention="zc-split-code", options={"rows": 4})
    assert isinstance(crit, ProxyCriterion) and crit.convention == "zc-split-code"
    assert crit.config()["convention"] == "zc-split-code"
    assert "convention" not in make_criterion("snip").config()  # saved runs keep their identity
    assert make_criterion("snip").others == "path"  # the cheap default (others="sum": the sub-supernet)
    with pytest.raises(ValueError, match="convention"):
        make_criterion("snip", convention="paper")
    seen = []
    real = compute_proxy

    def spy(*a, **kw):
        seen.append(kw.get("convention"))
        return real(*a, **kw)

    monkeypatch.setattr("lidsplit.split.proxies.compute_proxy", spy)
    from lidsplit.spaces import nb201
    from lidsplit.split import scoring_set
    from lidsplit.supernet import SubSupernet, search_space

    torch.manual_seed(0)
    net = nb201(C=4, N=1, num_classes=5, in_channels=3)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 5, (8,), generator=g))]
    ss = scoring_set(SubSupernet.full(search_space(net)), data, 1)
    sc = make_criterion("ntk", convention="zc-split-code").score_edge(net, ss, 0)
    assert seen and set(seen) == {"zc-split-code"}
    assert sc.similarity.shape == (5, 5) and np.isfinite(sc.similarity).all()
    assert math.isfinite(float(sc.measurements["reference"]))


def test_pipeline_config_key() -> None:
    from lidsplit.pipeline.config import Config, ConfigError

    cfg = Config.from_dict({"split": {"criterion": "ntk", "proxy_convention": "zc-split-code"}})
    assert cfg.split.proxy_convention == "zc-split-code"
    assert Config.from_dict({}).split.proxy_convention == "original"
    with pytest.raises(ConfigError, match="proxy_convention"):
        Config.from_dict({"split": {"proxy_convention": "paper"}})


def test_pipeline_split_stage_passes_the_convention(tmp_path, monkeypatch) -> None:
    import lidsplit
    from lidsplit.pipeline.config import ConfigError
    from lidsplit.pipeline.pipeline import Pipeline

    class Stop(Exception):
        pass

    seen = {}

    def fake_run_split(model, data, criterion, policy, **kw):
        seen.update(criterion=criterion, options=kw.get("criterion_options"))
        raise Stop

    monkeypatch.setattr(lidsplit, "run_split", fake_run_split)
    pipe = Pipeline(tmp_path / "a", [{"split": {"criterion": "jacob_cov", "proxy_convention": "zc-split-code"}}],
                    log=lambda s: None)
    with pytest.raises(Stop):
        pipe.stages["split"].run()
    assert seen == {"criterion": "jacob_cov", "options": {"convention": "zc-split-code"}}
    pipe = Pipeline(tmp_path / "b", [{"split": {"criterion": "snip"}}], log=lambda s: None)
    with pytest.raises(Stop):
        pipe.stages["split"].run()
    assert seen["options"] is None  # the default passes nothing: saved runs keep their identity
    pipe = Pipeline(tmp_path / "c", [{"split": {"criterion": "lid", "proxy_convention": "zc-split-code"}}],
                    log=lambda s: None)
    with pytest.raises(ConfigError, match="proxy_convention"):
        pipe.stages["split"].run()
