"""Large writable buffers for received payloads, and file mappings that are safe to keep.

``bytearray(n)`` zero-fills its memory in user space before the payload
overwrites it, and faults it in 4 KiB pages; for payloads of tens of megabytes
that costs as much as the copy itself (more on virtual machines). Buffers of
at least 32 MiB here are anonymous mappings that ask for transparent huge
pages. Smaller objects keep ordinary ``bytearray``s, which measured faster
below those sizes (and do not count against the process's map limit).

Files of at least 1 MiB may be *mapped* instead of read (:func:`map_file`),
which the file stores do only where a mapping cannot fail later
(:func:`can_map`): a page of a mapped file is read when first touched, and if
the file is gone or shorter by then, the process dies of ``SIGBUS`` with no
exception to catch. On a network or cluster file system (NFS, Lustre, GPFS,
BeeGFS, CIFS, FUSE, ...) another node's unlink or overwrite makes a later
page-in fail (``ESTALE``), so only local file systems named in
:data:`LOCAL_FILE_SYSTEMS` are mapped; anything else, or any system without
``fstatfs``, is read into memory.

A mapping here holds no file descriptor: before Python 3.13 (no
``trackfd=False``), :class:`mmap.mmap` keeps a duplicate descriptor open for
every live mapping, so a thousand resolved objects would exhaust a typical
``RLIMIT_NOFILE``; there the mapping is made with the C library's ``mmap``
through ``ctypes`` and unmapped when the last view of it is released.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import sys
from collections.abc import Sequence
from typing import Union

from proxystore.serialize import Buffer

__all__ = [
    'ALLOCATE_THRESHOLD',
    'LOCAL_FILE_SYSTEMS',
    'MAP_THRESHOLD',
    'REMOTE_FILE_SYSTEMS',
    'allocate',
    'buffer_size',
    'can_map',
    'can_map_device',
    'file_system_type',
    'map_file',
    'write_all',
]

#: Files at least this large are mapped instead of read (where :func:`can_map`).
MAP_THRESHOLD = 1 << 20
#: Buffers at least this large are anonymous mappings instead of ``bytearray``.
ALLOCATE_THRESHOLD = 32 << 20

#: ``statfs`` magic numbers (``f_type``) of file systems whose files only this
#: node changes, so a mapping of a file that is never rewritten in place stays valid.
LOCAL_FILE_SYSTEMS: dict[int, str] = {
    0x01021994: 'tmpfs',
    0x858458F6: 'ramfs',
    0x958458F6: 'hugetlbfs',
    0x0000EF53: 'ext2/ext3/ext4',
    0x58465342: 'xfs',
    0x9123683E: 'btrfs',
    0xF2F52010: 'f2fs',
    0x2FC12FC1: 'zfs',
    0xCA451A4E: 'bcachefs',
    0x52654973: 'reiserfs',
    0x3153464A: 'jfs',
    0x794C7630: 'overlayfs',
}

#: Known file systems that are *not* mapped (names for log messages and docs):
#: another node can remove or replace a file under a mapping.
REMOTE_FILE_SYSTEMS: dict[int, str] = {
    0x00006969: 'nfs',
    0x0BD00BD0: 'lustre',
    0x47504653: 'gpfs',
    0x19830326: 'beegfs',
    0x00C36400: 'ceph',
    0xFF534D42: 'cifs',
    0xFE534D42: 'smb2',
    0x0000517B: 'smb',
    0x65735546: 'fuse',
    0x01021997: 'v9fs',
    0x5346414F: 'afs',
    0x7461636F: 'ocfs2',
    0x01161970: 'gfs2',
    0x73757245: 'coda',
}

WritableBuffer = Union[bytearray, memoryview]

_ANON_FLAGS = getattr(mmap, 'MAP_PRIVATE', 0) | getattr(mmap, 'MAP_ANONYMOUS', 0)
_HUGEPAGE = getattr(mmap, 'MADV_HUGEPAGE', None)


def allocate(size: int) -> WritableBuffer:
    """Return a writable buffer of ``size`` bytes (contents undefined until written)."""
    if size < ALLOCATE_THRESHOLD or not _ANON_FLAGS:
        return bytearray(size)
    mapping = mmap.mmap(-1, size, flags=_ANON_FLAGS)
    if _HUGEPAGE is not None:
        with contextlib.suppress(OSError):  # kernels without transparent huge pages
            mapping.madvise(_HUGEPAGE)
    return memoryview(mapping)


class _Libc:
    """The few C library calls used here, typed once (Linux only)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int64,
        ]
        self.munmap = libc.munmap
        self.munmap.restype = ctypes.c_int
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.fstatfs = libc.fstatfs
        self.fstatfs.restype = ctypes.c_int
        self.fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]


_libc: _Libc | None = None
if sys.platform.startswith('linux') and ctypes.sizeof(ctypes.c_void_p) == 8:
    with contextlib.suppress(OSError, AttributeError):
        _libc = _Libc()

_MAP_FAILED = ctypes.c_void_p(-1).value
_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
_TRACKFD = sys.version_info >= (3, 13)
_MAP_PRIVATE = getattr(mmap, 'MAP_PRIVATE', 0)
_STATFS_SIZE = 256  # struct statfs is 120 bytes on 64-bit Linux; f_type comes first


def file_system_type(fd: int) -> int | None:
    """The ``statfs`` magic number of the file system holding ``fd``, or None if unknown."""
    if _libc is None:
        return None
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc.fstatfs(fd, buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def can_map(fd: int) -> bool:
    """Whether the file system of ``fd`` is local, so a mapping of it cannot go stale.

    Unknown file systems count as not local: reading costs a copy, a stale
    mapping costs the process.
    """
    return _libc is not None and file_system_type(fd) in LOCAL_FILE_SYSTEMS


_local_devices: dict[int, bool] = {}


def can_map_device(fd: int, device: int) -> bool:
    """:func:`can_map` for ``fd`` on device ``device`` (its ``st_dev``), remembered per device."""
    local = _local_devices.get(device)
    if local is None:
        local = _local_devices[device] = can_map(fd)
    return local


class _Mapping:
    """Unmaps its pages when freed: kept in the ``__dict__`` of the array over them.

    The array is the buffer exporter that every view and numpy array made
    from the mapping keeps alive, so this runs when nothing can read it.
    """

    __slots__ = ('address', 'size')

    def __init__(self, size: int) -> None:
        self.address = 0
        self.size = size

    def __del__(self) -> None:
        if self.address and _libc is not None:
            _libc.munmap(self.address, self.size)


def map_file(fd: int, size: int) -> memoryview:
    """Map an open file privately: writable, copy-on-write, pages read on first use.

    No descriptor is kept: ``fd`` may be closed right away, and the mapping is
    removed once nothing references the returned view (or views and arrays
    made from it). The file must never shrink while mapped (see :func:`can_map`).

    Raises:
        OSError: the mapping failed (for example the process's map limit).

    """
    if _TRACKFD:  # Python >= 3.13 can map without keeping a descriptor
        mapping = mmap.mmap(fd, size, flags=_MAP_PRIVATE, prot=_PROT_RW, trackfd=False)  # type: ignore[call-arg,unused-ignore]
        return memoryview(mapping)
    if _libc is None:
        return memoryview(mmap.mmap(fd, size, flags=_MAP_PRIVATE, prot=_PROT_RW))
    # Python work right after a large mmap() runs on cold caches (several
    # microseconds a step), so prepare everything first and do little after.
    array_type = ctypes.c_ubyte * size
    owner = _Mapping(size)
    address = _libc.mmap(None, size, _PROT_RW, _MAP_PRIVATE, fd, 0)
    if address is None or address == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    owner.address = address
    array = array_type.from_address(address)
    array._owner = owner  # type: ignore[attr-defined]
    return memoryview(array).cast('B')


_IOV_MAX = 1024


def buffer_size(parts: Sequence[Buffer]) -> int:
    """Total bytes of ``parts``."""
    total = 0
    for part in parts:
        total += len(part) if type(part) is bytes else memoryview(part).nbytes
    return total


def write_all(fd: int, parts: Sequence[Buffer], total: int | None = None) -> None:
    """Write every buffer with ``writev``, resuming after partial writes.

    Linux writes at most ~2 GiB per call, so large objects take several calls;
    resuming (rather than assuming a full write) avoids silent truncation.
    ``total`` is the size of ``parts`` if the caller knows it.
    """
    if len(parts) <= _IOV_MAX:  # the common case: one call writes everything
        if total is None:
            total = buffer_size(parts)
        written = os.writev(fd, parts)
        if written == total:
            return
    else:
        written = 0
    views = [v for v in (memoryview(p).cast('B') for p in parts) if v.nbytes]
    while views:
        while written:
            head = views[0]
            if written >= head.nbytes:
                written -= head.nbytes
                views.pop(0)
            else:
                views[0] = head[written:]
                written = 0
        if views:
            written = os.writev(fd, views[:_IOV_MAX])
