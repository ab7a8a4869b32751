"""Training speed options (issue 15): device-side sums, train.compile, the batch-size LR rule and weight EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fer_bench.cli import main
from fer_bench.data import load_dataset
from fer_bench.engine import checkpoint
from fer_bench.engine import steps as engine
from fer_bench.experiment.plan import RunOptions, run_protocol
from fer_bench.experiment.plan import device_context as _context
from fer_bench.experiment.protocol import protocol_fields, protocol_hash
from fer_bench.experiment.runner import run_model
from fer_bench.models import create_model
from fer_bench.recipes import load_recipe, recipe_hash, recipe_to_dict
from fer_bench.recipes.schema import lr_factor

# --- the engine: sums on the device, read back only to report ------------------------------------------------------


class _Recorder(nn.Module):
    """Cross-entropy that keeps each step's loss, correct count and size (as device tensors: no read-back here)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[torch.Tensor, torch.Tensor, int]] = []

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(logits, y)
        self.steps.append((loss.detach().clone(), (logits.argmax(1) == y).sum(), len(y)))
        return loss


class _CountingEma:
    """A weight average that records the weights it was updated from."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def update(self, model: nn.Module) -> None:
        self.seen.append(next(model.parameters()).detach().clone())


@pytest.fixture
def host_reads(monkeypatch) -> list[str]:
    """Every read of a tensor's value into Python (each a host synchronisation on a GPU), by method name."""
    reads: list[str] = []
    for name in ("item", "__int__", "__float__", "__bool__", "tolist"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _name=name, **k):
            reads.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


def test_epoch_sums_stay_on_the_device_and_equal_a_per_step_reference(host_reads):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 7))
    images, labels = torch.randint(0, 256, (360, 1, 12, 12), dtype=torch.uint8), torch.randint(0, 7, (360,))
    batches = engine.Batches(images, labels, batch_size=8, shuffle=True)  # 45 steps
    criterion, ema, reports = _Recorder(), _CountingEma(), []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # SGD reads no step count back (Adam's is a CPU tensor)
    stats = engine.train_one_epoch(
        model, batches.epoch(0), criterion=criterion, optimizer=optimizer, transform=lambda x, y, g: (x / 255.0, y),
        gen=torch.Generator(), ctx=engine.StepContext(torch.device("cpu")), ema=ema,
        on_batch=lambda seen, loss: reports.append((seen, loss)), report_every=20,
    )  # fmt: skip
    reads = list(host_reads)
    assert len(reads) <= 4, reads  # two reports inside the epoch, the final sums; was two reads per step (90)

    steps = [(float(loss), int(correct), n) for loss, correct, n in criterion.steps]
    assert len(steps) == 45
    running = [sum(loss * n for loss, _, n in steps[:k]) / sum(n for *_, n in steps[:k]) for k in (20, 40, 45)]
    assert reports == [
        (seen, pytest.approx(loss, rel=1e-12)) for seen, loss in zip((160, 320, 360), running, strict=True)
    ]
    assert stats["train_loss"] == pytest.approx(running[2], rel=1e-12)
    assert stats["train_top1"] == pytest.approx(100.0 * sum(c for _, c, _ in steps) / 360, rel=1e-12)
    # the average is updated after every optimizer step, the last one included
    assert len(ema.seen) == 45 and torch.equal(ema.seen[-1], next(model.parameters()).detach())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_epoch_on_cuda_synchronises_only_to_read_its_sums():
    dev = torch.device("cuda")
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 7)).to(dev)
    images = torch.randint(0, 256, (360, 1, 12, 12), dtype=torch.uint8, device=dev)
    batches = engine.Batches(images, torch.randint(0, 7, (360,), device=dev), batch_size=8)  # arange order: on device
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.cuda.set_sync_debug_mode("warn")  # warns at every synchronising call
    try:
        with pytest.warns(UserWarning) as caught:
            engine.train_one_epoch(model, batches.epoch(0), criterion=nn.CrossEntropyLoss(), optimizer=optimizer,
                                   transform=lambda x, y, g: (x / 255.0, y), gen=torch.Generator(dev),
                                   ctx=engine.StepContext(dev))  # fmt: skip
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert 1 <= len(syncs) <= 2, [str(w.message) for w in syncs]  # the epoch's loss and correct count; 45 steps


# --- recipe options: validation and hashes ---------------------------------------------------------------------------

BAD_OPTIONS = {
    "train: {compile: fast}": "train.compile = 'fast' is not allowed; expected null (eager) or one of default, "
    "reduce-overhead, max-autotune",
    "train: {ema_decay: 1.0}": "train.ema_decay = 1.0 is not allowed; expected null (off) or in (0, 1)",
    "optim: {lr_scaling: cubic}": "optim.lr_scaling = 'cubic' is not allowed; expected one of none, linear, sqrt",
    "optim: {lr_scaling: linear}": "optim.reference_batch_size = None is not allowed; expected the batch size",
}


@pytest.mark.parametrize("text", BAD_OPTIONS)
def test_validate_refuses_a_bad_option_with_exit_2(capsys, tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    (invalid,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("INVALID")]
    assert BAD_OPTIONS[text] in invalid, invalid


def test_the_lr_rule_scales_by_batch_over_reference():
    def factor(rule: str, batch: int) -> float:
        sets = [f"optim.lr_scaling={rule}", "optim.reference_batch_size=64", f"train.batch_size={batch}"]
        return lr_factor(load_recipe(None, sets))

    assert (factor("linear", 256), factor("sqrt", 256), factor("none", 256)) == (4.0, 2.0, 1.0)
    assert factor("sqrt", 32) == pytest.approx(math.sqrt(0.5))


def _protocol(recipe) -> str:
    fields = protocol_fields(recipe_to_dict(recipe), dataset="synthetic", fingerprint="0" * 16, dedup=None,
                             img_size=48, weights={"source": "scratch"}, precision="fp32")  # fmt: skip
    return protocol_hash(fields)


def test_the_new_options_at_their_defaults_leave_every_hash_as_it_was():
    """Pinned before the options existed (recipe hash, protocol hash of the schema defaults): rows, suites and
    checkpoints keyed on them stay valid. Set, an option that changes the numbers enters both."""
    base = load_recipe(None)
    assert (recipe_hash(base), _protocol(base)) == ("91130636f64e", "683f9340bf40")
    for sets in (["train.ema_decay=0.999"], ["optim.lr_scaling=linear", "optim.reference_batch_size=32"],
                 ["train.sync_bn=true"]):  # fmt: skip
        r = load_recipe(None, sets)
        assert recipe_hash(r) != recipe_hash(base) and _protocol(r) != _protocol(base), sets
    compiled = load_recipe(None, ["train.compile=max-autotune"])
    assert recipe_hash(compiled) != recipe_hash(base) and _protocol(compiled) == _protocol(base)


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


def test_an_lr_scaled_from_another_batch_is_the_protocol_of_that_lr_written_out(synthetic):
    opts = RunOptions(out=None, device="cpu", progress=False)
    stages = "stages=[{name: a, epochs: 1, lr: %s}, {name: b}]"
    scaled = load_recipe(None, ["optim.lr=0.004", "optim.lr_scaling=linear", "optim.reference_batch_size=256",
                                "train.batch_size=64", stages % 0.008])  # fmt: skip
    written = load_recipe(None, ["optim.lr=0.001", "train.batch_size=64", stages % 0.002])
    other = load_recipe(None, ["optim.lr=0.001", "train.batch_size=64", stages % 0.003])
    hashes = [run_protocol("simple_cnn", r, synthetic, opts)[0] for r in (scaled, written, other)]
    assert hashes[0] == hashes[1] != hashes[2]


def test_bf16_autocast_and_channels_last_are_the_cuda_defaults(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    precision, ctx = _context(load_recipe("baseline"), RunOptions(out=None, device="cuda"))
    assert (precision, ctx.amp_dtype, ctx.channels_last) == ("amp_bf16", torch.bfloat16, True)


# --- a run with all three: compile (faked), the LR rule and EMA; and its resume -------------------------------------

SETS = ["train.epochs=2", "data.limit_train=140", "input.img_size=32", "eval.batch_size=512", "eval.tta=[none]",
        "train.seed=1", "train.batch_size=32", "optim.lr=0.004", "optim.lr_scaling=sqrt",
        "optim.reference_batch_size=128", "schedule.name=constant", "schedule.warmup_epochs=0",
        "train.ema_decay=0.8", "train.compile=default"]  # fmt: skip


def _fake_compile(calls: list):
    """torch.compile as dynamo with its eager backend (no inductor: seconds, not minutes, on a CPU), recorded."""
    real = torch.compile

    def compile_(model, *, mode=None, dynamic=None, **kw):
        calls.append({"mode": mode, "dynamic": dynamic})
        return real(model, backend="eager", dynamic=dynamic)

    return compile_


def _evaluated_weights(monkeypatch) -> list[dict]:
    """Record the weights that each validation scored."""
    seen, real = [], engine.evaluate

    def evaluate(model, *a, **k):
        seen.append({k_: v.detach().clone() for k_, v in model.state_dict().items()})
        return real(model, *a, **k)

    monkeypatch.setattr(engine, "evaluate", evaluate)
    return seen


def _run(out, data, *, resume: bool = False) -> dict:
    return run_model("simple_cnn", load_recipe(None, SETS), data,
                     RunOptions(out=out, device="cpu", progress=False, resume=resume))  # fmt: skip


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, synthetic):
    out = tmp_path_factory.mktemp("ema")
    calls: list = []
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch, "compile", _fake_compile(calls))
        evaluated = _evaluated_weights(m)
        row = _run(out, synthetic)
    files = {n: torch.load(next(out.rglob(n)), weights_only=True) for n in ("last.pt", "best.pt")}
    return row, calls, evaluated, files


def test_compile_wraps_training_and_checkpoints_keep_the_modules_own_keys(ema_run):
    row, calls, _, files = ema_run
    assert calls == [{"mode": "default", "dynamic": False}] and row["compile"] == "default"
    fresh, _ = create_model("simple_cnn", num_classes=7)
    for state in (files["last.pt"]["model"], files["last.pt"]["ema"], files["best.pt"]):
        assert not any(k.startswith("_orig_mod.") for k in state)
        fresh.load_state_dict(state)  # strict: resume and --weights find every key


def test_the_row_states_the_lr_rule_and_the_lr_that_trained(ema_run):
    row = ema_run[0]
    assert row["lr_scaling"] == {"rule": "sqrt", "reference_batch_size": 128, "factor": 0.5}
    assert row["lr_used"] == {"train": 0.002}
    assert [h["lr"] for h in row["history"]] == [0.002, 0.002]  # constant schedule: what the optimizer used


def test_validation_and_best_pt_use_the_weight_average(ema_run):
    row, _, evaluated, files = ema_run
    assert row["ema_decay"] == 0.8 and len(evaluated) == 2
    last = files["last.pt"]
    # the second validation scored the average after epoch 2, which is not the trained weights
    assert all(torch.equal(evaluated[1][k], v) for k, v in last["ema"].items())
    assert any(not torch.equal(last["model"][k], v) for k, v in last["ema"].items())
    best = evaluated[row["best_epoch"] - 1]
    assert all(torch.equal(files["best.pt"][k], v) for k, v in best.items())


def test_a_killed_ema_run_resumes_to_the_same_numbers(tmp_path, synthetic, ema_run, monkeypatch):
    full = ema_run[0]
    monkeypatch.setattr(torch, "compile", _fake_compile([]))
    real = checkpoint.save

    def save(path, state):  # die right after epoch 1's last.pt, before its best.pt
        real(path, state)
        if path.name == "last.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", save)
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, synthetic)
    row = _run(tmp_path, synthetic, resume=True)
    untimed = lambda h: [{k: v for k, v in e.items() if not k.endswith("_s")} for e in h]  # noqa: E731
    assert untimed(row["history"]) == untimed(full["history"])
    assert row["test"] == full["test"]
