"""Data-parallel training of one (sub-)supernet with torch.distributed (DistributedDataParallel).

One training (``train_subsupernet``, ``spos_train``, ``gradient_search``: single path, DARTS / GDAS /
DrNAS weighted, TangleNAS) runs on W processes, each holding a full copy of the model; every global
batch of B samples is cut into W contiguous shards (sizes differ by at most one), each rank computes its
shard, and DDP averages the gradients. What keeps this equal to one process with batch B:

- **Same architecture on every rank.** The path (or mixture sample) of a step comes from generators
  seeded from the config's seed and advanced once per step, identically on every rank (never from a
  rank's own global RNG). Each step checks it before its forward: a fingerprint of the step's
  architecture is summed over the ranks (one tiny all-reduce), and ranks that disagree stop with
  :class:`DataParallelError` (rather than issue mismatched collectives).
- **Unused ops.** Ops off the path get no gradient. DDP runs with ``find_unused_parameters=True``: it
  walks the autograd graph after each forward and marks the parameters that are not in it as ready, so
  the all-reduce does not wait for them (no hang). As every rank takes the same path, they are unused on
  every rank, and DDP then leaves their ``grad`` at ``None``: no weight decay or momentum for them,
  exactly as in one process. The walk costs one graph traversal per step (small next to the forward).
- **BatchNorm** (``sync_bn``, default ``True``): batch statistics over the global batch (each rank's
  per-channel mean and variance, combined in float64 with one differentiable all-reduce per BatchNorm
  call, :func:`synced_batch_norm`), running statistics updated with them: identical on every rank and
  equal to one process's. ``sync_bn=False`` normalises each shard with its own statistics (cheaper, no
  extra all-reduce; the result then depends on W; DDP broadcasts rank 0's running statistics every
  step). torch's ``nn.SyncBatchNorm`` is not used: it refuses CPU tensors (gloo), and the entangled
  spaces' channel-prefix BatchNorm (``prefix_batch_norm``) needs the same synchronisation.
- **Loss weighting.** A rank's loss is scaled by ``n_r * W / B`` (1 when the shards are equal), so
  DDP's mean over ranks is the mean over the global batch.

Checkpoints: rank 0 writes them (atomically, as in one process); every rank reads the same file when
resuming. A checkpoint holds nothing that depends on W, so a run resumes at the same step on any world
size (the shards of a batch are recomputed from the global batch).

Launching (the seam for other executors):

- ``torchrun --nproc_per_node N script.py``, with ``parallel=init_data_parallel()`` in the script
  (``env://``: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK`` from torchrun).
- Any group of W processes that can reach one rendezvous (a Ray task of W actors, a cluster scheduler):
  each calls ``init_data_parallel(rank, W, init_method="tcp://host:port")`` (or ``store=`` a
  ``torch.distributed.Store``) and then the training with ``parallel=`` that object; rank 0's result and
  weights are the training's.
- N local processes from Python: :func:`run_data_parallel` (any function) or
  :func:`train_data_parallel` (``train_subsupernet`` on N processes; the weights come back into the
  caller's model). ``run_split(..., nproc=N)`` and the pipeline's ``[train] nproc`` use it.

Data: every rank iterates the same global loader (same seed) and keeps its shard of each batch, so the
data order is the single-process one. A rank therefore reads (indexes) the whole global batch: free
for in-memory ``TensorLoader`` data, W times the decoding work for a loader that decodes and augments
images (shard such a loader yourself and give up the equality with one process).
"""

from __future__ import annotations

import copy
import datetime
import os
import pickle
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lidsplit.common.errors import LidsplitError

__all__ = ["DataParallel", "DataParallelError", "init_data_parallel", "shard_of", "shard_batch", "data_parallel_model",
           "synced_batch_norm", "StepReducer", "mean_over_ranks", "run_data_parallel", "train_data_parallel"]

T = TypeVar("T")

#: the attribute a BatchNorm carries while a data-parallel run synchronises it (read by
#: ``lidsplit.supernet.entangled.prefix_batch_norm`` for channel-prefix BatchNorms)
SYNC_ATTR = "_lidsplit_sync_bn"


class DataParallelError(LidsplitError, RuntimeError):
    """A data-parallel run that cannot go on: bad rank / world size, a batch smaller than the world,
    ranks that disagree on the architecture of a step, or a worker process that failed."""


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel group: ``rank`` in ``[0, world_size)``, the process
    ``group`` (None: torch.distributed's default group, which must be initialised), and whether
    BatchNorm statistics are synchronised over the group (``sync_bn``, default True: results equal one
    process's up to float rounding)."""

    rank: int
    world_size: int
    sync_bn: bool = True
    group: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.world_size, bool) or not isinstance(self.world_size, int) or self.world_size < 1:
            raise DataParallelError(f"world_size: expected an int >= 1, got {self.world_size!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 0 <= self.rank < self.world_size:
            raise DataParallelError(f"rank: expected an int in [0, {self.world_size}), got {self.rank!r}")
        if not dist.is_available() or not dist.is_initialized():
            raise DataParallelError("DataParallel: torch.distributed is not initialised; call "
                                    "lidsplit.train.init_data_parallel(...) first")
        got = (dist.get_rank(self.group), dist.get_world_size(self.group))
        if got != (self.rank, self.world_size):
            raise DataParallelError(f"DataParallel(rank={self.rank}, world_size={self.world_size}) does not match "
                                    f"the process group (rank {got[0]} of {got[1]})")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints and shows progress."""
        return self.rank == 0


def init_data_parallel(rank: int | None = None, world_size: int | None = None, *, init_method: str | None = None,
                       store: Any = None, backend: str | None = None, sync_bn: bool = True,
                       timeout_s: float = 1800.0) -> DataParallel:
    """Join a data-parallel group (initialising torch.distributed's default process group if it is not
    yet) and return this process's :class:`DataParallel`.

    Under ``torchrun`` call it without arguments (``env://``). Elsewhere (a Ray actor, a batch system)
    give ``rank``, ``world_size`` and ``init_method`` (``"tcp://host:port"``, ``"file:///shared/path"``)
    or ``store``. ``backend``: default ``nccl`` when CUDA is available (the rank's GPU is
    ``LOCAL_RANK``, else ``rank``, modulo the visible devices), else ``gloo`` (pass ``"gloo"`` to train a
    CPU model on a machine with GPUs). ``timeout_s``: how long a
    collective waits for a rank that does not come (then the run fails instead of hanging)."""
    if not dist.is_available():
        raise DataParallelError("torch.distributed is not available in this torch build")
    if not dist.is_initialized():
        if rank is None and world_size is None and init_method is None and store is None:
            if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
                raise DataParallelError("init_data_parallel(): no rank/world_size given and RANK/WORLD_SIZE not "
                                        "set; launch with torchrun or pass rank, world_size and init_method")
            init_method = "env://"
        elif rank is None or world_size is None:
            raise DataParallelError("init_data_parallel: give both rank and world_size (or neither, under torchrun)")
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            local = int(os.environ.get("LOCAL_RANK", rank if rank is not None else os.environ.get("RANK", 0)))
            torch.cuda.set_device(local % torch.cuda.device_count())
        kw: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout_s)}
        if store is not None:
            kw["store"] = store
        else:
            kw["init_method"] = init_method
        if rank is not None:
            kw.update(rank=rank, world_size=world_size)
        dist.init_process_group(**kw)
    got = (dist.get_rank(), dist.get_world_size())
    if (rank is not None and rank != got[0]) or (world_size is not None and world_size != got[1]):
        raise DataParallelError(f"init_data_parallel(rank={rank}, world_size={world_size}): this process is already "
                                f"rank {got[0]} of {got[1]} in torch.distributed's default group")
    return DataParallel(got[0], got[1], sync_bn=sync_bn)


# ---- shards -------------------------------------------------------------------------------------------


def shard_of(n: int, parallel: DataParallel) -> tuple[slice, float]:
    """This rank's rows of a global batch of ``n`` samples (contiguous; sizes differ by at most one,
    as ``torch.tensor_split``) and its loss weight ``n_r * W / n`` (1.0 for equal shards)."""
    w, r = parallel.world_size, parallel.rank
    if n < w:
        raise DataParallelError(f"a batch of {n} samples cannot be shared by {w} data-parallel ranks; use a "
                                f"global batch size (and a last batch) of at least {w}, or fewer processes")
    q, extra = divmod(n, w)
    start = r * q + min(r, extra)
    size = q + (1 if r < extra else 0)
    return slice(start, start + size), size * w / n


def shard_batch(x: Tensor, y: Tensor, parallel: DataParallel | None) -> tuple[Tensor, Tensor, float]:
    """``(x, y)`` cut to this rank's shard (first dimension) and its loss weight; unchanged (weight 1)
    without ``parallel``."""
    if parallel is None or parallel.world_size == 1:
        return x, y, 1.0
    if x.shape[0] != y.shape[0]:
        raise DataParallelError(f"a batch's inputs ({x.shape[0]} rows) and targets ({y.shape[0]} rows) differ in size")
    rows, weight = shard_of(int(x.shape[0]), parallel)
    return x[rows], y[rows], weight


# ---- BatchNorm over the group ----------------------------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks, differentiable: the gradient of each rank's input is the sum of the ranks'
    output gradients (every rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = t.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        out = grad.contiguous().clone()
        dist.all_reduce(out, group=ctx.group)
        return out, None


def synced_batch_norm(bn: _BatchNorm, x: Tensor, c: int | None, group: Any) -> Tensor:
    """``bn`` on its first ``c`` channels (default all) of ``x`` (N, C, ...) with batch statistics over
    every rank of ``group``; running statistics updated with them (unbiased variance over the global
    count, as ``nn.BatchNorm``). Differentiable: the all-reduce's backward sums the gradients of the
    statistics over the ranks. Each rank's mean and variance (float32, two-pass) are combined in float64,
    so the result equals one process's BatchNorm on the whole batch up to float32 rounding."""
    c = x.shape[1] if c is None else c
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    dims = (0, *range(2, x.dim()))
    var_l, mean_l = torch.var_mean(work, dim=dims, correction=0)
    n_l = float(work.numel() // max(c, 1))
    m64, v64 = mean_l.double(), var_l.double()
    count = torch.full((1,), n_l, dtype=torch.float64, device=x.device)
    stats = torch.cat([m64 * n_l, (v64 + m64 * m64) * n_l, count])
    stats = _AllReduceSum.apply(stats, group)
    n = stats[-1]
    mean = stats[:c] / n
    var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
    shape = (1, c) + (1,) * (x.dim() - 2)
    y = (work - mean.to(work.dtype).view(shape)) * torch.rsqrt(var + bn.eps).to(work.dtype).view(shape)
    if bn.weight is not None:
        y = y * bn.weight[:c].view(shape) + bn.bias[:c].view(shape)
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            mom = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            total = float(n)
            unbiased = var * (total / max(total - 1.0, 1.0))
            bn.running_mean[:c].mul_(1 - mom).add_(mean.to(bn.running_mean.dtype), alpha=mom)
            bn.running_var[:c].mul_(1 - mom).add_(unbiased.to(bn.running_var.dtype), alpha=mom)
    return y.to(x.dtype)


class _SyncedForward:
    """The forward a BatchNorm has while its statistics are synchronised: :func:`synced_batch_norm`
    when batch statistics are used (training, or no running statistics) and the module is not in a
    grouped forward; the module's own forward otherwise."""

    def __init__(self, bn: _BatchNorm, group: Any) -> None:
        self.bn, self.group = bn, group

    def __call__(self, x: Tensor, c: int | None = None) -> Tensor:
        from lidsplit.supernet import _state  # grouped forwards keep their per-group statistics

        bn = self.bn
        if (bn.training or bn.running_mean is None) and _state.groups_for(bn) == 1:
            return synced_batch_norm(bn, x, c, self.group)
        return type(bn).forward(bn, x)


@contextmanager
def _synced_batchnorm(model: nn.Module, group: Any) -> Iterator[None]:
    """Every BatchNorm of ``model`` synchronised over ``group`` inside the block (its instance
    ``forward`` replaced, removed on exit: the module, its class, parameters and buffers stay)."""
    patched = []
    try:
        for m in model.modules():
            if isinstance(m, _BatchNorm) and "forward" not in m.__dict__:
                fwd = _SyncedForward(m, group)
                m.forward = fwd  # type: ignore[method-assign]
                setattr(m, SYNC_ATTR, fwd)
                patched.append(m)
        yield
    finally:
        for m in patched:
            del m.forward
            delattr(m, SYNC_ATTR)


@contextmanager
def data_parallel_model(model: nn.Module, parallel: DataParallel) -> Iterator[nn.Module]:
    """``model`` wrapped for a data-parallel run: BatchNorm synchronised (``parallel.sync_bn``) and a
    ``DistributedDataParallel`` around it (unused parameters found every step; module states broadcast
    from rank 0 at entry). Run the training forward and backward through the yielded module; read and
    save the weights from ``model`` (the same tensors). The model is restored on exit."""
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    sync = parallel.sync_bn and parallel.world_size > 1
    with _synced_batchnorm(model, parallel.group) if sync else nullcontext():
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None, process_group=parallel.group,
            find_unused_parameters=True,
            forward_sync_buffers=not sync)  # synchronised running statistics are already equal everywhere
        try:
            yield net
        finally:
            del net


# ---- per-step agreement and metrics ------------------------------------------------------------------


class StepReducer:
    """The per-step collectives of a data-parallel loop besides DDP's: :meth:`check` that every rank is
    about to run the same architecture (before the forward: ranks on different paths would otherwise
    issue mismatched collectives and abort or hang), :meth:`sum` of the step's metrics."""

    def __init__(self, parallel: DataParallel, device: torch.device) -> None:
        self.parallel, self.device = parallel, device

    def check(self, step: int, arch: Any) -> None:
        """``arch``: the step's architecture (a tuple of op indices, or a mapping of mixture weights)."""
        if not self.agree(arch):
            raise DataParallelError(
                f"data-parallel ranks are about to train different architectures at step {step + 1} (rank "
                f"{self.parallel.rank}: {_short(arch)}); every rank must make the same call (same seed, config, "
                "sub-supernet and data)")

    def agree(self, value: Any) -> bool:
        """Whether every rank holds the same ``value`` (one all-reduce): with fingerprint ``f`` per rank,
        ``W * sum(f^2) == sum(f)^2`` iff all are equal."""
        f = float(_fingerprint(value) & 0xFFFFF)  # 20 bits: the sums of f^2 stay exact in float64
        t = torch.tensor([f, f * f], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, group=self.parallel.group)
        s, s2 = t.tolist()
        return self.parallel.world_size * s2 == s * s

    def sum(self, values: list[float]) -> list[float]:
        """``values`` summed over the ranks (float64, one all-reduce)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, group=self.parallel.group)
        return t.tolist()


def _short(arch: Any) -> str:
    return repr(arch) if isinstance(arch, tuple) else f"mixture weights of {len(arch)} edges"


def mean_over_ranks(grads: tuple[Tensor | None, ...], parallel: DataParallel) -> tuple[Tensor | None, ...]:
    """Each gradient summed over the ranks and divided by the world size, in one all-reduce (``None``
    stays ``None``: the same graph on every rank leaves the same gradients unset). With each rank's loss
    weighted by its shard (:func:`shard_of`), this is the gradient of the global batch's mean loss."""
    present = [g for g in grads if g is not None]
    if not present:
        return grads
    flat = torch.cat([g.reshape(-1) for g in present])
    dist.all_reduce(flat, group=parallel.group)
    flat /= parallel.world_size
    out, i = [], 0
    for g in grads:
        if g is None:
            out.append(None)
            continue
        out.append(flat[i:i + g.numel()].view_as(g))
        i += g.numel()
    return tuple(out)


def _fingerprint(arch: Any) -> int:
    """A process-independent checksum of an architecture or of sampled mixture weights (not ``hash``:
    string hashes differ between processes)."""
    if isinstance(arch, Tensor):
        return zlib.crc32(arch.detach().cpu().contiguous().numpy().tobytes())
    if isinstance(arch, dict):
        return zlib.crc32(repr([(k, _fingerprint(v)) for k, v in sorted(arch.items())]).encode())
    return zlib.crc32(repr(arch).encode())


# ---- N local processes ---------------------------------------------------------------------------------


def _worker(rank: int, nproc: int, fn: Callable[..., Any], args: tuple, tmp: str, sync_bn: bool,
            backend: str | None, threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        dp = init_data_parallel(rank, nproc, init_method=f"file://{tmp}/store", backend=backend, sync_bn=sync_bn)
        try:
            out = fn(dp, *args)
            if rank == 0:
                torch.save(out, f"{tmp}/result.pt")
        finally:
            dist.destroy_process_group()
    except BaseException as e:
        record = {"time": time.time(), "rank": rank, "text": traceback.format_exc()}
        try:
            record["error"] = pickle.dumps(e)
        except Exception:  # an exception that cannot be pickled is reported by its text
            pass
        with open(f"{tmp}/error{rank}.pkl", "wb") as fh:
            pickle.dump(record, fh)
        raise  # a non-zero exit: torch.multiprocessing ends the other ranks (no hang in a collective)


def run_data_parallel(fn: Callable[..., T], nproc: int, *args: Any, sync_bn: bool = True,
                      backend: str | None = None, threads: int | None = None) -> T:
    """Run ``fn(parallel, *args)`` on ``nproc`` local processes (torch.multiprocessing, spawn) forming
    one data-parallel group (a file rendezvous in a temporary directory: no port to pick); returns rank
    0's return value. ``fn`` and ``args`` must be picklable (a module-level function). Tensors in
    ``args`` travel through shared memory: every rank sees the caller's storage, so ``fn`` must copy
    what it modifies (a model it trains). Each process uses ``threads`` torch threads (default
    ``torch.get_num_threads() // nproc``, at least 1: the cores shared, not oversubscribed).
    ``backend``: default gloo (CPU tensors); ``"nccl"`` for CUDA (rank r on GPU r). If a rank fails, the others are
    ended and the earliest failure is raised here (a lidsplit error keeps its class and message)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise DataParallelError(f"nproc: expected an int >= 1, got {nproc!r}")
    backend = "gloo" if backend is None else backend
    if backend == "nccl" and torch.cuda.device_count() < nproc:
        raise DataParallelError(f"nproc={nproc} with nccl needs {nproc} GPUs, {torch.cuda.device_count()} visible")
    threads = max(1, torch.get_num_threads() // nproc) if threads is None else threads
    with tempfile.TemporaryDirectory(prefix="lidsplit-ddp-") as tmp:
        try:
            torch.multiprocessing.spawn(_worker, args=(nproc, fn, args, tmp, sync_bn, backend, threads),
                                        nprocs=nproc, join=True)
        except Exception as failure:  # ProcessRaisedException / ProcessExitedException
            _raise_first_error(Path(tmp), failure)
        return torch.load(f"{tmp}/result.pt", weights_only=False)  # our own file, written by rank 0 just now


def _raise_first_error(tmp: Path, failure: Exception) -> None:
    records = []
    for p in tmp.glob("error*.pkl"):
        with open(p, "rb") as fh:
            records.append(pickle.load(fh))
    if not records:
        raise DataParallelError(f"a data-parallel worker process died without a Python error ({failure})") from None
    first = min(records, key=lambda r: r["time"])
    err = pickle.loads(first["error"]) if "error" in first else None
    if isinstance(err, LidsplitError):
        raise err from None
    raise DataParallelError(f"data-parallel rank {first['rank']} failed:\n{first['text']}") from None


def _train_rank(parallel: DataParallel, model: nn.Module, sub: Any, loaders: Any, kwargs: dict[str, Any]) -> Any:
    from lidsplit.train.loop import train_subsupernet

    # the model arrived in shared memory (the caller's tensors, shared by every rank): train a private copy
    model = copy.deepcopy(model)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    if dev.type == "cuda":
        model = model.to(torch.device("cuda", torch.cuda.current_device()))
    res = train_subsupernet(model, sub, loaders, parallel=parallel, **kwargs)
    if parallel.rank != 0:
        return None
    return res, {k: v.cpu() for k, v in model.state_dict().items()}


def train_data_parallel(nproc: int, model: nn.Module, sub: Any, loaders: Any, *, sync_bn: bool = True,
                        backend: str | None = None, **kwargs: Any) -> Any:
    """``train_subsupernet(model, sub, loaders, **kwargs)`` on ``nproc`` local processes
    (:func:`run_data_parallel`); ``model`` (in this process) receives the trained weights and the
    ``TrainResult`` is returned. With ``nproc == 1`` it is ``train_subsupernet`` in this process.
    Callbacks (``on_step`` / ``on_epoch``) run in the worker processes (they must be picklable, and what
    they change there stays there). ``backend``: default nccl for a model on a GPU (rank r on GPU r),
    gloo for a CPU model."""
    from lidsplit.train.loop import train_subsupernet

    if nproc == 1:
        return train_subsupernet(model, sub, loaders, **kwargs)
    if backend is None:
        backend = "nccl" if next((p.device for p in model.parameters()), torch.device("cpu")).type == "cuda" else "gloo"
    res, state = run_data_parallel(_train_rank, nproc, model, sub, loaders, kwargs, sync_bn=sync_bn,
                                   backend=backend)
    model.load_state_dict(state)
    if res.optimizer_state is not None:  # the optimiser state of the caller's device, like the weights
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        res.optimizer_state = _to_device(res.optimizer_state, dev)
    return res


def _to_device(obj: Any, dev: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(dev)
    if isinstance(obj, dict):
        return {k: _to_device(v, dev) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, dev) for v in obj]
    return obj
