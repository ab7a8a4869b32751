"""`fer-bench tune`: Optuna search over recipe values. This is the only module that imports optuna.

A study lives in a storage (by default a journal file in the output folder, so re-running the same command
resumes it; ``postgresql://…`` for several machines). Trial 0 of a new study is the base recipe's own values;
then seeded multivariate TPE, a median pruner fed every epoch (none before half the epochs), the validation metric
as objective (the test split is never evaluated), one MLflow child run per trial.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from fer_bench.experiment.tracking import KIND_TAG
from fer_bench.experiment.tune_space import dig, nested_override, read_space
from fer_bench.recipes import load_recipe, recipe_to_dict
from fer_bench.utils.errors import ConfigError


@dataclass(frozen=True)
class TuneJob:
    """Everything a worker process needs (picklable)."""

    search: Path
    base_recipe: str
    model: str
    dataset: str
    data_dir: str | None
    overrides: tuple[str, ...]
    out: Path
    storage: str | None
    trials: int  # trials this invocation adds to the study
    seed: int = 0
    tracking_uri: str | None = None
    experiment: str = "fer-bench-tune"
    track: bool = True
    cache_dir: str | None = None
    device: str = "auto"  # the device this worker trains on (tune: one per worker, round-robin over the GPUs)


def base_values(job: TuneJob, params: dict[str, dict]) -> dict[str, Any]:
    """The base recipe's own value for each searched key that lies inside its distribution (others are sampled)."""
    base = recipe_to_dict(load_recipe(job.base_recipe, list(job.overrides)))
    out = {}
    for key, spec in params.items():
        path, idx = key[:-1].split("[") if key.endswith("]") else (key, None)
        value = dig(base, path)
        value = value[int(idx)] if idx is not None else value
        if spec["type"] == "categorical":
            inside = value in spec["choices"]
        else:
            inside = isinstance(value, int | float) and spec["low"] <= value <= spec["high"]
            inside = inside and (spec["type"] == "float" or float(value).is_integer())
        if inside:
            out[key] = value
    return out


def suggest(trial, params: dict[str, dict]) -> dict[str, Any]:
    out = {}
    for key, spec in params.items():
        if spec["type"] == "float":
            out[key] = trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False))
        elif spec["type"] == "int":
            out[key] = trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            out[key] = trial.suggest_categorical(key, spec["choices"])
    return out


def trial_recipe(job: TuneJob, values: dict[str, Any]):
    """The base recipe (with the job's overrides) plus one trial's values."""
    base = recipe_to_dict(load_recipe(job.base_recipe, list(job.overrides)))
    overrides: dict[str, Any] = {}
    for key, value in values.items():
        overrides |= nested_override(key, value, base)
    return load_recipe(job.base_recipe, [*job.overrides, *(f"{k}={_yaml(v)}" for k, v in overrides.items())])


def _yaml(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _storage(job: TuneJob):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if job.storage and "://" in job.storage:
        if job.storage.startswith("sqlite"):
            raise ConfigError("--storage sqlite:// breaks with parallel workers; use the journal file (default) or "
                              "postgresql://USER:PASS@HOST/DB.")  # fmt: skip
        return optuna.storages.RDBStorage(job.storage)
    path = Path(job.storage) if job.storage else job.out / "study.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def create_study(job: TuneJob, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(seed=job.seed, multivariate=True)
    # No pruning before half the epochs: after one epoch of a short cosine schedule every trial scores alike.
    epochs = load_recipe(job.base_recipe, list(job.overrides)).train.epochs
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, (epochs + 1) // 2))
    return optuna.create_study(study_name=name, storage=_storage(job), sampler=sampler, pruner=pruner,
                               direction="maximize", load_if_exists=True)  # fmt: skip


def objective_fn(job: TuneJob, space: dict, data, tracker):
    import optuna

    from fer_bench.experiment.plan import RunOptions
    from fer_bench.experiment.runner import run_model

    metric = space.get("objective", "val_macro_f1")

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, space["params"])
        recipe = trial_recipe(job, values)
        recipe = replace(recipe, name=f"{recipe.name}-t{trial.number}")
        print(f"== trial {trial.number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()), file=sys.stderr)
        opts = RunOptions(out=job.out / "trials", device=job.device, progress=False, evaluate_test=False)
        with tracker.run(f"trial-{trial.number}", nested=True, tags={KIND_TAG: "trial"}) as run_id:
            if run_id:
                trial.set_user_attr("mlflow_run_id", run_id)
            # MLflow keys allow no brackets: augment.crop_scale[0] is logged as augment.crop_scale.0
            params = {k.replace("[", ".").replace("]", ""): v for k, v in trial.params.items()}
            tracker.log_params({"trial_number": trial.number, **params})

            def report(entry: dict[str, Any]) -> None:
                tracker.log_epoch(entry)
                trial.report(entry[metric], step=entry["epoch"])
                if trial.should_prune():
                    tracker.set_tag("optuna.state", "PRUNED")
                    raise optuna.TrialPruned(f"pruned at epoch {entry['epoch']}")

            try:
                row = run_model(job.model, recipe, data, opts, on_epoch=report)
            except optuna.TrialPruned:
                raise
            except Exception:
                tracker.set_tag("optuna.state", "FAIL")
                raise
            value = max(h[metric] for h in row["history"])
            print(f"   trial {trial.number}: {metric} {value:.2f}", file=sys.stderr)
            tracker.set_tag("optuna.state", "COMPLETE")
            tracker.log_metrics({"objective": value})
        return value

    return objective


def run_worker(job: TuneJob, study_name: str, target_total: int) -> None:
    """One worker: adds trials until the study holds ``target_total`` finished or pruned trials."""
    import optuna

    from fer_bench.data import load_dataset
    from fer_bench.experiment.tracking import MlflowTracker, NullTracker

    if job.device.startswith("cuda:"):  # NOTE: the worker's own GPU is its current one too, so that nothing it
        import torch  # allocates without naming a device lands on (and holds a context on) GPU 0

        torch.cuda.set_device(torch.device(job.device))
    space = read_space(job.search)
    data = load_dataset(job.dataset, job.data_dir, job.cache_dir)
    study = create_study(job, study_name)
    tracker = MlflowTracker(job.tracking_uri, job.experiment) if job.track else NullTracker()
    with tracker.run(f"study-{study_name}", tags={KIND_TAG: "study"}):
        study.optimize(
            objective_fn(job, space, data, tracker),
            callbacks=[optuna.study.MaxTrialsCallback(target_total, states=None)],
            catch=(),
        )


def worker_devices(workers: int, gpus: Sequence[str], visible: Sequence[str]) -> list[str]:
    """The device of each of ``workers`` workers: round-robin over ``gpus`` (``CUDA_VISIBLE_DEVICES`` ids, as
    ``fer-bench run --gpus`` takes them), each named by its index among the ``visible`` ids; all ``cpu`` without one.

    Example:
        >>> worker_devices(3, ["1", "3"], ["0", "1", "3"])
        ['cuda:1', 'cuda:2', 'cuda:1']
    """
    if not gpus:
        return ["cpu"] * workers
    return [f"cuda:{list(visible).index(gpus[k % len(gpus)])}" for k in range(workers)]


def plan_devices(workers: int, gpus: str | None, device: str = "auto") -> list[str]:
    """``tune --workers N [--gpus I,…]``: each worker's device; the GPUs are checked as ``run --jobs`` checks them
    (every visible one by default, i.e. ``torch.cuda.device_count()`` of them; none with ``--device cpu``)."""
    from fer_bench.utils.devices import job_gpus, visible_gpus

    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected the number of worker processes, 1 or more.")
    chosen = job_gpus(gpus, device)
    return worker_devices(workers, chosen, visible_gpus() if chosen else [])


def tune(job: TuneJob, workers: int = 1, devices: Sequence[str] | None = None) -> dict[str, Any]:
    """Add ``job.trials`` trials to the study (over ``workers`` processes, worker k on ``devices[k]``, by default
    :func:`plan_devices`: each on its own GPU while there are enough); write the best recipe."""
    devices = list(devices) if devices is not None else plan_devices(workers, None)
    name = study_name(job)
    study = create_study(job, name)
    target = len(study.trials) + job.trials
    if not study.trials:  # trial 0 is the base recipe itself, so the best is never below it on the objective
        study.enqueue_trial(base_values(job, read_space(job.search)["params"]), user_attrs={"base_recipe": True})
    if workers <= 1:
        run_worker(replace(job, device=devices[0]), name, target)
    else:
        launch_workers(job, name, target, devices[:workers])
    study = create_study(job, name)
    return write_best(job, study)


def launch_workers(job: TuneJob, name: str, target: int, devices: Sequence[str]) -> None:
    """One spawned process per device, each running :func:`run_worker` on its own device; waits for them all."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(replace(job, device=d), name, target)) for d in devices]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def study_name(job: TuneJob) -> str:
    space = read_space(job.search)
    return f"{space.get('name', job.search.stem)}-{job.model}-{job.base_recipe}"


def best_recipe(job: TuneJob, study):
    """The base recipe with the best completed trial's values, named ``<base>-tuned``."""
    if not any(t.state.name == "COMPLETE" for t in study.trials):
        raise ConfigError(f"study {study.study_name!r} has no completed trial yet; run more trials.")
    best = study.best_trial
    recipe = trial_recipe(job, best.params)
    return replace(recipe, name=f"{recipe.name}-tuned", description=f"best of study {study.study_name} "
                   f"(trial {best.number}, {space_metric(job)} {best.value:.2f})")  # fmt: skip


def write_best(job: TuneJob, study) -> dict[str, Any]:
    recipe, best = best_recipe(job, study), study.best_trial
    path = job.out / "best-recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    return {"study": study.study_name, "trials": len(study.trials), "best_trial": best.number,
            "best_value": best.value, "best_params": best.params, "best_recipe": str(path)}  # fmt: skip


def space_metric(job: TuneJob) -> str:
    return read_space(job.search).get("objective", "val_macro_f1")


def report(job: TuneJob) -> str:
    """Best trials and parameter importances as text; history and importance plots as PNG in ``job.out``."""
    import optuna
    from tabulate import tabulate

    space = read_space(job.search)
    name = study_name(job)
    study = create_study(job, name)
    done = sorted((t for t in study.trials if t.value is not None), key=lambda t: -t.value)
    states = {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    lines = [f"study {name}: {len(study.trials)} trials {states}"]
    lines.append(tabulate([[t.number, f"{t.value:.2f}", *(_fmt(t.params.get(k)) for k in space["params"])]
                           for t in done[:5]], headers=["trial", "objective", *space["params"]]))  # fmt: skip
    if len(done) >= 2:
        imp = optuna.importance.get_param_importances(study)
        lines.append(tabulate([[k, f"{v:.3f}"] for k, v in imp.items()], headers=["param", "importance"]))
        _plots(study, job.out)
    return "\n\n".join(lines)


def final_compare(job: TuneJob, seeds: list[int]) -> str:
    """The best recipe against the base recipe on the test split, each with every seed in ``seeds``, on the
    search's training budget (the job's overrides: epochs, subset, size).

    The choice is fixed (the study's best trial, read once) before any run touches the test split. Runs go to
    ``OUT/final/<base|tuned>/<run folder>/`` (:func:`fer_bench.experiment.plan.run_id`: the folder names the
    protocol): a finished one is read back only under the same settings, an interrupted one resumes from its last epoch.
    Writes ``OUT/final.md`` and ``OUT/final.csv`` (mean ± std over seeds, per-class F1).
    """
    import pandas as pd

    from fer_bench.data import load_dataset
    from fer_bench.experiment.tracking import MlflowTracker, NullTracker
    from fer_bench.report import leaderboard as lb

    name = study_name(job)
    study = create_study(job, name)
    recipes = {"base": trial_recipe(job, {}), "tuned": best_recipe(job, study)}
    data = load_dataset(job.dataset, job.data_dir, job.cache_dir)
    tracker = MlflowTracker(job.tracking_uri, job.experiment) if job.track else NullTracker()
    rows: dict[str, list[dict]] = {label: [] for label in recipes}
    with tracker.run(f"final-{name}", tags={KIND_TAG: "tune-final"}):
        for label, recipe in recipes.items():
            for seed in seeds:
                recipe_s = replace(recipe, train=replace(recipe.train, seed=seed))
                out = job.out / "final" / label
                rows[label].append(_final_row(job, label, recipe_s, data, out, tracker, name))
    # NOTE: one line per label: when the best trial is the base's own values both share a protocol and the
    # leaderboard's grouping would merge them into one line.
    # (looked up by label, not by the table's recipe name, which carries the recipe's version)
    agg = pd.concat([lb.aggregate(lb.frame_from_rows(r)).assign(_label=label) for label, r in rows.items()],
                    ignore_index=True)  # fmt: skip
    agg = agg.sort_values(["macro_f1", "top1"], ascending=False, kind="stable", ignore_index=True)
    mean, agg = agg.set_index("_label"), agg.drop(columns="_label")
    table = lb.render(agg, "md", per_class=True)
    (job.out / "final.csv").write_text(lb.render(agg, "csv", per_class=True))
    base, tuned = recipes["base"].name, recipes["tuned"].name
    delta = {m: mean.loc["tuned", m] - mean.loc["base", m] for m in ("macro_f1", "top1")}
    head = (f"{name}: the best trial's recipe ({tuned}) against the base ({base}) on the test split, "
            f"{len(seeds)} seeds each ({', '.join(map(str, seeds))}); tuned − base: macro-F1 "
            f"{delta['macro_f1']:+.2f}, top-1 {delta['top1']:+.2f} points")  # fmt: skip
    (job.out / "final.md").write_text(f"{head}\n\n{table}\n")
    return f"{head}\n\n{table}"


def _final_row(job: TuneJob, label: str, recipe, data, out: Path, tracker, study: str) -> dict[str, Any]:
    """One final run in ``out``: its finished row read back from its run folder (named by its protocol, so only a
    run of the same settings is reused), or trained (resuming a killed one)."""

    from fer_bench.experiment.plan import RunOptions, resolve_plan
    from fer_bench.experiment.runner import run_model

    opts = RunOptions(out=out, resume=True)
    plan = resolve_plan(job.model, recipe, data, opts)  # its folder is named by its protocol
    if (done := plan.run_dir / "result.json").is_file():
        return json.loads(done.read_text())
    print(f"== final: {recipe.name} seed {recipe.train.seed}", file=sys.stderr)
    tags = {KIND_TAG: "model", "fer_bench.tune_final": label, "fer_bench.study": study}
    with tracker.run(f"{recipe.name}-s{recipe.train.seed}", nested=True, tags=tags):
        row = run_model(job.model, recipe, data, opts, on_epoch=tracker.log_epoch, plan=plan)
        tracker.log_result(row, out / row["run_id"], recipe_to_dict(recipe))
    return row


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _plots(study, out: Path) -> None:
    from fer_bench.report.mpl import pyplot

    plt = pyplot()
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    for fn, fname in ((plot_optimization_history, "history.png"), (plot_param_importances, "importance.png")):
        ax = fn(study)
        ax.figure.set_size_inches(8, 5)
        ax.figure.tight_layout()
        ax.figure.savefig(out / fname, dpi=120)
        plt.close(ax.figure)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `fer-bench tune`")
