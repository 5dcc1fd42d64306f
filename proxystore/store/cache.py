"""A thread-safe LRU cache of deserialized objects, local to one store object.

The cache is bounded twice: by the number of objects (``maxsize``) and by
their stored size in bytes (``maxbytes``), so a few large objects do not stay
resident just because the count bound is far away. Each entry remembers the
*version* of the stored value it came from (a token the backend hands out), so
``is_cached(strict=True)`` can tell that another client overwrote the key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any
from typing import NamedTuple

__all__ = ['LRUCache']

_MISSING = object()


class _Entry(NamedTuple):
    value: Any
    nbytes: int
    version: Hashable | None


class LRUCache:
    """Keep the most recently used objects within ``maxsize`` objects and ``maxbytes`` bytes.

    ``maxsize=0`` disables caching: every lookup misses and nothing is kept,
    so a workflow that must always see the newest value can opt out entirely.
    ``maxbytes=None`` means no byte bound. An object larger than ``maxbytes``
    is never cached (it would evict everything else and still not fit).
    """

    def __init__(self, maxsize: int = 16, maxbytes: int | None = None) -> None:
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        # Keys being read from the store right now -> [readers, invalidations].
        self._reads: dict[str, list[int]] = {}

    @property
    def nbytes(self) -> int:
        """Stored size of the cached objects, in bytes."""
        return self._nbytes

    def get(self, key: str, default: Any = None) -> Any:
        """Return the cached object for ``key`` (marking it recently used), else ``default``."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return default
            self._data.move_to_end(key)
            return entry.value

    def version(self, key: str) -> Hashable | None:
        """The version token of the cached value of ``key`` (``None`` if not cached)."""
        with self._lock:
            entry = self._data.get(key)
            return None if entry is None else entry.version

    def set(self, key: str, value: Any, *, nbytes: int = 0, version: Hashable = None) -> None:
        """Cache ``value`` under ``key``, dropping least recently used entries to fit."""
        with self._lock:
            self._insert(key, _Entry(value, nbytes, version))

    def _insert(self, key: str, entry: _Entry) -> None:
        if self.maxsize <= 0 or (self.maxbytes is not None and entry.nbytes > self.maxbytes):
            self._drop(key)
            return
        self._drop(key)
        self._data[key] = entry
        self._nbytes += entry.nbytes
        while len(self._data) > self.maxsize or (
            self.maxbytes is not None and self._nbytes > self.maxbytes
        ):
            _, old = self._data.popitem(last=False)
            self._nbytes -= old.nbytes

    def _drop(self, key: str) -> None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self._nbytes -= entry.nbytes

    def evict(self, key: str) -> None:
        """Forget ``key`` if cached, and void reads of it that are in flight.

        Call it whenever ``key`` is written or deleted: a read that started
        before the write must not put the old value back (see :meth:`begin_read`).
        """
        with self._lock:
            self._drop(key)
            state = self._reads.get(key)
            if state is not None:
                state[1] += 1

    def begin_read(self, key: str) -> int:
        """Announce a store read of ``key``; pass the token to :meth:`end_read`."""
        with self._lock:
            state = self._reads.setdefault(key, [0, 0])
            state[0] += 1
            return state[1]

    def end_read(
        self,
        key: str,
        token: int,
        value: Any,
        *,
        store: bool = True,
        nbytes: int = 0,
        version: Hashable = None,
    ) -> None:
        """Finish a read: cache ``value`` only if ``key`` was not invalidated meanwhile."""
        with self._lock:
            state = self._reads[key]
            fresh = state[1] == token
            state[0] -= 1
            if state[0] == 0:
                del self._reads[key]
            if store and fresh:
                self._insert(key, _Entry(value, nbytes, version))

    def exists(self, key: str) -> bool:
        """Return whether ``key`` is cached (without marking it used)."""
        with self._lock:
            return key in self._data

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()
            self._nbytes = 0

    def reset_after_fork(self) -> None:
        """Give a forked child a fresh lock (the parent's may have been held by a thread)."""
        self._lock = threading.Lock()
        self._reads = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
