"""The one driver of every strategy: an ask/tell front end with a progressive JSON history and resume.

``AskTell(strategy, history=path)`` hands out the strategy's proposals (``ask``) and takes results
(``tell``) from whoever evaluates them: :func:`run_search` with a :class:`LeafEvaluator`, or an outside
loop (Optuna, Syne Tune, a hand-written one). Every ``tell`` is appended to the history, which is written
to ``path`` atomically (temp file + ``os.replace``) every ``save_every`` tells and at the end.

Resume: an ``AskTell`` built on an existing history (same strategy config, same evaluator config)
replays it: the strategy is asked again and told the recorded results in the recorded order, so it
reaches exactly the state it had (its asks are a function of its seed and of the results told), and
nothing recorded is evaluated again. An architecture that was already evaluated in this search is not
handed out again either: ``ask`` tells the strategy its recorded result (an entry marked ``reused``).

Oracle: an optional table (mapping arch -> true accuracy, or a callable) is looked up after each tell and
stored in its own list of the history, for REPORTING only; it is never given to the strategy, so the
search trajectory is the same with or without it.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from contextlib import closing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lidsplit.common.errors import RunMismatchError
from lidsplit.common.executor import Executor, make_executor
from lidsplit.common.io import atomic_write_text
from lidsplit.common.rundir import StateFormat, jsonable_identity
from lidsplit.common.progress import progress_bar
from lidsplit.search.evaluator import Result
from lidsplit.search.strategies import Strategy, rank_key
from lidsplit.split.tree import SplitTree
from lidsplit.supernet import Arch

__all__ = ["AskTell", "HistoryError", "Record", "SearchResult", "run_search", "Oracle"]

FORMAT = "lidsplit.search.history"
VERSION = 1

#: Architecture -> true (benchmark) accuracy, for reporting: a mapping keyed by op-index tuples, or a callable.
Oracle = Mapping[tuple[int, ...], float] | Callable[[tuple[int, ...]], float]


class HistoryError(RunMismatchError):
    """A history file that cannot be resumed by this search (another search's, or not a history)."""


#: The history file's header (format, version) and refusals (``lidsplit.common.rundir``).
HISTORY = StateFormat(FORMAT, VERSION, "search history", HistoryError)


@dataclass(frozen=True)
class Record:
    """One ``tell`` of a search, in order.

    asked: the strategy proposed it (False: told by an outside optimiser).
    reused: its result was taken from an earlier record of the same architecture (not re-evaluated).
    asks_before: how many asks the strategy had answered before this tell (lets resume replay the
        interleaving of asks and tells).
    meta: how the strategy made it (generation, origin: random / crossover / mutation, parents, leaf).
    """

    arch: Arch
    acc: float
    loss: float
    leaf: int | None
    n: int
    asked: bool
    reused: bool
    asks_before: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def result(self) -> Result:
        return Result(self.acc, self.loss, self.leaf, self.n)

    def to_json(self) -> dict[str, Any]:
        return {"arch": list(self.arch), **self.result.to_json(), "asked": self.asked, "reused": self.reused,
                "asks_before": self.asks_before, "meta": self.meta}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Record:
        def num(v: Any) -> float:
            return math.nan if v is None else float(v)  # None: written by an outside tool for "unknown"

        try:
            return cls(tuple(int(a) for a in d["arch"]), num(d["acc"]), num(d["loss"]),
                       None if d["leaf"] is None else int(d["leaf"]), int(d["n"]), bool(d["asked"]),
                       bool(d["reused"]), int(d["asks_before"]), dict(d.get("meta") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise HistoryError(f"search history: malformed entry {d!r} ({e!r})") from None


def _best(records: Sequence[Record]) -> Record | None:
    best = None
    for r in records:  # strict improvement: ties keep the first
        if best is None or rank_key(r.result) > rank_key(best.result):
            best = r
    return best


@dataclass
class SearchResult:
    """The records of a search (see :class:`Record`), the oracle values (None where absent; the list is
    None when no oracle was given) and whether the strategy finished."""

    records: list[Record]
    oracle: list[float | None] | None
    finished: bool

    @property
    def best(self) -> Record | None:
        """The best record (validation accuracy, then lower loss; ties: the first)."""
        return _best(self.records)

    def picks(self) -> dict[int | None, Record]:
        """Each leaf's best record (keys: leaf ids in order of first appearance)."""
        by_leaf: dict[int | None, list[Record]] = {}
        for r in self.records:
            by_leaf.setdefault(r.leaf, []).append(r)
        return {leaf: _best(rs) for leaf, rs in by_leaf.items()}  # type: ignore[misc]

    @property
    def evaluations(self) -> int:
        """Records whose result was evaluated (not reused)."""
        return sum(not r.reused for r in self.records)

    def trajectory(self) -> list[tuple[Arch, float, float, int | None]]:
        """``(arch, acc, loss, leaf)`` of every record, in order (what determinism tests compare)."""
        return [(r.arch, r.acc, r.loss, r.leaf) for r in self.records]

    def oracle_of(self, record: Record) -> float | None:
        """The oracle value recorded with ``record`` (None without an oracle)."""
        if self.oracle is None:
            return None
        return self.oracle[self.records.index(record)]


class AskTell:
    """Ask/tell front end of a strategy, with a JSON history (see the module doc).

    Args:
        strategy: any :class:`Strategy` (``PerLeaf``, ``Evolution``, ...), freshly built.
        history: a JSON file path: resumed from if it exists (HistoryError if it belongs to another
            search), written every ``save_every`` tells and when the strategy finishes.
        oracle: reporting only (see the module doc).
        tree: routes told architectures whose result names no leaf.
        evaluator_config: JSON describing how results are computed (``LeafEvaluator.config()``); part of
            the identity a history is checked against.
        save_every: write the history every this many tells (1: after each one).
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        history: str | os.PathLike[str] | None = None,
        oracle: Oracle | None = None,
        tree: SplitTree | None = None,
        evaluator_config: Mapping[str, Any] | None = None,
        save_every: int = 1,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(f"AskTell: strategy must be a lidsplit search Strategy, got {type(strategy).__name__}")
        if strategy.asked or strategy.told:
            raise ValueError("AskTell: the strategy has already been used; pass a fresh one (a history is resumed "
                             "by replaying it)")
        if oracle is not None and not (isinstance(oracle, Mapping) or callable(oracle)):
            raise TypeError(f"AskTell: oracle must be a mapping arch -> accuracy or a callable, got {type(oracle).__name__}")
        if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1:
            raise ValueError(f"AskTell: save_every must be an int >= 1, got {save_every!r}")
        self.strategy = strategy
        self.tree = tree
        self.path = Path(history) if history is not None else None
        self.save_every = save_every
        # normalised through JSON so that it compares equal to the copy read back from a history file
        self.identity: dict[str, Any] = jsonable_identity({
            "space": strategy.domain.space.to_json(),
            "strategy": strategy.config(),
            "evaluator": None if evaluator_config is None else dict(evaluator_config),
        })
        self._oracle = oracle
        self.records: list[Record] = []
        self.oracle_values: list[float | None] | None = None if oracle is None else []
        self._memo: dict[Arch, Result] = {}
        self._asks = 0  # asks answered by the strategy
        self._outstanding: list[Arch] = []  # handed out, not yet told (ask order)
        self._reissue: deque[Arch] = deque()  # outstanding when the history was written: handed out again
        self._unsaved = 0
        if self.path is not None:
            if self.path.exists():
                self._replay(HISTORY.read(self.path))
            elif not self.path.parent.is_dir():
                raise FileNotFoundError(f"AskTell: history directory {self.path.parent} does not exist")

    # ---- ask / tell -------------------------------------------------------------------------------
    def ask(self) -> Arch | None:
        """The next architecture to evaluate, or None (the strategy is finished, or waits for results of
        architectures handed out). Architectures already recorded are answered from the record."""
        while True:
            if self._reissue:
                a = self._reissue.popleft()
            else:
                a = self.strategy.ask()
                if a is None:
                    self._maybe_save(final=True)
                    return None
                self._asks += 1
            if a in self._memo and a not in self._outstanding:
                self._record(a, self._memo[a], asked=True, reused=True)
                continue
            self._outstanding.append(a)
            return a

    def tell(self, arch: Sequence[int | str], result: Result | float) -> Record:
        """Record the result of ``arch`` (an accuracy alone is accepted) and pass it to the strategy."""
        a = self.strategy.domain.space.validate_arch(arch)
        if isinstance(result, Result):
            r = result
        elif isinstance(result, (int, float)) and not isinstance(result, bool):
            r = Result(float(result))
        else:
            raise TypeError(f"tell: result must be a search Result or an accuracy, got {type(result).__name__}")
        asked = a in self._outstanding
        if asked:
            self._outstanding.remove(a)
        return self._record(a, r, asked=asked, reused=False)

    @property
    def finished(self) -> bool:
        return self.strategy.finished and not self._outstanding

    @property
    def outstanding(self) -> tuple[Arch, ...]:
        """Architectures handed out by ``ask`` and not yet told."""
        return tuple(self._outstanding)

    def result(self) -> SearchResult:
        return SearchResult(list(self.records), None if self.oracle_values is None else list(self.oracle_values),
                            self.finished)

    # ---- recording --------------------------------------------------------------------------------
    def _record(self, a: Arch, r: Result, *, asked: bool, reused: bool) -> Record:
        if r.leaf is None and self.tree is not None:
            r = Result(r.acc, r.loss, self.tree.route(a), r.n)
        meta = self.strategy.meta(a) if asked else {}
        self.strategy.tell(a, r)  # raises (nothing recorded) if the strategy refuses it
        rec = Record(a, float(r.acc), float(r.loss), r.leaf, int(r.n), asked, reused, self._asks, meta)
        self.records.append(rec)
        self._memo.setdefault(a, r)
        if self.oracle_values is not None:
            self.oracle_values.append(self._lookup_oracle(a))
        self._unsaved += 1
        self._maybe_save()
        return rec

    def _lookup_oracle(self, a: Arch) -> float | None:
        o = self._oracle
        try:
            v = o.get(a) if isinstance(o, Mapping) else o(a)  # type: ignore[operator, union-attr]
        except KeyError:
            v = None
        return None if v is None else float(v)

    # ---- history file -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        res = self.result()
        best = res.best
        return HISTORY.header(
            self.identity,
            finished=res.finished,
            evaluations=res.evaluations,
            best=None if best is None else self._with_ops(best),
            picks=[self._with_ops(p) for p in res.picks().values()],
            records=[r.to_json() for r in self.records],
            oracle=self.oracle_values,
        )

    def _with_ops(self, r: Record) -> dict[str, Any]:
        """A record's JSON plus its architecture as ``{edge label: op name}`` (``arch_ops``)."""
        return {**r.to_json(), "arch_ops": self.strategy.domain.space.to_dict(r.arch)}

    def save(self) -> Path | None:
        """Write the history now (atomically); returns its path (None without one)."""
        if self.path is None:
            return None
        atomic_write_text(self.path, json.dumps(self.to_json(), separators=(",", ":")))
        self._unsaved = 0
        return self.path

    def _maybe_save(self, final: bool = False) -> None:
        if self._unsaved and (self._unsaved >= self.save_every or final or self.strategy.finished):
            self.save()

    def _replay(self, d: dict[str, Any]) -> None:
        HISTORY.refuse_changed(self.path, d.get("identity"), self.identity, whose="another search")
        raw = d.get("records", [])
        if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
            raise HistoryError(f"{self.path}: damaged search history ('records' is not a list of entries); "
                               f"{HISTORY.remedy}")
        try:
            records = [Record.from_json(e) for e in raw]
        except HistoryError as e:
            raise HistoryError(f"{self.path}: damaged search history: {e}; {HISTORY.remedy}") from None
        stored_oracle = d.get("oracle")
        out: list[Arch] = []
        for i, rec in enumerate(records):
            while self._asks < rec.asks_before:
                a = self.strategy.ask()
                if a is None:
                    raise HistoryError(f"{self.path}: record {i} does not replay (the strategy proposes nothing where "
                                       f"the history had it answer {rec.asks_before} asks)")
                self._asks += 1
                out.append(a)
            if rec.asked:
                if rec.arch not in out:
                    raise HistoryError(f"{self.path}: record {i} ({rec.arch}) does not replay: the strategy proposed "
                                       f"{out} instead (the history was written by another search or version)")
                out.remove(rec.arch)
            try:
                self.strategy.tell(rec.arch, rec.result)
            except (ValueError, TypeError, KeyError, IndexError) as e:
                raise HistoryError(f"{self.path}: record {i} does not replay ({e}); {HISTORY.remedy}") from None
            self.records.append(rec)
            self._memo.setdefault(rec.arch, rec.result)
            if self.oracle_values is not None:
                self.oracle_values.append(self._lookup_oracle(rec.arch))
        if self.oracle_values is None and isinstance(stored_oracle, list) and len(stored_oracle) == len(records):
            if not all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in stored_oracle):
                raise HistoryError(f"{self.path}: damaged search history ('oracle' holds non-numbers); "
                                   f"{HISTORY.remedy}")
            self.oracle_values = [None if v is None else float(v) for v in stored_oracle]
        self._reissue = deque(out)


def run_search(
    evaluator: Any,
    strategy: Strategy,
    *,
    history: str | os.PathLike[str] | None = None,
    oracle: Oracle | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    save_every: int = 1,
    batch: int = 1,
    executor: str | Executor = "local",
    task_log: str | os.PathLike[str] | None = None,
) -> SearchResult:
    """Run ``strategy`` to the end, scoring each proposal with ``evaluator``.

    evaluator: a :class:`LeafEvaluator` (its tree routes results, its config joins the history's identity)
        or any callable ``arch -> Result``.
    history: JSON file written progressively and resumed from (see :class:`AskTell`).
    oracle: reporting only; never given to the strategy.
    stop_after: return after this many new evaluations (the history lets a later call go on).
    progress: a tqdm bar over the strategy's asks.
    batch: architectures asked before their results are told (:func:`_ask_batch`), evaluated as
        independent tasks by ``executor`` (:mod:`lidsplit.common.executor`; an evaluator must then be
        picklable to run on Ray), then told in ask order. The history depends on ``batch`` (a strategy that
        adapts sees results later), never on the executor, nor on where a run was interrupted; ``batch=1``
        is ask, evaluate, tell, one at a time. ``task_log``: the tasks' records.
    """
    evaluate = getattr(evaluator, "evaluate", evaluator)
    if not callable(evaluate):
        raise TypeError(f"run_search: evaluator must be a LeafEvaluator or a callable arch -> Result, got "
                        f"{type(evaluator).__name__}")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 0):
        raise ValueError(f"run_search: stop_after must be a non-negative int or None, got {stop_after!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"run_search: batch must be an int >= 1, got {batch!r}")
    ex = make_executor(executor)
    config = evaluator.config() if callable(getattr(evaluator, "config", None)) else None
    at = AskTell(strategy, history=history, oracle=oracle, tree=getattr(evaluator, "tree", None),
                 evaluator_config=config, save_every=save_every)
    bar = progress_bar(None, enabled=progress, desc="search", total=strategy.budget, initial=len(at.records))
    shown, new = len(at.records), 0
    best = _best(at.records)
    try:
        while stop_after is None or new < stop_after:
            asked = _ask_batch(at, batch)
            if stop_after is not None:  # the others stay handed out: a later call evaluates them first
                asked = asked[:stop_after - new]
            if not asked:
                if not at.finished:
                    raise RuntimeError(f"run_search: {type(strategy).__name__} proposes nothing but is not finished")
                break
            results = ex.imap(_evaluate_task, [(a,) for a in asked], names=[f"evaluate {list(a)}" for a in asked],
                              shared=evaluate, log=task_log)
            with closing(results):
                for a, r in zip(asked, results):
                    if not isinstance(r, Result):
                        raise TypeError(f"run_search: the evaluator returned a {type(r).__name__}, expected a search "
                                        "Result")
                    at.tell(a, r)
                    new += 1
                    bar.update(len(at.records) - shown)
                    for rec in at.records[shown:]:  # incremental: no pass over the whole history per evaluation
                        if best is None or rank_key(rec.result) > rank_key(best.result):
                            best = rec
                    shown = len(at.records)
                    if best is not None:
                        bar.set_postfix(best=f"{best.acc:.4f}", refresh=False)
    finally:
        bar.close()
        if at._unsaved:
            at.save()
        if ex is not executor:
            ex.close()
    return at.result()


def _ask_batch(at: AskTell, batch: int) -> list[Arch]:
    """The next batch of architectures to evaluate: asks until the strategy's ask count is a multiple of
    ``batch`` (or it waits for results), after handing out again what an interrupted run left outstanding.
    Batches end at the same asks however often the search was interrupted and resumed."""
    asked: list[Arch] = []
    while True:
        a = at.ask()
        if a is None:
            return asked
        asked.append(a)
        if at._asks % batch == 0 and (batch == 1 or not at._reissue):
            return asked


def _evaluate_task(evaluate: Callable[[Arch], Result], arch: Arch) -> Result:
    """One evaluation task (``evaluate``: the evaluator, shipped once per batch)."""
    return evaluate(arch)
