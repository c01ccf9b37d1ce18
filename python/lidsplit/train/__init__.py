"""Training and evaluating sub-supernets.

- ``train_subsupernet(model, sub, loaders, epochs, ...)``: uniform single-path training (RSPS / SPOS)
  inside a sub-supernet's masks; seeded, resumable from an atomic checkpoint.
- ``spos_train(model, loader, steps, loss_fn=...)``: step-based single-path training with any loss.
- ``child_weights(parent_model, mode='inherit' | 'restart', seed=...)``: a child's starting weights.
- ``train_subsupernet(..., parallel=init_data_parallel(...))``, ``train_data_parallel(nproc, ...)``:
  one training data-parallel over processes (torch.distributed DDP; ``lidsplit.train.distributed``).
- ``evaluate_arch(model, arch, loaders, ...)``: accuracy / loss of one architecture with the shared
  weights, BatchNorm recalibrated for it, model state left unchanged.
"""

from lidsplit.train.distributed import (
    DataParallel,
    DataParallelError,
    init_data_parallel,
    run_data_parallel,
    train_data_parallel,
)
from lidsplit.train.evaluate import EvalResult, evaluate_arch, evaluate_archs, preserved_state, recalibrate_bn
from lidsplit.train.loop import CheckpointError, TrainConfig, TrainEvent, TrainResult, train_subsupernet
from lidsplit.train.spos import LossFn, classification_loss, cycle_batches, spos_train
from lidsplit.train.weights import child_weights, reinitialize

__all__ = [
    "train_subsupernet",
    "TrainConfig",
    "TrainResult",
    "TrainEvent",
    "CheckpointError",
    "child_weights",
    "reinitialize",
    "evaluate_arch",
    "evaluate_archs",
    "EvalResult",
    "preserved_state",
    "recalibrate_bn",
    "spos_train",
    "LossFn",
    "classification_loss",
    "cycle_batches",
    "DataParallel",
    "DataParallelError",
    "init_data_parallel",
    "run_data_parallel",
    "train_data_parallel",
]
