"""The training loop of one run: stages, epochs, validation, checkpoint selection, early stopping and bit-exact
resume (everything that decides the next step is in ``last.pt``). Files it writes: ``last.pt`` and ``best.pt``."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.engine import checkpoint, distributed
from fer_bench.engine import steps as engine
from fer_bench.engine.builders import build_ema, build_loss, build_optimizer, build_scheduler, check_targets, compiled
from fer_bench.engine.freeze import set_trainable
from fer_bench.engine.predict import device_tensors
from fer_bench.recipes.schema import Recipe, stage_lr
from fer_bench.utils import cpu_caps
from fer_bench.utils.errors import ConfigError


class Plan(Protocol):
    """What the loop reads of a resolved run (:class:`fer_bench.experiment.plan.RunPlan` is one)."""

    recipe: Recipe
    recipe_hash: str
    stages: tuple
    ctx: engine.StepContext
    norms: dict[str, Normalize]
    proto: Any  # .train, .val: index arrays
    run_dir: Path


# The validation figure that selects the checkpoint (best.pt), the row's best epoch and early stopping.
SELECT_BY = "val_macro_f1"


@dataclass
class _BestTracker:
    """The best validation macro-F1 so far, its epoch, and the epochs since it last improved (early stopping).

    ``best.pt`` is written after ``last.pt``: a run killed between the two finds in ``last.pt`` that its last
    epoch was the best, and ``_restore`` writes ``best.pt`` again, so it always holds the history's best epoch.
    """

    path: Path
    best: float = -1.0
    epoch: int = 0  # the epoch of ``best``; 0 = none yet
    stale: int = 0
    writes: bool = True  # under torchrun rank 0 alone keeps best.pt

    def update(self, score: float, epoch: int) -> bool:
        """Record epoch ``epoch``'s score; True when it is the best so far."""
        if score > self.best:
            self.best, self.epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        return False

    def save(self, model: torch.nn.Module) -> None:
        if not self.writes:
            return
        checkpoint.save(self.path, {k: v.detach().cpu() for k, v in model.state_dict().items()})


@dataclass(frozen=True)
class _Position:
    """Where training stands between two epochs: all a resume needs to pick the same next step as a live run."""

    epoch: int = 0  # epochs trained so far (the history's length)
    stage: int = 0  # index in stage_plan of the stage the next epoch belongs to
    stage_epoch: int = 0  # epochs of that stage already trained; 0 = the stage starts afresh
    stopped: bool = False  # early stopping ended the run (train.early_stop_scope: run)

    def after_epoch(self, stage_over: bool, run_over: bool) -> _Position:
        if run_over:
            return _Position(self.epoch + 1, self.stage, self.stage_epoch + 1, stopped=True)
        if stage_over:
            return _Position(self.epoch + 1, self.stage + 1, 0)
        return _Position(self.epoch + 1, self.stage, self.stage_epoch + 1)


@dataclass
class _Loop:
    """What one training run needs besides the model: data, loss, augmentation and outputs."""

    train: engine.Batches
    val: engine.Batches
    criterion: torch.nn.Module
    augment: BatchAugment
    gen: torch.Generator
    scaler: torch.amp.GradScaler | None
    ctx: engine.StepContext
    eval_norm: Normalize
    classes: tuple[str, ...]
    grad_clip: float | None
    progress: bool
    ema: torch.nn.Module | None = None  # the weight average (train.ema_decay): validated, selected, tested
    world: distributed.World = distributed.SINGLE
    share: distributed.BatchShare | None = None  # under torchrun: this rank's slice of every global batch

    def selected(self, model: torch.nn.Module) -> torch.nn.Module:
        """The weights that validation scores and best.pt keeps: the average's when there is one."""
        return self.ema.module if self.ema is not None else model


def fit(
    model,
    plan: Plan,
    data,
    *,
    world: distributed.World = distributed.SINGLE,
    resume: bool = False,
    progress: bool = True,
    on_epoch=None,
):
    """Train ``model`` through the plan's stages on ``data``; return (history, the best weights' model, each rank's
    parameter digest, the epochs each process trained). A resumed run takes exactly the path the uninterrupted one
    takes.

    The only difference a resume makes is where it starts (``_restore``: weights, RNGs, history, best-so-far);
    a stage entered at its first epoch always gets a fresh optimizer and schedule, resumed or not.
    """
    recipe, ctx, run_dir, t = plan.recipe, plan.ctx, plan.run_dir, plan.recipe.train
    loop = _make_loop(recipe, data, plan.proto, plan.norms, ctx, world, progress)
    loop.ema = build_ema(model, t, t.epochs * len(loop.train))  # before a resume restores it
    net = compiled(model, t.compile)  # trains and validates; checkpoints take ``model``'s own state dict
    tracker = _BestTracker(run_dir / "best.pt", writes=world.main)
    pos, history, saved = _Position(), [], None
    if resume and (saved := _load_last(run_dir, plan.recipe_hash, recipe.train.seed, world)) is not None:
        pos, history = _restore(saved, loop, model, tracker), saved["history"]
        if loop.ema is not None:  # its warm-up goes on from the update it had reached
            loop.ema.updates = pos.epoch * len(loop.train)
        if world.main:
            print(f"  resuming after epoch {pos.epoch} from {run_dir / 'last.pt'}", file=sys.stderr)
    # epochs trained by each earlier process (segment) of this run; a checkpoint from before segments: one
    before = list(saved.get("segments") or [saved["epoch"]]) if saved is not None else []
    first = pos.epoch
    stages = plan.stages
    while not pos.stopped and pos.stage < len(stages):
        si, (stage, n_epochs) = pos.stage, stages[pos.stage]
        frozen, optimizer, scheduler = _open_stage(model, recipe, stage, n_epochs, loop, pos, saved, tracker)
        train_net = distributed.wrap(net, world, ctx.device)  # per stage: DDP takes the parameters trainable now
        while pos.stage == si and not pos.stopped:
            entry = _one_epoch(train_net, loop, optimizer, scheduler, frozen, pos.epoch + 1, t.epochs)
            history.append({"epoch": pos.epoch + 1, "stage": stage.name, **entry})
            if world.main:
                _log_epoch(history[-1], t.epochs, progress)
            if on_epoch is not None:
                on_epoch(history[-1])
            improved = tracker.update(entry[SELECT_BY], pos.epoch + 1)
            early = bool(t.early_stop_patience and tracker.stale >= t.early_stop_patience)
            pos = pos.after_epoch(early or pos.stage_epoch + 1 == n_epochs, early and t.early_stop_scope == "run")
            state = _state(plan, pos, model, optimizer, scheduler, loop, history, tracker)
            state["segments"] = [*before, pos.epoch - first]
            if world.main:
                checkpoint.save(run_dir / "last.pt", state)
            if improved:
                tracker.save(loop.selected(model))
            if early and world.main:
                then = "the run ends" if pos.stopped else "the next stage starts"
                print(f"  early stop in stage {stage.name}: no better validation macro-F1 for {tracker.stale} "
                      f"epoch(s); {then}", file=sys.stderr)  # fmt: skip
    digests = distributed.gather(distributed.param_digest(model), world) if world.active else []
    if world.main:
        model.load_state_dict(torch.load(run_dir / "best.pt", map_location=ctx.device, weights_only=True))
    return history, model, digests, before + ([pos.epoch - first] if pos.epoch > first else [])


def _load_last(run_dir: Path, recipe_hash: str, seed: int, world: distributed.World) -> dict | None:
    """``last.pt`` (checked as :func:`checkpoint.load` checks it), read by rank 0 and handed to every rank."""
    state, error = None, None
    if world.main:
        try:
            state = checkpoint.load(run_dir / "last.pt", recipe_hash, seed)
        except ConfigError as exc:
            error = str(exc)
    state, error = distributed.broadcast((state, error), world)
    if error is not None:
        raise ConfigError(error)
    if state is not None and len(state.get("rng_ranks") or [None]) != world.size:
        raise ConfigError(f"{run_dir / 'last.pt'}: the checkpoint was made by {len(state.get('rng_ranks') or [None])} "
                          f"process(es), this run has {world.size}; resume with the same torchrun "
                          f"--nproc_per_node, or use another --out.")  # fmt: skip
    if state is not None and world.active and "rng_dropout" not in state:
        raise ConfigError(f"{run_dir / 'last.pt'}: made before ranks drew their dropout masks for the global batch "
                          "(its generator is not in it); train afresh with another --out.")  # fmt: skip
    return state


def _make_loop(recipe: Recipe, data, proto, norms, ctx, world: distributed.World, progress: bool) -> _Loop:
    t = recipe.train
    criterion = build_loss(recipe.loss, data.class_counts(proto.train), ctx.device)
    augment = BatchAugment(recipe.augment, norms["train"])
    share = None
    # NOTE: alike on every rank from here: masks for the global batch (fer_bench.engine.distributed)
    if world.active:
        gen = distributed.shared_generator(ctx.device)
        share = distributed.BatchShare(augment, criterion, world, dropout_gen=gen)
        torch.manual_seed(t.seed + 7919 * (world.rank + 1))  # the default generator: per rank (rank 0 too, or
        # its dropout2d / DropBlock would reuse the numbers of the global masks), for the layers drawn per rank
    return _Loop(
        train=engine.Batches(*device_tensors(data, proto.train, ctx.device, check_targets(recipe.loss, data)),
                             batch_size=t.batch_size, shuffle=True, seed=t.seed),
        val=engine.Batches(*device_tensors(data, proto.val, ctx.device), batch_size=recipe.eval.batch_size),
        criterion=criterion, augment=share or augment,
        gen=torch.Generator(ctx.device).manual_seed(t.seed),
        scaler=torch.amp.GradScaler(ctx.device.type) if ctx.amp_dtype == torch.float16 else None,
        ctx=ctx, eval_norm=norms["eval"], classes=data.classes, grad_clip=t.grad_clip, progress=progress,
        world=world, share=share,
    )  # fmt: skip


def _open_stage(model, recipe: Recipe, stage, n_epochs: int, loop: _Loop, pos: _Position, saved, tracker):
    """Frozen modules, optimizer and LR schedule of ``stage``; fresh at its first epoch, else from ``saved``."""
    frozen = set_trainable(model, stage.trainable)
    optimizer = build_optimizer(replace(recipe.optim, lr=stage_lr(recipe, stage)), model)
    scheduler = build_scheduler(recipe.schedule, optimizer, len(loop.train), n_epochs)
    if pos.stage_epoch:  # resumed inside this stage: its optimizer and schedule carry on from last.pt
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    else:  # early stopping counts within a stage
        tracker.stale = 0
    return frozen, optimizer, scheduler


def _state(plan: Plan, pos: _Position, model, optimizer, scheduler, loop: _Loop, history, tracker) -> dict:
    """The ``last.pt`` content after an epoch. At a stage boundary the next stage builds its own optimizer and
    schedule (as an uninterrupted run does), so theirs are saved only inside a stage."""
    inside = pos.stage_epoch > 0 and not pos.stopped
    return {
        "format": checkpoint.FORMAT, "recipe_hash": plan.recipe_hash, "seed": plan.recipe.train.seed,
        "epoch": pos.epoch, "position": asdict(pos), "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if inside else None,
        "scheduler": scheduler.state_dict() if inside else None,
        "scaler": loop.scaler.state_dict() if loop.scaler else None,
        "ema": loop.ema.module.state_dict() if loop.ema is not None else None,
        "rng": checkpoint.rng_state(loop.gen), "history": history,
        # under torchrun every rank's RNGs (each its own) and the masks' shared one; a collective: every rank builds it
        **({"rng_ranks": distributed.gather(checkpoint.rng_state(loop.gen), loop.world),
            "rng_dropout": loop.share.dropout_gen.get_state()} if loop.share is not None else {}),
        "best": tracker.best, "best_epoch": tracker.epoch, "stale": tracker.stale,
    }  # fmt: skip


def _restore(state: dict, loop: _Loop, model, tracker: _BestTracker) -> _Position:
    """Put the run back where ``last.pt`` left it: weights, their average, scaler, RNGs and best-so-far; return the
    position."""
    model.load_state_dict(state["model"])
    if loop.ema is not None:  # the recipe hash covers ema_decay: a checkpoint of this recipe holds the average
        loop.ema.module.load_state_dict(state["ema"])
    if loop.scaler is not None and state["scaler"] is not None:
        loop.scaler.load_state_dict(state["scaler"])
    checkpoint.set_rng_state(state["rng_ranks"][loop.world.rank] if loop.world.active else state["rng"], loop.gen)
    if loop.share is not None:
        loop.share.dropout_gen.set_state(state["rng_dropout"])
    tracker.best, tracker.epoch, tracker.stale = state["best"], state["best_epoch"], state["stale"]
    if tracker.epoch == state["epoch"]:  # killed between last.pt and best.pt: best.pt may be a stale epoch
        tracker.save(loop.selected(model))
    return _Position(**state["position"])


def _one_epoch(model, loop: _Loop, optimizer, scheduler, frozen, epoch: int, total: int) -> dict:
    """Train epoch ``epoch`` (1-based, of ``total``), validate, feed the schedule validation top-1; the epoch's
    history entry.

    ``epoch_wall_s`` is the epoch's wall time, training and validation (checkpoint writes aside): a run's time to
    accuracy adds these up, so a resumed run counts the epochs of every segment (:func:`time_to_accuracy`).
    """
    start = time.perf_counter()
    # NOTE: no bar when stderr is not a terminal: in a log file every redraw is a line (megabytes per demo)
    bar = tqdm(total=len(loop.train.labels), desc=f"epoch {epoch}/{total}", unit="img", leave=False,
               disable=not (loop.progress and sys.stderr.isatty()), file=sys.stderr)  # fmt: skip
    report = lambda seen, loss: (bar.update(seen - bar.n), bar.set_postfix(loss=f"{loss:.3f}"))  # noqa: E731
    if loop.share is not None:
        loop.share.seen = 0
    stats = engine.train_one_epoch(
        model, loop.train.epoch(epoch - 1), criterion=loop.criterion, optimizer=optimizer, transform=loop.augment,
        gen=loop.gen, ctx=loop.ctx, scheduler=scheduler, scaler=loop.scaler, grad_clip=loop.grad_clip, frozen=frozen,
        ema=loop.ema, on_batch=None if bar.disable else report,  # no bar: the loss is read back once, at the end
        loss_scale=loop.share.loss_scale if loop.share is not None else None,
        step_context=loop.share.dropout if loop.share is not None else None,
    )  # fmt: skip
    bar.close()
    if loop.share is not None:  # the epoch's figures over every rank's samples
        stats = distributed.reduce_epoch(stats, loop.share.seen, loop.world)
    val = None
    if loop.world.main:  # the others take rank 0's figures: the same early stop and LR plateau on every rank
        inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        val = engine.evaluate(loop.selected(inner), loop.val.epoch(), transform=loop.eval_norm, ctx=loop.ctx,
                              classes=loop.classes)  # fmt: skip
    val = distributed.broadcast(val, loop.world)
    scheduler.end_epoch(val["top1"])
    entry = stats | {f"val_{k}": val[k] for k in ("top1", "macro_f1", "loss")}
    # the processor class beside the wall time: a run resumed on another machine times its epochs on two classes
    return entry | {"epoch_wall_s": time.perf_counter() - start, "cpu_class": cpu_caps.probe().processor_class}


def _log_epoch(h: dict[str, float], total: int, progress: bool) -> None:
    line = (
        f"  epoch {h['epoch']}/{total} [{h['stage']}]  loss {h['train_loss']:.4f}  val top1 {h['val_top1']:.2f}  "
        f"val macro-F1 {h['val_macro_f1']:.2f}  lr {h['lr']:.2e}  {h['epoch_train_img_s']:.0f} img/s"
    )
    (tqdm.write if progress else print)(line, file=sys.stderr)
