"""What a dataset module registers about itself (:class:`DatasetSpec`), and the registry it goes into.

A dataset is one module (``fer_bench/data/<name>.py``) that calls :func:`register` once with everything about
it: class names in its own order, channels, native size, split names and sizes, hard or soft labels, its reader
and its citation. Nothing outside that module assumes its classes, size or channels; ``fer-bench ls datasets``
prints these fields.

A dataset may take options after a colon: ``--dataset ferplus:labels=crossentropy``,
``--dataset folder:classes=angry+happy+sad`` (several: ``name:key=value,key=value``). Each option is declared
with its allowed values (or ``None`` for free text) and its default; the default is what the bare name loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fer_bench.utils.errors import ConfigError
from fer_bench.utils.registry import Registry

if TYPE_CHECKING:
    from fer_bench.data.base import FerData

# reader(data_dir or None, cache_dir, options) -> FerData
Reader = Callable[[Path | None, Path, Mapping[str, str]], "FerData"]


@dataclass(frozen=True)
class Option:
    """A dataset option: its default and allowed values (``choices`` None: any text that ``check`` accepts).

    ``check(value)`` returns what is wrong with a non-default value (e.g. "expected an integer >= 1"), or None.
    """

    default: str
    choices: tuple[str, ...] | None = None
    help: str = ""
    check: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
        name: registry name (``--dataset NAME``).
        reader: ``reader(data_dir, cache_dir, options) -> FerData``.
        description: one line for ``fer-bench ls datasets``.
        classes: class names in the dataset's own label order; None when they come from the data (``folder``).
        channels: channels of the in-memory store (1 grey, 3 RGB); None when they come from the data.
        size: native image side in pixels (the store keeps it); None when it comes from the data.
        splits: our split id (train, public, private, test) -> the dataset's own name for it.
        split_sizes: images per split id when known without reading the data (default options).
        labels: ``hard`` or ``hard|soft`` (an option selects vote distributions for training).
        citation: where the data and its protocol come from.
        needs_data_dir: False for generated data.
        get: how to obtain the data (said when --data-dir is missing or wrong).
        options: name -> :class:`Option`.
        reads_file: --data-dir may name a file (a CSV); else it must be a folder.
    """

    name: str
    reader: Reader
    description: str
    classes: tuple[str, ...] | None
    channels: int | None
    size: int | None
    splits: Mapping[str, str]
    split_sizes: Mapping[str, int] = field(default_factory=dict)
    labels: str = "hard"
    citation: str = ""
    needs_data_dir: bool = True
    get: str = ""
    options: Mapping[str, Option] = field(default_factory=dict)
    reads_file: bool = False

    def parse_options(self, text: str) -> dict[str, str]:
        """``"k=v,k2=v2"`` -> every option's value (defaults filled in); an unknown key or value is a ConfigError.

        Example:
            >>> DATASETS.get("ferplus").parse_options("labels=crossentropy")["labels"]
            'crossentropy'
        """
        values = {k: o.default for k, o in self.options.items()}
        items = text.split(",") if text.strip() else []
        for item in items:
            key, eq, value = item.partition("=")
            if not item.strip():  # "k=v,,k2=v2" or a trailing comma: a slip, never a request
                raise ConfigError(f"--dataset {self.name}:{text}: an empty option between commas; write "
                                  f"--dataset {self.name}:KEY=VALUE,KEY=VALUE.")  # fmt: skip
            if eq and not value.strip():
                raise ConfigError(f"--dataset {self.name}:{text}: {key.strip()}= has no value; give one, or leave "
                                  f"{key.strip()} out for its default.")  # fmt: skip
            opt = self.options.get(key.strip())
            if opt is None or not eq:
                known = ", ".join(f"{k}=…" for k in self.options) or "none"
                raise ConfigError(
                    f"--dataset {self.name}:{text}: {item!r} is not an option of {self.name} (options: {known}). "
                    f"Write --dataset {self.name}:KEY=VALUE."
                )
            if opt.choices is not None and value.strip() not in opt.choices:
                raise ConfigError(
                    f"--dataset {self.name}:{text}: {key}={value!r} is not one of {', '.join(opt.choices)}."
                )
            if opt.check is not None and value.strip() != opt.default and (problem := opt.check(value.strip())):
                raise ConfigError(f"--dataset {self.name}:{text}: {key.strip()}={value.strip()!r}: {problem}.")
            values[key.strip()] = value.strip()
        return values


DATASETS: Registry[DatasetSpec] = Registry("dataset", list_hint="fer-bench ls datasets")


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset module's spec to :data:`DATASETS` (a name registered twice is an error)."""
    return DATASETS.add(spec.name, spec)


def split_name(text: str) -> tuple[str, str]:
    """``"ferplus:labels=crossentropy"`` -> ``("ferplus", "labels=crossentropy")``."""
    name, colon, options = text.partition(":")
    if colon and not options.strip():
        raise ConfigError(f"--dataset {text}: nothing after the colon; write --dataset {name.strip()} (its defaults) "
                          f"or --dataset {name.strip()}:KEY=VALUE.")  # fmt: skip
    return name.strip(), options.strip()


def run_name(spec: DatasetSpec, options: Mapping[str, str]) -> str:
    """The dataset's name in rows and run folders: the registry name, plus every option that is not its default.

    Example:
        >>> run_name(DATASETS.get("ferplus"), {"labels": "crossentropy", "fer2013": ""})
        'ferplus-crossentropy'
    """
    changed = [v for k, v in options.items() if v != spec.options[k].default and k not in PATH_OPTIONS]
    return "-".join([spec.name, *(v.replace("+", "-").replace("/", "-") for v in changed)])


def positive_int(value: str) -> str | None:
    """An :class:`Option` check: an integer >= 1."""
    return None if value.isascii() and value.isdigit() and int(value) >= 1 else "expected an integer >= 1"


def existing_path(value: str) -> str | None:
    """An :class:`Option` check: a file or folder that exists."""
    return None if Path(value).expanduser().exists() else "no such file or folder"


# Options that say where files are, not what the data is: they never enter the dataset's name.
PATH_OPTIONS = frozenset({"fer2013"})
