"""lidsplit.data.ground_truth: the shipped nb201_digits table and the Table lookup rules."""

from __future__ import annotations

import copy
import math

import pytest

from lidsplit.data import TABLES, Table, ground_truth
from lidsplit.spaces import NB201_SPACE, from_nb201_string, to_nb201_string


@pytest.fixture(scope="module")
def table() -> Table:
    return ground_truth("nb201_digits")


def test_shipped_table_loads_with_metadata(table: Table) -> None:
    assert "nb201_digits" in TABLES
    assert table.name == "nb201_digits"
    assert table.edges == NB201_SPACE.labels and table.ops == NB201_SPACE.edges[0].ops
    assert len(table) >= 100
    assert len(table.archs()) < len(table.archs(include_degenerate=True)) <= len(table)
    assert -1.0 <= table.tau <= 1.0 and not math.isnan(table.tau)
    for key in ("epochs", "C", "lr", "data_seed", "sample_seed"):
        assert key in table.protocol
    assert table.meta["data"]["sizes"][2] >= 5000  # many thousand test images
    assert "Table('nb201_digits'" in repr(table)


def test_entries_consistent(table: Table) -> None:
    for arch in table:
        e = table[arch]
        assert to_nb201_string(from_nb201_string(arch)) == arch  # valid NB201 strings
        assert NB201_SPACE.arch_to_index(from_nb201_string(arch)) == e.index
        accs = e.per_seed["test_acc"]
        assert len(accs) == len(e.seeds) >= 2
        assert e.test_acc == pytest.approx(sum(accs) / len(accs), abs=1e-4)
        assert 0.0 <= e.test_acc <= 100.0 and e.test_loss > 0.0
        if e.degenerate:  # no path through the cell: chance level
            assert e.test_acc < 20.0
    nd = table.archs()
    assert max(table.accuracy(a) for a in nd) - min(table.accuracy(a) for a in nd) > 2.0  # discriminative


def test_lookup_by_string_tuple_and_names(table: Table) -> None:
    arch = table.archs()[0]
    idx = from_nb201_string(arch)
    names = NB201_SPACE.names(idx)
    assert table[idx] is table[arch] is table[list(names)]
    assert idx in table and arch in table
    assert table.accuracy(arch) == table[arch].test_acc
    assert table.loss(arch, "val") == table[arch].val_loss
    assert table.scores([arch, idx], "test_loss") == [table[arch].test_loss] * 2


def test_unknown_and_bad_archs(table: Table) -> None:
    missing = next(a for a in NB201_SPACE.all_archs() if to_nb201_string(a) not in table)
    with pytest.raises(KeyError, match="not in table"):
        table[missing]
    assert missing not in table
    with pytest.raises(ValueError, match="entries"):
        table[(0, 1, 2)]
    with pytest.raises(ValueError, match="unknown op"):
        table[("conv_7x7",) * 6]
    with pytest.raises(ValueError, match="split"):
        table.accuracy(table.archs()[0], split="train")
    with pytest.raises(ValueError, match="metric"):
        table.scores(table.archs()[:1], "params")
    with pytest.raises(ValueError, match="unknown ground-truth table"):
        ground_truth("nb201_cifar10")
    assert "not an arch" not in table


def test_table_from_dict_roundtrip(table: Table) -> None:
    raw = {**copy.deepcopy(table.meta), "archs": {}}
    arch = table.archs()[0]
    e = table[arch]
    raw["archs"][arch] = {
        "index": e.index, "degenerate": e.degenerate, "params": e.params, "seeds": list(e.seeds),
        **{f"{m}_{s}": getattr(e, m + ("" if s == "mean" else "_std"))
           for m in ("test_acc", "test_loss", "val_acc", "val_loss") for s in ("mean", "std")},
        **{m: list(v) for m, v in e.per_seed.items()},
    }
    small = Table(raw)
    assert len(small) == 1 and small[arch] == e
    with pytest.raises(ValueError, match="not a ground-truth table"):
        Table({"name": "x"})


def test_table_data_is_the_default_hard_digits(table: Table) -> None:
    import inspect

    from lidsplit.data import hard_digits
    from lidsplit.data.distorted import HARD_DIGITS_DEFAULTS

    d = table.meta["data"]
    defaults = {k: p.default for k, p in inspect.signature(hard_digits).parameters.items()}
    assert d["seed"] == defaults["seed"] and d["image_size"] == defaults["image_size"]
    assert d["variants"] == list(defaults["variants"]) and d["fractions"] == list(defaults["fractions"])
    assert (d["strength"], d["fov"], d["occlusion"]) == (defaults["strength"], defaults["fov"], defaults["occlusion"])
    assert d["magnitudes"] == HARD_DIGITS_DEFAULTS
    assert d["sizes"] == [9010, 1068, 20128]
