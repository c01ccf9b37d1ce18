"""Two-stage baselines: SPOS training (lidsplit.train.spos_train), then random / evolutionary search with
the shared weights as the score (lidsplit.search.blackbox, on the search package's own strategies)."""

from __future__ import annotations

import torch
from _search_helpers import small_toy

from lidsplit.search import classification_score, evolutionary_search, random_search
from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train import spos_train


def test_spos_with_random_and_evolutionary_search(toy_loaders):
    torch.manual_seed(1)
    model = small_toy()
    space = search_space(model)
    losses = spos_train(model, toy_loaders.train, steps=5)
    assert len(losses) == 5
    score = classification_score(model, toy_loaders, calib_batches=1, max_batches=1)
    sub = SubSupernet.full(space)
    rs = random_search(score, sub, 4, seed=0)
    assert len(rs.evaluated) == 4 and sub.contains(rs.arch)
    es = evolutionary_search(score, sub, population=4, generations=2, parents=2, crossover=1, mutation=1, seed=0)
    assert sub.contains(es.arch)
    assert es.score == max(s for _, s in es.evaluated)
    assert len({a for a, _ in es.evaluated}) == len(es.evaluated)
