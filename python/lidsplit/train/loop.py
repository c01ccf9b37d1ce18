"""Uniform single-path training of a sub-supernet (RSPS / SPOS), with checkpoint and resume.

Each step draws one architecture uniformly inside the sub-supernet (independently per edge, uniformly
among the edge's enabled ops; an edge with one op keeps it, unlike the authors' code that forces every
edge to change op and crashes), runs the batch through that single path (``use_path``), and takes an
optimiser step. Parameters of ops not on the path get no gradient and are left untouched (no weight
decay, no momentum update: PyTorch skips parameters whose ``grad`` is ``None``).

Reproducibility: the path of every step comes from a ``torch.Generator`` seeded from ``config.seed``;
the data order comes from the loader (``TensorLoader``: a function of its seed and the epoch). The
learning rate follows a cosine from ``lr`` to ``lr_min`` over all steps of ``epochs`` epochs (updated
every step), or over ``schedule_epochs`` epochs of which ``schedule_start`` were done before this call:
a segment of one longer cosine, so that stages trained one after another (a split run's warm-ups and
fine-tune) follow one schedule instead of restarting it. ``optimizer_state`` carries the optimiser's
state (momentum buffers) from one stage to the next. On CPU, two runs with the same seeds give bit-identical weights; on GPU the usual cuDNN
non-determinism applies.

Checkpoint and resume (``checkpoint=path``): after every epoch (and every ``checkpoint_every`` steps
if asked) the model, optimiser, step counters, path-generator state, loader-generator state (torch
``DataLoader`` with a ``generator``), the global torch RNG states, the running metrics and the history
are written atomically (temp file + ``os.replace``). A later call with the same path resumes where the
last checkpoint left off and reaches the same weights as an uninterrupted run. The checkpoint records
the identity of the run (sub-supernet, config, model parameter names/shapes, loader description); a
checkpoint of another run is refused with an error, and a file at ``path`` that is not a lidsplit
training checkpoint is never overwritten.

Data-parallel (``parallel=``, :mod:`lidsplit.train.distributed`): the same loop on every rank, each on
its shard of every batch; rank 0 writes the checkpoint (the call returns on every rank once it is on
disk), every rank resumes from it, on any world size.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.common.batch import logits_of, model_device, unpack_batch
from lidsplit.common.errors import RunMismatchError
from lidsplit.common.io import atomic_torch_save
from lidsplit.common.progress import progress_bar
from lidsplit.common.rundir import StateFormat
from lidsplit.common.seeds import derive_seed
from lidsplit.supernet import SubSupernet, search_space, use_path
from lidsplit.train.distributed import DataParallel, DataParallelError, StepReducer, data_parallel_model, shard_batch

__all__ = ["TrainConfig", "TrainResult", "TrainEvent", "CheckpointError", "train_subsupernet", "make_optimizer",
           "cosine_lr"]

CKPT_MARK = "lidsplit.train_subsupernet"
CKPT_VERSION = 1


class CheckpointError(RunMismatchError):
    """A checkpoint that cannot be used for this run (another run's, or not a lidsplit checkpoint)."""


#: The training checkpoint's header and refusals (``lidsplit.common.rundir``).
CHECKPOINT = StateFormat(CKPT_MARK, CKPT_VERSION, "training checkpoint", CheckpointError,
                         remedy="pass another checkpoint path or remove the file")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of ``train_subsupernet`` (defaults: NAS-Bench-201's RSPS / weight-sharing search).

    optimizer: ``"sgd"`` (``momentum``, ``nesterov``) or ``"adam"`` (``betas``); ``weight_decay`` is
    L2 for SGD and Adam alike. The learning rate decays by a per-step cosine from ``lr`` to ``lr_min``
    over ``epochs`` epochs. ``grad_clip``: max global gradient norm (None: no clipping).
    ``seed``: seeds the path sampler (the data order is the loader's).
    ``schedule_epochs`` / ``schedule_start``: the cosine spans ``schedule_epochs`` epochs (default:
    ``epochs``) and this run covers its epochs ``[schedule_start, schedule_start + epochs)``; the
    learning rate of a stage is then a segment of one schedule continued across stages.
    """

    epochs: int
    optimizer: str = "sgd"
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 5.0
    seed: int = 0
    schedule_epochs: int | None = None
    schedule_start: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {self.epochs!r}")
        if self.schedule_epochs is not None and (not isinstance(self.schedule_epochs, int) or self.schedule_epochs < 1):
            raise ValueError(f"schedule_epochs must be None or an int >= 1, got {self.schedule_epochs!r}")
        if not isinstance(self.schedule_start, int) or self.schedule_start < 0:
            raise ValueError(f"schedule_start must be a non-negative int, got {self.schedule_start!r}")
        if self.schedule_start + self.epochs > self.span_epochs:
            raise ValueError(f"schedule_start + epochs ({self.schedule_start} + {self.epochs}) exceeds "
                             f"schedule_epochs ({self.schedule_epochs})")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @property
    def span_epochs(self) -> int:
        """Length of the cosine in epochs (``schedule_epochs``, default ``epochs``)."""
        return self.epochs if self.schedule_epochs is None else self.schedule_epochs

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        # a plain (unsegmented) schedule keeps the identity that checkpoints made before these fields had
        if self.schedule_epochs is None and self.schedule_start == 0:
            del d["schedule_epochs"], d["schedule_start"]
        return d


@dataclass
class TrainEvent:
    """Passed to ``on_step`` (after each optimiser step) and ``on_epoch`` (after each epoch, once its
    checkpoint is written). ``epoch`` counts from 0 (the epoch in progress / just finished); ``batch``
    is the index of the batch within the epoch; ``step`` the global number of steps done."""

    kind: str
    epoch: int
    batch: int
    step: int
    arch: tuple[int, ...] | None = None
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = None


@dataclass
class TrainResult:
    epochs_done: int
    steps: int
    finished: bool
    history: list[dict[str, float]]
    resumed_from: dict[str, int] | None = None
    checkpoint: str | None = None
    #: the optimiser's final ``state_dict()`` (live tensors, not copied): pass it as the next stage's
    #: ``optimizer_state`` to carry momentum across stages.
    optimizer_state: dict[str, Any] | None = None


# ---- identity of a run ---------------------------------------------------------------------------


def _model_signature(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
    return h.hexdigest()[:16]


def _loader_signature(loader: Any) -> dict[str, Any]:
    sig: dict[str, Any] = {"type": type(loader).__name__}
    try:
        sig["batches"] = len(loader)
    except TypeError:
        sig["batches"] = None
    ds = getattr(loader, "dataset", None)
    if ds is not None:
        try:
            sig["samples"] = len(ds)
        except TypeError:
            pass
        y = getattr(ds, "y", None)
        if isinstance(y, torch.Tensor):
            sig["labels_sha"] = hashlib.sha256(y.detach().cpu().numpy().tobytes()).hexdigest()[:16]
    for attr in ("batch_size", "seed", "shuffle", "drop_last"):
        v = getattr(loader, attr, None)
        if isinstance(v, (int, bool, str)) or v is None:
            sig[attr] = v
    return sig


def _identity(model: nn.Module, sub: SubSupernet, cfg: TrainConfig, loader: Any) -> dict[str, Any]:
    return {
        "sub": sub.to_json(),
        "config": cfg.to_json(),
        "model": _model_signature(model),
        "loader": _loader_signature(loader),
    }


def _resume(ck_path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``ck_path`` if it belongs to this run (``identity``); its JSON fields decoded."""
    ck = CHECKPOINT.load(ck_path)
    try:
        saved = json.loads(ck["identity"])
    except (KeyError, TypeError, ValueError):
        saved = None
    CHECKPOINT.refuse_changed(ck_path, saved, identity, saved_label="checkpoint")
    try:
        return ck | {"running": json.loads(ck["running"]), "history": json.loads(ck["history"]),
                     "epoch": int(ck["epoch"]), "batch": int(ck["batch"]), "step": int(ck["step"])}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ck_path}: this training checkpoint is damaged ({type(e).__name__}: {e}); remove it "
                              "to restart this training") from None


# ---- the loop ------------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` (SGD with momentum / nesterov, or Adam) over ``model``'s trainable
    parameters (also what the gradient-based search uses for the weights)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def cosine_lr(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate at ``step`` of this run: position ``schedule_start`` epochs + ``step`` on a
    cosine of ``span_epochs`` epochs."""
    total = cfg.span_epochs * steps_per_epoch
    if total <= 0:
        return cfg.lr
    pos = cfg.schedule_start * steps_per_epoch + step
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + math.cos(math.pi * min(pos, total) / total))


def _epoch_batches(loader: Any, epoch: int, start: int, gen_state: torch.Tensor | None) -> Iterator[Any]:
    """The batches of ``epoch`` from index ``start``: ``iter_epoch`` when the loader has it, else a fresh
    iterator (its generator first set to the epoch's start state), skipping ``start`` batches."""
    if hasattr(loader, "iter_epoch"):
        yield from loader.iter_epoch(epoch, start)
        return
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    gen = getattr(loader, "generator", None)
    if gen_state is not None and isinstance(gen, torch.Generator):
        gen.set_state(gen_state)
    for i, b in enumerate(loader):
        if i >= start:
            yield b


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["cpu"])
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])


def _train_config(epochs: int | None, config: TrainConfig | None, hparams: dict[str, Any]) -> TrainConfig:
    """``config``, or a ``TrainConfig`` built from ``epochs`` and ``hparams`` (not both)."""
    if config is None:
        if epochs is None:
            raise TypeError("train_subsupernet needs epochs (or config=TrainConfig(...))")
        return TrainConfig(epochs=epochs, **hparams)
    if hparams or (epochs is not None and epochs != config.epochs):
        raise TypeError("pass either config=TrainConfig(...) or epochs and hyper-parameters, not both")
    return config


def _restore(ck: dict[str, Any], ck_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             path_gen: torch.Generator, gen: Any, loader_gen_state: Tensor | None) -> Tensor | None:
    """Load a checkpoint's model, optimiser, generators and RNG states; returns the loader generator's
    state of the epoch in progress."""
    try:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        path_gen.set_state(ck["path_generator"])
        if ck.get("loader_generator") is not None:
            loader_gen_state = ck["loader_generator"]
            if isinstance(gen, torch.Generator):
                gen.set_state(loader_gen_state)
        _set_rng_state(ck["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ck_path}: this training checkpoint is damaged ({type(e).__name__}); remove it "
                              "to restart this training") from None
    return loader_gen_state


def _check_inputs(model: nn.Module, sub: SubSupernet, loaders: Any, checkpoint_every: int | None) -> tuple[Any, int]:
    """The training loader and its batches per epoch, after checking ``sub`` and ``checkpoint_every``."""
    space = search_space(model)
    if not isinstance(sub, SubSupernet) or sub.space != space:
        raise ValueError(f"sub must be a SubSupernet of the model's search space {space!r}, got {sub!r}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1 step, got {checkpoint_every}")
    loader = getattr(loaders, "train", loaders)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batches")
    return loader, steps_per_epoch


def _epoch_metrics(run: dict[str, Any], epoch: int, batch: int, steps_per_epoch: int, lr: float,
                   t0: float) -> dict[str, float]:
    """The history entry of the epoch just finished (``epoch`` counts from 0)."""
    if batch != steps_per_epoch:
        raise RuntimeError(f"the training loader yielded {batch} batches in epoch {epoch + 1}, "
                           f"expected len(loader) = {steps_per_epoch}")
    n = max(run["count"], 1)
    return {"epoch": epoch + 1, "train_loss": run["loss"] / n, "train_acc": run["correct"] / n,
            "lr": lr, "seconds": time.perf_counter() - t0}


def _path_step(model: nn.Module, arch: tuple[int, ...], optimizer: torch.optim.Optimizer, cfg: TrainConfig,
               x: Tensor, y: Tensor, loss_fn: Callable[[Any, Tensor], Tensor] | None, run: dict[str, Any],
               dp: tuple[nn.Module, float, StepReducer, int] | None = None) -> float:
    """One optimiser step on the batch ``(x, y)`` through the single path ``arch``; adds the batch to the
    running metrics ``run`` and returns its loss. Data-parallel (``dp``: the DDP-wrapped model, this
    shard's loss weight, the step reducer, the step): ``(x, y)`` is this rank's shard, the forward runs
    through DDP, and the metrics added and returned are the global batch's."""
    if dp is not None:
        dp[2].check(dp[3], arch)
    with use_path(model, arch):
        out = model(x) if dp is None else dp[0](x)
    logits = logits_of(out)
    loss = F.cross_entropy(logits, y) if loss_fn is None else loss_fn(out, y)
    optimizer.zero_grad(set_to_none=True)
    (loss if dp is None or dp[1] == 1.0 else loss * dp[1]).backward()
    if cfg.grad_clip is not None:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], cfg.grad_clip)
    optimizer.step()
    lv = float(loss.detach())
    hits = (logits.detach().argmax(-1) == y).reshape(y.shape[0], -1)
    correct = int(hits.sum()) if hits.shape[1] == 1 else float(hits.float().mean(1).sum())
    if dp is not None:  # the global batch's loss sum, hits and size (and the ranks' agreement on arch)
        loss_sum, correct_sum, count = dp[2].sum([lv * y.shape[0], float(correct), float(y.shape[0])])
        lv = loss_sum / count
        run["loss"] += loss_sum
        run["correct"] += int(round(correct_sum)) if hits.shape[1] == 1 else correct_sum
        run["count"] += int(round(count))
        return lv
    run["loss"] += lv * y.shape[0]
    run["correct"] += correct
    run["count"] += int(y.shape[0])
    return lv


def _start_optimizer(model: nn.Module, cfg: TrainConfig, state: dict[str, Any] | None) -> torch.optim.Optimizer:
    """The optimiser of ``cfg``, started from a copy of ``state`` when given (the optimiser adopts the
    tensors it is given and updates them in place: siblings must not share their parent's)."""
    optimizer = make_optimizer(model, cfg)
    if state is not None:
        try:
            optimizer.load_state_dict(copy.deepcopy(state))
        except (ValueError, KeyError) as e:
            raise ValueError(f"optimizer_state: does not fit this model's {cfg.optimizer} optimiser ({e})") from e
    return optimizer


def _open_parallel(stack: ExitStack, model: nn.Module, parallel: DataParallel | None, device: torch.device,
                   position: tuple[int, int, int], ck_path: Path | None) -> tuple[nn.Module | None, StepReducer | None]:
    """The DDP-wrapped model (kept open on ``stack``) and the step reducer of a data-parallel training, after
    checking that every rank starts at the same ``(epoch, batch, step)``; ``(None, None)`` in one process."""
    if parallel is None:
        return None, None
    dp_net = stack.enter_context(data_parallel_model(model, parallel))
    reducer = StepReducer(parallel, device)
    if not reducer.agree(position):
        raise DataParallelError(f"data-parallel ranks start this training at different steps (rank {parallel.rank}: "
                                f"step {position[2]}); the checkpoint {ck_path} must be on a file system every rank sees")
    return dp_net, reducer


def train_subsupernet(
    model: nn.Module,
    sub: SubSupernet,
    loaders: Any,
    epochs: int | None = None,
    *,
    config: TrainConfig | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    on_step: Callable[[TrainEvent], None] | None = None,
    on_epoch: Callable[[TrainEvent], None] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    loss_fn: Callable[[Any, Tensor], Tensor] | None = None,
    parallel: DataParallel | None = None,
    **hparams: Any,
) -> TrainResult:
    """Train ``model`` (a supernet, in place) by uniform single-path sampling inside ``sub``.

    loaders: a ``DataLoaders`` (its ``train`` loader is used) or any iterable of ``(x, y)`` batches;
        batches are moved to the model's device.
    epochs / config / **hparams: ``config`` is a ``TrainConfig``; otherwise one is built from
        ``epochs`` and ``hparams`` (its field names: ``optimizer``, ``lr``, ``lr_min``, ``momentum``,
        ``nesterov``, ``weight_decay``, ``betas``, ``grad_clip``, ``seed``).
    checkpoint: a file path; resumed from if it exists and belongs to this run (CheckpointError
        otherwise), written after every epoch, and every ``checkpoint_every`` steps if given.
    stop_after: return once this many epochs (in total) are done, keeping the schedule of ``epochs``
        (e.g. to train in several sittings); the checkpoint then lets a later call go on.
    progress: show tqdm bars (if tqdm is installed).
    on_step / on_epoch: callbacks receiving a ``TrainEvent``; an exception raised there stops
        training (the last checkpoint stays valid).
    optimizer_state: a previous stage's ``TrainResult.optimizer_state`` (same model, same optimiser
        kind) loaded into the fresh optimiser (ignored when resuming from ``checkpoint``, which holds its
        own); its learning rates are replaced by this run's schedule.
    loss_fn: ``loss_fn(model output, y)`` (default: cross entropy of the logits); ``train_acc`` is the
        argmax accuracy over the last dimension (per position for sequence outputs, e.g. a language model).
    parallel: this process's place in a data-parallel group (``init_data_parallel``; module
        ``lidsplit.train.distributed``): every rank makes the same call; each computes its shard of every
        batch, gradients are averaged by DistributedDataParallel, BatchNorm synchronised
        (``parallel.sync_bn``); rank 0 writes the checkpoint and shows progress; metrics, history and
        callbacks see the global batch on every rank. The weights equal one process's up to float
        rounding (with ``sync_bn``), and a checkpoint resumes on any world size.

    Returns a ``TrainResult`` (history: per finished epoch ``epoch`` (1-based), ``train_loss``,
    ``train_acc`` (of the sampled paths), ``lr`` (at the epoch's last step), ``seconds``).
    """
    cfg = _train_config(epochs, config, hparams)
    loader, steps_per_epoch = _check_inputs(model, sub, loaders, checkpoint_every)
    if parallel is not None and parallel.world_size == 1:
        parallel = None  # a group of one is one process
    is_main = parallel is None or parallel.is_main
    progress = progress and is_main
    stop = cfg.epochs if stop_after is None else min(int(stop_after), cfg.epochs)
    device = model_device(model)
    optimizer = _start_optimizer(model, cfg, optimizer_state)
    path_gen = torch.Generator().manual_seed(derive_seed("train_subsupernet.paths", cfg.seed))
    identity = _identity(model, sub, cfg, loader)
    ck_path = Path(checkpoint) if checkpoint is not None else None

    epoch, batch, step = 0, 0, 0
    run = {"loss": 0.0, "correct": 0, "count": 0}
    history: list[dict[str, float]] = []
    resumed: dict[str, int] | None = None
    gen = getattr(loader, "generator", None)
    loader_gen_state = gen.get_state() if isinstance(gen, torch.Generator) else None

    if ck_path is not None and ck_path.exists():
        ck = _resume(ck_path, identity)
        loader_gen_state = _restore(ck, ck_path, model, optimizer, path_gen, gen, loader_gen_state)
        epoch, batch, step, run, history = ck["epoch"], ck["batch"], ck["step"], ck["running"], ck["history"]
        resumed = {"epoch": epoch, "batch": batch, "step": step}
    elif ck_path is not None and not ck_path.parent.is_dir():
        raise FileNotFoundError(f"checkpoint directory {ck_path.parent} does not exist")

    def save() -> None:
        if ck_path is None or not is_main:
            return
        atomic_torch_save(CHECKPOINT.header(
            json.dumps(identity, sort_keys=True),
            epoch=epoch, batch=batch, step=step,
            running=json.dumps(run),
            history=json.dumps(history),
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            path_generator=path_gen.get_state(),
            loader_generator=loader_gen_state,
            rng=_rng_state(),
        ), ck_path)

    was_training = model.training
    model.train()
    wrapping = ExitStack()
    try:
        dp_net, reducer = _open_parallel(wrapping, model, parallel, device, (epoch, batch, step), ck_path)
        epoch_bar = progress_bar(range(epoch, stop), enabled=progress and stop - epoch > 1, desc="epochs",
                                 initial=epoch, total=stop)
        for _ in epoch_bar:
            t0 = time.perf_counter()
            gen = getattr(loader, "generator", None)
            if batch == 0 and isinstance(gen, torch.Generator):
                loader_gen_state = gen.get_state()
            bar = progress_bar(_epoch_batches(loader, epoch, batch, loader_gen_state), enabled=progress,
                               desc=f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, initial=batch)
            last_lr = optimizer.param_groups[0]["lr"]
            for raw in bar:
                x, y = unpack_batch(raw, device)
                x, y, weight = shard_batch(x, y, parallel)
                last_lr = cosine_lr(cfg, step, steps_per_epoch)
                for g in optimizer.param_groups:
                    g["lr"] = last_lr
                arch = sub.sample(path_gen)
                lv = _path_step(model, arch, optimizer, cfg, x, y, loss_fn, run,
                                None if dp_net is None else (dp_net, weight, reducer, step))
                batch += 1
                step += 1
                bar.set_postfix(loss=f"{run['loss'] / run['count']:.3f}",
                                acc=f"{run['correct'] / run['count']:.3f}", refresh=False)
                if checkpoint_every and step % checkpoint_every == 0 and batch < steps_per_epoch:
                    save()
                if on_step is not None:
                    on_step(TrainEvent("step", epoch, batch - 1, step, arch=arch, loss=lv, model=model))
            bar.close()
            metrics = _epoch_metrics(run, epoch, batch, steps_per_epoch, last_lr, t0)
            history.append(metrics)
            epoch, batch = epoch + 1, 0
            run = {"loss": 0.0, "correct": 0, "count": 0}
            gen = getattr(loader, "generator", None)
            if isinstance(gen, torch.Generator):
                loader_gen_state = gen.get_state()
            save()
            if on_epoch is not None:
                on_epoch(TrainEvent("epoch", epoch - 1, steps_per_epoch - 1, step, metrics=dict(metrics), model=model))
        epoch_bar.close()
        if parallel is not None:  # rank 0's checkpoint is on disk when the call returns on any rank
            torch.distributed.barrier(group=parallel.group)
    finally:
        wrapping.close()
        model.train(was_training)
    return TrainResult(epochs_done=epoch, steps=step, finished=epoch >= cfg.epochs, history=history,
                       resumed_from=resumed, checkpoint=str(ck_path) if ck_path is not None else None,
                       optimizer_state=optimizer.state_dict())
