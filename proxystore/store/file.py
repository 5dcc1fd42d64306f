"""A store of files in a directory, for nodes that share a file system.

The files, their atomic writes, headers, versions, mapped reads and cleanup
rules are the :class:`~proxystore.connectors.file.FileConnector`'s.
"""

from __future__ import annotations

import os
from typing import Any

from proxystore.connectors.file import FileConnector
from proxystore.store.base import Store

__all__ = ['FileStore']


class FileStore(Store):
    """Store objects as files in ``store_dir`` (a :class:`FileConnector` owned by ``name``).

    Args:
        name: Name of the store; :meth:`cleanup` removes only this store's files.
        store_dir: Directory of the files; created (mode ``0700``) if missing.
            Use a path on a shared file system to resolve proxies on other
            nodes. ``~`` is expanded; an empty path is refused.
        file_mode: Permission bits of object files (default ``0o400``). Write
            bits are always removed: published objects are read-only.
        fsync: Flush each object to the device before publishing it, so it
            survives a machine crash (slower; not needed for process crashes).
        mapped_reads: Map large objects where that is safe (see
            :mod:`proxystore.connectors.file`); ``False`` always reads them.
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    Raises:
        StoreConfigError: an argument is invalid, or ``store_dir`` cannot be
            created or is not a writable directory.

    """

    local_options = Store.local_options | FileConnector.local_options

    def __init__(
        self,
        name: str,
        store_dir: str | os.PathLike[str],
        *,
        file_mode: int = 0o400,
        fsync: bool = False,
        mapped_reads: bool = True,
        **options: Any,
    ) -> None:
        self.check_options(name, options)  # before creating store_dir
        connector = FileConnector(
            store_dir, owner=name, file_mode=file_mode, fsync=fsync, mapped_reads=mapped_reads
        )
        super().__init__(name, connector, **options)

    @property
    def store_dir(self) -> str:
        """The directory of the files (absolute)."""
        return self._file_connector().store_dir

    def _file_connector(self) -> FileConnector:
        connector = self.connector
        assert isinstance(connector, FileConnector)
        return connector

    def _connector_config(self) -> dict[str, Any]:
        config = self._file_connector().config()
        config.pop('owner', None)  # the store's name
        return config

    def remove_stale_temporaries(self, age: float = 3600.0) -> int:
        """Delete this store's temporary files older than ``age`` seconds; return how many.

        See :meth:`FileConnector.remove_stale_temporaries`.
        """
        return self._file_connector().remove_stale_temporaries(age)
