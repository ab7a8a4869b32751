"""A search space file of `fer-bench tune`: its distributions, each checked against the recipe schema.

A space names dotted recipe paths (``optim.lr``, ``augment.crop_scale[0]``) with a distribution each; every bound
or choice must make a valid recipe at its path, so a bad space is refused before any trial runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fer_bench.recipes import coerce, load_recipe, read_yaml, recipe_to_dict
from fer_bench.utils.errors import ConfigError

DISTRIBUTIONS = ("float", "int", "categorical")
SPACE_KEYS = ("name", "description", "objective", "params")
OBJECTIVES = ("val_macro_f1", "val_top1")  # maximised; validation only, so a search never sees the test split
SPEC_KEYS = {"float": ("type", "low", "high", "log"), "int": ("type", "low", "high", "log"),
             "categorical": ("type", "choices")}  # fmt: skip


def read_space(path: Path) -> dict[str, Any]:
    """A search space YAML, checked fully: ``params`` keyed by dotted recipe paths that exist in the schema, each
    with a distribution whose bounds (or every choice) the recipe accepts at that path (type and range)."""
    space = read_yaml(path)
    _check_keys(path, "", space, SPACE_KEYS)
    if space.get("objective", OBJECTIVES[0]) not in OBJECTIVES:
        raise ConfigError(f"{path}: objective = {space['objective']!r}; expected one of {', '.join(OBJECTIVES)}.")
    params = space.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{path}: a search space needs `params:` with at least one dotted recipe path.")
    space["params"] = {key: _check_param(path, str(key), spec) for key, spec in params.items()}
    return space


def _check_keys(path: Path, prefix: str, data: dict, allowed: tuple[str, ...]) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(f"{path}: unknown key '{prefix}{unknown[0]}'. Valid keys: {', '.join(allowed)}.")


def _check_param(path: Path, key: str, spec: Any) -> dict[str, Any]:
    """One distribution: its keys, its bounds (numbers of its type, low < high, low > 0 on a log scale) or
    choices, and each bound or choice set at ``key`` in a recipe (the path exists, the type and range fit)."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{path}: params.{key}: type must be one of {', '.join(DISTRIBUTIONS)}.")
    _check_keys(path, f"params.{key}.", spec, SPEC_KEYS[kind])
    if kind == "categorical":
        values = spec.get("choices")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: params.{key}.choices must be a non-empty list.")
    else:
        tp = int if kind == "int" else float
        missing = [b for b in ("low", "high") if b not in spec]
        if missing:
            raise ConfigError(f"{path}: params.{key} needs low and high (missing {', '.join(missing)}).")
        spec = {**spec, **{b: coerce(tp, spec[b], str(path), f"params.{key}.{b}") for b in ("low", "high")}}
        spec["log"] = coerce(bool, spec.get("log", False), str(path), f"params.{key}.log")
        if not spec["low"] < spec["high"] or (spec["log"] and spec["low"] <= 0):
            need = "0 < low < high (log scale)" if spec["log"] else "low < high"
            raise ConfigError(f"{path}: params.{key}: low = {spec['low']}, high = {spec['high']}; expected {need}.")
        values = [spec["low"], spec["high"]]
    for value in values:
        _check_in_recipe(path, key, value)
    return spec


def _check_in_recipe(path: Path, key: str, value: Any) -> None:
    """``value`` at ``key`` must make a valid recipe: the path exists, and the schema takes the value."""
    try:
        load_recipe(None, nested_override(key, value))
    except ConfigError as exc:
        why = str(exc).removeprefix("<defaults>: ")
        raise ConfigError(f"{path}: params.{key} = {value!r} does not fit the recipe: {why}") from None
    except (KeyError, IndexError, TypeError, ValueError):  # a [i] on a path that is no list, or out of its range
        raise ConfigError(f"{path}: params.{key}: no such list element in the recipe; [i] picks an element of a "
                          f"list value, e.g. augment.crop_scale[0].") from None  # fmt: skip


def nested_override(key: str, value: Any, base: dict | None = None) -> dict[str, Any]:
    """``augment.crop_scale[0]`` → {"augment.crop_scale": [value, <base's second element>]}."""
    if key.endswith("]"):
        path, idx = key[:-1].split("[")
        current = list(dig(base or recipe_to_dict(load_recipe(None)), path))
        current[int(idx)] = value
        return {path: current}
    return {key: value}


def dig(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d
