"""A small generic registry: one decorator registers, a duplicate is an error, unknown names get suggestions."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fer_bench.utils.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps snake_case names to entries of one kind (backbones, datasets, recipes...).

    Example:
        >>> DATASETS = Registry[str]("dataset", list_hint="fer-bench ls datasets")
        >>> _ = DATASETS.add("synthetic", "built-in faces")
        >>> DATASETS.get("synthetic")
        'built-in faces'
    """

    def __init__(self, kind: str, *, list_hint: str) -> None:
        self.kind = kind
        self.list_hint = list_hint
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice; registry names must be unique")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> T:
        """Take ``name`` out again (a test's temporary entry); unknown names are an error."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Run `{self.list_hint}` to list all."

    def names(self, pattern: str = "*", *, ordered: bool = False) -> list[str]:
        """The names matching ``pattern``, sorted; ``ordered``: in the order they were registered."""
        names = [n for n in self._entries if fnmatch.fnmatch(n, pattern)]
        return names if ordered else sorted(names)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
