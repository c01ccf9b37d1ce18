"""lidsplit.data.ground_truth: the shipped tables (nb201_digits, nb201_colour) and the Table lookup rules."""

from __future__ import annotations

import copy
import math

import pytest

from lidsplit.data import TABLES, Table, ground_truth
from lidsplit.spaces import NB201_SPACE, from_nb201_string, to_nb201_string


@pytest.fixture(scope="module", params=TABLES)
def table(request: pytest.FixtureRequest) -> Table:
    return ground_truth(request.param)


def test_shipped_table_loads_with_metadata(table: Table) -> None:
    assert TABLES == ("nb201_digits", "nb201_colour")
    assert table.name in TABLES
    assert table.edges == NB201_SPACE.labels and table.ops == NB201_SPACE.edges[0].ops
    assert len(table) >= 100
    assert len(table.archs()) < len(table.archs(include_degenerate=True)) <= len(table)
    assert -1.0 <= table.tau <= 1.0 and not math.isnan(table.tau)
    for key in ("epochs", "C", "lr", "data_seed", "sample_seed"):
        assert key in table.protocol
    assert table.meta["data"]["sizes"][2] >= 5000  # many thousand test images
    assert f"Table({table.name!r}" in repr(table)


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


def test_table_data_is_the_default_hard_digits() -> None:
    import inspect

    from lidsplit.data import hard_digits
    from lidsplit.data.distorted import HARD_DIGITS_DEFAULTS

    table = ground_truth("nb201_digits")
    d = table.meta["data"]
    defaults = {k: p.default for k, p in inspect.signature(hard_digits).parameters.items()}
    assert d["seed"] == defaults["seed"] and d["image_size"] == defaults["image_size"]
    assert d["variants"] == list(defaults["variants"]) and d["fractions"] == list(defaults["fractions"])
    assert (d["strength"], d["fov"], d["occlusion"]) == (defaults["strength"], defaults["fov"], defaults["occlusion"])
    assert d["magnitudes"] == HARD_DIGITS_DEFAULTS
    assert d["sizes"] == [9010, 1068, 20128]


def test_colour_table_is_the_default_colour_digits_and_independent() -> None:
    import inspect

    from lidsplit.data import colour_digits
    from lidsplit.data.colour import COLOUR_DIGITS_DEFAULTS

    table, first = ground_truth("nb201_colour"), ground_truth("nb201_digits")
    d = table.meta["data"]
    defaults = {k: p.default for k, p in inspect.signature(colour_digits).parameters.items()}
    assert table.protocol["data"] == "colour_digits" and "in_channels=3" in table.protocol["network"]
    assert (d["seed"], d["image_size"], d["strength"], d["fov"]) == tuple(
        defaults[k] for k in ("seed", "image_size", "strength", "fov"))
    assert d["variants"] == list(defaults["variants"]) and d["fractions"] == list(defaults["fractions"])
    assert d["magnitudes"] == COLOUR_DIGITS_DEFAULTS == table.protocol["magnitudes"]
    assert d["sizes"] == [9010, 1068, 20128]
    assert table.protocol["sample_seed"] != first.protocol["sample_seed"]  # another architecture sample
    assert len(set(table) & set(first)) < 0.1 * len(table)


def test_dataset_rebuilds_the_tables_data(table: Table) -> None:
    # mean / std were measured on the train split the table was trained on (float64, all digits): equal
    # to 12 digits means the rebuilt split is that split (the last bits follow torch's reduction order,
    # which depends on the thread count)
    data = table.dataset()
    d = table.meta["data"]
    assert data.name == table.protocol["data"]
    assert [len(data.train), len(data.val), len(data.test)] == d["sizes"]
    assert data.in_channels == len(d["mean"]) == (3 if "in_channels=3" in table.protocol["network"] else 1)
    assert data.meta["mean"] == pytest.approx(d["mean"], rel=1e-12)
    assert data.meta["std"] == pytest.approx(d["std"], rel=1e-12)
    assert data.meta["source_sizes"] == d["source_sizes"]


def test_dataset_of_an_unknown_task_is_a_clear_error(table: Table) -> None:
    raw = {**copy.deepcopy(table.meta), "archs": {}}
    raw["protocol"]["data"] = "mnist"
    with pytest.raises(ValueError, match="made on 'mnist'"):
        Table(raw).dataset()
