"""An in-process store: objects live in this process's memory.

Use it for tests, for threads sharing data (Parsl's ``ThreadPoolExecutor``),
or to proxy objects within one process. A proxy of a :class:`LocalStore`
cannot be resolved by another process: there the store is rebuilt empty, and
resolving raises :class:`~proxystore.exceptions.KeyNotFoundError`.
"""

from __future__ import annotations

from typing import Any

from proxystore.connectors.local import LocalConnector
from proxystore.store.base import Store

__all__ = ['LocalStore']


class _Held:
    """An object kept as it is (``serialize=False``): the connector holds it, never bytes."""

    __slots__ = ('obj',)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


class LocalStore(Store):
    """Store objects in a dictionary of this process (a :class:`LocalConnector`).

    Serialized objects are kept as a private copy of their bytes, so changing
    an object after ``set`` does not change what ``get`` returns. With
    ``serialize=False`` the object itself is kept (no copy, no pickling).

    Args:
        name: Name of the store.
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    """

    stores_objects = True

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, LocalConnector(), **options)

    def _connector_config(self) -> dict[str, Any]:
        return {}

    def _raw(self, obj: Any) -> Any:
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return obj
        return _Held(obj)

    def _decode(self, data: Any, deserialize_: bool, key: str) -> Any:
        if isinstance(data, _Held):
            return data.obj
        return super()._decode(data, deserialize_, key)
