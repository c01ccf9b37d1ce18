"""Architecture sampling (seeded, distinct, inside the sub-supernet) and accuracy tables (formats, keys)."""

from __future__ import annotations

import json
import sys

import pytest
from _fake_files import fake_nas_201_api

from lidsplit.complexity import AccuracyTable, arch_key, parse_arch_key, register_accuracy_loader, sample_archs
from lidsplit.complexity.sampling import Population, local_index_to_arch, repeat_generator
from lidsplit.complexity.table import ACCURACY_LOADERS
from lidsplit.spaces import DARTS_SPACE, NB201_SPACE, to_nb201_string
from lidsplit.supernet import SubSupernet

# ---- sampling -----------------------------------------------------------------------------------


def test_local_index_matches_archs_order():
    sub = SubSupernet.full(NB201_SPACE).restrict(0, [1, 3]).restrict(4, [0, 2, 4])
    assert [local_index_to_arch(sub, i) for i in range(sub.size)] == list(sub.archs())


@pytest.mark.parametrize("space", [NB201_SPACE, DARTS_SPACE], ids=["permutation", "rejection"])
def test_sample_archs_seeded_distinct_inside(space):
    sub = SubSupernet.full(space).restrict(1, [0, 2])
    a, complete = sample_archs(sub, 300, repeat_generator(7, 0))
    b, _ = sample_archs(sub, 300, repeat_generator(7, 0))
    c, _ = sample_archs(sub, 300, repeat_generator(7, 1))
    assert not complete and a == b and a != c
    assert len(set(a)) == 300 and all(sub.contains(x) for x in a)


def test_sample_archs_small_space_is_complete():
    sub = SubSupernet.full(NB201_SPACE).restrict(0, [0]).restrict(1, [1]).restrict(2, [2]).restrict(3, [3])
    archs, complete = sample_archs(sub, 25, repeat_generator(0, 0))
    assert complete and archs == list(sub.archs())
    pop = Population(sub, 25, repeats=5, seed=0)
    assert pop.kind == "all" and pop.repeats == 1  # identical repeats are kept once
    with pytest.raises(ValueError):
        sample_archs(sub, 0, repeat_generator(0, 0))


def test_population_from_candidates():
    sub = SubSupernet.full(NB201_SPACE)
    cands = [NB201_SPACE.index_to_arch(i) for i in range(0, 15625, 500)]  # 32 archs
    pop = Population(sub, 10, repeats=3, seed=1, candidates=cands)
    assert pop.kind == "table-sampled" and pop.repeats == 3
    assert all(len(s) == 10 and set(s) <= set(cands) for s in pop.samples)
    assert Population(sub, 50, repeats=3, seed=1, candidates=cands).kind == "table"


# ---- tables -------------------------------------------------------------------------------------


def _table() -> AccuracyTable:
    values = {arch_key(NB201_SPACE, NB201_SPACE.index_to_arch(i)): 50.0 + i / 1000 for i in (0, 7, 123, 15624)}
    return AccuracyTable(NB201_SPACE, values, metric="valid-accuracy")


def test_key_forms():
    arch = (3, 1, 0, 2, 4, 3)
    i = NB201_SPACE.arch_to_index(arch)
    for key in (i, str(i), "3,1,0,2,4,3", arch_key(NB201_SPACE, arch), " 3, 1,0,2,4,3 ", to_nb201_string(arch), list(arch)):
        assert parse_arch_key(NB201_SPACE, key) == arch, key
    for bad in ("nope", "3,1", "|nor_conv_3x3~0|", -1, 15625, True, 1.5, ""):
        with pytest.raises(ValueError):
            parse_arch_key(NB201_SPACE, bad)
    with pytest.raises(ValueError, match="NB201"):
        parse_arch_key(DARTS_SPACE, to_nb201_string(arch))


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_round_trip(tmp_path, suffix):
    t = _table()
    p = t.save(tmp_path / f"acc{suffix}")
    back = AccuracyTable.load(p, NB201_SPACE, metric="valid-accuracy" if suffix == ".csv" else None)
    assert dict(back) == dict(t) and back.metric == "valid-accuracy"
    assert back.archs() == sorted(t)


def test_plain_json_and_index_csv(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"0": 1.0, "none,none,none,none,none,skip_connect": 2.0}))
    t = AccuracyTable.load(tmp_path / "a.json", NB201_SPACE)
    assert t[(0,) * 6] == 1.0 and t[(0, 0, 0, 0, 0, 1)] == 2.0 and len(t) == 2
    (tmp_path / "b.csv").write_text("index,accuracy,extra\n5,0.5,x\n6,0.25,y\n")
    t = AccuracyTable.load(tmp_path / "b.csv", NB201_SPACE)
    assert t.get(NB201_SPACE.index_to_arch(6)) == 0.25 and t.get((9,) * 6) is None


def test_table_errors(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        AccuracyTable(NB201_SPACE, {"0": 1.0, "none,none,none,none,none,none": 2.0})
    with pytest.raises(ValueError, match="finite"):
        AccuracyTable(NB201_SPACE, {"0": float("nan")})
    with pytest.raises(ValueError, match="not a number"):
        AccuracyTable(NB201_SPACE, {"0": "high"})
    (tmp_path / "c.csv").write_text("arch,acc\n0,1\n")
    with pytest.raises(ValueError, match="columns"):
        AccuracyTable.load(tmp_path / "c.csv", NB201_SPACE)
    (tmp_path / "d.txt").write_text("")
    with pytest.raises(ValueError, match="suffix"):
        AccuracyTable.load(tmp_path / "d.txt", NB201_SPACE)
    with pytest.raises(FileNotFoundError):
        AccuracyTable.load(tmp_path / "missing.json", NB201_SPACE)
    with pytest.raises(ValueError, match="different search space"):
        AccuracyTable.load(_table().save(tmp_path / "e.json"), DARTS_SPACE)
    (tmp_path / "f.json").write_text("{not json")
    with pytest.raises(ValueError, match="valid JSON"):
        AccuracyTable.load(tmp_path / "f.json", NB201_SPACE)
    with pytest.raises(ValueError, match="unknown loader"):
        AccuracyTable.load(tmp_path / "f.json", NB201_SPACE, loader="nope")


def test_registered_and_callable_loaders(tmp_path):
    def mine(path, space, **kw):
        return {0: 0.1, 1: 0.2}

    register_accuracy_loader("test-mine", mine, overwrite=True)
    try:
        t = AccuracyTable.load(tmp_path / "anything", NB201_SPACE, loader="test-mine")
        assert len(t) == 2
        with pytest.raises(ValueError, match="exists"):
            register_accuracy_loader("test-mine", mine)
    finally:
        ACCURACY_LOADERS.pop("test-mine", None)
    assert len(AccuracyTable.load(tmp_path / "x", NB201_SPACE, loader=mine)) == 2


def test_nb201_loader_hook(tmp_path, monkeypatch):
    archs = [(3, 1, 0, 2, 4, 3), (0,) * 6]
    api = fake_nas_201_api([to_nb201_string(a) for a in archs],
                           [{"valid-accuracy": 90.0 - i, "test-accuracy": 0.0} for i in range(2)],
                           expect={"dataset": "cifar10-valid", "hp": "200", "is_random": False})
    monkeypatch.setitem(sys.modules, "nas_201_api", api)
    t = AccuracyTable.load(tmp_path / "bench.pth", NB201_SPACE, loader="nb201")
    assert t[archs[0]] == 90.0 and t[archs[1]] == 89.0 and t.metric == "valid-accuracy"
    monkeypatch.setitem(sys.modules, "nas_201_api", None)  # not installed
    with pytest.raises(ImportError, match="nas_201_api"):
        AccuracyTable.load(tmp_path / "bench.pth", NB201_SPACE, loader="nb201")


class _FakeGroundTruth:
    name = "fake"

    def __init__(self, rows):
        self.rows = rows  # arch string -> (accuracy, degenerate)

    def archs(self, include_degenerate=False):
        return [a for a, (_, d) in self.rows.items() if include_degenerate or not d]

    def scores(self, archs, metric="test_acc"):
        assert metric in ("test_acc", "val_acc")
        return [self.rows[a][0] + (1.0 if metric == "val_acc" else 0.0) for a in archs]


def test_from_ground_truth():
    a, b = (3, 1, 0, 2, 4, 3), (0,) * 6
    gt = _FakeGroundTruth({to_nb201_string(a): (91.0, False), to_nb201_string(b): (10.0, True)})
    t = AccuracyTable.from_ground_truth(gt, NB201_SPACE)
    assert dict(t) == {a: 91.0, b: 10.0} and t.metric == "test_acc"
    t = AccuracyTable.from_ground_truth(gt, NB201_SPACE, metric="val_acc", include_degenerate=False)
    assert dict(t) == {a: 92.0}


def test_ground_truth_loader_file(tmp_path):
    truth = pytest.importorskip("lidsplit.data.truth")
    a = (3, 1, 0, 2, 4, 3)
    entry = {"index": 0, "degenerate": False, "params": 10, "seeds": [0],
             **{f"{m}_{s}": 1.0 for m in ("test_acc", "test_loss", "val_acc", "val_loss") for s in ("mean", "std")}}
    entry["test_acc_mean"] = 77.0
    data = {"name": "t", "space": {"edges": list(NB201_SPACE.labels), "ops": list(NB201_SPACE.edges[0].ops)},
            "archs": {to_nb201_string(a): entry}}
    assert len(truth.Table(data)) == 1
    (tmp_path / "gt.json").write_text(json.dumps(data))
    t = AccuracyTable.load(tmp_path / "gt.json", NB201_SPACE, loader="ground-truth")
    assert dict(t) == {a: 77.0}
    with pytest.raises(FileNotFoundError):
        AccuracyTable.load(tmp_path / "missing.json", NB201_SPACE, loader="ground-truth")
