"""The search stage: ``search.strategy`` over the split tree (or one per leaf), each architecture scored
on the validation split with its leaf's weights (``out/search/history.json``, resumed; picks in
``result.json``). The test split is never read here."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from lidsplit.common.errors import ConfigError
from lidsplit.common.executor import TASK_LOG
from lidsplit.common.rundir import RunDir
from lidsplit.common.seeds import derive_seed
from lidsplit.pipeline.stages.base import Stage
from lidsplit.search import AskTell, HistoryError, LeafEvaluator, PerLeaf, SearchResult, Strategy, run_search
from lidsplit.search.driver import HISTORY, Record
from lidsplit.search.strategies import make_strategy
from lidsplit.supernet import SubSupernet


class SearchStage(Stage):
    name = "search"
    needs = ("split", "train")

    def has_results(self) -> bool:
        return (self.dir / "history.json").exists()

    def done(self) -> bool:
        return (self.has_results() and (self.dir / "result.json").exists()
                and bool(HISTORY.read(self.dir / "history.json").get("finished")))

    def strategy(self) -> Strategy:
        """The configured strategy, freshly built (a history is resumed by replaying it)."""
        s, tree = self.pipe.config.search, self.pipe.tree
        params = dataclasses.asdict(s)

        def make(domain: SubSupernet | Any, seed: int) -> Strategy:
            return make_strategy(s.strategy, domain, seed=seed, **params)

        seed = derive_seed("lidsplit.pipeline.search", self.pipe.seed) % (2**31)
        return PerLeaf(tree, make, seed=seed) if s.per_leaf else make(tree, seed)

    def result(self, evaluator: LeafEvaluator | None = None) -> SearchResult:
        """The finished search's result, read back from its history (checked against the evaluator)."""
        ev = evaluator if evaluator is not None else self.pipe.evaluator()
        at = AskTell(self.strategy(), history=self.dir / "history.json", tree=self.pipe.tree,
                     evaluator_config=ev.config())
        return at.result()

    def run(self) -> SearchResult:
        p = self.pipe
        d = RunDir(self.dir)
        d.create()
        t0 = time.perf_counter()
        try:
            res = run_search(p.evaluator(), self.strategy(), history=d / "history.json", progress=p.progress,
                             batch=p.config.search.batch, executor=p.executor, task_log=d / TASK_LOG)
        except HistoryError as e:
            raise ConfigError(str(e)) from e
        summary = {
            "evaluations": res.evaluations, "records": len(res.records), "finished": res.finished,
            "best": None if res.best is None else self._record_json(res.best),
            "picks": {str(k): self._record_json(r) for k, r in res.picks().items()},
        }
        d.save_json("result.json", summary)
        best = res.best
        p.log(f"search: {res.evaluations} evaluations ({time.perf_counter() - t0:.0f} s); best val acc "
              f"{best.acc:.4f} in leaf {best.leaf}" if best else "search: no evaluation")
        return res

    def _record_json(self, r: Record) -> dict[str, Any]:
        p = self.pipe
        return {"arch": list(r.arch), "arch_names": list(p.tree.space.names(r.arch)),
                "arch_ops": p.tree.space.to_dict(r.arch), "leaf": r.leaf,
                "val_acc": r.acc, "val_loss": r.loss, **p.arch_string(r.arch)}
