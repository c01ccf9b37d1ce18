"""The driver: oracle for reporting only, progressive history and resume, reuse of recorded results, and
ask/tell loops driven from outside."""

from __future__ import annotations

import json

import pytest
from _search_helpers import FakeEvaluator, fake_score, make_tree

from lidsplit.search import (
    AskTell,
    Evolution,
    HistoryError,
    LeafEvaluator,
    PerLeaf,
    RandomSearch,
    RegularizedEvolution,
    Result,
    run_search,
)
from lidsplit.spaces import NB201_SPACE


def evolution(seed: int = 0) -> Evolution:
    return Evolution(NB201_SPACE, population=10, keep=3, n_crossover=3, n_mutation=3, generations=4, seed=seed)


def per_leaf(seed: int = 0) -> PerLeaf:
    return PerLeaf(make_tree(), lambda sub, s: Evolution(sub, population=5, keep=2, n_crossover=1, n_mutation=1,
                                                         generations=3, seed=s), seed=seed)


class CountingOracle(dict):
    def __init__(self, values):  # type: ignore[no-untyped-def]
        super().__init__(values)
        self.reads = 0

    def get(self, key, default=None):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().get(key, default)


def test_oracle_is_recorded_but_never_steers_the_search() -> None:
    truth = {a: fake_score(a) for a in NB201_SPACE.all_archs()}
    adversarial = {a: 1.0 - v for a, v in truth.items()}  # would steer the other way if it were read
    plain = run_search(FakeEvaluator(), evolution(), progress=False)
    assert plain.oracle is None
    oracle = CountingOracle(truth)
    with_truth = run_search(FakeEvaluator(), evolution(), oracle=oracle, progress=False)
    with_adv = run_search(FakeEvaluator(), evolution(), oracle=lambda a: adversarial[a], progress=False)
    assert plain.trajectory() == with_truth.trajectory() == with_adv.trajectory()
    assert [r.meta for r in plain.records] == [r.meta for r in with_adv.records]
    assert with_truth.oracle == [truth[r.arch] for r in with_truth.records]
    assert with_adv.oracle == [adversarial[r.arch] for r in with_adv.records]
    assert oracle.reads == len(with_truth.records)  # looked up once per record, for the report
    assert with_truth.oracle_of(with_truth.best) == truth[with_truth.best.arch]
    # an architecture missing from the table is recorded as None
    partial = run_search(FakeEvaluator(), evolution(), oracle={}, progress=False)
    assert partial.trajectory() == plain.trajectory() and set(partial.oracle) == {None}


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("make", [evolution, per_leaf,
                                  lambda seed=0: RegularizedEvolution(NB201_SPACE, population=5, sample_size=2,
                                                                      cycles=30, seed=seed)])
def test_resume_after_interruption_gives_the_same_result(tmp_path, make) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree()
    full = run_search(FakeEvaluator(tree), make(), progress=False)
    n = full.evaluations
    # 1. stopped on purpose, then resumed
    path = tmp_path / "h.json"
    ev1 = FakeEvaluator(tree)
    part = run_search(ev1, make(), history=path, stop_after=n // 3, progress=False)
    assert not part.finished and part.evaluations == n // 3
    ev2 = FakeEvaluator(tree)
    resumed = run_search(ev2, make(), history=path, progress=False)
    assert resumed.trajectory() == full.trajectory() and resumed.finished
    assert len(ev2.calls) == n - n // 3 and not set(ev1.calls) & set(ev2.calls)  # nothing re-evaluated
    # 2. crashed inside an evaluation, then resumed
    path2 = tmp_path / "h2.json"
    crash_at = 2 * n // 3
    ev3 = FakeEvaluator(tree)

    def crashing(a):  # type: ignore[no-untyped-def]
        if len(ev3.calls) == crash_at:
            raise Crash
        return ev3(a)

    with pytest.raises(Crash):
        run_search(crashing, make(), history=path2, progress=False)
    saved = json.loads(path2.read_text())
    assert sum(not r["reused"] for r in saved["records"]) == crash_at and not saved["finished"]
    ev4 = FakeEvaluator(tree)
    again = run_search(ev4, make(), history=path2, progress=False)
    assert again.trajectory() == full.trajectory() and len(ev4.calls) == n - crash_at
    # 3. a finished history is returned as is
    ev5 = FakeEvaluator(tree)
    done = run_search(ev5, make(), history=path2, progress=False)
    assert done.trajectory() == full.trajectory() and ev5.calls == [] and done.finished


def test_history_is_written_after_each_evaluation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "h.json"
    seen = []

    def ev(a):  # type: ignore[no-untyped-def]
        if path.exists():  # the file on disk already holds every earlier evaluation
            seen.append(len(json.loads(path.read_text())["records"]))
        else:
            seen.append(0)
        return Result(fake_score(a), 0.5)

    res = run_search(ev, RandomSearch(NB201_SPACE, samples=7), history=path, progress=False)
    assert seen == list(range(7))
    d = json.loads(path.read_text())
    assert d["finished"] and d["evaluations"] == 7 and len(d["records"]) == 7
    assert d["best"]["arch"] == list(res.best.arch)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_history_of_another_search_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "h.json"
    run_search(FakeEvaluator(), evolution(seed=0), history=path, stop_after=5, progress=False)
    with pytest.raises(HistoryError, match="another search"):
        run_search(FakeEvaluator(), evolution(seed=1), history=path, progress=False)
    with pytest.raises(HistoryError, match="another search"):
        run_search(FakeEvaluator(), RandomSearch(NB201_SPACE, samples=5), history=path, progress=False)
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"hello": 1}')
    with pytest.raises(HistoryError, match="not a lidsplit search history"):
        run_search(FakeEvaluator(), evolution(), history=foreign, progress=False)
    assert foreign.read_text() == '{"hello": 1}'  # never overwritten
    # a history whose records another strategy version would not replay is refused, not silently mixed
    d = json.loads(path.read_text())
    d["records"][0]["arch"] = [0, 0, 0, 0, 0, 0] if d["records"][0]["arch"] != [0] * 6 else [1] * 6
    path.write_text(json.dumps(d))
    with pytest.raises(HistoryError, match="does not replay"):
        run_search(FakeEvaluator(), evolution(seed=0), history=path, progress=False)


def test_repeated_proposals_are_answered_from_the_record() -> None:
    ev = FakeEvaluator()
    # a tiny domain: aging evolution proposes architectures again and again
    from lidsplit.supernet import SubSupernet

    dom = SubSupernet.full(NB201_SPACE)
    for e in range(4):
        dom = dom.restrict(e, [1])
    dom = dom.restrict(4, [0, 1]).restrict(5, [2, 3])
    res = run_search(ev, RegularizedEvolution(dom, population=3, sample_size=2, cycles=20), progress=False)
    assert len(res.records) == 23 and len(ev.calls) == len(set(ev.calls)) == res.evaluations <= 4
    for r in res.records:
        assert r.acc == fake_score(r.arch)


def test_external_loop_drives_a_builtin_strategy(data, leaf_models) -> None:  # type: ignore[no-untyped-def]
    """Outside code owns the loop: ask, evaluate with the leaves, tell; same trajectory as run_search."""
    tree = make_tree()
    ev = LeafEvaluator(tree, leaf_models, data.loaders(16), calib_batches=1, max_batches=1)
    strat = lambda: RandomSearch(tree, samples=6, seed=2)  # noqa: E731
    at = AskTell(strat(), tree=tree)
    while (a := at.ask()) is not None:
        at.tell(a, ev.evaluate(a))
    assert at.finished
    ref = run_search(ev, strat(), progress=False)
    assert at.result().trajectory() == ref.trajectory()


def test_external_optimiser_proposes_and_lidsplit_evaluates(tmp_path, data, leaf_models) -> None:  # type: ignore[no-untyped-def]
    """A hand-written outside optimiser (greedy one-edge hill climbing) proposes architectures; the leaves
    evaluate them; AskTell records them (asked=False) and routes them to their leaves."""
    tree = make_tree()
    ev = LeafEvaluator(tree, leaf_models, data.loaders(16), calib_batches=1, max_batches=1)
    at = AskTell(RandomSearch(tree, samples=0), tree=tree, history=tmp_path / "ext.json")
    current = (0, 0, 0, 0, 0, 0)
    best = ev.evaluate(current)
    at.tell(current, best)
    for step in range(6):  # propose: change one edge, keep it if it is better
        cand = list(current)
        cand[step % 6] = (cand[step % 6] + 2) % 5
        cand = tuple(cand)
        r = ev.evaluate(cand)
        at.tell(cand, r)
        if (r.acc, -r.loss) > (best.acc, -best.loss):
            current, best = cand, r
    res = at.result()
    assert len(res.records) == 7 and not any(r.asked for r in res.records)
    assert all(r.leaf == tree.route(r.arch) for r in res.records)
    assert res.best.acc == best.acc
    assert at.ask() is None  # the wrapped strategy proposes nothing itself
    assert json.loads((tmp_path / "ext.json").read_text())["evaluations"] == 7
    # an accuracy alone may be told
    at2 = AskTell(RandomSearch(tree, samples=0), tree=tree)
    rec = at2.tell((2, 2, 2, 2, 2, 2), 0.75)
    assert (rec.acc, rec.leaf) == (0.75, tree.route((2, 2, 2, 2, 2, 2)))


def test_asynchronous_asks_and_out_of_order_tells_resume(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Several proposals out at once, results coming back in another order (a parallel optimiser); an
    interruption with proposals still out resumes to the same search."""

    def drive(at: AskTell, budget: int | None = None) -> None:
        told = 0
        while True:
            batch = []
            while len(batch) < 4 and (a := at.ask()) is not None:
                batch.append(a)
            if not batch:
                return
            for a in reversed(batch):
                if budget is not None and told == budget:
                    return
                at.tell(a, Result(fake_score(a), 0.3))
                told += 1

    make = lambda: RegularizedEvolution(NB201_SPACE, population=6, sample_size=3, cycles=14, seed=4)  # noqa: E731
    ref = AskTell(make())
    drive(ref)
    assert ref.finished and len(ref.records) == 20
    path = tmp_path / "async.json"
    first = AskTell(make(), history=path)
    drive(first, budget=9)  # stops with proposals still out
    assert first.outstanding
    second = AskTell(make(), history=path)
    assert second.records == first.records and second.outstanding == ()
    reissued = [second.ask() for _ in first.outstanding]
    assert reissued == list(first.outstanding)  # the proposals that were out are handed out again
    for at, out in ((first, list(first.outstanding)), (second, reissued)):
        for a in reversed(out):
            at.tell(a, Result(fake_score(a), 0.3))
        drive(at)
    assert second.finished and second.result().trajectory() == first.result().trajectory()
    assert len(second.records) == 20


def test_non_finite_results_survive_the_history(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A diverged evaluation (NaN / infinite loss, NaN accuracy) ranks last and is resumed exactly."""
    import math

    def ev(a):  # type: ignore[no-untyped-def]
        k = sum(a) % 3
        return Result(math.nan if k == 0 else fake_score(a), [math.inf, math.nan, 0.5][k])

    make = lambda: Evolution(NB201_SPACE, population=8, keep=2, n_crossover=2, n_mutation=2, generations=3)  # noqa: E731
    full = run_search(ev, make(), progress=False)
    path = tmp_path / "h.json"
    run_search(ev, make(), history=path, stop_after=9, progress=False)
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    resumed = run_search(ev, make(), history=path, progress=False)
    assert [r.arch for r in resumed.records] == [r.arch for r in full.records]
    assert not math.isnan(resumed.best.acc) and resumed.best == full.best


def test_batched_asks_are_told_in_ask_order_and_resume(tmp_path) -> None:
    """batch=4: up to 4 asks before their results are told (what an executor evaluates in parallel); the
    history says so (asks_before) and an interrupted batched search resumes to the same history."""
    one = run_search(FakeEvaluator(), evolution(), progress=False)
    assert run_search(FakeEvaluator(), evolution(), progress=False, batch=1).trajectory() == one.trajectory()
    path = tmp_path / "h.json"
    full = run_search(FakeEvaluator(), evolution(), progress=False, batch=4, history=path)
    assert full.finished and full.evaluations == one.evaluations
    asked = [r.asks_before for r in full.records if r.asked and not r.reused]
    assert asked[:4] == [4, 4, 4, 4]  # the first four were all asked before the first tell
    whole = path.read_bytes()
    path.unlink()
    part = run_search(FakeEvaluator(), evolution(), progress=False, batch=4, history=path, stop_after=6)
    assert not part.finished
    run_search(FakeEvaluator(), evolution(), progress=False, batch=4, history=path)
    assert path.read_bytes() == whole
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        run_search(FakeEvaluator(), evolution(), progress=False, batch=0)
