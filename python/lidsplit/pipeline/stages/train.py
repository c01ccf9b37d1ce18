"""The train stage: ``train.epochs`` more epochs for every leaf, from the split's final weights
(``out/train/leaf<id>.pt``, resumable per leaf from ``leaf<id>.ckpt``; histories in ``train.json``)."""

from __future__ import annotations

from lidsplit.common.rundir import RunDir
from lidsplit.common.seeds import derive_seed
from lidsplit.pipeline.stages.base import Stage
from lidsplit.train import TrainConfig, train_data_parallel

History = dict[int, list[dict[str, float]]]


class TrainStage(Stage):
    name = "train"
    needs = ("split",)

    def has_results(self) -> bool:
        return self.dir.is_dir() and any(self.dir.iterdir())

    def done(self) -> bool:
        if self.pipe.config.train.epochs == 0:
            return True
        tree = self.pipe.tree_or_none()
        leaves = [] if tree is None else tree.leaves()
        return bool(leaves) and all((self.dir / f"leaf{n.id}.pt").exists() for n in leaves) and \
            set(self._histories()) >= {n.id for n in leaves}

    def _histories(self) -> History:
        if not (self.dir / "train.json").exists():
            return {}
        saved = RunDir(self.dir).read_json("train.json", "train-stage summary")
        return {int(k): v for k, v in saved["leaves"].items()}

    def result(self) -> History:
        if self.pipe.config.train.epochs == 0:
            self.pipe.log("train: train.epochs = 0, the leaves keep the split's fine-tuned weights")
            return {}
        return self._histories()

    def run(self) -> History:
        p, epochs = self.pipe, self.pipe.config.train.epochs
        d = RunDir(self.dir)
        d.create()
        histories = self._histories()
        for node in p.tree.leaves():
            final = f"leaf{node.id}.pt"
            if d.has(final) and node.id in histories:
                continue
            model = p.split_leaf_model(node.id)
            cfg = TrainConfig(epochs, seed=derive_seed("lidsplit.pipeline.train", p.seed, node.id) % (2**31),
                              **p.train_hparams())
            res = train_data_parallel(p.config.train.nproc, model, node.sub, p.loaders(), config=cfg,
                                      checkpoint=d / f"leaf{node.id}.ckpt", progress=p.progress)
            d.save_state(final, model.state_dict())
            histories[node.id] = res.history
            d.save_json("train.json", {"epochs": epochs, "leaves": {str(k): v for k, v in histories.items()}})
            p.log(f"train: leaf {node.id} done ({res.history[-1] if res.history else {}})")
        return histories
