"""The split stage: NAS-LID / GM-NAS / ... split of the built-in supernet, leaves fine-tuned (``out/split``)."""

from __future__ import annotations

import time

import lidsplit
from lidsplit.common.errors import ConfigError, RunMismatchError
from lidsplit.common.rundir import StateFormat
from lidsplit.pipeline.config import PRESET_KEYS
from lidsplit.pipeline.stages.base import Stage
from lidsplit.split.criteria.registry import resolve_name
from lidsplit.split.policy import rounds
from lidsplit.split.proxies import PROXIES
from lidsplit.split.run import FORMAT, VERSION, SplitRunError
from lidsplit.split.schedule import preset
from lidsplit.split.tree import SplitTree

#: The split run's state file (``out/split/run.json``), read to tell whether the run finished.
SPLIT_RUN = StateFormat(FORMAT, VERSION, "split-run state file", RunMismatchError,
                        remedy="delete the run directory's split/ folder to split again")


class SplitStage(Stage):
    name = "split"

    def has_results(self) -> bool:
        return (self.dir / "run.json").exists()

    def done(self) -> bool:
        return (self.has_results() and SPLIT_RUN.read(self.dir / "run.json").get("status") == "done"
                and self.pipe.tree_or_none() is not None)

    def result(self) -> SplitTree:
        return self.pipe.tree

    def run(self) -> SplitTree:
        p, cfg = self.pipe, self.pipe.config
        t0 = time.perf_counter()
        s = cfg.split
        if s.preset == "custom":
            protocol = {k: getattr(s, k) for k in PRESET_KEYS}
        else:
            protocol = preset(s.preset, s.base_epochs, rounds(s.rounds)).run_kwargs()
        # the convention reaches the proxy criteria only: other criteria take no such option
        options = ({"convention": s.proxy_convention} if s.proxy_convention != "original" else None)
        if options and resolve_name(s.criterion) not in PROXIES:
            raise ConfigError(f"split.proxy_convention: {s.proxy_convention!r} applies to the zero-cost-proxy "
                              f"criteria {sorted(PROXIES)}, not to {s.criterion!r}")
        try:
            tree = lidsplit.run_split(
                p.build_model(), p.data, s.criterion, s.rounds, train=p.train_hparams(),
                batch_size=cfg.data.batch_size, batches=s.batches, seed=p.seed, run_dir=self.dir,
                progress=p.progress, criterion_options=options, nproc=cfg.train.nproc, executor=p.executor,
                **protocol,
            )
        except SplitRunError as e:
            raise ConfigError(str(e)) from e
        p.set_tree(tree)
        p.log(f"split: {len(tree.leaves())} sub-supernets ({time.perf_counter() - t0:.0f} s)")
        return tree
