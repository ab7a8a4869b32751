"""Recipes as data: YAML files (with ``include:``) and ``--set a.b=v`` overrides over the schema defaults.

Precedence: CLI > YAML (the including file over what it includes) > the dataclass defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from fer_bench.recipes.schema import Recipe, check_values, without_unset_additions
from fer_bench.utils.errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parents[1] / "configs" / "recipes"  # ships inside the package


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def default_recipe(spec) -> str:
    """The recipe a backbone runs under when none is named: its registered default.

    Raises:
        ConfigError: that recipe file is missing (an install without the package's configs/). Never fall back to
            the schema defaults: they would run under the name "baseline" and be a different protocol.
    """
    if spec.default_recipe not in list_recipes():
        raise ConfigError(
            f"model {spec.name!r}: its default recipe {spec.default_recipe!r} is not in {RECIPE_DIR} (found: "
            f"{', '.join(list_recipes()) or 'none'}). Reinstall fer-bench (the recipes ship inside the package) "
            "or pass --recipe NAME|FILE."
        )
    return spec.default_recipe


def recipe_path(name_or_path: str) -> Path:
    """Resolve a built-in recipe name or a YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"recipe file {name_or_path!r} does not exist.")
        return p
    if (RECIPE_DIR / f"{name_or_path}.yaml").is_file():
        return RECIPE_DIR / f"{name_or_path}.yaml"
    close = difflib.get_close_matches(name_or_path, list_recipes(), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown recipe {name_or_path!r}.{hint} Run `fer-bench ls recipes` to list all, or pass a path.")


def load_recipe(
    name_or_path: str | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    origins: dict[str, str] | None = None,
) -> Recipe:
    """Build a validated :class:`Recipe` from defaults, a YAML file and overrides.

    A mistake in an override is reported against the override as the user wrote it (``--set KEY=VALUE``, or
    ``origins[KEY]`` for a flag that sets KEY, e.g. ``--epochs 0``) and the recipe it applies to, not the file.

    Example:
        >>> r = load_recipe(None, ["train.epochs=3", "optim.lr=0.01"])
        >>> r.train.epochs, r.optim.lr
        (3, 0.01)
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if name_or_path is not None:
        path = recipe_path(name_or_path)
        data, source = read_yaml(path), str(path)
    if isinstance(overrides, dict):  # from code (a search space's values): its errors name the recipe file
        sets, written = list(overrides.items()), [None] * len(overrides)
    else:
        sets, written = [_parse_set(s) for s in overrides or []], [f"--set {s}" for s in overrides or []]
    over = f"recipe {Path(source).stem}" if name_or_path is not None else "the default recipe"
    shown = {dotted: f"{(origins or {}).get(dotted, text)} (over {over})" if dotted in (origins or {}) or text
             else source for (dotted, _), text in zip(sets, written, strict=True)}  # fmt: skip
    for dotted, value in sets:
        from_dict(Recipe, _nested(dotted, value, shown[dotted]), shown[dotted])  # its key and type, on its own
        _set_dotted(data, dotted, value)
    recipe = from_dict(Recipe, data, source)
    problems = check_values(recipe)
    if problems:
        path, allowed = problems[0]
        value = _get_dotted(recipe, path)
        shown_value = f"{path} = {list(value) if isinstance(value, tuple) else value!r}"
        raise ConfigError(f"{shown.get(path, source)}: {shown_value} is not allowed; expected {allowed}.")
    return recipe


def read_yaml(path: Path, _stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe YAML with ``yaml.safe_load``, resolving ``include:`` (a path or list, relative to the file)."""
    path = path.resolve()
    if path in _stack:
        chain = " → ".join(str(p) for p in (*_stack, path))
        raise ConfigError(f"{path}: include cycle ({chain}). Remove one of the includes.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, found {type(data).__name__}.")
    includes = data.pop("include", [])
    merged: dict[str, Any] = {}
    for inc in [includes] if isinstance(includes, str) else includes:
        target = path.parent / inc
        if not target.is_file():
            raise ConfigError(f"{path}: include {inc!r} not found (looked at {target}).")
        _deep_merge(merged, read_yaml(target, (*_stack, path)))
    _deep_merge(merged, data)
    return merged


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)


def recipe_hash(recipe: Recipe) -> str:
    """Short sha256 of the resolved recipe without its seed: two seeds of one recipe share it.

    The seed is a row field of its own; a checkpoint checks both. (The protocol hash, fer_bench.experiment.protocol,
    also leaves out the name, description and split, and adds the data, size, weights and precision.)
    """
    d = without_unset_additions(recipe_to_dict(recipe))  # options added later hash only when set
    d["train"] = {k: v for k, v in d["train"].items() if k != "seed"}
    blob = json.dumps(d, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` → ``{'a.b': 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= flatten(v, key + ".") if isinstance(v, dict) else {key: v}
    return out


def from_dict(cls: type, data: dict[str, Any], source: str, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data`` strictly: unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'recipe'} must be a mapping, found {data!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.5)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else f" Valid keys: {', '.join(fields)}."
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'.{hint}")
        kwargs[key] = coerce(hints[key], value, source, f"{prefix}{key}")
    required = [n for n, f in fields.items() if f.default is f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in kwargs]
    if missing:  # e.g. a suite without `name:`; cls(**kwargs) would raise a bare TypeError
        raise ConfigError(f"{source}: missing key '{prefix}{missing[0]}'; it has no default, so the file must set it.")
    return cls(**kwargs)


def coerce(tp: Any, value: Any, source: str, path: str) -> Any:
    """``value`` (read from YAML or --set) checked and converted to the recipe field type ``tp``; a wrong value is one
    ConfigError naming ``source`` and the field's dotted ``path``."""
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, path + ".")
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, source, path)
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list | tuple):
            raise _type_error(source, path, value, _describe(tp))
        items = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(items) != len(value):
            raise _type_error(source, path, value, _describe(tp))
        paths = [f"{path}[{i}]" if dataclasses.is_dataclass(t) else path for i, t in enumerate(items)]
        return tuple(coerce(t, v, source, p) for t, v, p in zip(items, value, paths, strict=True))
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    if tp is float and _yaml11_misread_float(value):
        return float(value)
    raise _type_error(source, path, value, _describe(tp))


# NOTE: PyYAML reads YAML 1.1, whose floats need a dot and a signed exponent: `1e-5` (in a file, in --set, or from
# --lr via RUN_OVERRIDES, which writes str(1e-05)) arrives as the string "1e-5", though YAML 1.2 reads it as a float.
# Only such a string becomes a float, and only for a float field: a quoted "3" or "0.5" (a string that PyYAML itself
# would read as a number) stays a type error, as does "1e3" for an integer.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\.\d+|\d+(\.\d*)?)[eE][-+]?\d+")  # YAML 1.2 core schema, exponent form


def _yaml11_misread_float(value: Any) -> bool:
    """True for a string that YAML 1.2 reads as a float written with an exponent and YAML 1.1 leaves as a string."""
    return (isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value) is not None
            and isinstance(yaml.safe_load(value), str))  # fmt: skip


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        return f"a list of {args[0].__name__}" if args[-1] is Ellipsis else f"a list of {len(args)} numbers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _type_error(source: str, path: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{source}: {path} = {value!r} has the wrong type; expected {expected}.")


def _parse_set(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. --set optim.lr=0.01")
    if not raw.strip():  # a slip, never a request: none is written null
        raise ConfigError(f"--set {item}: no value after '='; give one, or write {key.strip()}=null for none.")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        why = str(getattr(exc, "problem", None) or exc.__class__.__name__)
        raise ConfigError(f"--set {item}: {raw.strip()!r} is not a value ({why}); quote text, write lists as "
                          "[a, b].") from None  # fmt: skip


def _nested(dotted: str, value: Any, shown: str) -> dict[str, Any]:
    """``"a.b", 1`` → ``{"a": {"b": 1}}``."""
    if not all(dotted.split(".")):
        raise ConfigError(f"{shown}: {dotted!r} is not a dotted key; write e.g. optim.lr.")
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is a value, not a section.")
    node[leaf] = value


def _get_dotted(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _deep_merge(base: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v
