"""A store of files in a directory, for nodes that share a file system.

Each object is one file named after its key. Writes are atomic: the payload
goes to a private temporary file that is renamed over the key only once it is
complete, so a reader never sees a partial object, even if the writer is
killed mid-write (``cleanup()`` removes leftover temporary files). Files are
created readable by their owner only (``0600``, directory ``0700``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

from proxystore.exceptions import InvalidKeyError
from proxystore.exceptions import StoreConfigError
from proxystore.exceptions import StoreFullError
from proxystore.exceptions import StoreIOError
from proxystore.serialize import Buffer
from proxystore.store.base import Store
from proxystore.store.buffers import MAP_THRESHOLD
from proxystore.store.buffers import map_file

__all__ = ['FileStore']

logger = logging.getLogger(__name__)

_TMP_PREFIX = '.tmp-'
_IOV_MAX = 1024
_MAX_NAME_BYTES = 200
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _write_all(fd: int, parts: Sequence[Buffer]) -> None:
    """Write every buffer with ``writev``, resuming after partial writes.

    Linux writes at most ~2 GiB per call, so large objects take several calls;
    resuming (rather than assuming a full write) avoids silent truncation.
    """
    views = [memoryview(p).cast('B') for p in parts]
    views = [v for v in views if v.nbytes]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while written:
            head = views[0]
            if written >= head.nbytes:
                written -= head.nbytes
                views.pop(0)
            else:
                views[0] = head[written:]
                written = 0


def _read_all(fd: int) -> bytearray | memoryview:
    """Return the file's bytes: mapped when large, read into a ``bytearray`` when small."""
    size = os.fstat(fd).st_size
    if size >= MAP_THRESHOLD:
        return map_file(fd, size)
    buffer = bytearray(size)
    view = memoryview(buffer)
    position = 0
    while position < size:
        n = os.readv(fd, [view[position:]])
        if n == 0:  # pragma: no cover - files are published complete and never change
            break
        position += n
    return buffer if position == size else buffer[:position]


class FileStore(Store):
    """Store objects as files in ``store_dir``.

    Args:
        name: Name of the store.
        store_dir: Directory of the files; created (mode ``0700``) if missing.
            Use a path on a shared file system to resolve proxies on other nodes.
        file_mode: Permission bits of object files (default ``0o600``).
        fsync: Flush each object to the device before publishing it, so it
            survives a machine crash (slower; not needed for process crashes).
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    Raises:
        StoreConfigError: ``store_dir`` cannot be created or is not a writable directory.

    """

    def __init__(
        self,
        name: str,
        *,
        store_dir: str | os.PathLike[str],
        file_mode: int = 0o600,
        fsync: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.store_dir = os.path.abspath(os.fspath(store_dir))
        self._file_mode = file_mode
        self._fsync = fsync
        try:
            os.makedirs(self.store_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise StoreConfigError(
                f'FileStore {name!r} cannot create store_dir {self.store_dir!r}: {e.strerror}. '
                'Choose a directory you can write to.',
            ) from e
        if not os.path.isdir(self.store_dir) or not os.access(self.store_dir, os.W_OK | os.X_OK):
            raise StoreConfigError(
                f'FileStore {name!r}: store_dir {self.store_dir!r} is not a writable directory.',
            )

    def _config(self) -> dict[str, Any]:
        return {'store_dir': self.store_dir, 'file_mode': self._file_mode, 'fsync': self._fsync}

    def _path(self, key: str) -> str:
        if len(key.encode('utf-8', 'surrogatepass')) > _MAX_NAME_BYTES:
            raise InvalidKeyError(
                f'FileStore keys are file names and must encode to at most {_MAX_NAME_BYTES} '
                f'bytes; {key[:40]!r}... is longer.',
            )
        return os.path.join(self.store_dir, key)

    def _io_error(self, e: OSError, action: str, key: str) -> StoreIOError:
        where = f'{action} key {key!r} of FileStore {self.name!r} in {self.store_dir!r}'
        if e.errno in _FULL_ERRNOS:
            reason = {
                errno.ENOSPC: 'No space left',
                errno.EDQUOT: 'Disk quota exceeded',
                errno.EFBIG: 'File size limit exceeded',
            }[e.errno]
            return StoreFullError(
                e.errno,
                f'{reason} to {where}; nothing was written. Free space, raise the limit, '
                'or use a store_dir on a larger file system.',
            )
        return StoreIOError(e.errno, f'Cannot {where}: {e.strerror or e}.')

    def _put(self, key: str, parts: Sequence[Buffer]) -> None:
        path = self._path(key)
        tmp = os.path.join(self.store_dir, f'{_TMP_PREFIX}{uuid.uuid4().hex}')
        try:
            try:
                fd = os.open(
                    tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self._file_mode
                )
            except FileNotFoundError:  # store_dir removed (cleanup()): make it again
                os.makedirs(self.store_dir, mode=0o700, exist_ok=True)
                fd = os.open(
                    tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self._file_mode
                )
            try:
                _write_all(fd, parts)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._io_error(e, 'write', key) from e

    def _get(self, key: str) -> bytearray | memoryview | None:
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._io_error(e, 'read', key) from e
        try:
            return _read_all(fd)
        except OSError as e:
            raise self._io_error(e, 'read', key) from e
        finally:
            os.close(fd)

    def _exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def _evict(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._io_error(e, 'delete', key) from e

    def remove_stale_temporaries(self, age: float = 3600.0) -> int:
        """Delete temporary files older than ``age`` seconds; return how many.

        A writer killed mid-write leaves its temporary file behind (readers
        never see it). Writes in progress are younger than any sensible
        ``age``, so this is safe while the store is in use; ``cleanup()``
        removes everything instead.
        """
        import time

        removed = 0
        cutoff = time.time() - age
        with os.scandir(self.store_dir) as entries:
            for entry in entries:
                if entry.name.startswith(_TMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
        return removed

    def _cleanup(self) -> None:
        """Delete ``store_dir`` and every object (and temporary file) in it.

        The store stays usable: the next ``set`` creates the directory again.
        """
        shutil.rmtree(self.store_dir, ignore_errors=True)
        logger.debug('Removed FileStore directory %s', self.store_dir)
