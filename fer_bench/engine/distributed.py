"""Data-parallel training of one run under ``torchrun`` (DistributedDataParallel); nothing here when run plainly.

Every rank draws the same global batch, augments the *whole* batch with the same seeded generator and keeps its own
contiguous slice, so each sample is augmented as in a one-process run whatever N is. Each rank's loss is scaled by
``N · S_r / S`` (its share of the batch's sample weights), so the averaged gradients are the one-process gradients
of the global batch, class weights included. Dropout and drop-path masks are drawn for the whole global batch from a
generator shared by all ranks (:func:`shared_generator`, :func:`global_batch_dropout`), so on CPU the run does not
depend on N beyond floating-point reordering (tests/test_distributed.py says how close). Rank 0 alone validates,
writes files and logs; the others take its figures and leave. GPUs, other random layers and SyncBatchNorm:
docs/scale-out.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fer_bench.utils.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun job: its rank, the number of ranks and its rank on this host."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates, writes and tracks."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


SINGLE = World()


def from_env(env: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; one process without them.

    Example:
        >>> from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
        World(rank=1, size=2, local_rank=1)
    """
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE
    return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))


def setup(device: str) -> tuple[World, str]:
    """Join the torchrun job (NCCL on GPUs, gloo on CPU); the world and this rank's device (``cuda:<local rank>``).

    Raises:
        ConfigError: ``--device cuda:N`` under torchrun (each rank takes the GPU of its local rank).
    """
    world = from_env()
    if not world.active:
        return world, device
    if device.startswith("cuda:"):
        raise ConfigError(f"--device {device} under torchrun: each rank takes the GPU of its local rank; "
                          "use --device cuda or auto (CUDA_VISIBLE_DEVICES picks the GPUs).")  # fmt: skip
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank)
        device = f"cuda:{world.local_rank}"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return world, device


def teardown(world: World, wait: bool = True) -> None:
    """Leave the job: after rank 0 has tested and written (``wait``), or at once after an error (torchrun then
    stops the other ranks)."""
    if world.active and torch.distributed.is_initialized():
        if wait:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for small objects: validation figures, a checkpoint's state)."""
    if not world.active:
        return obj
    box = [obj if world.main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not world.active:
        return [obj]
    out: list[Any] = [None] * world.size
    torch.distributed.all_gather_object(out, obj)
    return out


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``model`` under DistributedDataParallel (the trainable parameters of the current stage), or itself."""
    if not world.active:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sync_batchnorm(model: nn.Module, world: World, enabled: bool, device_type: str = "cuda") -> nn.Module:
    """Batch norms that normalise over the global batch (``train.sync_bn``); one process: the model as it is.

    torch's SyncBatchNorm on GPUs; on CPU (which it refuses) :class:`CpuSyncBatchNorm`. Parameter and buffer names
    stay those of the batch norms they replace, so checkpoints load either way.
    """
    if not (enabled and world.active):
        return model
    if device_type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)  # fmt: skip
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch on CPU (gloo): per-channel sums, sums of squares and counts all-reduced
    with autograd (``torch.distributed.nn``), so the backward pass sums the statistics' gradients over the ranks as
    torch's SyncBatchNorm does on GPUs. Evaluation, and training in one process, is plain batch norm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        # NOTE: float64 sums: E[x²] − E[x]² in float32 would lose digits the one-process batch norm keeps
        x64 = x.double()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64)
        stats = all_reduce(torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp(min=0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.float(), alpha=m)
                self.running_var.mul_(1 - m).add_((var * n / (n - 1)).float(), alpha=m)  # unbiased, as torch
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x64 - mean.view(shape)) * (var.view(shape) + self.eps).rsqrt()
        y = y.to(x.dtype)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sample_weights(criterion: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Each sample's weight in ``criterion``'s weighted mean: its class weight (labels), ``q · w`` (distributions),
    or 1 without class weights (fer_bench.engine.builders's losses all average this way)."""
    w = getattr(criterion, "weight", None)
    if w is None:
        return torch.ones(len(y), device=y.device)
    return w[y] if y.ndim == 1 else y.to(w.dtype) @ w


def rank_rows(total: int, world: World) -> tuple[int, int]:
    """The rows ``[start, stop)`` of a global batch of ``total`` that ``world``'s rank keeps (``torch.tensor_split``).

    Example:
        >>> [rank_rows(10, World(r, 3)) for r in range(3)]
        [(0, 4), (4, 7), (7, 10)]
    """
    q, extra = divmod(total, world.size)
    start = world.rank * q + min(world.rank, extra)
    return start, start + q + (world.rank < extra)


def shared_generator(device: torch.device) -> torch.Generator:
    """A generator in the state of torch's default generator on ``device`` now: called on every rank at the same
    point of the same code, it is alike on every rank and is where a one-process run's default generator stands."""
    gen = torch.Generator(device)
    gen.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    return gen


@contextlib.contextmanager
def global_batch_dropout(start: int, stop: int, total: int, gen: torch.Generator) -> Iterator[None]:
    """Inside: ``F.dropout`` and timm's ``drop_path`` draw the mask of the whole global batch (``total`` rows) from
    ``gen``, as the one-process CPU kernels draw it from the default generator, and apply its rows ``[start, stop)``.

    Every rank makes the same draws from alike generators, so they stay alike. A dropout over a tensor whose first
    dimension is not this rank's batch has no global batch to draw for and raises.
    """
    import timm.layers.drop as timm_drop
    import torch.nn.functional as F

    dropout, drop_path = F.dropout, timm_drop.drop_path
    rows = stop - start

    def mask(x: torch.Tensor, keep: float, shape: tuple[int, ...]) -> torch.Tensor:
        if x.shape[0] != rows:
            raise RuntimeError(f"dropout over a tensor of shape {tuple(x.shape)} under torchrun: its first dimension "
                               f"is not this rank's {rows} sample(s), so no global-batch mask can be drawn for it; "
                               "set model.drop_rate=0 or train in one process.")  # fmt: skip
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        full = torch.empty((total, *shape[1:]), dtype=x.dtype, device=x.device,
                           memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # fmt: skip
        return full.bernoulli_(keep, generator=gen)[start:stop].clone()  # a copy: autograd keeps only these rows

    def global_dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
        if not training or p <= 0 or p >= 1 or input.numel() == 0:  # no draw in these cases (as torch's kernel)
            return dropout(input, p, training, inplace)
        noise = mask(input, 1 - p, tuple(input.shape)).div_(1 - p)
        return input.mul_(noise) if inplace else input * noise

    def global_drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True):
        if drop_prob == 0.0 or not training:
            return x
        keep = 1 - drop_prob
        noise = mask(x, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        if keep > 0.0 and scale_by_keep:
            noise.div_(keep)
        return x * noise

    F.dropout, timm_drop.drop_path = global_dropout, global_drop_path
    try:
        yield
    finally:
        F.dropout, timm_drop.drop_path = dropout, drop_path


@dataclass
class BatchShare:
    """The training transform of one rank: augment the global batch, keep this rank's slice; ``loss_scale`` is the
    factor that makes the averaged gradients those of the global batch's loss, ``seen`` the samples this rank got,
    :meth:`dropout` the context of the step's forward pass (masks drawn for the global batch)."""

    transform: Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    criterion: nn.Module
    world: World
    factor: torch.Tensor | float = 1.0
    seen: int = field(default=0)
    rows: tuple[int, int, int] = (0, 0, 0)  # this rank's [start, stop) of the last global batch, and its size
    dropout_gen: torch.Generator | None = None  # alike on every rank (shared_generator); masks of the global batch

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.transform(x, y, gen)  # the whole global batch: the generator advances as in one process
        start, stop = rank_rows(len(y), self.world)
        self.rows = (start, stop, len(y))
        w = sample_weights(self.criterion, y)
        self.factor = self.world.size * w[start:stop].sum() / w.sum()
        self.seen += stop - start
        return x[start:stop], y[start:stop]

    def loss_scale(self) -> torch.Tensor | float:
        return self.factor

    def dropout(self) -> contextlib.AbstractContextManager:
        if self.dropout_gen is None:
            raise RuntimeError("BatchShare.dropout needs dropout_gen (distributed.shared_generator)")
        return global_batch_dropout(*self.rows, self.dropout_gen)


def check_batches(n_train: int, batch_size: int, world: World, where: str) -> None:
    """Every rank needs at least one sample of every global batch (the epoch's last one included)."""
    if not world.active:
        return
    last = n_train % batch_size or batch_size
    if batch_size < world.size or last < world.size:
        raise ConfigError(f"{where}: a global batch of {min(batch_size, last)} image(s) (batch size {batch_size}, "
                          f"{n_train} training images) leaves some of the {world.size} ranks without a sample; "
                          f"change --batch-size or --limit-train.")  # fmt: skip


def reduce_epoch(stats: dict[str, float], seen: int, world: World) -> dict[str, float]:
    """One epoch's training figures over all ranks: loss and top-1 weighted by each rank's samples, img/s summed."""
    if not world.active:
        return stats
    sums = torch.tensor([stats["train_loss"] * seen, stats["train_top1"] * seen, float(seen),
                         stats["epoch_train_img_s"]], dtype=torch.float64, device=_comm_device())  # fmt: skip
    torch.distributed.all_reduce(sums)
    loss, top1, n, img_s = sums.tolist()
    return stats | {"train_loss": loss / n, "train_top1": top1 / n, "epoch_train_img_s": img_s}


def _comm_device() -> torch.device:
    """Where a collective's tensors must sit: this rank's GPU under NCCL, else the CPU (gloo)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def param_digest(model: nn.Module) -> str:
    """sha256 over the model's parameters in order: equal on every rank when the ranks trained in step."""

    h = hashlib.sha256()
    for _, p in sorted(model.named_parameters()):
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
