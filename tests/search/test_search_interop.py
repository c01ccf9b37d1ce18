"""Label-keyed architectures everywhere an index tuple goes, the Optuna objective and the Syne Tune-style
config space."""

from __future__ import annotations

import json
import random

import pytest
import torch
from _search_helpers import FakeEvaluator, fake_score, make_tree

from lidsplit.search import AskTell, Categorical, RandomSearch, config_space, optuna_objective
from lidsplit.spaces import NB201_SPACE
from lidsplit.supernet import SubSupernet, use_path

ARCH = (3, 1, 0, 2, 4, 3)
ARCH_DICT = {"1<-0": "nor_conv_3x3", "2<-0": "skip_connect", "2<-1": "none", "3<-0": "nor_conv_1x1",
             "3<-1": "avg_pool_3x3", "3<-2": "nor_conv_3x3"}


def test_space_to_dict_from_dict():
    assert NB201_SPACE.to_dict(ARCH) == ARCH_DICT and list(NB201_SPACE.to_dict(ARCH)) == list(NB201_SPACE.labels)
    assert NB201_SPACE.from_dict(ARCH_DICT) == ARCH
    mixed = dict(reversed(list(ARCH_DICT.items())), **{"1<-0": 3})  # any key order, indices or names
    assert NB201_SPACE.validate_arch(mixed) == ARCH
    for a in NB201_SPACE.all_archs():  # round trip over the whole space
        assert NB201_SPACE.from_dict(NB201_SPACE.to_dict(a)) == a
    with pytest.raises(KeyError, match=r"no op for edges \['3<-2'\]"):
        NB201_SPACE.from_dict({k: v for k, v in ARCH_DICT.items() if k != "3<-2"})
    with pytest.raises(KeyError, match=r"unknown edges \['4<-0'\]"):
        NB201_SPACE.from_dict({**ARCH_DICT, "4<-0": "none"})
    with pytest.raises(KeyError, match="has no op 'conv'"):
        NB201_SPACE.from_dict({**ARCH_DICT, "1<-0": "conv"})
    with pytest.raises(TypeError, match="mapping label -> op"):
        NB201_SPACE.from_dict(list(ARCH))


def test_dict_archs_accepted_by_tree_modes_and_driver(tmp_path, leaf_models):
    tree = make_tree()
    assert tree.route(ARCH_DICT) == tree.route(ARCH)
    assert SubSupernet.from_arch(NB201_SPACE, ARCH_DICT).contains(ARCH_DICT)
    model = leaf_models[tree.route(ARCH)].eval()
    x = torch.randn(2, 1, 8, 8)
    with use_path(model, ARCH_DICT) as a:
        assert a == ARCH
        y = model(x)
    with use_path(model, ARCH):
        torch.testing.assert_close(model(x), y, rtol=0, atol=0)
    at = AskTell(RandomSearch(tree, samples=2, seed=0), history=tmp_path / "h.json", tree=tree)
    rec = at.tell(ARCH_DICT, 0.5)  # an outside optimiser's dict
    assert rec.arch == ARCH and not rec.asked
    at.save()
    d = json.loads((tmp_path / "h.json").read_text())
    assert d["best"]["arch"] == list(ARCH) and d["best"]["arch_ops"] == ARCH_DICT  # index form kept, dict added
    assert d["picks"][0]["arch_ops"] == ARCH_DICT


def test_config_space_is_syne_tune_style():
    tree = make_tree()
    cs = config_space(tree)
    assert list(cs) == list(NB201_SPACE.labels) and cs["1<-0"] == Categorical(tuple(NB201_SPACE.edges[0].ops))
    leaf = tree.leaves()[0].sub
    cs_leaf = config_space(leaf)  # a sub-supernet: only its enabled ops
    assert cs_leaf["1<-0"].categories == leaf.enabled_names(0)
    rng = random.Random(0)
    for _ in range(5):
        config = {k: d.sample(rng) for k, d in cs_leaf.items()}
        assert leaf.contains(config) and tree.route(config) == tree.leaves()[0].id
    with pytest.raises(TypeError, match="expected a SearchSpace"):
        config_space("nb201")


class FakeTrial:
    """What the objective needs of an Optuna trial: suggest_categorical and set_user_attr."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.params, self.user_attrs = rng, {}, {}

    def suggest_categorical(self, name, choices):  # type: ignore[no-untyped-def]
        self.params[name] = self.rng.choice(choices)
        return self.params[name]

    def set_user_attr(self, key, value):  # type: ignore[no-untyped-def]
        self.user_attrs[key] = value


def test_optuna_objective_without_optuna():
    tree = make_tree()
    ev = FakeEvaluator(tree)
    record = AskTell(RandomSearch(tree, samples=0), tree=tree)
    objective = optuna_objective(ev, domain=tree, record=record)
    trial = FakeTrial(random.Random(0))
    acc = objective(trial)
    arch = NB201_SPACE.from_dict(trial.params)
    assert acc == fake_score(arch) and ev.calls == [arch]
    assert trial.user_attrs["leaf"] == tree.route(arch) and trial.user_attrs["n"] == 16
    assert [r.arch for r in record.records] == [arch] and not record.records[0].asked
    with pytest.raises(TypeError, match="evaluator must be"):
        optuna_objective(42)
    with pytest.raises(TypeError, match="record must be an AskTell"):
        optuna_objective(ev, domain=tree, record=[])


def test_optuna_study_drives_the_leaves():
    optuna = pytest.importorskip("optuna")
    from lidsplit.search import optuna_distributions

    tree = make_tree()
    ev = FakeEvaluator(tree)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(optuna_objective(ev, domain=tree), n_trials=6)
    best = NB201_SPACE.from_dict(study.best_params)
    assert study.best_value == pytest.approx(fake_score(best)) and len(ev.calls) == 6
    dists = optuna_distributions(tree)
    assert list(dists) == list(NB201_SPACE.labels) and list(dists["1<-0"].choices) == list(NB201_SPACE.edges[0].ops)
    trial = study.ask(dists)  # ask/tell with fixed distributions
    arch = {lb: trial.suggest_categorical(lb, list(d.choices)) for lb, d in dists.items()}
    study.tell(trial, ev(NB201_SPACE.from_dict(arch)).acc)
    assert len(study.trials) == 7

