"""Which paths get trained: uniform inside the masks, single-op edges included, nothing outside."""

from __future__ import annotations

from collections import Counter

import torch

from lidsplit.supernet import SubSupernet, choices, search_space
from lidsplit.train import train_subsupernet


def test_paths_inside_sub_and_uniform(data, make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(0)
    space = search_space(m)
    sub = SubSupernet.full(space).restrict("1<-0", [0, 2, 4]).restrict("2<-1", [3])
    archs: list[tuple[int, ...]] = []
    train_subsupernet(m, sub, data.loaders(16), 12, progress=False, optimizer="adam", lr=1e-3,
                      on_step=lambda e: archs.append(e.arch))
    assert len(archs) == 36 and all(sub.contains(a) for a in archs)
    first = Counter(a[0] for a in archs)
    assert set(first) == {0, 2, 4} and min(first.values()) >= 5  # every enabled op is drawn
    assert {a[2] for a in archs} == {3}  # the single-op edge keeps its op


def test_single_op_edges_train_and_disabled_ops_untouched(data, make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(0)
    space = search_space(m)
    arch = (3, 1, 3, 2, 3, 1)
    sub = SubSupernet.from_arch(space, arch)  # every edge has a single op
    before = {k: v.clone() for k, v in m.state_dict().items()}
    res = train_subsupernet(m, sub, data.loaders(16), 2, progress=False, weight_decay=1e-3)
    assert res.finished and all(torch.isfinite(torch.tensor(h["train_loss"])) for h in res.history)
    after = m.state_dict()
    chs = choices(m)
    for e, label in enumerate(space.labels):
        for c in chs[label]:
            for j, op in enumerate(c.ops):
                for name, p in op.named_parameters():
                    moved = not torch.equal(p.detach(), before[_key(m, p)])
                    assert moved == (j == arch[e]), (label, j, name)
    assert not torch.equal(after["classifier.weight"], before["classifier.weight"])


def test_sgd_and_adam_learn(data, make_model) -> None:  # type: ignore[no-untyped-def]
    for hp in ({"optimizer": "sgd", "lr": 0.1}, {"optimizer": "adam", "lr": 0.01}):
        m = make_model(0)
        sub = SubSupernet.full(search_space(m)).restrict("3<-0", [3])
        res = train_subsupernet(m, sub, data.loaders(16), 4, progress=False, **hp)
        assert res.history[-1]["train_loss"] < res.history[0]["train_loss"], hp
        assert res.history[-1]["lr"] < res.history[0]["lr"]  # cosine decay


def _key(model: torch.nn.Module, param: torch.nn.Parameter) -> str:
    for k, p in model.named_parameters():
        if p is param:
            return k
    raise KeyError

