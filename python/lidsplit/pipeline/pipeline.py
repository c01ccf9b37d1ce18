"""The whole few-shot NAS pipeline on a run directory: split, train, search, evaluate, report.

``Pipeline(out, overrides)`` resolves the config (:mod:`lidsplit.pipeline.config`) against the run
directory ``out`` and runs stages (:mod:`lidsplit.pipeline.stages`, one small unit each); each stage skips
what is already done, so re-running a command after an interruption resumes it and never redoes or loses
finished work::

    out/config.json            the resolved config (valid input for --config)
    out/split/                 the split run (lidsplit.split.run): run.json, tree.json, node checkpoints
    out/train/leaf<id>.pt      the train stage's fine-tuned leaf weights (train.epochs > 0), with
    out/train/leaf<id>.ckpt    its mid-training checkpoints and out/train/train.json (histories)
    out/search/history.json    the search history (every evaluation, written as it goes; resumed)
    out/search/result.json     the search's picks (best architecture of each leaf) and best
    out/evaluate/              the evaluate stage's work (see lidsplit.pipeline.stages.evaluate)
    out/final.json             the chosen architecture: selection, leaf-weight val / test accuracy,
                               accuracy after training from scratch (evaluate.scratch_epochs > 0)
    out/final_model.pt         the from-scratch network's state dict (``materialize``d architecture)
    out/report/                PNGs and summary.json (lidsplit.report; rebuilt on every report)
    out/.lidsplit.lock         the command line's lock (lidsplit.common.rundir.RunLock)

Changing a key of a stage that already has results in ``out`` is refused (:class:`ConfigError`); keys of
later stages may change until those stages run. A stage that is complete writes nothing (not even
``config.json``), so a finished run on read-only storage can still be printed; a stage with work to do
on storage this process cannot write is refused with a ``RunDirectoryError`` saying why.

The run directory is not locked here: the command line holds the lock for a whole command
(``lidsplit.cli.main``); a Python caller sharing a directory between processes takes
``RunLock(out)`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lidsplit import spaces
from lidsplit.common.errors import ConfigError, RunDirectoryError
from lidsplit.common.executor import Executor, make_executor
from lidsplit.common.io import load_weights, parse_file
from lidsplit.common.rundir import RunDir, writable
from lidsplit.common.seeds import derive_seed
from lidsplit.data import DataSplits, DataLoaders, open_dataset
from lidsplit.pipeline.config import STAGES, Config, defaults, identity, load_file, merge, validate
from lidsplit.pipeline.stages import STAGE_TYPES, EvaluateStage, SearchStage, Stage
from lidsplit.search import LeafEvaluator, SearchResult
from lidsplit.split.tree import SplitTree

__all__ = ["Pipeline"]

_FILES = {"config": "config.json", "split": "split", "train": "train", "search": "search", "evaluate": "evaluate",
          "final": "final.json", "final_model": "final_model.pt", "report": "report"}


#: What to do with a damaged file of the split stage: the split run skips what it has, so it must go.
_REDO_SPLIT = ("the split stage must be redone: delete the run directory's split/ folder and the later stages' "
               "results (train/, search/, evaluate/, final.json), then re-run")


def _say(msg: str) -> None:
    print(msg, flush=True)


class Pipeline:
    """The pipeline on run directory ``out`` with config ``overrides`` (partial ``{section: {key: value}}``
    mappings, applied in order over the defaults and the run's saved config; see the module doc).

    log: receives one line per stage event (default: print).
    """

    def __init__(self, out: str | os.PathLike[str], overrides: Sequence[Mapping[str, Any]] = (), *,
                 log: Callable[[str], None] = _say) -> None:
        self.run_dir = RunDir(out)
        self.out = self.run_dir.path
        self.log = log
        saved_path = self.path("config")
        saved = self._saved_config(saved_path) if saved_path.exists() else None
        if saved is None and not self.run_dir.is_empty():
            raise RunDirectoryError(f"run directory {str(self.out)!r} is not empty and holds no {_FILES['config']}: "
                                    "not a lidsplit run directory (choose another --out)")
        raw = merge(defaults(), saved or {}, *(validate(o) for o in overrides))
        self.config: Config = Config.from_dict(raw, "the resolved config")
        self._data: DataSplits | None = None
        self._executor: Executor | None = None
        self._tree: SplitTree | None = None
        self.stages: dict[str, Stage] = {t.name: t(self) for t in STAGE_TYPES}
        if saved is not None:
            self._check_locked(merge(defaults(), saved))

    @property
    def search_stage(self) -> SearchStage:
        return self.stages["search"]  # type: ignore[return-value]

    @property
    def evaluate_stage(self) -> EvaluateStage:
        return self.stages["evaluate"]  # type: ignore[return-value]

    # ---- config and run directory --------------------------------------------------------------------
    @staticmethod
    def _saved_config(path: Path) -> dict[str, dict[str, Any]]:
        try:
            return load_file(path)
        except ConfigError as e:
            raise ConfigError(f"{e}. The run directory's saved config cannot be used: fix or restore {path} (the "
                              "run resumes with it), or use another --out") from None

    def path(self, name: str) -> Path:
        return self.out / _FILES[name]

    def has_results(self, stage: str) -> bool:
        """Whether ``stage`` has written results into the run directory."""
        return self.stages[stage].has_results()

    def _check_locked(self, saved: Mapping[str, Mapping[str, Any]]) -> None:
        for stage in STAGES:
            if not self.has_results(stage):
                continue
            old, new = identity(saved, stage), self.config.identity(stage)
            diff = [f"{k} = {new[k]!r} (the run has {old[k]!r})" for k in new if new[k] != old.get(k)]
            if diff:
                raise ConfigError(f"run directory {str(self.out)!r}: the {stage} stage already has results made "
                                  f"with other settings: {'; '.join(diff)}. Re-run without these changes to resume, "
                                  "or use another --out")

    def _complete(self, stage: str) -> bool:
        """Whether a later stage may read ``stage``'s results."""
        if stage == "split":
            return self.tree_or_none() is not None
        if stage == "search":
            return self.has_results("search")
        return self.stages[stage].done()

    def _require(self, stage: str | None, needed: str) -> None:
        if not self._complete(needed):
            by = f" (the {stage} stage needs them)" if stage else ""
            raise ConfigError(f"run directory {str(self.out)!r} has no complete {needed} stage results{by}; "
                              f"run 'lidsplit {needed} --out {self.out}' (or 'lidsplit run') first")

    def _start(self, stage: str) -> None:
        """Before a stage writes: the directory is writable, the config saved, threads set."""
        if self.out.is_dir() and not writable(self.out):
            raise RunDirectoryError(f"run directory {str(self.out)!r} cannot be written by this process (a read-only "
                                    f"file system, or no permission), and the {stage} stage has work to do there; "
                                    "copy the run to writable storage and run it there")
        self.run_dir.create()
        self.run_dir.save_json(_FILES["config"], self.config.to_dict(), only_if_changed=True)
        if self.config.run.threads:
            torch.set_num_threads(self.config.run.threads)
        self.log(f"== {stage} ({self.out})")

    def _stage(self, name: str) -> Any:
        """Run stage ``name``: its needs checked, read back when done, else started and run."""
        st = self.stages[name]
        for needed in st.needs:
            self._require(name, needed)
        if st.done():
            return st.result()
        if name == "split":
            self.data  # noqa: B018 - a dataset that cannot be loaded fails before anything is written
        if name in ("split", "search", "evaluate"):
            self.executor  # noqa: B018 - an executor that cannot start (no Ray) fails before anything is written
        self._start(name)
        return st.run()

    @property
    def executor(self) -> Executor:
        """Where the stages' independent tasks run (``run.executor`` / ``workers`` / ``ray_address``; made
        on first use, kept for the pipeline's stages; :meth:`close` releases it)."""
        if self._executor is None:
            r = self.config.run
            self._executor = make_executor(r.executor, workers=r.workers, address=r.ray_address, device=self.device,
                                           threads=r.threads)
        return self._executor

    def __getstate__(self) -> dict[str, Any]:
        # a task shipped to a worker (the search's evaluator loads leaves through this pipeline) never
        # carries the driver's executor
        return {**self.__dict__, "_executor": None}

    def close(self) -> None:
        """Release the executor (a local Ray cluster started for this pipeline is shut down)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    @property
    def progress(self) -> bool:
        return self.config.run.progress

    @property
    def seed(self) -> int:
        return self.config.run.seed

    @property
    def device(self) -> torch.device:
        d = self.config.run.device
        if d == "auto":
            d = "cuda" if torch.cuda.is_available() else "cpu"
        if d == "cuda" and not torch.cuda.is_available():
            raise ConfigError("config: run.device = 'cuda' but torch sees no CUDA device (use cpu or auto)")
        return torch.device(d)

    # ---- data and models -----------------------------------------------------------------------------
    @property
    def data(self) -> DataSplits:
        if self._data is None:
            d = self.config.data
            self._data = open_dataset(d.name, seed=self.seed, path=d.path)
        return self._data

    def loaders(self) -> DataLoaders:
        """Seeded train / val / test loaders of the search and evaluate stages."""
        bs = self.config.data.batch_size
        # evaluation batches only cost memory, and fewer of them cut per-call overhead on small images
        return self.data.loaders(bs, eval_batch_size=max(bs, 256), seed=derive_seed("lidsplit.pipeline", self.seed),
                                 device=self.device)

    def new_supernet(self) -> nn.Module:
        """A new supernet of the configured space, initialised from torch's global RNG."""
        s = self.config.space
        kw: dict[str, Any] = dict(num_classes=self.data.num_classes, in_channels=self.data.in_channels)
        if s.name == "nb201":
            kw.update(C=s.channels, N=s.cells)
        return spaces.build(s.name, **kw).to(self.device)

    def build_model(self) -> nn.Module:
        """The supernet with the run's seeded initial weights (the same for every call)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self.new_supernet()

    def train_hparams(self) -> dict[str, Any]:
        t = self.config.train
        return {"optimizer": t.optimizer, "lr": t.lr, "lr_min": t.lr_min, "momentum": t.momentum,
                "weight_decay": t.weight_decay, "grad_clip": t.grad_clip}

    def tree_or_none(self) -> SplitTree | None:
        """The split tree once its leaves are fine-tuned, else None."""
        if self._tree is None:
            p = self.path("split") / "tree.json"
            if not p.exists():
                return None
            tree = parse_file(p, SplitTree.from_json, what="split tree", remedy=_REDO_SPLIT)
            if any("weights" not in n.info for n in tree.leaves()):
                return None  # the split run stopped before its leaves were fine-tuned
            self._tree = tree
        return self._tree

    def set_tree(self, tree: SplitTree) -> None:
        self._tree = tree

    @property
    def tree(self) -> SplitTree:
        """The split tree of a finished split stage."""
        self._require(None, "split")
        return self.tree_or_none()  # type: ignore[return-value]

    def split_leaf_model(self, leaf: int) -> nn.Module:
        """A supernet holding ``leaf``'s weights at the end of the split (fine-tuned)."""
        rel = self.tree.node(leaf).info["weights"]
        return load_weights(self.build_model(), self.path("split") / rel, what="sub-supernet weights file",
                            map_location=self.device, remedy=_REDO_SPLIT)

    def leaf_model(self, leaf: int) -> nn.Module:
        """A supernet holding ``leaf``'s final weights: the train stage's when it ran, else the split's."""
        if self.config.train.epochs > 0:
            return load_weights(self.build_model(), self.path("train") / f"leaf{leaf}.pt", what="trained sub-supernet "
                                "weights file", map_location=self.device,
                                remedy="delete it and re-run 'lidsplit train' to train that leaf again")
        return self.split_leaf_model(leaf)

    def evaluator(self) -> LeafEvaluator:
        s = self.config.search
        return LeafEvaluator(self.tree, self.leaf_model, self.loaders(), split="val",
                             calib_batches=s.calib_batches, max_batches=s.max_batches)

    # ---- stages --------------------------------------------------------------------------------------
    def split(self) -> SplitTree:
        """Split the supernet (resumes ``out/split``); returns the split tree."""
        return self._stage("split")

    def train(self) -> dict[int, list[dict[str, float]]]:
        """``train.epochs`` more epochs for every leaf (resumable per leaf); returns leaf -> history."""
        return self._stage("train")

    def search(self) -> SearchResult:
        """Run the search (resumes ``out/search/history.json``); returns the ``SearchResult``."""
        return self._stage("search")

    def search_result(self, evaluator: LeafEvaluator) -> SearchResult:
        """The finished search's result, read back from its history (checked against ``evaluator``)."""
        self._require("evaluate", "search")
        return self.search_stage.result(evaluator)

    def evaluate(self) -> dict[str, Any]:
        """Choose the final architecture and measure it; writes and returns ``final.json``'s content."""
        return self._stage("evaluate")

    def report(self) -> dict[str, Any]:
        """Write ``out/report/`` (PNGs and summary.json); returns the summary."""
        return self._stage("report")

    def run(self) -> dict[str, Any]:
        """Every stage in order (each resumes or skips what is done); returns ``{"final": evaluate's dict,
        "report": the report summary}``."""
        try:
            self.split()
            self.train()
            self.search()
            final = self.evaluate()
            return {"final": final, "report": self.report()}
        finally:
            self.close()

    # ---- what the command line prints ----------------------------------------------------------------
    def arch_string(self, arch: Sequence[int]) -> dict[str, str]:
        """``{"nb201": its NAS-Bench-201 string}`` in the NB201 space, else ``{}``."""
        if self.config.space.name != "nb201":
            return {}
        return {"nb201": spaces.to_nb201_string(arch)}

    def describe_arch(self, arch: Sequence[int]) -> str:
        """The NB201 string of ``arch`` (NB201), else its op names per edge."""
        names = self.arch_string(arch).get("nb201")
        return names or ", ".join(f"{e}={o}" for e, o in zip(self.tree.space.labels, self.tree.space.names(arch)))

    def describe_final(self, final: Mapping[str, Any]) -> str:
        lw = final["leaf_weights"]
        lines = [f"Chosen architecture (by {final['selection']}, sub-supernet {final['leaf']}):",
                 f"  {self.describe_arch(final['arch'])}",
                 f"  with its sub-supernet's weights: val acc {lw['val_acc']:.2%}, test acc {lw['test_acc']:.2%}"]
        sc = final.get("scratch")
        if sc:
            lines.append(f"  trained from scratch ({sc['epochs']} epochs): val acc {sc['val_acc']:.2%}, "
                         f"test acc {sc['test_acc']:.2%}")
        return "\n".join(lines)

    def describe_report(self, summary: Mapping[str, Any]) -> str:
        files = summary.get("files", [])
        lines = [f"Report: {self.path('report').resolve()} ({', '.join(Path(f).name for f in files)})"]
        for name, why in summary.get("skipped", {}).items():
            lines.append(f"  {name} not drawn: {why}")
        return "\n".join(lines)
