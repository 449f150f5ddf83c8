"""Name -> (builder, schema) registries: how a config option maps to code.

Each swappable part (dataset, encoder, decoder, optimizer) registers its builder under the
name used in ``conf/<group>/<name>.yaml`` together with a dataclass schema. The schema is the
typed contract of that option: validation merges the YAML into it, so an unknown key or a
wrong type fails with the key's full name before anything is compiled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from aejax.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    name: str
    builder: F
    schema: type


class Registry(Generic[F]):
    """``key`` is the config field that picks the entry (``name``; datasets use ``kind``)."""

    def __init__(self, group: str, key: str = "name"):
        self.group = group
        self.key = key
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str, schema: type) -> Callable[[F], F]:
        def decorate(builder: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.group} {name!r} is registered twice")
            self._entries[name] = Entry(name, builder, schema)
            return builder

        return decorate

    def __getitem__(self, name: str) -> Entry[F]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise ConfigError(f"{self.group}.{self.key}", f"unknown {self.group} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)
