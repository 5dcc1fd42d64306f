"""A same-node store in shared memory: workers map objects instead of copying them.

The files and their lifetime rules are the
:class:`~proxystore.connectors.shm.SharedMemoryConnector`'s.
"""

from __future__ import annotations

from typing import Any

from proxystore.connectors.shm import SharedMemoryConnector
from proxystore.connectors.shm import default_shm_dir
from proxystore.exceptions import StoreConfigError
from proxystore.store.file import FileStore

__all__ = ['SharedMemoryStore']


class SharedMemoryStore(FileStore):
    """Store objects in shared memory, for processes on one node.

    Args:
        name: Name of the store.
        store_dir: Directory on a memory-backed file system; default
            ``/dev/shm/proxystore-<uid>-<name>`` (the name percent-encoded, so
            distinct names never share a directory).
        mapped_reads: ``False`` copies objects instead of mapping them.
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    Raises:
        StoreConfigError: no ``/dev/shm`` and no ``store_dir``, an empty
            ``store_dir``, or the directory cannot be created.

    """

    node_local = True

    def __init__(
        self,
        name: str,
        store_dir: str | None = None,
        *,
        mapped_reads: bool = True,
        **options: Any,
    ) -> None:
        if store_dir is None:
            if not isinstance(name, str) or not name:
                raise StoreConfigError(f'A store name must be a non-empty str, got {name!r}.')
            store_dir = default_shm_dir(name)
        self.check_options(name, options)  # before creating store_dir
        connector = SharedMemoryConnector(store_dir, owner=name, mapped_reads=mapped_reads)
        super(FileStore, self).__init__(name, connector, **options)
