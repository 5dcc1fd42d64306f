"""Bytes in this process's memory: :class:`LocalConnector`.

The connector of :class:`~proxystore.store.local.LocalStore`: for tests, for
threads sharing data, or to proxy objects within one process.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Hashable
from collections.abc import Sequence
from typing import Any

from proxystore.connectors.buffers import allocate
from proxystore.connectors.protocol import Entry
from proxystore.serialize import Buffer

__all__ = ['LocalConnector']


def _copy(parts: Sequence[Buffer]) -> Buffer:
    """Concatenate ``parts`` into a new buffer (pre-faulted when large)."""
    views = [memoryview(p).cast('B') for p in parts]
    buffer = allocate(sum(v.nbytes for v in views))
    target = memoryview(buffer)
    position = 0
    for view in views:
        target[position : position + view.nbytes] = view
        position += view.nbytes
    return buffer


class LocalConnector:
    """Keep bytes in a dictionary of this process.

    Each value is a private copy of the bytes ``put`` was given, and ``get``
    returns a new writable copy, so arrays rebuilt over it may be changed
    without changing the stored value. A value that is one part which is not
    a buffer (an in-process store keeping an object as it is) is held as is.
    The version token of a key is a counter that grows with every ``put``.
    """

    def __init__(self) -> None:
        self._data: dict[str, tuple[Any, int]] = {}
        self._lock = threading.Lock()
        self._writes = itertools.count(1)

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'

    def config(self) -> dict[str, Any]:
        """Nothing to configure: a rebuilt connector is a new, empty dictionary."""
        return {}

    def put(self, key: str, parts: Sequence[Any]) -> None:
        """Store a private copy of the concatenated ``parts``."""
        held = len(parts) == 1 and not isinstance(parts[0], (bytes, bytearray, memoryview))
        value = parts[0] if held else _copy(parts)
        with self._lock:
            self._data[key] = (value, next(self._writes))

    def put_batch(self, items: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Store each key."""
        for key, parts in items:
            self.put(key, parts)

    def get(self, key: str) -> Entry | None:
        """Return a writable copy of ``key``'s bytes and its version, or ``None``."""
        with self._lock:
            entry = self._data.get(key)
        if entry is None:
            return None
        value, version = entry
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = _copy([value])
        return value, version

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        """Read each key."""
        return [self.get(key) for key in keys]

    def version(self, key: str) -> Hashable | None:
        """The write counter of ``key``'s value, or ``None``."""
        with self._lock:
            entry = self._data.get(key)
        return None if entry is None else entry[1]

    def exists(self, key: str) -> bool:
        """Return whether ``key`` exists."""
        with self._lock:
            return key in self._data

    def evict(self, key: str) -> None:
        """Delete ``key`` (a missing key is fine)."""
        with self._lock:
            self._data.pop(key, None)

    def close(self) -> None:
        """Nothing to release; the data stays until :meth:`cleanup`."""

    def cleanup(self) -> None:
        """Delete every value."""
        with self._lock:
            self._data.clear()

    def after_fork(self) -> None:
        """A forked child gets a new lock (the parent's may be held)."""
        self._lock = threading.Lock()
