"""Data-parallel training of one run under ``torchrun`` (DistributedDataParallel); nothing here when run plainly.

``torchrun --nproc_per_node N -m fer_bench run …`` starts N processes (ranks) that hold the same on-device data and
the same model. Every rank draws the same global batch (the shuffle depends only on the seed and epoch) and
augments the *whole* global batch with the same seeded generator, then keeps its own contiguous slice of it: each
sample gets exactly the crop, flip and erasing it gets in a one-process run, whatever N is (the augmentation of the
other ranks' samples is recomputed, a small cost beside the model's forward and backward passes). Each rank's loss is
scaled by ``N · S_r / S`` (S_r: the rank's share of the batch's sample weights, S: the batch's), so the gradients
DistributedDataParallel averages are those of the one-process loss on the global batch, class weights included.

Rank 0 alone validates (the others take its figures, so early stopping and the LR plateau decide alike), writes
checkpoints, rows and files and logs to MLflow; the others train and leave. Dropout masks are each rank's own draw
(seeded from the seed and the rank): with dropout on, a run of N ranks is another draw of dropout noise than one
process; with it off, the runs agree up to floating-point reordering (tests/test_distributed.py says how close).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fer_bench.errors import ConfigError


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
    or 1 without class weights (fer_bench.training's losses all average this way)."""
    w = getattr(criterion, "weight", None)
    if w is None:
        return torch.ones(len(y), device=y.device)
    return w[y] if y.ndim == 1 else y.to(w.dtype) @ w


@dataclass
class BatchShare:
    """The training transform of one rank: augment the global batch, keep this rank's slice; ``loss_scale`` is the
    factor that makes the averaged gradients those of the global batch's loss, ``seen`` the samples this rank got."""

    transform: Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    criterion: nn.Module
    world: World
    factor: torch.Tensor | float = 1.0
    seen: int = field(default=0)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.transform(x, y, gen)  # the whole global batch: the generator advances as in one process
        xs, ys = torch.tensor_split(x, self.world.size)[self.world.rank], torch.tensor_split(y, self.world.size)
        w = sample_weights(self.criterion, y)
        mine = torch.tensor_split(w, self.world.size)[self.world.rank]
        self.factor = self.world.size * mine.sum() / w.sum()
        self.seen += len(ys[self.world.rank])
        return xs, ys[self.world.rank]

    def loss_scale(self) -> torch.Tensor | float:
        return self.factor


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
    import hashlib

    h = hashlib.sha256()
    for _, p in sorted(model.named_parameters()):
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
