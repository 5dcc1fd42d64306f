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
        # Keys being read from the store right now -> [readers, invalidations].
        self._reads: dict[str, list[int]] = {}

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
        """Forget ``key`` if cached, and void reads of it that are in flight.

        Call it whenever ``key`` is written or deleted: a read that started
        before the write must not put the old value back (see :meth:`begin_read`).
        """
        with self._lock:
            self._data.pop(key, None)
            state = self._reads.get(key)
            if state is not None:
                state[1] += 1

    def begin_read(self, key: str) -> int:
        """Announce a store read of ``key``; pass the token to :meth:`end_read`."""
        with self._lock:
            state = self._reads.setdefault(key, [0, 0])
            state[0] += 1
            return state[1]

    def end_read(self, key: str, token: int, value: Any, *, store: bool = True) -> None:
        """Finish a read: cache ``value`` only if ``key`` was not invalidated meanwhile."""
        with self._lock:
            state = self._reads[key]
            fresh = state[1] == token
            state[0] -= 1
            if state[0] == 0:
                del self._reads[key]
            if not (store and fresh) or self.maxsize <= 0:
                return
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

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
