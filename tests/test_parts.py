"""The registries of recipe parts (fer_bench.recipes.parts): one list per kind, and everything derives from it."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys

import pytest
import torch
from torch import nn

from fer_bench.bench.data_pipelines import torchvision_ops, torchvision_transform
from fer_bench.cli import build_parser
from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.engine import builders as training
from fer_bench.engine import steps as engine
from fer_bench.experiment import plan as run_plan
from fer_bench.recipes import parts
from fer_bench.recipes.schema import AugmentCfg, LossCfg, OptimCfg, Recipe, ScheduleCfg, check_values
from fer_bench.report import leaderboard
from fer_bench.utils.errors import ConfigError

NAMED_BY = {"losses": "loss", "optimizers": "optim", "schedules": "schedule"}


def _recipe_with(kind: str, name: str) -> Recipe:
    if kind == "tta":
        return dataclasses.replace(Recipe(), eval=dataclasses.replace(Recipe().eval, tta=("none", name)))
    section = NAMED_BY[kind]
    return dataclasses.replace(Recipe(), **{section: dataclasses.replace(getattr(Recipe(), section), name=name)})


@pytest.mark.parametrize("kind", ["losses", "optimizers", "schedules", "tta"])
def test_the_schema_accepts_exactly_the_registered_names(kind):
    reg = parts.PARTS[kind]
    assert len(reg) >= 2
    for name in reg:
        assert check_values(_recipe_with(kind, name)) == [], name
    problems = check_values(_recipe_with(kind, "not_registered"))
    assert len(problems) == 1 and all(n in problems[0][1] for n in reg)  # the message lists every registered name


@pytest.mark.parametrize("kind", list(parts.PARTS))
def test_every_builder_resolves_and_every_field_exists(kind):
    default = Recipe()
    for name in parts.PARTS[kind]:
        part = parts.PARTS[kind].get(name)
        assert part.name == name and part.description
        if part.builder is not None:
            assert callable(part.load())
        for f in part.fields:
            section, attr = f.split(".")
            assert hasattr(getattr(default, section), attr), f"{kind} {name}: no recipe field {f}"


def test_each_loss_builds_and_trains_on_the_targets_it_takes():
    logits = torch.randn(4, 3, requires_grad=True)
    hard = torch.tensor([0, 1, 2, 1])
    soft = torch.softmax(torch.randn(4, 3), 1)
    for name in parts.LOSSES:
        loss = training.build_loss(LossCfg(name=name), torch.tensor([5, 3, 2]).numpy(), torch.device("cpu"))
        value = loss(logits, soft if parts.LOSSES.get(name).takes_distributions else hard)
        assert value.ndim == 0 and torch.isfinite(value)
    ce = training.build_loss(LossCfg(name="ce", label_smoothing=0.1), torch.ones(3).numpy(), torch.device("cpu"))
    assert torch.allclose(ce(logits, hard), nn.functional.cross_entropy(logits, hard, label_smoothing=0.1))


def test_each_optimizer_and_schedule_builds():
    model = nn.Linear(3, 2)
    expected = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    assert set(expected) == set(parts.OPTIMIZERS)
    for name, cls in expected.items():
        opt = training.build_optimizer(OptimCfg(name=name, lr=0.1), model)
        assert type(opt) is cls and opt.param_groups[1]["weight_decay"] == 0.0  # the bias: no decay
    for name in parts.SCHEDULES:
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        cfg = ScheduleCfg(name=name, warmup_epochs=0, min_lr_ratio=0.1, hold_fraction=0)
        sched = training.build_scheduler(cfg, opt, steps_per_epoch=10, epochs=2)
        for _ in range(19):
            opt.step()
            sched.step()
        last = opt.param_groups[0]["lr"]
        assert last == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(19 / 20 * torch.pi)).item()))  \
            if name == "cosine" else last == 1.0  # fmt: skip


@contextlib.contextmanager
def _registered(kind: str, part: parts.Part):
    """``part`` in the ``kind`` registry inside the with-block, removed after."""
    parts.PARTS[kind].add(part.name, part)
    try:
        yield part
    finally:
        del parts.PARTS[kind]._entries[part.name]


def _listed(kind: str, capsys) -> str:
    args = build_parser().parse_args(["ls", kind])
    args.handler(args)
    return capsys.readouterr().out


def test_a_loss_registered_once_is_valid_buildable_and_listed(capsys):
    """Adding a loss touches the registry only: the schema takes it, build_loss builds it, `ls` lists it."""
    with _registered("losses", parts.Part("test_l1", "mean absolute logit", builder="tests.test_parts:_l1_builder")):
        assert check_values(_recipe_with("losses", "test_l1")) == []
        loss = training.build_loss(LossCfg(name="test_l1"), torch.ones(2).numpy(), torch.device("cpu"))
        assert float(loss(torch.full((2, 2), -3.0), torch.tensor([0, 1]))) == 3.0
        assert "test_l1" in _listed("losses", capsys)
    assert check_values(_recipe_with("losses", "test_l1")) != []


def test_a_schedule_registered_once_drives_the_lr(capsys):
    part = parts.Part("test_linear", "linear decay to 0", builder="tests.test_parts:_linear_shape")
    with _registered("schedules", part):
        assert check_values(_recipe_with("schedules", "test_linear")) == []
        opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
        sched = training.build_scheduler(ScheduleCfg(name="test_linear", warmup_epochs=0), opt, 10, 1)
        lrs = []
        for _ in range(5):
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        assert lrs == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
        sched.end_epoch(10.0)  # not registered as steered by validation: no cut
        assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
        assert "test_linear" in _listed("schedules", capsys)


def test_a_tta_mode_registered_once_is_scored_costed_and_gets_columns(capsys):
    part = parts.Part("test_vflip", "mean of the image and its upside-down", builder="tests.test_parts:_tta_vflip",
                      passes=2)  # fmt: skip
    with _registered("tta", part):
        assert check_values(_recipe_with("tta", "test_vflip")) == []
        model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8, 3))
        x = torch.randint(0, 256, (4, 8, 8), dtype=torch.uint8)
        norm = Normalize(8, 1, (0.5,), (0.5,))
        ctx = engine.StepContext(device=torch.device("cpu"))
        logits, _ = engine.predict(model, [(x, torch.zeros(4))], transform=norm, ctx=ctx, tta="test_vflip")
        with torch.inference_mode():
            expected = (model(norm(x)) + model(norm(x).flip(-2))) / 2
        assert torch.allclose(torch.from_numpy(logits), expected, atol=1e-6)
        assert "test_vflip" in leaderboard.tta_columns()
        assert leaderboard.header("top1_test_vflip") == "top-1 test_vflip %"
        assert "test_vflip" in _listed("tta", capsys)
    assert "test_vflip" not in leaderboard.tta_columns()


def test_a_misspelt_name_gets_the_closest_registered_one():
    (problem,) = check_values(_recipe_with("losses", "focall"))
    assert problem[0] == "loss.name" and "did you mean 'focal'" in problem[1]
    (problem,) = check_values(_recipe_with("tta", "hfilp"))
    assert problem[0] == "eval.tta" and "did you mean 'hflip'" in problem[1]


def _linear_shape(t: float, min_lr_ratio: float) -> float:
    return 1.0 - t


class _L1(nn.Module):
    def forward(self, logits, target):
        return logits.abs().mean()


def _l1_builder(cfg, weight):
    return _L1()


def _tta_vflip(model, x, crop):
    return (model(x) + model(x.flip(-2))) / 2


def test_distribution_targets_need_a_loss_registered_as_taking_them():
    data = type("Data", (), {"soft": torch.ones(1), "name": "ferplus-crossentropy"})()
    assert training.check_targets(LossCfg(name="soft_ce"), data) is True
    with pytest.raises(ConfigError, match="loss.name=soft_ce"):
        training.check_targets(LossCfg(name="ce"), data)


def test_every_tta_mode_runs_with_its_registered_pipeline_and_cost():
    ctx = engine.StepContext(device=torch.device("cpu"))
    x = torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8)
    norms = run_plan.make_norms(Recipe(), type("Spec", (), {"in_chans": 1, "mean": (0.5,), "std": (0.5,)}), 40)
    for name in parts.TTA_MODES:
        tta = parts.TTA_MODES.get(name)
        norm = norms[tta.pipeline]
        model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16, 3))
        logits, _ = engine.predict(model, [(x, torch.zeros(4))], transform=norm, ctx=ctx, tta=name, crop=32)
        assert logits.shape == (4, 3) and tta.passes >= 1
    assert leaderboard.tta_columns() == ("hflip", "tencrop")


@pytest.mark.parametrize("train_crops", ["none", "tencrop"])
def test_every_augment_op_applied_is_registered_in_the_order_applied(train_crops):
    norm = Normalize(48, 1, (0.5,), (0.5,), crop=40 if train_crops == "tencrop" else None)
    names = [n for n, _ in BatchAugment(AugmentCfg(train_crops=train_crops), norm).ops()]
    order = parts.AUGMENT_OPS.names(ordered=True)
    assert names and all(n in parts.AUGMENT_OPS for n in names)
    assert [order.index(n) for n in names] == sorted(order.index(n) for n in names)


def test_every_augment_field_belongs_to_a_registered_op():
    covered = {f for n in parts.AUGMENT_OPS for f in parts.AUGMENT_OPS.get(n).fields}
    assert {f"augment.{f.name}" for f in dataclasses.fields(AugmentCfg)} == covered
    tv = [n for n, _ in torchvision_ops(torchvision_transform(AugmentCfg()))]
    assert tv and all(n in parts.AUGMENT_OPS for n in tv)


def test_cli_choices_come_from_the_registries():
    parser = build_parser()
    for kind in parts.PARTS:
        assert parser.parse_args(["ls", kind]).what == kind
    with pytest.raises(SystemExit):
        parser.parse_args(["ls", "not-a-kind"])


def test_the_parts_registries_import_no_torch():
    code = "import sys, fer_bench.recipes.parts, fer_bench.recipes.schema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
