"""rank_correlations / kendall_tau / spearman_rho: equal to scipy's (ties included), known small cases, the
top-k subsets (by true score by default), bad input refused with the argument named; and a smoke run of
benchmarks/bench_ranking.py's machinery on a tiny setting."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lidsplit.search.ranking import average_ranks, kendall_tau, rank_correlations, spearman_rho

try:
    from scipy import stats as scipy_stats
except ImportError:  # pragma: no cover - scipy is a test-only cross-check
    scipy_stats = None

needs_scipy = pytest.mark.skipif(scipy_stats is None, reason="scipy not installed (cross-check only)")


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-12


# ---- known values --------------------------------------------------------------------------------


def test_known_cases() -> None:
    x = [1, 2, 3, 4, 5]
    assert kendall_tau(x, x) == 1.0 and spearman_rho(x, x) == 1.0
    assert kendall_tau(x, x[::-1]) == -1.0 and spearman_rho(x, x[::-1]) == -1.0
    # one swapped adjacent pair among 5: C = 9, D = 1 -> tau = 0.8; d^2 = 2 -> rho = 1 - 6*2/(5*24) = 0.9
    y = [1, 2, 4, 3, 5]
    assert kendall_tau(x, y) == pytest.approx(0.8, abs=1e-15)
    assert spearman_rho(x, y) == pytest.approx(0.9, abs=1e-15)


def test_ties_tau_b() -> None:
    # x = [1,1,2], y = [1,2,3]: n0 = 3, Tx = 1, Ty = 0, C = 2, D = 0 -> tau_b = 2 / sqrt(2 * 3)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6), abs=1e-15)
    # pairs tied in both count in neither C nor D: x = y = [1,1,2] -> C = 2, Tx = Ty = 1 -> 2 / 2 = 1
    assert kendall_tau([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(average_ranks([10, 20, 20, 5]), [2.0, 3.5, 3.5, 1.0])


def test_constant_input_is_nan() -> None:
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman_rho([1, 2, 3], [7, 7, 7]))


def test_invariant_to_monotone_transform_and_order() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    perm = rng.permutation(50)
    assert kendall_tau(x, y) == pytest.approx(kendall_tau(np.exp(x), 3 * y + 1), abs=1e-12)
    assert kendall_tau(x, y) == pytest.approx(kendall_tau(x[perm], y[perm]), abs=1e-12)
    assert spearman_rho(x, y) == pytest.approx(spearman_rho(x[perm], y[perm]), abs=1e-12)


# ---- scipy cross-check ---------------------------------------------------------------------------


@needs_scipy
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=40))
def test_matches_scipy_with_ties(pairs: list[tuple[int, int]]) -> None:
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    with warnings.catch_warnings():  # scipy warns on constant input (NaN result)
        warnings.simplefilter("ignore")
        ref_t = scipy_stats.kendalltau(x, y).statistic
        ref_r = scipy_stats.spearmanr(x, y).statistic
    assert _same(kendall_tau(x, y), float(ref_t))
    assert _same(spearman_rho(x, y), float(ref_r))


@needs_scipy
@pytest.mark.parametrize("n", [2, 3, 17, 256, 1000, 4097])
def test_matches_scipy_continuous(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    assert kendall_tau(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman_rho(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)


# ---- rank_correlations ---------------------------------------------------------------------------


def test_top_subsets_by_true_score() -> None:
    true = np.arange(20, dtype=float)  # arch i has true score i: top 10% = archs 18, 19
    pred = true.copy()
    pred[18], pred[19] = 100.0, 50.0  # the top two are predicted in the wrong order
    r = rank_correlations(pred, true)
    assert list(r) == ["all", "top10%", "top20%"]
    assert r["all"]["n"] == 20 and r["top10%"]["n"] == 2 and r["top20%"]["n"] == 4
    assert r["top10%"]["kendall"] == -1.0 and r["top10%"]["spearman"] == -1.0
    assert r["all"]["kendall"] == pytest.approx(1 - 2 * 1 / 190)
    # top by the predicted score picks the same two here; a fraction that is not a whole count rounds up
    assert rank_correlations(pred, true, top_by="predicted")["top10%"]["n"] == 2
    assert rank_correlations(pred, true, tops=(0.11,))["top11%"]["n"] == 3


def test_top_by_true_vs_predicted_differ() -> None:
    true = np.arange(10, dtype=float)
    pred = -true  # reversed: the predicted top-3 are the true bottom-3
    pred[9] = 100.0  # except the true best, predicted best too
    by_true = rank_correlations(pred, true, tops=(3,), top_by="true")["top3"]
    by_pred = rank_correlations(pred, true, tops=(3,), top_by="predicted")["top3"]
    assert by_true["n"] == by_pred["n"] == 3
    # true top-3 = archs 9, 8, 7: pred 100, -8, -7 -> pred order 9 > 7 > 8 vs true 9 > 8 > 7
    assert by_true["kendall"] == pytest.approx(1 / 3)
    # predicted top-3 = archs 9, 0, 1: pred 100, 0, -1 vs true 9, 0, 1
    assert by_pred["kendall"] == pytest.approx(1 / 3)
    assert by_true != rank_correlations(-true, true, tops=(3,))["top3"]


def test_mappings_aligned_on_predicted_keys() -> None:
    true = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "unused": float("nan")}
    pred = {"d": 0.9, "c": 0.8, "a": 0.1, "b": 0.5}
    r = rank_correlations(pred, true, tops=())
    assert r == {"all": {"n": 4, "kendall": 1.0, "spearman": 1.0}}
    arch_keys = {(0, 1): 1.0, (1, 0): 2.0, (1, 1): 3.0}
    assert rank_correlations(arch_keys, {k: -v for k, v in arch_keys.items()}, tops=())["all"]["kendall"] == -1.0


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="predicted: 1 NaN"):
        rank_correlations([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="true: 1 NaN"):
        rank_correlations([1.0, 2.0, 3.0], [1.0, 2.0, float("nan")])
    with pytest.raises(ValueError, match=r"true: NaN score for 1 architecture.*'b'"):
        rank_correlations({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": float("nan")}, tops=())
    with pytest.raises(ValueError, match="true: no score for 1"):
        rank_correlations({"a": 1.0, "z": 2.0}, {"a": 1.0}, tops=())
    with pytest.raises(ValueError, match="same length"):
        rank_correlations([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        rank_correlations([1.0], [1.0])
    with pytest.raises(ValueError, match=r"top10% of 10 architectures is 1"):
        rank_correlations(list(range(10)), list(range(10)))
    with pytest.raises(ValueError, match="only 5"):
        rank_correlations(list(range(5)), list(range(5)), tops=(6,))
    with pytest.raises(ValueError, match="tops"):
        rank_correlations(list(range(5)), list(range(5)), tops=(1.5,))
    with pytest.raises(ValueError, match="top_by"):
        rank_correlations(list(range(5)), list(range(5)), top_by="both")
    with pytest.raises(ValueError, match="shape"):
        rank_correlations(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="must both be mappings"):
        rank_correlations({"a": 1.0, "b": 2.0}, [1.0, 2.0])
    with pytest.raises(ValueError, match="given twice"):
        rank_correlations(list(range(20)), list(range(20)), tops=(0.1, 0.1))


def test_infinities_rank_as_extremes() -> None:
    r = rank_correlations([float("-inf"), 0.0, float("inf")], [1.0, 2.0, 3.0], tops=())
    assert r["all"]["kendall"] == 1.0 and r["all"]["spearman"] == 1.0


# ---- benchmarks/bench_ranking.py: its machinery on the tiny --quick setting ------------------------

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ranking.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_ranking", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_ranking"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("bench_ranking", None)


def test_bench_schedule_spends_the_budget_exactly(bench) -> None:  # type: ignore[no-untyped-def]
    for budget in range(8, 41):
        cfg = bench.Config(budget=budget)
        for m in bench.METHODS:
            s = bench.schedule(m, cfg)
            assert s["total"] == budget, (m, budget, s)
            if m != "one-shot":
                assert s["warmup_epochs"][0] >= 1 and s["total_epochs"] == budget
    s = bench.schedule("lid", bench.Config(budget=20))
    assert (s["warmup_epochs"], s["finetune_epochs"], s["leaves"], s["total"]) == ([10, 1], 2, 4, 20)
    assert bench.schedule("exhaustive", bench.Config(budget=20))["warmup_epochs"] == [10]
    with pytest.raises(bench.BenchError, match="too small"):
        bench.schedule("exhaustive", bench.Config(budget=5))


def test_bench_controls_of_a_protocol(bench) -> None:  # type: ignore[no-untyped-def]
    """One-shot with the same epochs per path and with the same total epochs as the split protocol."""
    cfg = bench.Config(budget=20, preset="split-finetune")
    assert bench.schedule("one-shot-path", cfg)["one_shot_epochs"] == 20
    assert bench.schedule("one-shot-total", cfg)["one_shot_epochs"] == 15 + 4 * 5
    assert bench.schedule("lid", cfg)["lr_schedule"] == "continued" and cfg.tag() == "-split-finetune"
    # equal-budget keeps the first version's identity, so its results are reused
    assert bench.Config(budget=20).to_json() == bench.Config(budget=20).base_json()
    ablation = bench.Config(budget=20, split_kw=(("lr_schedule", "continued"),), label="cont")
    assert ablation.tag() == "-cont" and bench.schedule("lid", ablation)["lr_schedule"] == "continued"
    with pytest.raises(SystemExit):
        bench.parse_args(["--split-kw", '{"restart": true}'])  # a variant needs a --label


def test_bench_degenerate_matches_table(bench) -> None:  # type: ignore[no-untyped-def]
    from lidsplit.data import ground_truth
    from lidsplit.spaces import from_nb201_string

    table = ground_truth("nb201_digits")
    flags = [bench.is_degenerate(from_nb201_string(a)) for a in table.archs(include_degenerate=True)]
    assert flags == [table[a].degenerate for a in table.archs(include_degenerate=True)]
    assert sum(flags) == 2


def test_bench_nb201_argument_handling(bench, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("LIDSPLIT_NB201", raising=False)
    assert bench.resolve_nb201(None) is None
    monkeypatch.setenv("LIDSPLIT_NB201", str(tmp_path / "from_env.pth"))
    assert bench.resolve_nb201(None) == str(tmp_path / "from_env.pth")
    assert bench.resolve_nb201("given.pth") == "given.pth"
    args = bench.parse_args(["--quick"])
    with pytest.raises(bench.BenchError, match="no NAS-Bench-201 benchmark file at .*from_env.pth"):
        bench.build_task(args)
    f = tmp_path / "nb201.pth"
    f.write_bytes(b"not a benchmark")
    monkeypatch.setitem(sys.modules, "nas_201_api", None)  # the optional package is missing
    with pytest.raises(bench.BenchError, match="nas_201_api"):
        bench.build_task(bench.parse_args(["--nb201", str(f)]))
    assert bench.main(["--nb201", str(tmp_path / "missing.pth")]) == 2


def test_bench_nb201_table_and_cifar(bench, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The NAS-Bench-201 path end to end, with a stand-in nas_201_api and tiny CIFAR-10 batches."""
    from _fake_files import fake_nas_201_api, write_cifar10

    from lidsplit.spaces import to_nb201_string

    rng = np.random.default_rng(0)
    archs: list[tuple[int, ...]] = []
    while len(archs) < 12:
        a = tuple(int(v) for v in rng.integers(0, 5, 6))
        if a not in archs:
            archs.append(a)
    truth = {a: 50.0 + i for i, a in enumerate(archs)}
    api = fake_nas_201_api([to_nb201_string(a) for a in archs],
                           [{"test-accuracy": truth[a], "valid-accuracy": 0.0} for a in archs],
                           expect={"dataset": "cifar10", "hp": "200", "is_random": False})
    monkeypatch.setitem(sys.modules, "nas_201_api", api)
    bench_file = tmp_path / "NAS-Bench-201.pth"
    bench_file.write_bytes(b"read by the stand-in API only")
    cifar = write_cifar10(tmp_path / "cifar", per_batch=8)
    argv = ["--nb201", str(bench_file), "--cifar", str(cifar), "--methods", "one-shot", "--seeds", "0",
            "--epochs", "2", "--batch-size", "16", "--work-dir", str(tmp_path / "work"),
            "--results-dir", str(tmp_path / "res"), "--no-progress"]
    summary = bench.run(bench.parse_args(argv))
    rec = json.loads((tmp_path / "res" / "one-shot-seed0.json").read_text())
    kept = {to_nb201_string(a): truth[a] for a in archs if not bench.is_degenerate(a)}
    assert rec["config"]["task"]["name"] == "nb201_cifar10" and set(rec["predictions"]) == set(kept)
    # the correlations are those of the predictions against the table's test accuracy
    want = rank_correlations({k: p["acc"] for k, p in rec["predictions"].items()}, kept)
    assert rec["correlations"]["nb201"]["all"] == pytest.approx(want["all"])
    assert summary["methods"]["one-shot"]["seeds"] == [0]


def test_bench_quick_run_and_resume(bench, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("LIDSPLIT_NB201", raising=False)
    argv = ["--quick", "--methods", "one-shot", "exhaustive", "--seeds", "0", "--work-dir", str(tmp_path / "work"),
            "--results-dir", str(tmp_path / "res"), "--no-progress"]
    summary = bench.run(bench.parse_args(argv))
    for m, leaves in (("one-shot", 1), ("exhaustive", 5)):
        rec = json.loads((tmp_path / "res" / f"{m}-seed0.json").read_text())
        assert len(rec["leaves"]) == leaves and len(rec["predictions"]) == 12
        assert rec["budget"]["total"] == 8 and rec["budget"]["optimizer_steps"] == 8 * 4  # 256 images / 64
        for truth in ("disjoint", "table"):
            c = rec["correlations"][truth]
            assert list(c) == ["all", "top20%", "top10%"] and c["all"]["n"] == 12 and c["top10%"]["n"] == 2
            assert -1.0 <= c["all"]["kendall"] <= 1.0
        assert summary["methods"][m]["seeds"] == [0]
    one = summary["methods"]["one-shot"]
    # one leaf: the within-leaf tau is the overall tau; a split run is also compared with one-shot in its leaves
    assert one["within_leaf_kendall"]["table"]["mean"] == pytest.approx(one["correlations"]["table"]["all"]["kendall"]["mean"])
    assert set(summary["methods"]["exhaustive"]["within_leaf_kendall_one_shot"]) == {"disjoint", "table"}
    # a second call finds every (method, seed) done and trains nothing
    monkeypatch.setattr(bench, "run_one", lambda *a, **k: pytest.fail("re-ran a finished (method, seed)"))
    again = bench.run(bench.parse_args(argv))
    assert again["methods"] == summary["methods"]
    # another configuration is refused instead of mixed in
    with pytest.raises(bench.BenchError, match="another configuration"):
        bench.run(bench.parse_args(argv + ["--lr", "0.05"]))
