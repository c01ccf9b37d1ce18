"""Architecture diversity: block counts, exact moments vs enumeration, sampling, single-arch spaces."""

from __future__ import annotations

import numpy as np
import pytest

from lidsplit.complexity import BLOCK_TYPES, BlockFeaturizer, architecture_diversity, edge_multiplicity, op_block_counts
from lidsplit.spaces import DARTS_OPS, NB201_OPS, NB201_SPACE, nb201
from lidsplit.supernet import Edge, SearchSpace, SubSupernet


def test_op_block_counts():
    assert op_block_counts("none") == {} and op_block_counts("zero") == {}
    assert op_block_counts("skip_connect") == {"skip": 1}
    assert op_block_counts("nor_conv_3x3") == {"conv3x3": 1}
    assert op_block_counts("nor_conv_1x1") == {"conv1x1": 1}
    assert op_block_counts("avg_pool_3x3") == {"pool": 1} == op_block_counts("max_pool_3x3")
    assert op_block_counts("sep_conv_5x5") == {"sep_conv": 1, "conv5x5": 2, "conv1x1": 2}
    assert op_block_counts("dil_conv_3x3") == {"dil_conv": 1, "conv3x3": 1, "conv1x1": 1}
    assert op_block_counts("7x7_MBConv6") == {"mbconv": 1, "conv7x7": 1, "conv1x1": 2}
    assert op_block_counts("3x3_MBConv1") == {"mbconv": 1, "conv3x3": 1, "conv1x1": 1}
    assert op_block_counts("1x1_MBConv3") == {"mbconv": 1, "conv1x1": 3}
    assert op_block_counts("multihead_attention") == {"attention": 1}
    assert op_block_counts("ffn_4x") == {"ffn": 1}
    assert op_block_counts("conv_11") == {"conv11x11": 1}
    assert op_block_counts("weird") == {"op:weird": 1}
    for op in DARTS_OPS + NB201_OPS:
        assert all(not k.startswith("op:") for k in op_block_counts(op)), op


def test_exact_equals_enumeration_nb201():
    feat = BlockFeaturizer(NB201_SPACE)
    v = feat.vectors(list(NB201_SPACE.all_archs()))
    assert v.shape == (15625, len(BLOCK_TYPES))
    res = architecture_diversity(NB201_SPACE)
    assert res.value == pytest.approx(np.cov(v.T, ddof=0).trace())
    mean, cov = feat.exact_moments(SubSupernet.full(NB201_SPACE))
    np.testing.assert_allclose(mean, v.mean(axis=0))
    np.testing.assert_allclose(cov, np.cov(v.T, ddof=0), atol=1e-12)
    # hand value: 4 of the 5 ops add one block of a distinct type; per edge and type var = 1/5 - 1/25
    assert res.value == pytest.approx(6 * 4 * (1 / 5 - 1 / 25))
    assert res.to_json()["variance"]["skip"] == pytest.approx(6 * 4 / 25)


def test_exact_equals_enumeration_sub():
    sub = SubSupernet.full(NB201_SPACE).restrict(0, [0, 3]).restrict(2, [1]).restrict(4, [2, 3, 4])
    v = BlockFeaturizer(NB201_SPACE).vectors(list(sub.archs()))
    res = architecture_diversity(NB201_SPACE, sub)
    assert res.value == pytest.approx(np.cov(v.T, ddof=0).trace())
    assert architecture_diversity(sub).value == res.value  # a SubSupernet alone works too


def test_single_architecture_has_zero_diversity():
    one = SearchSpace((Edge("a", ("nor_conv_3x3",)), Edge("b", ("skip_connect",))))
    assert one.size == 1
    assert architecture_diversity(one).value == 0.0
    assert architecture_diversity(one, method="sample", samples=10).value == 0.0
    sub = SubSupernet.from_arch(NB201_SPACE, (3, 1, 0, 2, 4, 3))
    assert architecture_diversity(NB201_SPACE, sub).value == 0.0
    assert architecture_diversity(NB201_SPACE, sub, method="sample").value == 0.0


def test_ops_with_the_same_blocks_have_zero_diversity():
    sp = SearchSpace((Edge("e", ("avg_pool_3x3", "max_pool_3x3")),))
    assert architecture_diversity(sp).value == 0.0


def test_sample_method_close_to_exact():
    exact = architecture_diversity(NB201_SPACE).value
    s1 = architecture_diversity(NB201_SPACE, method="sample", samples=2000, seed=1)
    s2 = architecture_diversity(NB201_SPACE, method="sample", samples=2000, seed=1)
    assert s1.value == s2.value and s1.n_archs == 2000  # seeded
    assert s1.value == pytest.approx(exact, rel=0.1)
    # a sample covering the whole sub-supernet is exact
    sub = SubSupernet.full(NB201_SPACE).restrict(0, [0]).restrict(1, [1]).restrict(2, [2])
    full = architecture_diversity(NB201_SPACE, sub, method="sample", samples=sub.size)
    assert full.value == pytest.approx(architecture_diversity(NB201_SPACE, sub).value)


def test_multiplicity_from_the_model():
    m = nb201(C=2, N=2)
    assert edge_multiplicity(m) == {lb: 6 for lb in NB201_SPACE.labels}  # 3 stages x N cells
    res = architecture_diversity(m)
    assert res.value == pytest.approx(36 * architecture_diversity(NB201_SPACE).value)
    assert res.multiplicity == {lb: 6 for lb in NB201_SPACE.labels}
    assert architecture_diversity(NB201_SPACE, multiplicity={"1<-0": 2}).value > architecture_diversity(NB201_SPACE).value


def test_mean_scalar_and_overrides():
    t = architecture_diversity(NB201_SPACE)
    m = architecture_diversity(NB201_SPACE, scalar="mean")
    assert m.value == pytest.approx(t.value / len(BLOCK_TYPES))
    # declaring avg_pool as an attention block changes which type varies, not the total here
    o = architecture_diversity(NB201_SPACE, block_counts={"avg_pool_3x3": {"attention": 1}})
    assert "attention" in o.variance and "pool" not in o.variance
    unk = SearchSpace((Edge("e", ("foo", "bar")),))
    r = architecture_diversity(unk)
    assert set(r.variance) == {"op:foo", "op:bar"} and r.value == pytest.approx(0.5)
    with pytest.raises(ValueError, match="scalar"):
        architecture_diversity(NB201_SPACE, scalar="det")
    with pytest.raises(ValueError, match="method"):
        architecture_diversity(NB201_SPACE, method="mc")


def test_supernet_hook_for_block_counts():
    m = nb201(C=2)
    m.op_block_counts = lambda label, op: {"attention": 1} if label == "1<-0" and op == "skip_connect" else None
    res = architecture_diversity(m)
    assert "attention" in res.variance
