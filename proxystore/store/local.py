"""An in-process store: objects live in this process's memory.

Use it for tests, for threads sharing data (Parsl's ``ThreadPoolExecutor``),
or to proxy objects within one process. A proxy of a :class:`LocalStore`
cannot be resolved by another process: there the store is rebuilt empty, and
resolving raises :class:`~proxystore.exceptions.KeyNotFoundError`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from proxystore.serialize import Buffer
from proxystore.store.base import Store
from proxystore.store.base import _Object
from proxystore.store.buffers import allocate

__all__ = ['LocalStore']


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


class LocalStore(Store):
    """Store objects in a dictionary of this process.

    Serialized objects are kept as a private copy of their bytes, so changing
    an object after ``set`` does not change what ``get`` returns. With
    ``serialize=False`` the object itself is kept (no copy, no pickling).

    Args:
        name: Name of the store.
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    """

    stores_objects = True

    def __init__(
        self,
        name: str,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _put(self, key: str, parts: Sequence[Buffer]) -> None:
        value: Any
        if len(parts) == 1 and isinstance(parts[0], _Object):
            value = parts[0]
        else:
            value = _copy(parts)
        with self._lock:
            self._data[key] = value

    def _get(self, key: str) -> Any:
        with self._lock:
            value = self._data.get(key)
        if isinstance(value, _Object) or value is None:
            return value
        # A private writable copy: arrays rebuilt over it may be changed freely.
        return _copy([value])

    def _exists(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    def _evict(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def _cleanup(self) -> None:
        """Delete every object."""
        with self._lock:
            self._data.clear()
