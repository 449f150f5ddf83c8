"""Name -> (builder, schema) registries, and ``_target_`` paths: how a config option maps to code.

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
TARGET = "_target_"  # Hydra's key for a dotted path to a callable: the module path is the registry


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


def locate(target: str, key: str) -> Callable[..., Any]:
    """The object a ``_target_`` names (``package.module.Name``, or ``package.module.Class.method``);
    a failure is a ConfigError naming the key, the module and what is missing in it."""
    import importlib

    parts = str(target).split(".")
    error: BaseException | None = None
    for cut in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module
        module = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as e:
            missing_itself = e.name is not None and (module == e.name or module.startswith(e.name + "."))
            if not missing_itself:  # the module is there, but something it imports is not
                raise ConfigError(key, f"importing {module!r} for {target!r} failed: {e}") from None
            error = e
            continue
        except Exception as e:  # the module is there but fails while importing
            raise ConfigError(key, f"importing {module!r} for {target!r} failed: {type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}") from None
        for i, attr in enumerate(parts[cut:]):
            if not hasattr(obj, attr):
                raise ConfigError(key, f"{'.'.join(parts[:cut + i])!r} has no {attr!r} (from {target!r})")
            obj = getattr(obj, attr)
        if not callable(obj):
            raise ConfigError(key, f"{target!r} is not callable")
        return obj
    detail = f"{type(error).__name__}: {error}" if error else "give a dotted path, package.module.Name"
    raise ConfigError(key, f"cannot import {target!r}: {detail} (is its package installed or on PYTHONPATH?)")
