"""Name -> constructor registries filled by decorators.

A config names components (`generator: resnet`); an unknown name is an error that lists
the registered choices, and CLI choices come from `Registry.names()`.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from facecycle.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of named constructors for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
