"""The node-local tier: one remote read per node, shared by every process on it.

:class:`NodeConnector` wraps another connector (Redis, a shared file system,
...). A process that reads a key fetches it from the inner connector and
*publishes* the bytes as a file in node-local shared memory (``/dev/shm``);
every other process on the node maps that file instead of fetching the object
again. With 8 to 128 workers per node resolving the same large object, the
remote store serves it once per node instead of once per worker.

Guarantees:

- **Never stale.** A node copy records the inner version token of its bytes.
  Every read first asks the inner connector for the key's current version
  (its cheap ``version`` hook: for Redis one ``LINDEX``, a small round trip)
  and serves the node copy only if the tokens are equal. A key overwritten or
  evicted anywhere is refetched or missing, never served from an old copy.
  Connectors that cannot tell versions apart (their token is ``True``) are
  passed through without publishing.
- **One fetch per node for overlapping readers.** Concurrent first readers
  coordinate through a per-key ``flock`` lock file: one fetches, the others
  register as waiting and then map the copy it publishes for them. A version
  is copied once ``min_readers`` processes on the node have read it (default
  2, counting waiters), so a lone reader writes nothing and a node fetches a
  version at most ``min_readers`` times. A lock dies with its process, so a
  first reader that is killed mid-fetch blocks no one; one that hangs is
  waited for at most ``lock_timeout`` seconds.
- **Atomic publishing.** A copy is written to a temporary file and renamed
  into place, read-only, and never written again; readers map it (see
  :func:`~proxystore.connectors.buffers.map_file`), and a removed copy stays
  readable by processes that still map it (tmpfs keeps its pages).
- **Bounded.** The copies of one inner store on a node hold at most
  ``max_bytes`` (the least recently read are removed first), and a copy is
  published only if the file system keeps ``min_free_bytes`` free afterwards.
  An object that does not fit is served from the fetched bytes.
- **Broken copies are discarded.** A copy whose header is damaged or whose
  length is wrong is removed and the object refetched.

Copies live in ``<directory>/<identity>/``, where ``directory`` defaults to
``/dev/shm/proxystore-node-<uid>`` and ``identity`` is a hash of the inner
connector's class and configuration (minus its process-local options), so two
servers never share entries.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import stat
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Hashable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

from proxystore.connectors.buffers import MAP_THRESHOLD
from proxystore.connectors.buffers import allocate
from proxystore.connectors.buffers import can_map_device
from proxystore.connectors.buffers import map_file
from proxystore.connectors.buffers import write_all
from proxystore.connectors.protocol import Connector
from proxystore.connectors.protocol import Entry
from proxystore.connectors.protocol import connector_version
from proxystore.connectors.protocol import load_connector
from proxystore.exceptions import StoreConfigError
from proxystore.exceptions import StoreIOError
from proxystore.serialize import Buffer
from proxystore.utils import class_path

__all__ = ['NodeConnector']

logger = logging.getLogger(__name__)

_SHM_ROOT = '/dev/shm'
#: Copy header: magic, format version, payload length, token length, CRC-32 of
#: the header fields and the token. The token follows, then zero padding to a
#: multiple of 64 bytes, so the payload keeps its 64-byte segment alignment.
_HEAD = struct.Struct('<4sB3xQII')
_MAGIC = b'PXNC'
_FORMAT = 1
_ALIGN = 64
_MAX_TOKEN = 1024
_MAX_HEADER = -(-(_HEAD.size + _MAX_TOKEN) // _ALIGN) * _ALIGN
_NAME_CHARS = 40  # hex characters of a key's SHA-256 in file names
_TMP_PREFIX = '.tmp-'
_DIR_LOCK = '.lock'
_LOCK_SUFFIX = '.lock'
_WANT_SUFFIX = '.want'
# Notes in a key's lock file, written by the lock's holder:
_SKIP = b'skip:'  # "skip:<token>": this version could not be published, fetch it yourself
_SEEN = b'seen:'  # "seen:<n>:<token>": n processes read this version, none published it
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_WRITE_BITS = 0o222
_STALE_TMP_SECONDS = 3600.0
_POLL_FIRST = 0.0005
_SKIP_SECONDS = 10.0
_NOTE_SECONDS = 600.0
_SWEEP_EVERY = 64
_POLL_MAX = 0.005
_DIRECT_KEYS = 4096
_SAFE_TOKEN_TYPES = (bytes, str, int, float, bool, type(None))
_DEFAULTS: dict[str, Any] = {
    'max_bytes': None,
    'directory': None,
    'min_bytes': 64 * 1024,
    'min_free_bytes': None,
    'lock_timeout': 120.0,
    'min_readers': 2,
}


def _token_bytes(token: Hashable) -> bytes | None:
    """A byte string equal across processes for equal tokens, or None if ``token`` cannot be shared.

    ``True`` (or ``None``, which some connectors return for values that other
    tools wrote) means the inner connector cannot tell versions apart, so a
    copy could never be checked; other tokens must be built from plain values
    (bytes, str, numbers, None, tuples), whose ``repr`` is the same in every
    process.
    """
    if token is True or token is None or not _plain(token):
        return None
    encoded = repr(token).encode('utf-8', 'surrogatepass')
    return encoded if len(encoded) <= _MAX_TOKEN else None


def _plain(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return isinstance(value, _SAFE_TOKEN_TYPES)


def _header(token: bytes, size: int) -> bytes:
    fields = _HEAD.pack(_MAGIC, _FORMAT, size, len(token), 0)
    crc = zlib.crc32(token, zlib.crc32(fields[: _HEAD.size - 4]))
    head = _HEAD.pack(_MAGIC, _FORMAT, size, len(token), crc) + token
    return head + bytes(-len(head) % _ALIGN)


def _parse_header(head: bytes) -> tuple[int, bytes, int] | None:
    """(payload length, token, header length) of a copy's first bytes, None if damaged."""
    if len(head) < _HEAD.size:
        return None
    magic, version, size, token_len, crc = _HEAD.unpack_from(head)
    if magic != _MAGIC or version != _FORMAT or token_len > _MAX_TOKEN:
        return None
    token = head[_HEAD.size : _HEAD.size + token_len]
    if len(token) != token_len:
        return None
    if zlib.crc32(token, zlib.crc32(head[: _HEAD.size - 4])) != crc:
        return None
    return size, token, -(-(_HEAD.size + token_len) // _ALIGN) * _ALIGN


def _nbytes(data: Buffer) -> int:
    return memoryview(data).nbytes


def _touch(fd: int) -> None:
    """Record a use for least-recently-used removal (the kernel's file clock is too coarse)."""
    now = time.time_ns()
    with contextlib.suppress(OSError):
        os.utime(fd, ns=(now, now))


def _load_connector(path: Any, config: Any) -> Connector:
    """Build the inner connector from its class path and ``config()`` (as in a worker)."""
    if not isinstance(path, str) or '.' not in path:
        raise StoreConfigError(
            f'NodeConnector: inner must be a connector or the class path of one '
            f"('package.module.Class'), got {path!r}.",
        )
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise StoreConfigError(
            f"NodeConnector: inner_config must be a dict of the inner connector's config(), "
            f'got {type(config).__qualname__}.',
        )
    return load_connector(path, config, 'NodeConnector (inner)')


def _identity(connector: Connector) -> str:
    """A name for the inner store: its class and the configuration that selects its data."""
    local = set(getattr(connector, 'local_options', ()))
    config = {k: v for k, v in connector.config().items() if k not in local}
    text = json.dumps([class_path(type(connector)), config], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:32]


def _check_own_dir(path: str) -> None:
    """Refuse a directory that is a symlink or belongs to another user (``/dev/shm`` is shared)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise StoreConfigError(
            f'NodeConnector: {path} is not a directory owned by this user (uid '
            f'{os.geteuid()}). Remove it, or pass directory= a private directory.',
        )


def _directory_arg(value: Any) -> str | None:
    """``directory=`` as an absolute-or-relative str path with ``~`` expanded (None stays None)."""
    if value is None:
        return None
    path = value
    if not isinstance(value, bytes):
        with contextlib.suppress(TypeError):
            path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise StoreConfigError(
            f'NodeConnector: directory must be a non-empty path (str or os.PathLike), '
            f'got {value!r}.',
        )
    return os.path.expanduser(path)


class _Paths(NamedTuple):
    copy: str
    lock: str
    want: str
    name: str


def _positive_int(name: str, value: Any, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        kind = 'a non-negative' if allow_zero else 'a positive'
        raise StoreConfigError(f'NodeConnector: {name} must be {kind} int of bytes, got {value!r}.')


class NodeConnector:
    """Serve each key to every process on a node from one shared-memory copy.

    Args:
        inner: The connector that holds the data (for example a
            ``RedisConnector``), or its class path (``'package.module.Class'``)
            with ``inner_config``, as :meth:`config` returns it.
        inner_config: The inner connector's ``config()``, when ``inner`` is a
            class path.
        max_bytes: Most bytes the node copies of this inner store may hold on
            a node; the least recently read copies are removed first. Default:
            a quarter of the file system holding ``directory``.
        directory: Where copies live; default ``/dev/shm/proxystore-node-<uid>``.
            Use a memory-backed, node-local file system (tmpfs).
        min_bytes: Smaller objects are not published: fetching them costs
            about as much as checking a copy's version. Default 64 KiB.
        min_free_bytes: Free space the file system must keep after a copy
            is published; default a tenth of its size.
        lock_timeout: Seconds a reader waits for another process's fetch of
            the same key before fetching it itself (a killed fetcher releases
            its lock at once; this bounds a hung one).
        min_readers: Publish a version once this many processes on the node
            have read it (processes waiting for the same fetch count). The
            default, 2, spares objects read by one process per node the copy
            to shared memory; 1 publishes on the first read.

    Raises:
        StoreConfigError: an argument is invalid, there is no ``/dev/shm`` and
            no ``directory``, or the directory cannot be used.

    """

    #: Options that tune this process only: the inner connector alone selects the data.
    local_options = frozenset(
        {'max_bytes', 'directory', 'min_bytes', 'min_free_bytes', 'lock_timeout', 'min_readers'}
    )

    def __init__(
        self,
        inner: Connector | str,
        *,
        inner_config: dict[str, Any] | None = None,
        max_bytes: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        min_bytes: int = 64 * 1024,
        min_free_bytes: int | None = None,
        lock_timeout: float = 120.0,
        min_readers: int = 2,
    ) -> None:
        if isinstance(inner, str):
            self._inner = _load_connector(inner, inner_config)
        elif isinstance(inner, Connector):
            if inner_config is not None:
                raise StoreConfigError(
                    'NodeConnector: inner_config is only used with a class path as inner; '
                    'pass either a connector, or a class path and its config.',
                )
            self._inner = inner
        else:
            raise StoreConfigError(
                f'NodeConnector: inner must be a connector or the class path of one, got '
                f'{type(inner).__qualname__}.',
            )
        if max_bytes is not None:
            _positive_int('max_bytes', max_bytes)
        if min_free_bytes is not None:
            _positive_int('min_free_bytes', min_free_bytes, allow_zero=True)
        _positive_int('min_bytes', min_bytes, allow_zero=True)
        if isinstance(min_readers, bool) or not isinstance(min_readers, int) or min_readers < 1:
            raise StoreConfigError(
                f'NodeConnector: min_readers must be an int >= 1, got {min_readers!r}.',
            )
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, (int, float))
            or not lock_timeout >= 0
        ):
            raise StoreConfigError(
                f'NodeConnector: lock_timeout must be a number of seconds >= 0, got '
                f'{lock_timeout!r}.',
            )
        directory = _directory_arg(directory)
        self._options: dict[str, Any] = {
            'max_bytes': max_bytes,
            'directory': directory,
            'min_bytes': min_bytes,
            'min_free_bytes': min_free_bytes,
            'lock_timeout': lock_timeout,
            'min_readers': min_readers,
        }
        self._min_bytes = min_bytes
        self._min_readers = min_readers
        self._lock_timeout = float(lock_timeout)
        root = directory
        if root is None:
            if not os.path.isdir(_SHM_ROOT):
                raise StoreConfigError(
                    f'NodeConnector: {_SHM_ROOT} does not exist on this system; pass directory= '
                    'a directory on a node-local memory-backed file system (tmpfs).',
                )
            root = os.path.join(_SHM_ROOT, f'proxystore-node-{os.geteuid()}')
        self.directory = os.path.join(os.path.abspath(root), _identity(self._inner))
        self._root = os.path.abspath(root)
        self._ensure_dir()
        try:
            fs = os.statvfs(self.directory)
        except OSError as e:
            raise StoreConfigError(f'NodeConnector: cannot use {self.directory}: {e}') from e
        fs_bytes = fs.f_blocks * fs.f_frsize
        self._max_bytes = max_bytes if max_bytes is not None else fs_bytes // 4
        self._min_free = min_free_bytes if min_free_bytes is not None else fs_bytes // 10
        self._direct: OrderedDict[str, None] = OrderedDict()
        self._direct_lock = threading.Lock()
        self._held: set[int] = set()
        self._notes_written = 0

    # -- the Connector protocol ----------------------------------------------------

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Write through to the inner connector, then drop this node's copy of ``key``."""
        self._inner.put(key, parts)
        self._drop(key)

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        """Write through in one inner batch, then drop this node's copies of the keys."""
        self._inner.put_batch(items)
        for key, _ in items:
            self._drop(key)

    def get(self, key: str) -> Entry | None:
        """The bytes of ``key``: this node's copy if it holds the current version, else fetched."""
        if self._is_direct(key):
            entry = self._inner.get(key)
            if entry is not None and self._shareable(entry):
                self._forget_direct(key)
                self._publish_unlocked(key, entry)
            return entry
        current = connector_version(self._inner, key)
        token = None if current is None else _token_bytes(current)
        if token is None:
            # Missing, or a value without versions (some connectors' version()
            # is None for both): a copy could not be checked, so read it.
            entry = self._inner.get(key)
            if entry is not None:
                self._mark_direct(key)
            return entry
        paths = self._paths(key)
        data = self._read_copy(paths, token)
        if data is not None:
            return data, current
        return self._fetch(key, paths, token, current)

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        """Serve keys with a node copy from it; fetch the rest in one inner batch.

        First reads of a batch do not wait for other processes: they are
        fetched together and published where no other process is fetching.
        """
        results: list[Entry | None] = [None] * len(keys)
        todo: list[int] = []
        for i, key in enumerate(keys):
            if not self._is_direct(key) and os.path.exists(self._paths(key).copy):
                results[i] = self.get(key)
            else:
                todo.append(i)
        if todo:
            fetched = self._inner.get_batch([keys[i] for i in todo])
            for i, entry in zip(todo, fetched):
                results[i] = entry
                if entry is not None and self._shareable(entry):
                    self._publish_unlocked(keys[i], entry)
        return results

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists in the inner store (node copies are only copies)."""
        return self._inner.exists(key)

    def evict(self, key: str) -> None:
        """Delete ``key`` from the inner store and this node's copy."""
        self._inner.evict(key)
        self._drop(key)

    def close(self) -> None:
        """Close the inner connector; node copies stay for other processes."""
        self._inner.close()

    def config(self) -> dict[str, Any]:
        """The inner connector's class path and config, and this tier's options.

        Options left at their defaults are left out, which keeps proxies small.
        """
        config: dict[str, Any] = {
            'inner': class_path(type(self._inner)),
            'inner_config': self._inner.config(),
        }
        config.update((k, v) for k, v in self._options.items() if v != _DEFAULTS[k])
        return config

    # -- optional hooks --------------------------------------------------------------

    def version(self, key: str) -> Hashable | None:
        """The inner connector's version of ``key`` (node copies never change it)."""
        return connector_version(self._inner, key)

    def cleanup(self) -> None:
        """Clean up the inner connector and remove this node's copies of its keys.

        The directory goes too; a later read through this tier creates it again.
        """
        inner_cleanup = getattr(self._inner, 'cleanup', None)
        if inner_cleanup is not None:
            inner_cleanup()
        else:
            self._inner.close()
        # The directory's lock goes last, while held: a process that opened it
        # before sees it replaced and locks the new one (see _dir_locked).
        with self._dir_locked():
            names: list[str] = []
            with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as entries:
                names = [e.name for e in entries]
            for name in sorted(names, key=lambda n: n == _DIR_LOCK):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))
        with contextlib.suppress(OSError):  # another process may be publishing again
            os.rmdir(self.directory)

    def where(self, key: str | None = None) -> str:
        """Where the data lives, for error messages."""
        where = getattr(self._inner, 'where', None)
        inner = where(key) if where is not None else class_path(type(self._inner))
        return f'{inner} (node copies in {self.directory})'

    def after_fork(self) -> None:
        """In a forked child: drop the parent's lock handles and reset the inner connector."""
        for fd in list(self._held):
            with contextlib.suppress(OSError):
                os.close(fd)  # the parent's lock stays held through its own descriptor
        self._held = set()
        self._direct_lock = threading.Lock()
        inner_after_fork = getattr(self._inner, 'after_fork', None)
        if inner_after_fork is not None:
            inner_after_fork()

    @property
    def inner(self) -> Connector:
        """The wrapped connector."""
        return self._inner

    # -- reading copies --------------------------------------------------------------

    def _paths(self, key: str) -> _Paths:
        name = hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:_NAME_CHARS]
        copy = os.path.join(self.directory, name)
        return _Paths(copy, copy + _LOCK_SUFFIX, copy + _WANT_SUFFIX, name)

    def _read_copy(self, paths: _Paths, token: bytes) -> Buffer | None:
        """The payload of the node copy if it holds version ``token``, else None.

        A damaged copy (bad header, wrong length, writable, not ours) is removed.
        """
        try:
            fd = os.open(paths.copy, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:  # a symlink in our place: not ours, remove it
                self._discard(paths.copy, None)
                return None
            raise self._io_error(e, 'read the node copy of', paths.copy) from e
        try:
            st = os.fstat(fd)
            parsed = None
            if (
                stat.S_ISREG(st.st_mode)
                and st.st_uid == os.geteuid()
                and not st.st_mode & _WRITE_BITS
            ):
                parsed = _parse_header(os.pread(fd, _MAX_HEADER, 0))
            if parsed is None or parsed[2] + parsed[0] != st.st_size:
                broken = True
            else:
                broken = False
                size, found, offset = parsed
                if found != token:
                    return None  # an older (or newer) version: the caller refetches
                data = self._load(fd, st, offset, size)
                _touch(fd)
                return data
        except OSError as e:
            raise self._io_error(e, 'read the node copy of', paths.copy) from e
        finally:
            os.close(fd)
        if broken:
            logger.warning('Discarding a damaged node copy %s; refetching', paths.copy)
            self._discard(paths.copy, st.st_ino)
        return None

    @staticmethod
    def _load(fd: int, st: os.stat_result, offset: int, size: int) -> Buffer:
        """Map the copy where that is safe (local file system, large), else read it."""
        if st.st_size >= MAP_THRESHOLD and can_map_device(fd, st.st_dev):
            try:
                return map_file(fd, st.st_size)[offset:]
            except OSError as e:  # e.g. the process's map limit: a copy still works
                logger.debug('Reading a node copy instead of mapping it: %s', e)
        buffer = allocate(size)
        view = memoryview(buffer)
        position = 0
        while position < size:
            n = os.preadv(fd, [view[position:]], offset + position)
            if n == 0:
                raise OSError(errno.EIO, 'node copy shorter than its header says')
            position += n
        return buffer

    def _discard(self, path: str, inode: int | None) -> None:
        """Remove a damaged copy, unless another process already replaced it."""
        with contextlib.suppress(OSError):
            if inode is None or os.lstat(path).st_ino == inode:
                os.unlink(path)

    # -- fetching and publishing ---------------------------------------------------------

    def _fetch(self, key: str, paths: _Paths, token: bytes, current: Hashable) -> Entry | None:
        """Fetch ``key`` once for the node: wait for another fetcher, or fetch and publish."""
        deadline = time.monotonic() + self._lock_timeout
        delay = _POLL_FIRST
        try:
            lock = self._try_lock(paths.lock)
        except OSError as e:
            if e.errno not in _FULL_ERRNOS:
                raise self._io_error(e, 'lock', paths.lock) from e
            return self._inner.get(key)  # no room even for a lock file: read alone
        waited = lock is None
        if waited:
            self._want(paths)
        while lock is None:
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
            data = self._read_copy(paths, token)
            if data is not None:
                return data, current
            if self._skipped(paths.lock, token):
                return self._inner.get(key)
            lock = self._try_lock(paths.lock)
            if lock is None and time.monotonic() > deadline:
                logger.warning(
                    'Waited %.0f s for another process to fetch %r; fetching it here',
                    self._lock_timeout,
                    key,
                )
                return self._inner.get(key)
        try:
            data = self._read_copy(paths, token)  # published while we waited
            if data is not None:
                return data, current
            if waited and self._skipped(paths.lock, token):
                return self._inner.get(key)  # the fetch we waited for could not publish
            entry = self._inner.get(key)
            if entry is None:
                self._discard(paths.copy, None)
                return None
            if not self._shareable(entry):
                # Small or unversioned: never copied, so leave no lock file behind
                # (waiters then lock a new one and fetch it themselves, cheaply).
                self._mark_direct(key)
                with contextlib.suppress(OSError):
                    os.unlink(paths.lock)
                with contextlib.suppress(OSError):
                    os.unlink(paths.want)
            else:
                self._admit(lock, paths, entry)
            return entry
        finally:
            self._unlock(lock)

    def _admit(self, lock: int, paths: _Paths, entry: Entry) -> None:
        """Publish ``entry`` once ``min_readers`` processes on the node have read its version.

        Called with the key's lock held. Readers are counted in the lock file
        (``seen:<n>:<token>``), plus the processes that waited for this fetch.
        A version read by one process only is never copied: it costs no
        write and no shared memory.
        """
        token = _token_bytes(entry[1])
        assert token is not None
        seen = self._seen(lock, token)
        readers = seen + 1 + self._wanted(paths)
        if readers < self._min_readers:
            self._mark(lock, b'%s%d:%s' % (_SEEN, readers, token))
            # A copy here holds another version (this one is published only
            # under the lock we hold): stale, so free its space now.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(paths.copy)
            self._sweep()
        elif not self._publish(paths, entry):
            self._mark(lock, _SKIP + token)
        else:
            self._mark(lock, b'')

    def _shareable(self, entry: Entry) -> bool:
        return _nbytes(entry[0]) >= self._min_bytes and _token_bytes(entry[1]) is not None

    def _publish_unlocked(self, key: str, entry: Entry) -> None:
        """Publish ``entry`` if no other process is fetching ``key`` right now."""
        paths = self._paths(key)
        try:
            lock = self._try_lock(paths.lock)
        except OSError:
            return
        if lock is None:
            return
        try:
            self._admit(lock, paths, entry)
        finally:
            self._unlock(lock)

    def _publish(self, paths: _Paths, entry: Entry) -> bool:
        """Write a copy of ``entry`` atomically; False if it does not fit (nothing written)."""
        data, version = entry
        token = _token_bytes(version)
        assert token is not None
        head = _header(token, _nbytes(data))
        size = len(head) + _nbytes(data)
        if size > self._max_bytes:
            logger.debug('Not publishing %s: %d bytes > max_bytes', paths.name, size)
            return False
        try:
            with self._dir_locked():
                if not self._make_room(size, paths.copy):
                    return False
                tmp = os.path.join(
                    self.directory,
                    f'{_TMP_PREFIX}{paths.name}-{os.getpid()}-{os.urandom(4).hex()}',
                )
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    try:
                        write_all(fd, [head, data])
                        os.fchmod(fd, 0o400)
                        _touch(fd)
                    finally:
                        os.close(fd)
                    os.rename(tmp, paths.copy)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
        except OSError as e:
            if e.errno in _FULL_ERRNOS:
                logger.info('Not publishing %s: %s is full', paths.name, self.directory)
                return False
            raise self._io_error(e, 'publish a node copy in', self.directory) from e
        return True

    def _make_room(self, size: int, replacing: str) -> bool:
        """Remove least recently read copies until ``size`` more bytes fit; False if they cannot.

        Called with the directory lock held, so publishers do not race for room.
        """
        copies, total = self._scan(replacing)
        copies.sort()
        for _, victim_size, path in copies:
            if total + size <= self._max_bytes:
                break
            self._remove_copy(path)
            total -= victim_size
        if total + size > self._max_bytes:
            return False
        fs = os.statvfs(self.directory)
        free = fs.f_bavail * fs.f_frsize
        if free - size < self._min_free:
            logger.info(
                'Not publishing %d bytes: %s would keep less than %d bytes free',
                size,
                self.directory,
                self._min_free,
            )
            return False
        return True

    def _scan(self, replacing: str = '') -> tuple[list[tuple[int, int, str]], int]:
        """The copies (last use, size, path) and the bytes they and live temporary files hold.

        Removes on the way what nobody needs: temporary files of dead writers,
        and notes (lock files of keys without a copy) unused for
        :data:`_NOTE_SECONDS`. Called with the directory lock held.
        """
        copies: list[tuple[int, int, str]] = []
        notes: list[tuple[float, str]] = []
        names: set[str] = set()
        total = 0
        now = time.time()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if entry.name.startswith(_TMP_PREFIX):
                    if self._stale_tmp(entry.name, st.st_mtime, now):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                    else:
                        total += st.st_size
                elif len(entry.name) == _NAME_CHARS:
                    names.add(entry.name)
                    if entry.path != replacing:
                        copies.append((st.st_mtime_ns, st.st_size, entry.path))
                        total += st.st_size
                elif entry.name.endswith(_LOCK_SUFFIX) and entry.name != _DIR_LOCK:
                    notes.append((st.st_mtime, entry.path))
        for mtime, path in notes:
            name = os.path.basename(path)[:_NAME_CHARS]
            if name not in names and now - mtime > _NOTE_SECONDS:
                self._remove_copy(path[: -len(_LOCK_SUFFIX)])
        return copies, total

    def _sweep(self) -> None:
        """Remove old notes now and then, for keys that are read but never published."""
        self._notes_written += 1
        if self._notes_written % _SWEEP_EVERY == 0:
            with contextlib.suppress(OSError), self._dir_locked(wait=False) as locked:
                if locked:  # else a publisher holds it, and scans anyway
                    self._scan()

    @staticmethod
    def _stale_tmp(name: str, mtime: float, now: float) -> bool:
        """Whether a temporary file was left by a dead writer (or is very old)."""
        if now - mtime > _STALE_TMP_SECONDS:
            return True
        try:
            pid = int(name[len(_TMP_PREFIX) :].split('-')[1])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _drop(self, key: str) -> None:
        """Remove this node's copy of ``key`` (after a write or an evict)."""
        self._forget_direct(key)
        self._remove_copy(self._paths(key).copy)

    def _remove_copy(self, copy: str) -> None:
        """Unlink a copy, and its lock file when no process is fetching it."""
        lock_path = copy + _LOCK_SUFFIX
        try:
            lock = self._try_lock(lock_path, create=False)
        except OSError:
            lock = None
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(copy)
            if lock is not None:
                for path in (lock_path, copy + _WANT_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
        except OSError as e:
            raise self._io_error(e, 'remove the node copy', copy) from e
        finally:
            if lock is not None:
                self._unlock(lock)

    # -- locks -------------------------------------------------------------------------

    def _try_lock(self, path: str, *, create: bool = True) -> int | None:
        """Hold the ``flock`` on ``path`` without waiting: its descriptor, or None if busy.

        A lock file is removed only by a holder of its lock, so after locking,
        the file must still be the one at ``path``; otherwise try again.
        """
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(path, flags, 0o600)
            except FileNotFoundError:
                if not create:
                    return None
                self._ensure_dir()  # removed by cleanup() in another process
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            if self._still_at(fd, path):
                self._held.add(fd)
                return fd
            os.close(fd)
            if not create:
                return None

    @staticmethod
    def _still_at(fd: int, path: str) -> bool:
        try:
            return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _unlock(self, fd: int) -> None:
        self._held.discard(fd)
        os.close(fd)  # closing the only descriptor releases the flock

    @contextlib.contextmanager
    def _dir_locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the directory's lock (publishers hold it for one write); yields whether held.

        With ``wait=False``, yields False at once if another process holds it.
        """
        path = os.path.join(self.directory, _DIR_LOCK)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except FileNotFoundError:
                self._ensure_dir()
                continue
            self._held.add(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._unlock(fd)
                yield False
                return
            except BaseException:
                self._unlock(fd)
                raise
            if self._still_at(fd, path):
                break
            self._unlock(fd)
        try:
            yield True
        finally:
            self._unlock(fd)

    def _skipped(self, lock_path: str, token: bytes) -> bool:
        """Whether a fetcher of this version just left it unpublished (so fetch without waiting).

        The mark is only trusted for :data:`_SKIP_SECONDS`: it is meant for the
        readers that waited for that fetch; later ones try to publish again
        (space may have been freed meanwhile).
        """
        try:
            with open(lock_path, 'rb') as f:
                if time.time() - os.fstat(f.fileno()).st_mtime > _SKIP_SECONDS:
                    return False
                return f.read(len(_SKIP) + _MAX_TOKEN + 1) == _SKIP + token
        except OSError:
            return False

    @staticmethod
    def _mark(lock: int, content: bytes) -> None:
        """Replace the lock file's note (written only by the lock's holder)."""
        with contextlib.suppress(OSError):
            os.ftruncate(lock, 0)
            if content:
                os.pwrite(lock, content, 0)

    @staticmethod
    def _seen(lock: int, token: bytes) -> int:
        """How many processes read version ``token`` without publishing it (the lock's note)."""
        try:
            note = os.pread(lock, len(_SEEN) + 24 + _MAX_TOKEN, 0)
        except OSError:
            return 0
        if not note.startswith(_SEEN):
            return 0
        count, _, found = note[len(_SEEN) :].partition(b':')
        return int(count) if found == token and count.isdigit() else 0

    @staticmethod
    def _want(paths: _Paths) -> None:
        """Tell the process fetching this key that one more reader waits for its copy."""
        with contextlib.suppress(OSError):
            fd = os.open(paths.want, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b'w')
            finally:
                os.close(fd)

    @staticmethod
    def _wanted(paths: _Paths) -> int:
        """How many readers waited for this fetch (and reset the count)."""
        try:
            waiting = os.stat(paths.want).st_size
            os.unlink(paths.want)
        except OSError:
            return 0
        return waiting

    # -- small and unversioned keys ----------------------------------------------------------

    def _is_direct(self, key: str) -> bool:
        return key in self._direct

    def _mark_direct(self, key: str) -> None:
        """Remember that ``key`` was not worth a copy: read it straight from the inner store."""
        with self._direct_lock:
            self._direct[key] = None
            self._direct.move_to_end(key)
            while len(self._direct) > _DIRECT_KEYS:
                self._direct.popitem(last=False)

    def _forget_direct(self, key: str) -> None:
        with self._direct_lock:
            self._direct.pop(key, None)

    # -- directories and errors ----------------------------------------------------------

    def _ensure_dir(self) -> None:
        """Create the copies' directory (mode 0700) and refuse one another user planted."""
        for path in (self._root, self.directory):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            except OSError as e:
                raise StoreConfigError(
                    f'NodeConnector: cannot create {path}: {e.strerror}. Pass directory= a '
                    'writable directory on a node-local memory-backed file system.',
                ) from e
            if path == self.directory or self._options['directory'] is None:
                _check_own_dir(path)  # a directory given by the user may be shared
            elif not os.path.isdir(path):
                raise StoreConfigError(f'NodeConnector: directory {path} is not a directory.')

    def _io_error(self, error: OSError, action: str, path: str) -> StoreIOError:
        return StoreIOError(
            error.errno,
            f'NodeConnector: cannot {action} {path}: {error.strerror or error}. Check the '
            f'directory (free space, permissions), or read without the node tier.',
        )
