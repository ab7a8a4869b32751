"""`fer-bench bench --grid`: which CPU settings make training and inference faster, measured against fp32 NCHW eager.

For each model and each setting of {fp32, bf16 autocast} × {NCHW, channels_last} × {eager, torch.compile} other than
the baseline, one fresh process builds the baseline and the setting side by side and times them in interleaved
pairs (setting, baseline, setting, baseline …; :func:`fer_bench.bench.timing.paired`): a training window (a recipe's own
step: its optimizer, loss, batch size and weight average, through ``engine.train_one_epoch``) and an inference
window (``engine.predict``). Each window runs ``steps`` steps; a pair's ratio is setting img/s over baseline img/s.

Before the pairs, each side's first call is timed on its own (for a compiled setting it holds the compile) and a
one-step probe of each side follows. Bounded cost: a setting that the probe finds more than ``slow``× slower than
the baseline (bf16 autocast on a processor without bf16 instructions runs 10-35× slower) is timed in one-step
windows, and a part whose pairs would overrun what is left of the per-setting cap ``cap_s`` is skipped; both are
written on its row. Compiled bf16 settings are skipped on processors without bf16 instructions ("skipped: no bf16
instructions"): nothing a compiler does makes emulated bf16 pay there.

Every row also states GFLOP/s achieved (FLOPs counted by :func:`fer_bench.bench.cost.step_flops`) and its share of a
large matmul measured in the same process at the row's precision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = ("resnet18", "vgg_khaireddin", "efficientnet_b2", "efficientnetv2_s")
PARTS = ("train", "infer")
SKIP_NO_BF16 = "skipped: no bf16 instructions"


@dataclass(frozen=True)
class Setting:
    precision: str = "fp32"  # "fp32" or "amp_bf16"
    channels_last: bool = False
    compiled: bool = False

    @property
    def name(self) -> str:
        return f"{self.precision}-{'nhwc' if self.channels_last else 'nchw'}-{'compile' if self.compiled else 'eager'}"


BASELINE = Setting()
SETTINGS = tuple(Setting(p, cl, c) for p in ("fp32", "amp_bf16") for cl in (False, True) for c in (False, True))[1:]


@dataclass(frozen=True)
class GridConfig:
    model: str
    setting: Setting
    img_size: int = 48
    recipe: str = "fast-48"  # whose optimizer, loss, batch size and weight average the training step uses
    pairs: int = 7
    steps: int = 10  # steps per timed window
    cap_s: float = 600.0  # time for the pairs of one setting (both parts), after first calls and probes
    slow: float = 5.0  # a probe this many times slower than the baseline shrinks the windows to one step


class _Side:
    """One setting of one model, ready to time: a training window and an inference window of ``n`` steps."""

    def __init__(self, cfg: GridConfig, setting: Setting) -> None:
        import torch

        from fer_bench.engine.builders import build_ema, build_loss, build_optimizer, compiled
        from fer_bench.engine.steps import StepContext
        from fer_bench.models import create_model
        from fer_bench.recipes import load_recipe

        recipe = load_recipe(cfg.recipe)
        torch.manual_seed(0)
        model, spec = create_model(cfg.model)
        fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
        self.model = model.to(memory_format=fmt)
        self.ctx = StepContext(torch.device("cpu"), torch.bfloat16 if setting.precision == "amp_bf16" else None,
                               setting.channels_last)  # fmt: skip
        self.batch_size, self.grad_clip = recipe.train.batch_size, recipe.train.grad_clip
        self.criterion = build_loss(recipe.loss, np.ones(7), self.ctx.device)
        self.optimizer = build_optimizer(recipe.optim, self.model)
        # the length of a fast-48 run at batch 64 (25,838 images): only a run-relative EMA horizon reads it
        self.ema = build_ema(self.model, recipe.train, total_steps=recipe.train.epochs * 404)
        self.net = compiled(self.model, "default" if setting.compiled else None)
        self.x = torch.randn(self.batch_size, spec.in_chans, cfg.img_size, cfg.img_size)
        self.y = torch.randint(0, 7, (self.batch_size,))
        self.gen = torch.Generator().manual_seed(0)
        self.recipe, self.spec, self.setting = recipe, spec, setting

    def train(self, n: int) -> float:
        """img/s of ``n`` training steps."""
        from fer_bench.engine.steps import train_one_epoch

        start = time.perf_counter()
        train_one_epoch(self.net, [(self.x, self.y)] * n, criterion=self.criterion, optimizer=self.optimizer,
                        transform=lambda x, y, g: (x, y), gen=self.gen, ctx=self.ctx, grad_clip=self.grad_clip,
                        ema=self.ema)  # fmt: skip
        return n * self.batch_size / (time.perf_counter() - start)

    def infer(self, n: int) -> float:
        """img/s of ``n`` inference steps."""
        from fer_bench.engine.steps import predict

        start = time.perf_counter()
        predict(self.net, [(self.x, self.y)] * n, transform=lambda x: x, ctx=self.ctx)
        return n * self.batch_size / (time.perf_counter() - start)


def measure_setting(cfg: GridConfig) -> list[dict[str, Any]]:
    """The rows of one setting of one model (one per part), measured in this process against the baseline."""
    import torch

    from fer_bench.bench.cost import matmul_ceiling, step_flops
    from fer_bench.bench.timing import MachineLoad, paired

    base, other = _Side(cfg, BASELINE), _Side(cfg, cfg.setting)
    flops = step_flops(base.model, base.spec.in_chans, cfg.img_size, base.batch_size)
    dtype = torch.bfloat16 if cfg.setting.precision == "amp_bf16" else torch.float32
    ceilings = (matmul_ceiling(dtype), matmul_ceiling(torch.float32))
    spent, rows = 0.0, []  # seconds of the cap used: probes and pairs (first calls are reported, not capped)
    for part in PARTS:
        a, b = getattr(other, part), getattr(base, part)
        first = {"setting": _timed(lambda a=a: a(1)), "base": _timed(lambda b=b: b(1))}
        t0 = time.perf_counter()
        step_b, step_a = base.batch_size / b(1), base.batch_size / a(1)  # one-step probe of each side, seconds
        spent += time.perf_counter() - t0
        steps, note = cfg.steps, []
        if step_a / step_b > cfg.slow:
            steps = 1
            cut = f": {cfg.steps}-step windows cut to 1" if cfg.steps > 1 else ""
            note.append(f"probe {step_a / step_b:.1f}x slower than the baseline{cut}")
        row = _row_head(cfg, part, base, flops, first, step_a / step_b, steps)
        estimate, left = cfg.pairs * steps * (step_a + step_b), cfg.cap_s - spent
        if estimate > left:
            note.append(f"skipped: {cfg.pairs} pairs would take ~{estimate:.0f} s, {max(left, 0):.0f} s left of the "
                        f"{cfg.cap_s:.0f} s cap")  # fmt: skip
            rows.append(row | {"status": "skipped", "note": "; ".join(note)})
            continue
        t0 = time.perf_counter()
        with MachineLoad() as load:
            result = paired(lambda a=a, n=steps: a(n), lambda b=b, n=steps: b(n), pairs=cfg.pairs, warmup=0,
                            names=("setting", "baseline"))  # fmt: skip
        spent += time.perf_counter() - t0
        rows.append(row | _figures(result, row["gflop_per_step"], base.batch_size, *ceilings)
                    | {"status": "measured", "note": "; ".join(note), "pairs_detail": result,
                       "machine_load": load.conditions})  # fmt: skip
    return rows


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _row_head(cfg: GridConfig, part: str, base: _Side, flops, first, slowdown: float, steps: int) -> dict[str, Any]:
    r, s = base.recipe, cfg.setting
    return {"model": cfg.model, "part": part, "setting": s.name, "precision": s.precision,
            "channels_last": s.channels_last, "compile": "default" if s.compiled else None, "img_size": cfg.img_size,
            "batch_size": base.batch_size, "recipe": f"{r.name} v{r.version}", "optimizer": r.optim.name,
            "ema_decay": r.train.ema_decay, "pairs": cfg.pairs, "steps_per_window": steps, "cap_s": cfg.cap_s,
            "first_call_s": round(first["setting"], 3), "base_first_call_s": round(first["base"], 3),
            "probe_slowdown": round(slowdown, 3), "gflop_per_step": flops[f"{part}_gflop_per_step"],
            "flops_method": flops["train_flops_method"] if part == "train" else "counted"}  # fmt: skip


def _figures(result, gflop: float, batch: int, ceiling, base_ceiling) -> dict[str, Any]:
    """Speed-up (pair by pair), img/s of both sides, their achieved GFLOP/s and its share of each side's ceiling."""
    r = result["ratio"]
    out = {"speedup_median": r["median"], "speedup_iqr": r["iqr"], "speedup_q1": r["q1"], "speedup_q3": r["q3"]}
    for key, side, ceil in (("", "setting", ceiling), ("base_", "baseline", base_ceiling)):
        img_s = result[side]
        gflops = float(np.median([v * gflop / batch for v in img_s["values"]]))
        out |= {f"{key}img_s_median": img_s["median"], f"{key}img_s_iqr": img_s["iqr"], f"{key}gflops_median": gflops,
                f"{key}ceiling_share": gflops / ceil["ceiling_gflops"]}  # fmt: skip
    return out | {"ceiling_gflops": ceiling["ceiling_gflops"], "ceiling_dtype": ceiling["ceiling_dtype"],
                  "ceiling_matmul_n": ceiling["ceiling_matmul_n"],
                  "base_ceiling_gflops": base_ceiling["ceiling_gflops"]}  # fmt: skip


def run_isolated(cfg: GridConfig, timeout: float) -> list[dict[str, Any]]:
    """:func:`measure_setting` in a fresh process (compile caches and allocator state do not carry over); a failure
    or a timeout becomes one row per part with an ``error``."""
    cmd = [sys.executable, "-m", "fer_bench.bench.cpu_grid", json.dumps(asdict(cfg))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ})
    except subprocess.TimeoutExpired:
        return skipped_rows(cfg, f"timed out after {timeout:.0f} s", status="error")
    if proc.returncode != 0:
        return skipped_rows(cfg, (proc.stderr.strip().splitlines() or ["no output"])[-1][:300], status="error")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def skipped_rows(cfg: GridConfig, note: str, status: str = "skipped") -> list[dict[str, Any]]:
    """One row per part for a setting that was not measured (skipped, or failed: ``status`` "error")."""
    s = cfg.setting
    return [{"model": cfg.model, "part": p, "setting": s.name, "precision": s.precision,
             "channels_last": s.channels_last, "compile": "default" if s.compiled else None, "status": status,
             "note": note} for p in PARTS]  # fmt: skip


def run_grid(models: list[str], base: GridConfig, out: Path, say: Callable[[str], None]) -> dict[str, Path]:
    """Every setting of every model, each in its own process; writes CSV, JSON and a markdown summary under ``out``
    (names encode the conditions) and returns their paths."""

    from fer_bench.utils.cpu_caps import probe

    caps, rows, started = probe(), [], time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for model in models:
        for setting in SETTINGS:
            cfg = replace(base, model=model, setting=setting)
            if setting.compiled and setting.precision == "amp_bf16" and not caps.bf16:
                rows += skipped_rows(cfg, SKIP_NO_BF16)
                continue
            say(f"{model} {setting.name} against {BASELINE.name}")
            rows += run_isolated(cfg, timeout=cfg.cap_s + 1800)  # + first calls: a compile takes minutes on 2 cores
            for r in rows[-2:]:
                say(f"  {r['part']}: {_said(r)}")
    return write_grid(rows, base, caps, out, started)


def _said(r: dict[str, Any]) -> str:
    if r.get("status") != "measured":
        return r.get("note") or str(r.get("status"))
    return (f"{r['speedup_median']:.2f}x (IQR {r['speedup_iqr']:.2f}), {r['img_s_median']:.1f} vs "
            f"{r['base_img_s_median']:.1f} img/s, first call {r['first_call_s']:.1f} s")  # fmt: skip


def grid_stem(base: GridConfig, caps, torch_version: str, batch_size: int) -> str:
    """``cpu-grid-48px-b64-fast-48-avx2-2t-pt2.14``: image size, batch, recipe, processor class, threads, torch."""
    pt = ".".join(torch_version.split("+")[0].split(".")[:2])
    return f"cpu-grid-{base.img_size}px-b{batch_size}-{base.recipe}-{caps.processor_class}-{caps.threads}t-pt{pt}"


def write_grid(rows: list[dict[str, Any]], base: GridConfig, caps, out: Path, started: str) -> dict[str, Path]:
    import pandas as pd
    import torch

    from fer_bench.recipes import load_recipe
    from fer_bench.utils import provenance

    batch = load_recipe(base.recipe).train.batch_size
    out.mkdir(parents=True, exist_ok=True)
    stem = out / grid_stem(base, caps, torch.__version__, batch)
    conditions = caps.as_dict() | {
        "torch": torch.__version__, "git_sha": provenance.git_sha(), "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(["fer-bench", *sys.argv[1:]]),
        "baseline": BASELINE.name, "pairs": base.pairs, "steps_per_window": base.steps, "cap_s": base.cap_s,
        "slow_probe_factor": base.slow, "img_size": base.img_size, "recipe": base.recipe,
    }  # fmt: skip
    facts = proposed_facts(rows, stem.name)
    paths = {ext: out / f"{stem.name}.{ext}" for ext in ("json", "csv", "md")}  # the stem holds dots (pt2.14)
    paths["json"].write_text(json.dumps({"conditions": conditions, "rule_entry": facts, "rows": rows}, indent=1) + "\n")
    flat = [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in rows]
    pd.DataFrame(flat).to_csv(paths["csv"], index=False, float_format="%.4g")
    paths["md"].write_text(summary_markdown(rows, conditions, facts))
    return paths


def proposed_facts(rows: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """What :data:`fer_bench.utils.cpu_caps.MEASURED` would hold for this processor class: per setting, the median over
    models of each model's training speed-up (measured rows only)."""

    def med(name: str) -> float | None:
        v = [r["speedup_median"] for r in rows if r.get("setting") == name and r.get("part") == "train"
             and r.get("status") == "measured"]  # fmt: skip
        return round(float(np.median(v)), 3) if v else None

    pick = lambda names: {p: v for p, n in names if (v := med(n)) is not None}  # noqa: E731
    return {"source": source, "amp_bf16": med("amp_bf16-nchw-eager"),
            "channels_last": pick((p, f"{p}-nhwc-eager") for p in ("fp32", "amp_bf16")),
            "compile": pick((p, f"{p}-nchw-compile") for p in ("fp32", "amp_bf16"))}  # fmt: skip


def summary_markdown(rows: list[dict[str, Any]], conditions: dict[str, Any], facts: dict[str, Any]) -> str:
    from fer_bench.utils.cpu_caps import CpuCaps, GridFacts, cpu_choice

    c = conditions
    lines = [f"# CPU settings grid: {c['img_size']} px, {c['recipe']} training step, against {c['baseline']}", "",
             f"Processor: {c['cpu_model']} ({c['processor_class']}); bf16 instructions: {c['bf16_instructions']}; "
             f"AMX: {c['amx']}; AVX-512: {c['avx512']}; torch capability {c['torch_capability']}; {c['threads']} "
             f"threads; torch {c['torch']}; git {c['git_sha']}; {c['started']} to {c['finished']}.", "",
             f"Each figure: {c['pairs']} interleaved pairs (setting, baseline) of {c['steps_per_window']}-step windows "
             f"in one process; speed-up = setting img/s / baseline img/s pair by pair, median (IQR). Cap: "
             f"{c['cap_s']:.0f} s of probes and pairs per setting; a setting the one-step probe found over "
             f"{c['slow_probe_factor']:g}x slower is timed in one-step windows; a part that would overrun the cap is "
             f"skipped; compiled bf16 is skipped without bf16 instructions. First call: the setting's first one-step "
             f"window (a compiled setting's holds its compile). Ceiling share: achieved GFLOP/s over a large matmul "
             f"at the setting's precision in the same process.", "",
             f"Command: `{c['command']}`", ""]  # fmt: skip
    head = (
        "| model | setting | speed-up (IQR) | img/s (IQR) | baseline img/s (IQR) | first call s | ceiling share "
        "| note |"
    )
    for part in PARTS:
        lines += [f"## {'Training step' if part == 'train' else 'Inference'}", "", head, "|---" * 8 + "|"]
        for r in (r for r in rows if r.get("part") == part):
            if r.get("status") == "measured":
                figs = (f"{r['speedup_median']:.2f} ({r['speedup_iqr']:.2f}) | {r['img_s_median']:.1f} "
                        f"({r['img_s_iqr']:.1f}) | {r['base_img_s_median']:.1f} ({r['base_img_s_iqr']:.1f}) | "
                        f"{r['first_call_s']:.1f} | {100 * r['ceiling_share']:.1f} % |")  # fmt: skip
            else:
                first = f"{r['first_call_s']:.1f}" if "first_call_s" in r else ""
                figs = f"{r.get('status')} | | | {first} | |"
            lines.append(f"| {r['model']} | {r['setting']} | {figs} {r.get('note') or ''} |")
        lines.append("")
    proc = CpuCaps(frozenset(c["cpu_flags"].split()), c["torch_capability"], c["threads"], c["cpu_model"])
    choice = cpu_choice(proc, {proc.processor_class: GridFacts(**facts)})
    lines += ["## What the rule makes of it", "",
              f"`fer_bench.utils.cpu_caps.MEASURED[{proc.processor_class!r}]` would be `GridFacts(**{facts})`; "
              f"with it, `precision: auto` on this processor class resolves to **{choice.precision}**, channels_last "
              f"**{choice.channels_last}**, compile **{choice.compile}** ({choice.why}).", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":  # the subprocess entry of run_isolated
    raw = json.loads(sys.argv[1])
    print(json.dumps(measure_setting(GridConfig(**(raw | {"setting": Setting(**raw["setting"])})))))
