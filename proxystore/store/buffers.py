"""Large writable buffers for received payloads, without needless page work.

``bytearray(n)`` zero-fills its memory in user space before the payload
overwrites it, and faults it in 4 KiB pages; for payloads of tens of megabytes
that costs as much as the copy itself (more on virtual machines). Buffers of
at least 32 MiB here are anonymous mappings that ask for transparent huge
pages, and files of at least 1 MiB are mapped rather than read. Smaller
objects keep ordinary ``bytearray``s, which measured faster below those sizes
(and do not count against the process's map limit).
"""

from __future__ import annotations

import contextlib
import mmap
from typing import Union

__all__ = ['ALLOCATE_THRESHOLD', 'MAP_THRESHOLD', 'allocate', 'map_file']

#: Files at least this large are mapped instead of read.
MAP_THRESHOLD = 1 << 20
#: Buffers at least this large are anonymous mappings instead of ``bytearray``.
ALLOCATE_THRESHOLD = 32 << 20

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


def map_file(fd: int, size: int) -> memoryview:
    """Map an open file privately: writable, copy-on-write, pages read on first use.

    The file must not be truncated while mapped; stores only ever replace or
    unlink files, which leaves existing mappings intact.
    """
    return memoryview(
        mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE),
    )
