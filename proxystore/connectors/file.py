"""Files in a directory, for nodes that share a file system: :class:`FileConnector`.

Each object is one file named after its key. Writes are atomic: the payload
goes to a private temporary file that is renamed over the key only once it is
complete, so a reader never sees a partial object, even if the writer is
killed mid-write (``cleanup()`` removes leftover temporary files). Objects are
published read-only (``0400`` by default) in a directory of mode ``0700``, and
a published file is never written again: an overwrite renames a new file over
it.

Every object file starts with a 64-byte header that names the store that
wrote it (a hash of its owner name) and carries a random id of that write: cleanup
removes only files whose header names this store, and the id is the key's
version token (a new write always has a new one, even if the file system
reuses the inode number and the clock did not tick).

Reads of objects of at least 1 MiB are *mapped* (no copy) only when that is
safe: the file is on a local file system (:func:`~proxystore.connectors.buffers.can_map`)
and has no write permission bits, so nothing short of a deliberate ``chmod``
or root privileges can rewrite it in place under a reader. Everything else is
read into memory. ``mapped_reads=False`` reads everything.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import struct
import time
from collections.abc import Hashable
from collections.abc import Sequence
from typing import Any

from proxystore.connectors.buffers import MAP_THRESHOLD
from proxystore.connectors.buffers import allocate
from proxystore.connectors.buffers import buffer_size
from proxystore.connectors.buffers import can_map_device
from proxystore.connectors.buffers import map_file
from proxystore.connectors.buffers import write_all
from proxystore.connectors.protocol import Entry
from proxystore.exceptions import InvalidKeyError
from proxystore.exceptions import StoreConfigError
from proxystore.exceptions import StoreFullError
from proxystore.exceptions import StoreIOError
from proxystore.serialize import Buffer

__all__ = ['FileConnector']

logger = logging.getLogger(__name__)

_TMP_PREFIX = '.tmp-'
_MAX_NAME_BYTES = 200
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: ``open(O_TMPFILE)`` errors that mean the file system (or kernel) lacks it.
_NO_TMPFILE_ERRNOS = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL}
#: ``linkat`` errors that mean an O_TMPFILE file cannot be given a name here.
_NO_LINK_ERRNOS = {errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP}
_WRITE_BITS = 0o222
_CREATED_BY = 'user.proxystore.created-by'

# Object file header: magic, format version, store tag, write id; padded to
# 64 bytes so the payload's 64-byte segment alignment holds in the file.
_FILE_MAGIC = b'PXSF'
_FILE_VERSION = 1
_FILE_HEADER = struct.Struct('<4sB3x16s16s')
_FILE_HEADER_SIZE = 64
#: Magic and format version: the first bytes of every object file with a header.
_FILE_PREFIX = _FILE_MAGIC + bytes([_FILE_VERSION])
#: Magic, format version and write id of a header: what a read needs.
_PREFIX_AND_ID = struct.Struct('<5s19x16s')
#: The same header with its zero padding, as written.
_FILE_HEADER_PADDED = struct.Struct(f'<4sB3x16s16s{_FILE_HEADER_SIZE - _FILE_HEADER.size}x')
#: ``open(store_dir, O_TMPFILE)`` where the platform has it: an unnamed file
#: that is linked under its key once complete (Linux 3.11+, most local file systems).
_O_TMPFILE = getattr(os, 'O_TMPFILE', 0)
#: Objects from this size on are written to a named temporary file and renamed: the
#: unnamed file saves a rename (a few microseconds), which only small objects notice,
#: and a named one can be watched (and its debris removed) while a large write runs.
_UNNAMED_MAX = 1 << 20
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
# Bound once: a small object's read is a handful of system calls, and each
# module attribute lookup is a measurable share of it.
_os_open = os.open
_fstat = os.fstat
_readv = os.readv
_close = os.close


def _store_tag(name: str) -> bytes:
    """16 bytes naming a store in its files (the same in every process)."""
    return hashlib.sha256(name.encode('utf-8', 'surrogatepass')).digest()[:16]


def _parse_header(head: Buffer) -> tuple[bytes, bytes] | None:
    """(store tag, write id) of an object file's first bytes, None if it has no header."""
    try:
        magic, version, tag, write_id = _FILE_HEADER.unpack_from(head)
    except struct.error:  # shorter than a header
        return None
    if magic != _FILE_MAGIC or version != _FILE_VERSION:
        return None
    return tag, write_id


def _read_into(fd: int, size: int) -> bytearray | memoryview:
    """Read ``size`` bytes of ``fd`` into a new writable buffer (fewer if the file shrank)."""
    buffer = allocate(size)
    view = memoryview(buffer)
    position = 0
    while position < size:
        n = os.readv(fd, [view[position:]])
        if n == 0:  # shrunk by someone else: deserialize reports a truncated payload
            break
        position += n
    return buffer if position == size else view[:position]


def _check_args(where: str, store_dir: Any, file_mode: Any, fsync: Any, mapped_reads: Any) -> str:
    """Validate the constructor arguments; return store_dir as an absolute path."""
    if store_dir is None or isinstance(store_dir, bytes):
        raise StoreConfigError(
            f'{where}: store_dir must be a directory path (str or os.PathLike), got {store_dir!r}.',
        )
    try:
        path = os.fspath(store_dir)
    except TypeError:
        raise StoreConfigError(
            f'{where}: store_dir must be a directory path (str or os.PathLike), got '
            f'{type(store_dir).__qualname__}.',
        ) from None
    if not isinstance(path, str):
        raise StoreConfigError(f'{where}: store_dir must be a str path, got {path!r}.')
    if not path:
        raise StoreConfigError(
            f'{where}: store_dir is empty. Name the directory explicitly (use "." for the '
            'current directory).',
        )
    if not isinstance(file_mode, int) or isinstance(file_mode, bool):
        hint = (
            ' Write it as an int, such as 0o400, not a str.' if isinstance(file_mode, str) else ''
        )
        raise StoreConfigError(
            f'{where}: file_mode must be an int of permission bits, got {file_mode!r}.{hint}',
        )
    if not 0 <= file_mode <= 0o777 or not file_mode & 0o400:
        raise StoreConfigError(
            f'{where}: file_mode must be permission bits (0 to 0o777) that let the owner '
            f'read, got {oct(file_mode)}. Use 0o400 (owner only) or 0o440 (group too).',
        )
    for arg, value in (('fsync', fsync), ('mapped_reads', mapped_reads)):
        if not isinstance(value, bool):
            raise StoreConfigError(f'{where}: {arg} must be True or False, got {value!r}.')
    return os.path.abspath(os.path.expanduser(path))


class FileConnector:
    """Keep objects as files in ``store_dir``.

    Args:
        store_dir: Directory of the files; created (mode ``0700``) if missing.
            Use a path on a shared file system to read objects on other
            nodes. ``~`` is expanded; an empty path is refused.
        owner: Name written into every file's header; :meth:`cleanup` removes
            only files of this owner (a :class:`~proxystore.store.file.FileStore`
            passes its name). Default: the absolute ``store_dir``.
        file_mode: Permission bits of object files (default ``0o400``). Write
            bits are always removed: published objects are read-only.
        fsync: Flush each object to the device before publishing it, so it
            survives a machine crash (slower; not needed for process crashes).
        mapped_reads: Map large objects where that is safe (see the module
            docs); ``False`` always reads them into memory.

    Raises:
        StoreConfigError: an argument is invalid (``store_dir`` empty or not a
            path, ``file_mode`` not permission bits, ...), or ``store_dir``
            cannot be created or is not a writable directory.

    """

    #: Options that tune this process only (not part of a store's identity).
    local_options = frozenset({'file_mode', 'fsync', 'mapped_reads'})

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        owner: str | None = None,
        file_mode: int = 0o400,
        fsync: bool = False,
        mapped_reads: bool = True,
    ) -> None:
        where = f'{type(self).__name__} {owner!r}' if owner else type(self).__name__
        path = _check_args(where, store_dir, file_mode, fsync, mapped_reads)
        if owner is not None and (not isinstance(owner, str) or not owner):
            raise StoreConfigError(f'{where}: owner must be a non-empty str, got {owner!r}.')
        self.store_dir = path
        self._owner = owner
        self._label = owner if owner is not None else path
        self._file_mode = file_mode
        self._fsync = fsync
        self._mapped_reads = mapped_reads
        self._tag = _store_tag(self._label)
        self._tmp_prefix = f'{_TMP_PREFIX}{self._tag.hex()}-'
        self._dir_prefix = os.path.join(self.store_dir, '')
        #: Whether writes go through O_TMPFILE (turned off for good where unsupported).
        self._unnamed = bool(_O_TMPFILE)
        #: Whether this object made ``store_dir`` (only then may cleanup() remove it).
        self._created_dir = False
        try:
            self._make_dir()
        except OSError as e:
            raise StoreConfigError(
                f'{where} cannot create store_dir {self.store_dir!r}: {e.strerror}. '
                'Choose a directory you can write to.',
            ) from e
        if not os.path.isdir(self.store_dir) or not os.access(self.store_dir, os.W_OK | os.X_OK):
            raise StoreConfigError(
                f'{where}: store_dir {self.store_dir!r} is not a writable directory.',
            )

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.store_dir!r})'

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this connector; defaults are left out (small proxies)."""
        config: dict[str, Any] = {'store_dir': self.store_dir}
        if self._file_mode != 0o400:
            config['file_mode'] = self._file_mode
        if self._fsync:
            config['fsync'] = True
        if not self._mapped_reads:
            config['mapped_reads'] = False
        if self._owner is not None:
            config['owner'] = self._owner
        return config

    def where(self, key: str | None = None) -> str:
        """Where the data lives, for error messages."""
        return f'{self.store_dir!r}' + (f' (key {key!r})' if key is not None else '')

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own descriptor."""

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        """Write each key (one atomic rename per key)."""
        for key, parts in items:
            self.put(key, parts)

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        """Read each key."""
        return [self.get(key) for key in keys]

    def _make_dir(self) -> None:
        """Create ``store_dir`` (and parents) if missing, and record that this store made it.

        The record is an extended attribute of the directory naming the store,
        so its ``cleanup()`` in any process may remove the directory; where
        the file system has no user attributes, only this object remembers.
        """
        if os.path.isdir(self.store_dir):
            return
        parent = os.path.dirname(self.store_dir)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.store_dir, 0o700)
        except FileExistsError:
            return
        self._created_dir = True
        with contextlib.suppress(OSError, AttributeError):  # no xattrs here: memory only
            os.setxattr(self.store_dir, _CREATED_BY, self._tag)

    def _made_dir(self) -> bool:
        """Whether this store (this object or another process's) made ``store_dir``."""
        if self._created_dir:
            return True
        try:
            return os.getxattr(self.store_dir, _CREATED_BY) == self._tag
        except (OSError, AttributeError):
            return False

    def _path(self, key: str) -> str:
        # A character encodes to at most 4 bytes: short keys need no encoding.
        if len(key) * 4 > _MAX_NAME_BYTES and (
            len(key.encode('utf-8', 'surrogatepass')) > _MAX_NAME_BYTES
        ):
            raise InvalidKeyError(
                f'File store keys are file names and must encode to at most {_MAX_NAME_BYTES} '
                f'bytes; {key[:40]!r}... is longer.',
            )
        return self._dir_prefix + key

    def _io_error(self, e: OSError, action: str, key: str) -> StoreIOError:
        where = f'{action} key {key!r} in {self.store_dir!r}'
        where += f' (store {self._owner!r})' if self._owner is not None else ''
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

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Write the object unnamed (or under a temporary name), then link it under the key.

        Objects under 1 MiB, where the platform allows, are written to an
        ``O_TMPFILE`` file (no name until complete, nothing left behind by a
        killed writer) linked under the key; a key that exists is replaced by
        linking under a temporary name and renaming over it. Larger objects,
        and every object elsewhere, are written to a named temporary file
        renamed over the key. Readers see the old file or the new one.
        """
        path = self._path(key)
        write_id = os.urandom(16)
        header = _FILE_HEADER_PADDED.pack(_FILE_MAGIC, _FILE_VERSION, self._tag, write_id)
        mode = self._file_mode & ~_WRITE_BITS  # the descriptor writes; nobody else can
        if self._unnamed:
            size = buffer_size(parts)
            if size < _UNNAMED_MAX and self._put_unnamed(
                key, path, [header, *parts], size + _FILE_HEADER_SIZE, mode, write_id
            ):
                return
        tmp = f'{self._dir_prefix}{self._tmp_prefix}{write_id.hex()}'
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, mode)
            except FileNotFoundError:  # store_dir removed (cleanup()): make it again
                self._make_dir()
                fd = os.open(tmp, flags, mode)
            try:
                write_all(fd, [header, *parts])
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._io_error(e, 'write', key) from e

    def _put_unnamed(
        self, key: str, path: str, parts: Sequence[Buffer], total: int, mode: int, write_id: bytes
    ) -> bool:
        """:meth:`put` through an ``O_TMPFILE`` file; False (and never again) where unsupported."""
        flags = _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
        try:
            try:
                fd = os.open(self.store_dir, flags, mode)
            except FileNotFoundError:  # store_dir removed (cleanup()): make it again
                self._make_dir()
                fd = os.open(self.store_dir, flags, mode)
        except OSError as e:
            if e.errno in _NO_TMPFILE_ERRNOS:
                self._unnamed = False
                return False
            raise self._io_error(e, 'write', key) from e
        tmp = None
        source = f'/proc/self/fd/{fd}'
        try:
            write_all(fd, parts, total)
            if self._fsync:
                os.fsync(fd)
            # linkat(AT_SYMLINK_FOLLOW) of the descriptor's /proc entry: os.link only
            # follows it when given a directory descriptor (ignored: the path is absolute).
            try:
                os.link(source, path, src_dir_fd=fd)
            except FileExistsError:  # an overwrite: a temporary name, then rename over the key
                tmp = f'{self._dir_prefix}{self._tmp_prefix}{write_id.hex()}'
                os.link(source, tmp, src_dir_fd=fd)
                os.replace(tmp, path)
        except OSError as e:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if e.errno in _NO_LINK_ERRNOS:  # no /proc, or linking refused: named files from now
                if e.errno != errno.ENOENT or not os.path.exists(source):  # not a removed dir
                    logger.debug('%r: O_TMPFILE files cannot be linked (%s)', self, e)
                    self._unnamed = False
                return False
            raise self._io_error(e, 'write', key) from e
        finally:
            os.close(fd)
        return True

    def _read(self, fd: int, st: os.stat_result) -> bytearray | memoryview:
        """The file's bytes: mapped where that is safe and worth it, else read."""
        size = st.st_size
        if (
            size >= MAP_THRESHOLD
            and self._mapped_reads
            and not st.st_mode & _WRITE_BITS
            and can_map_device(fd, st.st_dev)
        ):
            try:
                return map_file(fd, size)
            except OSError as e:  # e.g. the process's map limit: a copy still works
                logger.debug('Reading instead of mapping (%s): %s', e, self.store_dir)
        return _read_into(fd, size)

    def _open(self, key: str) -> int | None:
        """A read-only descriptor of ``key``'s file, ``None`` if there is none."""
        try:
            return os.open(self._path(key), _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._io_error(e, 'read', key) from e

    def get(self, key: str) -> Entry | None:
        """The bytes under ``key`` and a token that changes whenever ``key`` is rewritten.

        The token is the write id in the file's header (random per write, so
        a rewrite is told apart even if the inode number is reused and the
        clock did not tick). This is the read of every small object, so the
        common path is inline: open, size, one read, close.
        """
        if len(key) * 4 > _MAX_NAME_BYTES:
            self._path(key)  # raises for a name too long
        try:
            fd = _os_open(self._dir_prefix + key, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._io_error(e, 'read', key) from e
        try:
            st = _fstat(fd)
            size = st.st_size
            if size < MAP_THRESHOLD:  # most objects: one read into a buffer of the file's size
                data: bytearray | memoryview = bytearray(size)
                if _readv(fd, [data]) != size:
                    os.lseek(fd, 0, os.SEEK_SET)
                    data = _read_into(fd, size)
            else:
                data = self._read(fd, st)
        except OSError as e:
            raise self._io_error(e, 'read', key) from e
        finally:
            _close(fd)
        if size >= _FILE_HEADER_SIZE:
            prefix, write_id = _PREFIX_AND_ID.unpack_from(data)
            if prefix == _FILE_PREFIX:  # as _parse_header, without the store tag
                return memoryview(data)[_FILE_HEADER_SIZE:], write_id
        # Written before files had headers: the payload is the file, the token its stat.
        return data, (st.st_dev, st.st_ino, st.st_mtime_ns, size)

    def version(self, key: str) -> Hashable | None:
        """Token of ``key``'s current value (reads the header only), None if missing."""
        fd = self._open(key)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            header = _parse_header(os.pread(fd, _FILE_HEADER_SIZE, 0))
        except OSError as e:
            raise self._io_error(e, 'read', key) from e
        finally:
            os.close(fd)
        if header is not None:
            return header[1]
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def exists(self, key: str) -> bool:
        """Return whether the key's file exists."""
        return os.path.exists(self._path(key))

    def evict(self, key: str) -> None:
        """Unlink the key's file (a missing key is fine)."""
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._io_error(e, 'delete', key) from e

    def _owns(self, entry: os.DirEntry[str]) -> bool:
        """Whether ``entry`` is an object file this store (any process) wrote."""
        if entry.name.startswith('.') or not entry.is_file(follow_symlinks=False):
            return False
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            header = _parse_header(os.pread(fd, _FILE_HEADER_SIZE, 0))
        except OSError:
            return False
        finally:
            os.close(fd)
        return header is not None and header[0] == self._tag

    def remove_stale_temporaries(self, age: float = 3600.0) -> int:
        """Delete this store's temporary files older than ``age`` seconds; return how many.

        A writer killed mid-write leaves its temporary file behind (readers
        never see it). Writes in progress are younger than any sensible
        ``age``, so this is safe while the store is in use; ``cleanup()``
        removes them all instead. Other stores' temporary files are left alone.
        """
        removed = 0
        cutoff = time.time() - age
        with contextlib.suppress(FileNotFoundError), os.scandir(self.store_dir) as entries:
            for entry in entries:
                if entry.name.startswith(self._tmp_prefix):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
        return removed

    def cleanup(self) -> None:
        """Delete what this store wrote: its objects and temporary files, in any process.

        Other files in ``store_dir`` (other stores' objects, anything else)
        are left alone. The directory itself is removed only if this store
        created it (this object, or the same store in another process, where
        the file system keeps extended attributes) and it is then empty. The
        store stays usable: the next ``set`` creates the directory again.
        """
        removed = 0
        try:
            entries = os.scandir(self.store_dir)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                # A file replaced between the check and the unlink would be a
                # write under the same key, which cleanup() deletes anyway.
                if entry.name.startswith(self._tmp_prefix) or self._owns(entry):
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        continue
                    except OSError as e:
                        raise self._io_error(e, 'clean up', entry.name) from e
                    removed += 1
        logger.debug('%r removed %d files of %r', self, removed, self._label)
        if self._made_dir():
            try:
                os.rmdir(self.store_dir)
            except OSError as e:  # not empty: someone else's files stay, and so does the directory
                logger.debug('Kept %s: %s', self.store_dir, e.strerror)
            else:
                self._created_dir = False
