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
reboot. Python's ``multiprocessing.shared_memory`` is deliberately not used:
before Python 3.13 its resource tracker unlinks segments when the process that
created (or merely attached to) them exits, which loses objects still in use.
"""

from __future__ import annotations

import os
import re
from typing import Any

from proxystore.exceptions import StoreConfigError
from proxystore.store.file import FileStore

__all__ = ['SharedMemoryStore']

_SHM_ROOT = '/dev/shm'


def _default_dir(name: str) -> str:
    if not os.path.isdir(_SHM_ROOT):
        raise StoreConfigError(
            f'{_SHM_ROOT} does not exist on this system; pass store_dir= a directory on a '
            'memory-backed file system (tmpfs), or use a FileStore.',
        )
    safe = re.sub(r'[^A-Za-z0-9_.-]', '_', name)
    return os.path.join(_SHM_ROOT, f'proxystore-{os.getuid()}-{safe}')


class SharedMemoryStore(FileStore):
    """Store objects in shared memory, for processes on one node.

    Args:
        name: Name of the store.
        store_dir: Directory on a memory-backed file system; default
            ``/dev/shm/proxystore-<uid>-<name>``.
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    Raises:
        StoreConfigError: no ``/dev/shm`` and no ``store_dir``, or the
            directory cannot be created.

    """

    def __init__(
        self,
        name: str,
        *,
        store_dir: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            name,
            store_dir=store_dir if store_dir is not None else _default_dir(name),
            **options,
        )

    def _config(self) -> dict[str, object]:
        return {'store_dir': self.store_dir}
