"""Character-level text shipped with Python (lidsplit.data.text): no download, seeded LM batches."""

from __future__ import annotations

import torch

from lidsplit.data import CharCorpus, LMBatches, stdlib_text


def test_stdlib_text_needs_no_download():
    text = stdlib_text()
    assert "Beautiful is better than ugly." in text and "def " in text
    corpus = CharCorpus(text, val_fraction=0.2)
    assert corpus.decode(corpus.train[:10]) == text[:10]
    b1 = list(LMBatches(corpus.train, 8, 2, batches=2, seed=3).iter_epoch(0))
    b2 = list(LMBatches(corpus.train, 8, 2, batches=2, seed=3).iter_epoch(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(b1, b2))
    assert torch.equal(b1[0][0][:, 1:], b1[0][1][:, :-1])
