"""The evaluate stage: the final choice across the leaves' picks (``evaluate.select``), its accuracy with
its leaf's weights, and optionally trained from scratch with its test accuracy (report only).

``out/final.json`` is written only when the stage is complete; until then ``out/evaluate/`` lets an
interrupted evaluate resume: ``selection.json`` keeps the choice, ``halving/`` successive halving's
finished trainings, ``scratch.ckpt`` the from-scratch training (removed once final.json is written)."""

from __future__ import annotations

from typing import Any

from lidsplit.common.executor import TASK_LOG
from lidsplit.common.io import parse_file
from lidsplit.common.rundir import RunDir
from lidsplit.pipeline.stages.base import Stage
from lidsplit.search import LeafEvaluator, SearchResult, scratch_train_fn, select_final, train_from_scratch
from lidsplit.train import evaluate_arch


def _checked_final(d: Any) -> dict[str, Any]:
    """``final.json``'s content if it holds what the command line prints (else ValueError)."""
    lw = d.get("leaf_weights") if isinstance(d, dict) else None
    sc = d.get("scratch") if isinstance(d, dict) else None
    if (not isinstance(lw, dict) or not all(isinstance(lw.get(k), (int, float)) for k in ("val_acc", "test_acc"))
            or not isinstance(d.get("arch"), list) or not isinstance(d.get("leaf"), int) or "selection" not in d
            or not (sc is None or isinstance(sc, dict) and all(isinstance(sc.get(k), (int, float))
                                                               for k in ("epochs", "val_acc", "test_acc")))):
        raise ValueError("it does not hold a final result (arch, leaf, selection, leaf_weights, scratch)")
    return d


class EvaluateStage(Stage):
    name = "evaluate"
    needs = ("search",)

    @property
    def final_path(self) -> Any:
        return self.pipe.path("final")

    def has_results(self) -> bool:
        return self.final_path.exists() or (self.dir / "selection.json").exists()

    def done(self) -> bool:
        return self.final_path.exists()

    def result(self) -> dict[str, Any]:
        return parse_file(self.final_path, _checked_final, what="final result",
                          remedy="delete it and re-run 'lidsplit evaluate'")

    def _select(self, work: RunDir, ev: LeafEvaluator, searched: SearchResult) -> dict[str, Any]:
        """The final choice: the saved one when an interrupted evaluate made it, else made and saved."""
        p, e = self.pipe, self.pipe.config.evaluate
        if work.has("selection.json"):
            p.log(f"evaluate: resuming with the saved choice ({work / 'selection.json'})")
            return work.read_json("selection.json", "final choice", remedy="delete it to choose again")
        train_fn = None
        if e.select == "successive_halving":
            (work / "halving").mkdir(exist_ok=True)
            train_fn = scratch_train_fn(p.new_supernet, ev.loaders, progress=p.progress, work_dir=work / "halving",
                                        **p.train_hparams())
        s = select_final(searched, e.select, evaluator=ev, train_fn=train_fn, seed=p.seed,
                         progress=p.progress, executor=p.executor, task_log=work / TASK_LOG)
        sel = {"arch": list(s.arch), "scores": {str(k): v for k, v in s.scores.items()}, "rounds": s.rounds}
        work.save_json("selection.json", sel)
        return sel

    def run(self) -> dict[str, Any]:
        p, e = self.pipe, self.pipe.config.evaluate
        ev = p.evaluator()
        searched = p.search_stage.result(ev)  # checks the history against this evaluator before anything is written
        work = RunDir(self.dir)
        work.create()
        sel = self._select(work, ev, searched)
        arch = tuple(sel["arch"])
        leaf = p.tree.route(arch)
        calib = p.config.search.calib_batches
        model = ev.model(leaf)
        val = evaluate_arch(model, arch, ev.loaders, split="val", calib_batches=calib)
        test = evaluate_arch(model, arch, ev.loaders, split="test", calib_batches=calib)
        final: dict[str, Any] = {
            "arch": list(arch), "arch_names": list(p.tree.space.names(arch)), **p.arch_string(arch),
            "arch_ops": p.tree.space.to_dict(arch),
            "leaf": leaf, "selection": e.select, "selection_scores": sel["scores"],
            "selection_rounds": sel["rounds"],
            "leaf_weights": {"val_acc": val.accuracy, "val_loss": val.loss, "test_acc": test.accuracy,
                             "test_loss": test.loss},
            "scratch": None,
        }
        out = RunDir(p.out)
        if e.scratch_epochs > 0:
            p.log(f"evaluate: training the final architecture from scratch for {e.scratch_epochs} epochs")
            sr = train_from_scratch(arch, p.new_supernet, ev.loaders, e.scratch_epochs, seed=p.seed,
                                    progress=p.progress, checkpoint=work / "scratch.ckpt", executor=p.executor,
                                    **p.train_hparams())
            out.save_state(p.path("final_model").name, sr.model.state_dict())
            final["scratch"] = {"epochs": sr.epochs, "val_acc": sr.val_acc, "val_loss": sr.val_loss,
                                "test_acc": sr.test_acc, "test_loss": sr.test_loss, "model": p.path("final_model").name}
        out.save_json(self.final_path.name, final)
        (work / "scratch.ckpt").unlink(missing_ok=True)  # final_model.pt holds the trained network
        return final
