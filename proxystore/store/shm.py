"""A same-node store in shared memory: workers map objects instead of copying them.

Objects are files on a memory-backed file system (``/dev/shm`` on Linux),
written atomically like :class:`~proxystore.store.file.FileStore` and read
with ``mmap``: a process resolving a proxy maps the very pages the producer
wrote, so a 100 MB array is "read" without copying it. The mapping is private
and copy-on-write, so arrays come back writable and changing them never
changes the stored object.

Lifetime rule: an object lives until it is evicted or the store is cleaned
up, independent of the processes that wrote or read it. A producer that exits
(or is killed) leaves its objects readable, which is what a workflow wants;
``cleanup()`` removes them all, and the operating system drops them at
reboot. An evicted or cleaned-up object's memory is freed only when the
last process mapping it drops its arrays: until then ``/dev/shm`` shows the
space as used (``df``), though the file is gone (``ls``). Python's
``multiprocessing.shared_memory`` is deliberately not used:
before Python 3.13 its resource tracker unlinks segments when the process that
created (or merely attached to) them exits, which loses objects still in use.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import quote

from proxystore.exceptions import StoreConfigError
from proxystore.store.file import FileStore

__all__ = ['SharedMemoryStore']

_SHM_ROOT = '/dev/shm'
_MAX_READABLE = 120


def _default_dir(name: str) -> str:
    if not os.path.isdir(_SHM_ROOT):
        raise StoreConfigError(
            f'{_SHM_ROOT} does not exist on this system; pass store_dir= a directory on a '
            'memory-backed file system (tmpfs), or use a FileStore.',
        )
    return os.path.join(_SHM_ROOT, f'proxystore-{os.getuid()}-{_dir_name(name)}')


def _dir_name(name: str) -> str:
    """A file name for ``name``, distinct for distinct names (``team/a`` is not ``team_a``).

    Percent-encoding is one-to-one; a long name is cut and followed by
    ``=`` and its SHA-256, and ``=`` never appears in an encoded name.
    """
    encoded = quote(name, safe='', errors='surrogatepass')
    if len(encoded) <= _MAX_READABLE:
        return encoded
    digest = hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()
    return f'{encoded[: _MAX_READABLE - 65]}={digest}'


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

    def __init__(
        self,
        name: str,
        *,
        store_dir: str | None = None,
        mapped_reads: bool = True,
        **options: Any,
    ) -> None:
        if store_dir is None:
            if not isinstance(name, str) or not name:
                raise StoreConfigError(f'A store name must be a non-empty str, got {name!r}.')
            store_dir = _default_dir(name)
        super().__init__(
            name,
            store_dir=store_dir,
            mapped_reads=mapped_reads,
            **options,
        )

    def _config(self) -> dict[str, object]:
        return {'store_dir': self.store_dir, 'mapped_reads': self._mapped_reads}
