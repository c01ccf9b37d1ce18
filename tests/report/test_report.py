"""The run report: leaf LID profiles (shape, seeded, equal to a direct measurement, model untouched) and
write_report (files are valid PNGs, the summary matches the tree and the search, plots skipped with a
reason when their input is missing or matplotlib is absent, clear errors)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import lidsplit
from lidsplit.data import digits
from lidsplit.data.core import derive_seed
from lidsplit.ops import lid_profile
from lidsplit.report import NO_MATPLOTLIB, PLOTS, leaf_lid_profiles, write_report
from lidsplit.search import RandomSearch, Result, run_search
from lidsplit.spaces import nb201
from lidsplit.split import SplitTree, load_leaf
from lidsplit.supernet import record_outputs, use_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
K = 5  # LID neighbours: small batches keep the tests fast


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return digits()


def model(seed: int = 0):
    torch.manual_seed(seed)
    return nb201(C=4, N=1)


@pytest.fixture(scope="module")
def tree(data) -> SplitTree:
    """Two rounds of lid splits (4 leaves), no training: scoring only (2 batches of 32)."""
    return lidsplit.run_split(model(), data, "lid", 2, warmup_epochs=0, batches=2, score_batch_size=32,
                              progress=False, criterion_options={"k": K})


class Loader:
    """load_leaf for the tests: the leaf's in-memory weights in a fresh supernet; counts calls."""

    def __init__(self, tree: SplitTree) -> None:
        self.tree, self.calls = tree, []

    def __call__(self, leaf: int):
        self.calls.append(leaf)
        return load_leaf(model(1), self.tree, leaf)


PROFILE_KW = {"archs_per_leaf": 2, "batch_size": 64, "k": K, "calib_batches": 2, "progress": False}


@pytest.fixture(scope="module")
def profiles(tree, data):
    return leaf_lid_profiles(tree, Loader(tree), data, seed=0, **PROFILE_KW)


def fake_acc(arch) -> float:
    return (sum(a in (2, 3) for a in arch) + 0.01 * arch[0]) / 7.0


@pytest.fixture(scope="module")
def search(tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "history.json"

    def evaluate(arch):
        acc = fake_acc(arch)
        return Result(acc, 1.0 - acc, tree.route(arch), 100)

    res = run_search(evaluate, RandomSearch(tree, samples=12, seed=0), history=path, progress=False,
                     oracle=lambda a: 0.5 + fake_acc(a) / 2)
    return res, path


def read_png(path):
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE
    from matplotlib.image import imread

    img = imread(path)
    assert img.ndim == 3 and img.shape[0] >= 100 and img.shape[1] >= 100
    assert img.std() > 0.01  # something is drawn
    return img


# ---- leaf_lid_profiles ---------------------------------------------------------------------------


def test_profiles_shape_archs_inside_leaves_and_one_load_per_leaf(tree, data):
    ld = Loader(tree)
    p = leaf_lid_profiles(tree, ld, data, seed=0, **PROFILE_KW)
    assert ld.calls == tree.leaf_ids()  # each leaf loaded once, in tree order
    assert p["layers"] == [f"cells.{i}" for i in range(5)]  # NB201 N=1: 3 cells + 2 reduction blocks
    assert p["k"] == K and p["batch"] == 64 and p["bn"] == "recalibrated"
    assert list(p["leaves"]) == [str(i) for i in tree.leaf_ids()]
    for key, d in p["leaves"].items():
        assert len(d["archs"]) == 2 and len(set(map(tuple, d["archs"]))) == 2
        for a, names in zip(d["archs"], d["arch_names"]):
            assert tree.route(a) == int(key)
            assert tuple(names) == tree.space.names(tuple(a))
        prof = np.asarray(d["profiles"])
        assert prof.shape == (2, 5) and np.isfinite(prof).all() and (prof > 0).all()
        np.testing.assert_allclose(d["mean"], prof.mean(0))
        np.testing.assert_allclose(d["std"], prof.std(0))
    json.dumps(p)  # JSON values only


def test_profiles_are_seeded(tree, data, profiles):
    again = leaf_lid_profiles(tree, Loader(tree), data, seed=0, **PROFILE_KW)
    assert again == profiles
    other = leaf_lid_profiles(tree, Loader(tree), data, seed=1, **PROFILE_KW)
    assert other["leaves"] != profiles["leaves"]


def test_profile_equals_a_direct_measurement_and_leaves_the_model_unchanged(tree, data):
    """recalibrate=False: the leaf's stored BN statistics, eval mode; LID of every feature layer's output
    on the batch. A (x, y) pair of the validation split selects the same batch as the DataSplits."""
    leaf = tree.leaf_ids()[1]
    m = Loader(tree)(leaf)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.train()  # the profile must not depend on (nor change) the mode the model is handed in
    pair = (data.val.x, data.val.y)
    kw = dict(PROFILE_KW, recalibrate=False)
    p = leaf_lid_profiles(tree, lambda i: m, pair, seed=3, **kw)
    assert p == leaf_lid_profiles(tree, lambda i: m, data, seed=3, **kw)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items()) and m.training

    # the batch: 64 validation images drawn by a generator seeded from the seed
    d = p["leaves"][str(leaf)]
    g = torch.Generator().manual_seed(derive_seed("lidsplit.report.batch", 3))
    x = data.val.x[torch.randperm(len(data.val), generator=g)[:64]]
    m.eval()
    with torch.no_grad(), use_path(m, tuple(d["archs"][0])), record_outputs(m.feature_layers()) as rec:
        m(x)
    direct = lid_profile([o.contiguous() for o in rec], k=K).double().numpy()
    np.testing.assert_allclose(d["profiles"][0], direct, rtol=1e-6)


def test_profiles_with_data_loaders_recalibrate_on_its_train_loader(tree, data):
    loaders = data.loaders(32)
    p = leaf_lid_profiles(tree, Loader(tree), loaders, seed=0, **PROFILE_KW)
    assert p["batch"] == 64 and set(p["leaves"]) == {str(i) for i in tree.leaf_ids()}
    # other calibration batches than the DataSplits' (batch_size 64): other numbers, same archs
    ref = leaf_lid_profiles(tree, Loader(tree), data, seed=0, **PROFILE_KW)
    assert all(p["leaves"][k]["archs"] == ref["leaves"][k]["archs"] for k in p["leaves"])
    assert p["leaves"] != ref["leaves"]


def test_small_leaf_gives_all_its_archs(data):
    space = nb201(C=4, N=1).space
    t = SplitTree(space)
    t.split(0, 0, [[0], [1, 2, 3, 4]])
    nid = 1  # keeps op 0 (none) on edge 0; split every other edge down to {none} too: a 1-arch leaf
    for e in range(1, 6):
        nid = t.split(nid, e, [[0], [1, 2, 3, 4]])[0]
    assert t.node(nid).size == 1
    p = leaf_lid_profiles(t, lambda i: model(), data, archs_per_leaf=3, batch_size=32, k=K, calib_batches=1,
                          progress=False)
    assert p["leaves"][str(nid)]["archs"] == [[0] * 6]
    # the all-`none` cell outputs are constant: LID 0, counted as degenerate
    assert p["leaves"][str(nid)]["degenerate"] >= 1


def test_profile_errors(tree, data):
    ld = Loader(tree)
    with pytest.raises(TypeError, match="tree: expected a SplitTree"):
        leaf_lid_profiles("tree.json", ld, data)
    with pytest.raises(TypeError, match="load_leaf"):
        leaf_lid_profiles(tree, None, data)
    with pytest.raises(ValueError, match="archs_per_leaf: expected an int >= 1"):
        leaf_lid_profiles(tree, ld, data, archs_per_leaf=0)
    with pytest.raises(ValueError, match="estimator: expected one of"):
        leaf_lid_profiles(tree, ld, data, estimator="two_nn")
    with pytest.raises(TypeError, match="data: expected a DataSplits"):
        leaf_lid_profiles(tree, ld, [1, 2, 3], progress=False)
    with pytest.raises(ValueError, match="data: y must be a 1-D tensor of 10 labels"):
        leaf_lid_profiles(tree, ld, (torch.zeros(10, 1, 8, 8), torch.zeros(9, dtype=torch.int64)))
    with pytest.raises(ValueError, match="k: expected an int >= 2"):  # k = 1 gave all-zero profiles (issue 18)
        leaf_lid_profiles(tree, ld, data, k=1)
    with pytest.raises(ValueError, match="k=20 neighbours needs more than 20"):
        leaf_lid_profiles(tree, ld, data, batch_size=16, k=20, progress=False)
    with pytest.raises(ValueError, match="search space differs"):
        leaf_lid_profiles(tree, lambda i: nb201(C=4, N=1, ops=("none", "skip_connect")), data, progress=False,
                          **{k: v for k, v in PROFILE_KW.items() if k != "progress"})
    with pytest.raises(TypeError, match=r"load_leaf\(3\) returned a dict"):
        leaf_lid_profiles(tree, lambda i: {}, data, progress=False)


# ---- write_report --------------------------------------------------------------------------------


def test_full_report(tree, profiles, search, tmp_path):
    res, _ = search
    best = res.best
    final = {"arch": list(best.arch), "leaf": best.leaf, "val_acc": best.acc, "test_acc": 0.5,
             "selection": "val_acc"}
    s = write_report(tmp_path / "report", tree, lid_profiles=profiles, search=res, final=final,
                     config={"seed": 0, "criterion": "lid"}, dpi=60)
    out = tmp_path / "report"
    assert s["skipped"] == {} and s["files"] == [*PLOTS, "summary.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(s["files"])  # no temp file left behind
    for name in PLOTS:
        read_png(out / name)
    assert json.loads((out / "summary.json").read_text()) == s

    # the tree
    t = s["tree"]
    assert [lf["id"] for lf in t["leaves"]] == tree.leaf_ids() and t["num_leaves"] == 4 and t["nodes"] == 7
    for lf in t["leaves"]:
        node = tree.node(lf["id"])
        assert lf["size"] == node.size
        assert lf["masks"] == {e.label: list(node.sub.enabled_names(i)) for i, e in enumerate(tree.space.edges)}
        assert all(len(v) < 5 for v in lf["restricted"].values()) and lf["restricted"]
    assert sum(lf["size"] for lf in t["leaves"]) == tree.space.size
    assert [sp["node"] for sp in t["splits"]] == [0, 1, 2] and t["criterion"] == "lid"
    for sp in t["splits"]:
        node = tree.node(sp["node"])
        assert sp["label"] == tree.space.edges[node.edge].label and sp["children"] == node.children
        assert sp["separability"] == node.scores["separability"]
        assert sp["separabilities"] == {tree.space.edges[int(e)].label: d["separability"]
                                        for e, d in node.scores["edges"].items()}
        assert sp["groups"] == [[tree.space.edges[node.edge].ops[i] for i in g] for g in node.groups]
    # the search
    sr = s["search"]
    assert sr["evaluations"] == res.evaluations == 12 and sr["records"] == len(res.records)
    assert sr["best"]["arch"] == list(best.arch) and sr["best"]["acc"] == best.acc
    assert sr["best"]["oracle"] == pytest.approx(0.5 + fake_acc(best.arch) / 2)
    assert [int(k) for k in sr["best_per_leaf"]] == [i for i in tree.leaf_ids() if str(i) in sr["best_per_leaf"]]
    for k, r in sr["best_per_leaf"].items():
        assert r["acc"] == max(x.acc for x in res.records if x.leaf == int(k))
    assert sum(sr["evaluations_per_leaf"].values()) == 12
    assert s["final"]["arch_names"] == list(tree.space.names(best.arch)) and s["final"]["test_acc"] == 0.5
    assert s["lid_profiles"] == profiles and s["config"] == {"seed": 0, "criterion": "lid"}


def test_search_from_history_path_or_dict_equals_search_result(tree, search, tmp_path):
    res, path = search
    a = write_report(tmp_path / "a", tree, search=res, plots=["search_progress.png"])
    b = write_report(tmp_path / "b", tree, search=path, plots=[])["search"]
    c = write_report(tmp_path / "c", tree, search=json.loads(path.read_text()), plots=[])["search"]
    assert a["search"] == b == c
    assert a["files"] == ["search_progress.png", "summary.json"]
    assert a["skipped"] == {p: "not requested (plots=...)" for p in PLOTS if p != "search_progress.png"}


def test_missing_inputs_are_skipped_with_a_reason(tree, tmp_path):
    s = write_report(tmp_path, tree, dpi=50)
    assert s["files"] == ["tree.png", "separability.png", "op_lid_profiles.png", "summary.json"]
    assert set(s["skipped"]) == {"lid_profiles.png", "search_progress.png"}
    assert "lid_profiles=None" in s["skipped"]["lid_profiles.png"]
    assert "search=None" in s["skipped"]["search_progress.png"]
    assert s["search"] is None and s["final"] is None and s["lid_profiles"] is None
    assert not (tmp_path / "lid_profiles.png").exists()

    # an unsplit tree: nothing to compare
    s = write_report(tmp_path / "root", SplitTree(tree.space), dpi=50)
    assert s["files"] == ["tree.png", "summary.json"]
    assert "no split node" in s["skipped"]["separability.png"] and "no split node" in s["skipped"]["op_lid_profiles.png"]


def test_criteria_without_measurements(data, tmp_path):
    """exhaustive records no measurement: no separability, no per-op LID. A criterion with similarities but
    no LID (gm, proxies) gets the separability plot only."""
    ex = lidsplit.run_split(model(), data, "exhaustive", 1, warmup_epochs=0, progress=False)
    s = write_report(tmp_path / "ex", ex, dpi=50)
    assert "no measurement" in s["skipped"]["separability.png"] and "exhaustive" in s["skipped"]["separability.png"]
    assert "only 'lid' measures them" in s["skipped"]["op_lid_profiles.png"]
    assert s["tree"]["splits"][0]["measured"] is False

    t = SplitTree(ex.space)
    sim = np.eye(5) + 0.1
    edges = {str(e): {"criterion": "gm", "label": ex.space.edges[e].label, "ops": list(range(5)),
                      "op_names": list(ex.space.edges[e].ops), "similarity": (sim * (e + 1)).tolist(),
                      "batches": 3, "informative": e != 2, "measurements": {"grad_norm": [1.0] * 5},
                      "separability": 0.1 * (e + 1)} for e in range(6)}
    t.split(0, 4, [[0, 1], [2, 3, 4]], criterion="gm", scores={"edge": 4, "separability": 0.5, "edges": edges})
    s = write_report(tmp_path / "gm", t, dpi=50)
    assert "separability.png" in s["files"] and "op_lid_profiles.png" in s["skipped"]
    assert s["tree"]["splits"][0]["separabilities"]["3<-1"] == pytest.approx(0.5)
    assert s["tree"]["splits"][0]["informative"] == [e.label for i, e in enumerate(t.space.edges) if i != 2]
    read_png(tmp_path / "gm" / "separability.png")


def test_without_matplotlib_only_the_summary_is_written(tree, profiles, search, tmp_path, monkeypatch):
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import` raises ImportError
    s = write_report(tmp_path, tree, lid_profiles=profiles, search=search[0])
    assert s["files"] == ["summary.json"] and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert s["skipped"] == {name: NO_MATPLOTLIB for name in PLOTS}
    assert "pip install 'lidsplit[plot]'" in NO_MATPLOTLIB
    assert json.loads((tmp_path / "summary.json").read_text())["search"]["evaluations"] == 12


def test_report_errors(tree, profiles, search, tmp_path):
    with pytest.raises(TypeError, match="tree: expected a SplitTree"):
        write_report(tmp_path, tree.to_json())
    with pytest.raises(ValueError, match="dpi"):
        write_report(tmp_path, tree, dpi=0)
    with pytest.raises(ValueError, match=r"plots: unknown \['tree.svg'\]"):
        write_report(tmp_path, tree, plots=["tree.svg"])
    bad = dict(profiles, leaves={"99": profiles["leaves"][str(tree.leaf_ids()[0])]})
    with pytest.raises(ValueError, match="leaf 99 is not a leaf of the tree"):
        write_report(tmp_path, tree, lid_profiles=bad)
    short = json.loads(json.dumps(profiles))
    short["leaves"][str(tree.leaf_ids()[0])]["mean"] = [1.0]
    with pytest.raises(ValueError, match="'mean' must be a list of 5 numbers"):
        write_report(tmp_path, tree, lid_profiles=short)
    with pytest.raises(ValueError, match="lid_profiles: expected the dict returned by leaf_lid_profiles"):
        write_report(tmp_path, tree, lid_profiles={"a": 1})
    with pytest.raises(FileNotFoundError, match="history file"):
        write_report(tmp_path, tree, search=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not a lidsplit search history"):
        write_report(tmp_path, tree, search={"format": "something else"})
    with pytest.raises(TypeError, match="search: expected a SearchResult"):
        write_report(tmp_path, tree, search=42)
    with pytest.raises(TypeError, match="final: expected a mapping"):
        write_report(tmp_path, tree, final=[1, 2])
    with pytest.raises(TypeError, match="config: .*not JSON-serialisable"):
        write_report(tmp_path, tree, config={"x": object()})
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        write_report(f, tree)
    assert list(tmp_path.iterdir()) == [f]  # nothing written by a refused call


def test_task_records_are_drawn_as_a_timeline(tree, tmp_path):
    from lidsplit.report import TIMELINE

    tasks = [{"task": "warmup+score node 0 (level 0)", "start": 10.0, "end": 14.0, "host": "a", "pid": 1,
              "gpus": ["0"], "stage": "split"},
             {"task": "finetune leaf 1", "start": 14.5, "end": 16.0, "host": "a", "pid": 1, "gpus": ["0"]},
             {"task": "finetune leaf 2", "start": 14.5, "end": 17.0, "host": "b", "pid": 7, "gpus": []}]
    s = write_report(tmp_path, tree, plots=["tree.png"], tasks=tasks)
    assert s["files"] == ["tree.png", TIMELINE, "summary.json"] and (tmp_path / TIMELINE).stat().st_size > 0
    assert s["tasks"] == {"count": 3, "workers": 2, "wall_s": 7.0, "busy_s": 8.0}
    assert TIMELINE not in write_report(tmp_path / "none", tree, plots=["tree.png"])["files"]  # no records: no plot
