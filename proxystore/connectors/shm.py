"""Files in shared memory, for processes on one node: :class:`SharedMemoryConnector`.

Workers map objects instead of copying them.

Objects are files on a memory-backed file system (``/dev/shm`` on Linux),
written atomically like :class:`~proxystore.connectors.file.FileConnector` and read
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

from proxystore.connectors.file import FileConnector
from proxystore.exceptions import StoreConfigError

__all__ = ['SharedMemoryConnector', 'default_shm_dir']

_SHM_ROOT = '/dev/shm'
_MAX_READABLE = 120


def default_shm_dir(name: str) -> str:
    """``/dev/shm/proxystore-<uid>-<name>``, the name percent-encoded (one dir per name)."""
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


class SharedMemoryConnector(FileConnector):
    """Keep objects as files in shared memory, for processes on one node.

    Args:
        store_dir: Directory on a memory-backed file system (tmpfs); see
            :func:`default_shm_dir` for the one a
            :class:`~proxystore.store.shm.SharedMemoryStore` picks.
        owner: Name written into every file (see :class:`FileConnector`).
        mapped_reads: ``False`` copies objects instead of mapping them.

    Raises:
        StoreConfigError: an empty ``store_dir``, or the directory cannot be created.

    """

    def __init__(
        self,
        store_dir: str,
        *,
        owner: str | None = None,
        mapped_reads: bool = True,
    ) -> None:
        super().__init__(store_dir, owner=owner, mapped_reads=mapped_reads)

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this connector (see the protocol)."""
        config: dict[str, Any] = {'store_dir': self.store_dir}
        if not self._mapped_reads:
            config['mapped_reads'] = False
        if self._owner is not None:
            config['owner'] = self._owner
        return config
