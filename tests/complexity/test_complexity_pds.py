"""PDS formula, common scales, and the per-repeat summary (degenerate architectures, no table)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lidsplit.complexity import pds, pds_from_sd, scale_scores
from lidsplit.complexity.performance import summarise


def test_pds_from_sd_hand_values():
    assert pds_from_sd(0.2, 0.1) == pytest.approx(0.1 / 0.15)
    assert pds_from_sd(0.1, 0.2) == pytest.approx(0.1 / 0.15)  # symmetric
    assert pds_from_sd(0.3, 0.3) == 0.0
    assert pds_from_sd(0.0, 0.0) == 0.0  # both constant: they agree
    assert pds_from_sd(1.0, 0.0) == pytest.approx(2.0)  # the maximum
    with pytest.raises(ValueError):
        pds_from_sd(-1.0, 1.0)
    with pytest.raises(ValueError):
        pds_from_sd(math.nan, 1.0)


def test_pds_hand_made_raw():
    j = np.array([1.0, 2.0, 3.0, 4.0])  # SD = sqrt(1.25)
    a = np.array([0.0, 0.0, 1.0, 1.0])  # SD = 0.5
    sj, sa = math.sqrt(1.25), 0.5
    assert pds(j, a, scale="none") == pytest.approx(abs(sj - sa) / ((sj + sa) / 2))


def test_pds_hand_made_minmax():
    j = np.array([-300.0, -200.0, -100.0])  # minmax -> 0, .5, 1: SD = sqrt(1/6)
    a = np.array([0.90, 0.90, 0.95])  # minmax -> 0, 0, 1: SD = sqrt(2)/3
    sj, sa = math.sqrt(1 / 6), math.sqrt(2) / 3
    assert pds(j, a) == pytest.approx(abs(sj - sa) / ((sj + sa) / 2))


def test_minmax_is_affine_invariant():
    rng = np.random.default_rng(0)
    j, a = rng.normal(size=50), rng.uniform(size=50)
    base = pds(j, a)
    assert pds(1e3 * j - 7.0, a) == pytest.approx(base)
    assert pds(-j, 100 * a) == pytest.approx(base)  # flipping the sign does not change a spread
    assert pds(j, j) == 0.0


def test_scales():
    v = np.array([0.0, 1.0, 2.0, 100.0])
    np.testing.assert_allclose(scale_scores(v, "minmax"), v / 100.0)
    r = scale_scores(v, "robust")
    assert r.min() == 0.0 and r.max() == 1.0 and r[2] > 2 / 100  # the outlier no longer squashes the rest
    np.testing.assert_array_equal(scale_scores(v, "none"), v)
    np.testing.assert_array_equal(scale_scores(np.full(3, 5.0)), np.zeros(3))
    for bad in ("rank", "zscore"):
        with pytest.raises(ValueError, match="fixes the standard deviation"):
            scale_scores(v, bad)
    with pytest.raises(ValueError, match="unknown scale"):
        scale_scores(v, "log")
    with pytest.raises(ValueError, match="finite"):
        scale_scores([1.0, math.nan])


def test_pds_input_checks():
    with pytest.raises(ValueError, match="same length"):
        pds([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        pds([1.0], [1.0])


A, B, C, D = (0,), (1,), (2,), (3,)


def test_summarise_no_table():
    res = summarise([[A, B, C]], {A: -3.0, B: -2.0, C: -1.0}, None)
    assert res.pds is None and res.sd_accuracy is None
    assert "no accuracy table" in res.note
    assert res.sd_jacob_cov == pytest.approx(math.sqrt(1 / 6))
    assert res.raw_sd_jacob_cov == pytest.approx(math.sqrt(2 / 3))
    assert res.to_json()["pds"] is None


def test_summarise_with_table_matches_pds():
    scores = {A: -3.0, B: -2.0, C: -1.0, D: -1.5}
    acc = {A: 0.5, B: 0.7, C: 0.9, D: 0.6}
    res = summarise([[A, B, C], [B, C, D]], scores, acc)
    p1 = pds([-3.0, -2.0, -1.0], [0.5, 0.7, 0.9])
    p2 = pds([-2.0, -1.0, -1.5], [0.7, 0.9, 0.6])
    assert res.pds == pytest.approx((p1 + p2) / 2)
    assert res.pds_std == pytest.approx(abs(p1 - p2) / 2)
    assert res.repeats == 2 and res.n_archs == 3 and res.note is None


def test_summarise_degenerate_policies():
    scores = {A: -3.0, B: math.nan, C: -1.0, D: -2.0}
    acc = {A: 0.5, B: 0.1, C: 0.9, D: 0.7}
    worst = summarise([[A, B, C, D]], scores, acc, degenerate="worst")
    assert worst.n_degenerate == 1
    assert worst.pds == pytest.approx(pds([-3.0, -3.0, -1.0, -2.0], [0.5, 0.1, 0.9, 0.7]))
    drop = summarise([[A, B, C, D]], scores, acc, degenerate="drop")
    assert drop.pds == pytest.approx(pds([-3.0, -1.0, -2.0], [0.5, 0.9, 0.7]))
    assert drop.per_repeat[0]["n"] == 3
    with pytest.raises(ValueError, match="degenerate"):
        summarise([[A]], scores, acc, degenerate="ignore")


def test_summarise_archs_missing_from_table():
    res = summarise([[A, B]], {A: -1.0, B: -2.0}, {A: 0.5})
    assert res.pds is None and "fewer than 2" in res.note
