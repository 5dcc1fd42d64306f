"""A thread-safe LRU cache of deserialized objects, local to one store object."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ['LRUCache']

_MISSING = object()


class LRUCache:
    """Keep the ``maxsize`` most recently used objects.

    ``maxsize=0`` disables caching: every lookup misses and nothing is kept,
    so a workflow that must always see the newest value can opt out entirely.
    """

    def __init__(self, maxsize: int = 16) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        """Return the cached object for ``key`` (marking it recently used), else ``default``."""
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                return default
            self._data.move_to_end(key)
            return value

    def set(self, key: str, value: Any) -> None:
        """Cache ``value`` under ``key``, dropping the least recently used entry when full."""
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def evict(self, key: str) -> None:
        """Forget ``key`` if cached."""
        with self._lock:
            self._data.pop(key, None)

    def exists(self, key: str) -> bool:
        """Return whether ``key`` is cached (without marking it used)."""
        with self._lock:
            return key in self._data

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
