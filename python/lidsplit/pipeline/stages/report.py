"""The report stage: the tree, the leaves' layer-wise LID profiles, per-edge separability, search
progress, the timeline of the stages' tasks (``out/report/``: PNGs and summary.json, rebuilt every time)."""

from __future__ import annotations

from typing import Any

from lidsplit.common.executor import TASK_LOG, read_task_records
from lidsplit.common.rundir import RunDir
from lidsplit.pipeline.stages.base import Stage
from lidsplit.report import leaf_lid_profiles, write_report


class ReportStage(Stage):
    name = "report"
    needs = ("split", "train")

    def done(self) -> bool:
        # derived and rebuilt every time, except on storage this process cannot write: the last report stands
        return not RunDir(self.pipe.out).writable and (self.dir / "summary.json").exists()

    def result(self) -> dict[str, Any]:
        self.pipe.log(f"report: {self.pipe.out} is read-only; showing the report it holds")
        return RunDir(self.dir).read_json("summary.json", "report summary", remedy="re-run 'lidsplit report'")

    def run(self) -> dict[str, Any]:
        p, r = self.pipe, self.pipe.config.report
        profiles = leaf_lid_profiles(p.tree, p.leaf_model, p.data, archs_per_leaf=r.lid_archs, batch_size=r.lid_batch,
                                     k=r.lid_k, seed=p.seed, progress=p.progress)
        history = p.path("search") / "history.json"
        final = p.evaluate_stage.result() if p.evaluate_stage.done() else None
        tasks = [{**t, "stage": stage} for stage in ("split", "search", "evaluate")
                 for t in read_task_records(p.path(stage) / TASK_LOG)]
        return write_report(self.dir, p.tree, lid_profiles=profiles, search=history if history.exists() else None,
                            final=final, config=p.config.to_dict(), dpi=r.dpi, tasks=tasks)
