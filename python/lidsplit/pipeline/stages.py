"""The whole few-shot NAS pipeline on a run directory: split, train, search, evaluate, report.

``Pipeline(out, overrides)`` resolves the config (:mod:`lidsplit.pipeline.config`) against the run
directory ``out`` and runs stages; each stage skips what is already done, so re-running a command after an
interruption resumes it and never redoes or loses finished work::

    out/config.json            the resolved config (valid input for --config)
    out/split/                 the split run (lidsplit.split.run): run.json, tree.json, node checkpoints
    out/train/leaf<id>.pt      the train stage's fine-tuned leaf weights (train.epochs > 0), with
    out/train/leaf<id>.ckpt    its mid-training checkpoints and out/train/train.json (histories)
    out/search/history.json    the search history (every evaluation, written as it goes; resumed)
    out/search/result.json     the search's picks (best architecture of each leaf) and best
    out/evaluate/              the evaluate stage's work: selection.json (the final choice),
                               halving/ (successive halving's finished trainings and checkpoints),
                               scratch.ckpt (the from-scratch training's checkpoint, removed once
                               final.json is written)
    out/final.json             the chosen architecture: selection, leaf-weight val / test accuracy,
                               accuracy after training from scratch (evaluate.scratch_epochs > 0)
    out/final_model.pt         the from-scratch network's state dict (``materialize``d architecture)
    out/report/                PNGs and summary.json (lidsplit.report; rebuilt on every report)

Stages and what they read:

* ``split``: NAS-LID / GM-NAS / ... split of the built-in supernet (``lidsplit.run_split``), leaves
  fine-tuned (``split.finetune_epochs``).
* ``train``: ``train.epochs`` more epochs for every leaf, from the split's final weights (0: nothing).
* ``search``: ``search.strategy`` over the split tree (or one per leaf), each architecture scored on the
  validation split with the weights of the leaf that contains it (BatchNorm recalibrated, leaves cached).
  The test split is never read before ``evaluate``.
* ``evaluate``: the final choice across the leaves' picks (``evaluate.select``), its accuracy with its
  leaf's weights, and optionally trained from scratch with its test accuracy (report only).
* ``report``: the tree, the leaves' layer-wise LID profiles, per-edge separability, search progress.

Changing a key of a stage that already has results in ``out`` is refused (:class:`ConfigError`); keys of
later stages may change until those stages run. The evaluate stage writes ``final.json`` only when it is
complete; until then its work in ``out/evaluate/`` lets an interrupted evaluate resume (the choice is
kept, finished successive-halving trainings are not repeated, training from scratch resumes from its last
epoch).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lidsplit.common.io import atomic_torch_save, atomic_write_text
from lidsplit.data import DataSplits
from lidsplit.common.seeds import derive_seed
from lidsplit.pipeline.config import STAGES, ConfigError, defaults, identity, load_file, merge, validate

__all__ = ["Pipeline"]

_FILES = {"config": "config.json", "split": "split", "train": "train", "search": "search", "evaluate": "evaluate",
          "final": "final.json", "final_model": "final_model.pt", "report": "report"}


def _say(msg: str) -> None:
    print(msg, flush=True)


class Pipeline:
    """The pipeline on run directory ``out`` with config ``overrides`` (partial ``{section: {key: value}}``
    mappings, applied in order over the defaults and the run's saved config; see the module doc).

    log: receives one line per stage event (default: print).
    """

    def __init__(self, out: str | os.PathLike[str], overrides: Sequence[Mapping[str, Any]] = (), *,
                 log: Callable[[str], None] = _say) -> None:
        self.out = Path(out)
        self.log = log
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"run directory {str(self.out)!r} exists and is not a directory")
        saved_path = self.out / _FILES["config"]
        saved = load_file(saved_path) if saved_path.exists() else None
        if saved is None and self.out.is_dir() and any(self.out.iterdir()):
            raise ConfigError(f"run directory {str(self.out)!r} is not empty and holds no {_FILES['config']}: not a "
                              "lidsplit run directory (choose another --out)")
        self.config = merge(defaults(), saved or {}, *(validate(o) for o in overrides))
        validate(self.config, "the resolved config")
        if saved is not None:
            self._check_locked(merge(defaults(), saved))
        self._data: DataSplits | None = None
        self._tree: Any = None

    # ---- config and run directory --------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.out / _FILES[name]

    def has_results(self, stage: str) -> bool:
        """Whether ``stage`` has written results into the run directory."""
        if stage == "split":
            return (self.path("split") / "run.json").exists()
        if stage == "train":
            return self.path("train").is_dir() and any(self.path("train").iterdir())
        if stage == "search":
            return (self.path("search") / "history.json").exists()
        if stage == "evaluate":
            return self.path("final").exists() or (self.path("evaluate") / "selection.json").exists()
        return False  # the report is derived and rebuilt every time

    def _check_locked(self, saved: Mapping[str, Mapping[str, Any]]) -> None:
        for stage in STAGES:
            if not self.has_results(stage):
                continue
            old, new = identity(saved, stage), identity(self.config, stage)
            diff = [f"{k} = {new[k]!r} (the run has {old[k]!r})" for k in new if new[k] != old.get(k)]
            if diff:
                raise ConfigError(f"run directory {str(self.out)!r}: the {stage} stage already has results made "
                                  f"with other settings: {'; '.join(diff)}. Re-run without these changes to resume, "
                                  "or use another --out")

    def _start(self, stage: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path("config"), json.dumps(self.config, indent=1) + "\n")
        run = self.config["run"]
        if run["threads"]:
            torch.set_num_threads(run["threads"])
        self.log(f"== {stage} ({self.out})")

    def _require(self, stage: str | None, needed: str) -> None:
        done = {"split": lambda: self.tree_or_none() is not None, "train": self._trained,
                "search": lambda: self.has_results("search")}[needed]
        if not done():
            by = f" (the {stage} stage needs them)" if stage else ""
            raise ConfigError(f"run directory {str(self.out)!r} has no complete {needed} stage results{by}; "
                              f"run 'lidsplit {needed} --out {self.out}' (or 'lidsplit run') first")

    def _trained(self) -> bool:
        """The train stage is complete: every leaf has its weights (or train.epochs = 0: nothing to do)."""
        if self.config["train"]["epochs"] == 0:
            return True
        tree = self.tree_or_none()
        return tree is not None and all((self.path("train") / f"leaf{n.id}.pt").exists() for n in tree.leaves())

    @property
    def progress(self) -> bool:
        return bool(self.config["run"]["progress"])

    @property
    def seed(self) -> int:
        return int(self.config["run"]["seed"])

    @property
    def device(self) -> torch.device:
        d = self.config["run"]["device"]
        if d == "auto":
            d = "cuda" if torch.cuda.is_available() else "cpu"
        if d == "cuda" and not torch.cuda.is_available():
            raise ConfigError("config: run.device = 'cuda' but torch sees no CUDA device (use cpu or auto)")
        return torch.device(d)

    # ---- data and models -----------------------------------------------------------------------------
    @property
    def data(self) -> DataSplits:
        if self._data is None:
            from lidsplit import data as ldata

            d = self.config["data"]
            if d["name"] == "digits":
                self._data = ldata.digits(seed=self.seed)
            elif d["name"] == "hard_digits":
                self._data = ldata.hard_digits(seed=self.seed)
            else:
                self._data = getattr(ldata, d["name"])(d["path"], seed=self.seed)
        return self._data

    def loaders(self) -> Any:
        """Seeded train / val / test loaders of the search and evaluate stages."""
        bs = self.config["data"]["batch_size"]
        # evaluation batches only cost memory, and fewer of them cut per-call overhead on small images
        return self.data.loaders(bs, eval_batch_size=max(bs, 256), seed=derive_seed("lidsplit.pipeline", self.seed),
                                 device=self.device)

    def new_supernet(self) -> nn.Module:
        """A new supernet of the configured space, initialised from torch's global RNG."""
        from lidsplit import spaces

        s = self.config["space"]
        kw: dict[str, Any] = dict(num_classes=self.data.num_classes, in_channels=self.data.in_channels)
        if s["name"] == "nb201":
            kw.update(C=s["channels"], N=s["cells"])
        return spaces.build(s["name"], **kw).to(self.device)

    def build_model(self) -> nn.Module:
        """The supernet with the run's seeded initial weights (the same for every call)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self.new_supernet()

    def train_hparams(self) -> dict[str, Any]:
        t = self.config["train"]
        return {k: t[k] for k in ("optimizer", "lr", "lr_min", "momentum", "weight_decay", "grad_clip")}

    def tree_or_none(self) -> Any:
        from lidsplit.split.tree import SplitTree

        if self._tree is None:
            p = self.path("split") / "tree.json"
            if not p.exists():
                return None
            tree = SplitTree.load(p)
            if any("weights" not in n.info for n in tree.leaves()):
                return None  # the split run stopped before its leaves were fine-tuned
            self._tree = tree
        return self._tree

    @property
    def tree(self) -> Any:
        """The split tree of a finished split stage."""
        self._require(None, "split")
        return self.tree_or_none()

    def leaf_model(self, leaf: int) -> nn.Module:
        """A supernet holding ``leaf``'s final weights: the train stage's when it ran, else the split's."""
        from lidsplit.split.run import load_leaf

        model = self.build_model()
        trained = self.path("train") / f"leaf{leaf}.pt"
        if self.config["train"]["epochs"] > 0:
            model.load_state_dict(torch.load(trained, map_location=self.device, weights_only=True))
            return model
        return load_leaf(model, self.tree, leaf, self.path("split"))

    def evaluator(self) -> Any:
        from lidsplit.search import LeafEvaluator

        s = self.config["search"]
        return LeafEvaluator(self.tree, self.leaf_model, self.loaders(), split="val",
                             calib_batches=s["calib_batches"], max_batches=s["max_batches"])

    # ---- stages --------------------------------------------------------------------------------------
    def split(self) -> Any:
        """Split the supernet (resumes ``out/split``); returns the split tree."""
        import lidsplit
        from lidsplit.split.run import SplitRunError

        self._start("split")
        s = self.config["split"]
        t0 = time.perf_counter()
        try:
            tree = lidsplit.run_split(
                self.build_model(), self.data, s["criterion"], s["rounds"],
                warmup_epochs=s["warmup_epochs"], finetune_epochs=s["finetune_epochs"], restart=s["restart"],
                train=self.train_hparams(), batch_size=self.config["data"]["batch_size"], batches=s["batches"],
                seed=self.seed, run_dir=self.path("split"), progress=self.progress,
            )
        except SplitRunError as e:
            raise ConfigError(str(e)) from e
        self._tree = tree
        self.log(f"split: {len(tree.leaves())} sub-supernets ({time.perf_counter() - t0:.0f} s)")
        return tree

    def train(self) -> dict[int, list[dict[str, float]]]:
        """``train.epochs`` more epochs for every leaf (resumable per leaf); returns leaf -> history."""
        from lidsplit.split.run import load_leaf
        from lidsplit.train import TrainConfig, train_subsupernet

        self._require("train", "split")
        epochs = self.config["train"]["epochs"]
        if epochs == 0:
            self.log("train: train.epochs = 0, the leaves keep the split's fine-tuned weights")
            return {}
        self._start("train")
        d = self.path("train")
        d.mkdir(parents=True, exist_ok=True)
        summary_path = d / "train.json"
        histories: dict[int, list[dict[str, float]]] = {}
        if summary_path.exists():
            histories = {int(k): v for k, v in json.loads(summary_path.read_text())["leaves"].items()}
        for node in self.tree.leaves():
            final = d / f"leaf{node.id}.pt"
            if final.exists() and node.id in histories:
                continue
            model = load_leaf(self.build_model(), self.tree, node.id, self.path("split"))
            cfg = TrainConfig(epochs, seed=derive_seed("lidsplit.pipeline.train", self.seed, node.id) % (2**31),
                              **self.train_hparams())
            res = train_subsupernet(model, node.sub, self.loaders(), config=cfg, checkpoint=d / f"leaf{node.id}.ckpt",
                                    progress=self.progress)
            atomic_torch_save(model.state_dict(), final)
            histories[node.id] = res.history
            atomic_write_text(summary_path, json.dumps({"epochs": epochs, "leaves": {str(k): v for k, v in
                                                                                     histories.items()}}, indent=1))
            self.log(f"train: leaf {node.id} done ({res.history[-1] if res.history else {}})")
        return histories

    def _strategy(self) -> Any:
        from lidsplit.search import Evolution, PerLeaf, RandomSearch, RegularizedEvolution

        s = self.config["search"]

        def make(domain: Any, seed: int) -> Any:
            if s["strategy"] == "evolution":
                return Evolution(domain, population=s["population"], keep=s["keep"], n_crossover=s["n_crossover"],
                                 n_mutation=s["n_mutation"], crossover_prob=s["crossover_prob"],
                                 mutation_prob=s["mutation_prob"], generations=s["generations"], seed=seed)
            if s["strategy"] == "aging":
                return RegularizedEvolution(domain, population=s["population"], sample_size=s["sample_size"],
                                            cycles=s["cycles"], seed=seed)
            return RandomSearch(domain, samples=s["samples"], seed=seed)

        seed = derive_seed("lidsplit.pipeline.search", self.seed) % (2**31)
        return PerLeaf(self.tree, make, seed=seed) if s["per_leaf"] else make(self.tree, seed)

    def search(self) -> Any:
        """Run the search (resumes ``out/search/history.json``); returns the ``SearchResult``."""
        from lidsplit.search import HistoryError, run_search

        self._require("search", "split")
        self._require("search", "train")
        self._start("search")
        d = self.path("search")
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            res = run_search(self.evaluator(), self._strategy(), history=d / "history.json", progress=self.progress)
        except HistoryError as e:
            raise ConfigError(str(e)) from e
        picks = res.picks()
        summary = {
            "evaluations": res.evaluations, "records": len(res.records), "finished": res.finished,
            "best": None if res.best is None else self._record_json(res.best),
            "picks": {str(k): self._record_json(r) for k, r in picks.items()},
        }
        atomic_write_text(d / "result.json", json.dumps(summary, indent=1) + "\n")
        best = res.best
        self.log(f"search: {res.evaluations} evaluations ({time.perf_counter() - t0:.0f} s); best val acc "
                 f"{best.acc:.4f} in leaf {best.leaf}" if best else "search: no evaluation")
        return res

    def _record_json(self, r: Any) -> dict[str, Any]:
        return {"arch": list(r.arch), "arch_names": list(self.tree.space.names(r.arch)), "leaf": r.leaf,
                "val_acc": r.acc, "val_loss": r.loss, **self._arch_string(r.arch)}

    def _arch_string(self, arch: Sequence[int]) -> dict[str, str]:
        if self.config["space"]["name"] != "nb201":
            return {}
        from lidsplit.spaces import to_nb201_string

        return {"nb201": to_nb201_string(arch)}

    def search_result(self, evaluator: Any) -> Any:
        """The finished search's result, read back from its history (checked against ``evaluator``)."""
        from lidsplit.search import AskTell

        self._require("evaluate", "search")
        at = AskTell(self._strategy(), history=self.path("search") / "history.json", tree=self.tree,
                     evaluator_config=evaluator.config())
        return at.result()

    def evaluate(self) -> dict[str, Any]:
        """Choose the final architecture and measure it; writes and returns ``final.json``'s content."""
        from lidsplit.search import scratch_train_fn, select_final, train_from_scratch
        from lidsplit.train import evaluate_arch

        if self.path("final").exists():
            return json.loads(self.path("final").read_text())
        self._require("evaluate", "search")
        ev = self.evaluator()
        result = self.search_result(ev)
        self._start("evaluate")
        e = self.config["evaluate"]
        work = self.path("evaluate")
        chosen = work / "selection.json"
        if chosen.exists():
            sel = json.loads(chosen.read_text())
            self.log(f"evaluate: resuming with the saved choice ({chosen})")
        else:
            work.mkdir(exist_ok=True)
            train_fn = None
            if e["select"] == "successive_halving":
                (work / "halving").mkdir(exist_ok=True)
                train_fn = scratch_train_fn(self.new_supernet, ev.loaders, progress=self.progress,
                                            work_dir=work / "halving", **self.train_hparams())
            s = select_final(result, e["select"], evaluator=ev, train_fn=train_fn, seed=self.seed,
                             progress=self.progress)
            sel = {"arch": list(s.arch), "scores": {str(k): v for k, v in s.scores.items()}, "rounds": s.rounds}
            atomic_write_text(chosen, json.dumps(sel, indent=1) + "\n")
        arch = tuple(sel["arch"])
        leaf = self.tree.route(arch)
        calib = self.config["search"]["calib_batches"]
        model = ev.model(leaf)
        val = evaluate_arch(model, arch, ev.loaders, split="val", calib_batches=calib)
        test = evaluate_arch(model, arch, ev.loaders, split="test", calib_batches=calib)
        final: dict[str, Any] = {
            "arch": list(arch), "arch_names": list(self.tree.space.names(arch)), **self._arch_string(arch),
            "leaf": leaf, "selection": e["select"], "selection_scores": sel["scores"],
            "selection_rounds": sel["rounds"],
            "leaf_weights": {"val_acc": val.accuracy, "val_loss": val.loss, "test_acc": test.accuracy,
                             "test_loss": test.loss},
            "scratch": None,
        }
        if e["scratch_epochs"] > 0:
            self.log(f"evaluate: training the final architecture from scratch for {e['scratch_epochs']} epochs")
            sr = train_from_scratch(arch, self.new_supernet, ev.loaders, e["scratch_epochs"], seed=self.seed,
                                    progress=self.progress, checkpoint=work / "scratch.ckpt",
                                    **self.train_hparams())
            atomic_torch_save(sr.model.state_dict(), self.path("final_model"))
            final["scratch"] = {"epochs": sr.epochs, "val_acc": sr.val_acc, "val_loss": sr.val_loss,
                                "test_acc": sr.test_acc, "test_loss": sr.test_loss, "model": _FILES["final_model"]}
        atomic_write_text(self.path("final"), json.dumps(final, indent=1) + "\n")
        (work / "scratch.ckpt").unlink(missing_ok=True)  # final_model.pt holds the trained network
        return final

    def report(self) -> dict[str, Any]:
        """Write ``out/report/`` (PNGs and summary.json); returns the summary."""
        from lidsplit.report import leaf_lid_profiles, write_report

        self._require("report", "split")
        self._require("report", "train")
        self._start("report")
        r = self.config["report"]
        profiles = leaf_lid_profiles(self.tree, self.leaf_model, self.data, archs_per_leaf=r["lid_archs"],
                                     batch_size=r["lid_batch"], k=r["lid_k"], seed=self.seed, progress=self.progress)
        history = self.path("search") / "history.json"
        final = json.loads(self.path("final").read_text()) if self.path("final").exists() else None
        return write_report(self.path("report"), self.tree, lid_profiles=profiles,
                            search=history if history.exists() else None, final=final, config=self.config,
                            dpi=r["dpi"])

    def run(self) -> dict[str, Any]:
        """Every stage in order (each resumes or skips what is done); returns ``{"final": evaluate's dict,
        "report": the report summary}``."""
        self.split()
        self.train()
        self.search()
        final = self.evaluate()
        return {"final": final, "report": self.report()}

    # ---- what the command line prints ----------------------------------------------------------------
    def describe_arch(self, arch: Sequence[int]) -> str:
        """The NB201 string of ``arch`` (NB201), else its op names per edge."""
        names = self._arch_string(arch).get("nb201")
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
