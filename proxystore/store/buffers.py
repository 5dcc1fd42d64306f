"""Large writable buffers for received payloads, without needless page work.

``bytearray(n)`` zero-fills its memory in user space before the payload
overwrites it; for large payloads that is a full extra pass over memory (and,
on virtual machines, a storm of page faults). Large buffers here come from
anonymous mappings pre-faulted by the kernel, and files are mapped rather
than read. Small objects keep ordinary ``bytearray``s: a mapping per small
object would cost more than it saves (and count against the process's map
limit).
"""

from __future__ import annotations

import mmap
from typing import Union

__all__ = ['MAP_THRESHOLD', 'allocate', 'map_file']

#: Payloads at least this large use mappings instead of ``bytearray``.
MAP_THRESHOLD = 1 << 20

WritableBuffer = Union[bytearray, memoryview]

_ANON_FLAGS = getattr(mmap, 'MAP_PRIVATE', 0) | getattr(mmap, 'MAP_ANONYMOUS', 0)
_POPULATE = getattr(mmap, 'MAP_POPULATE', 0)


def allocate(size: int) -> WritableBuffer:
    """Return a writable buffer of ``size`` bytes (contents undefined until written)."""
    if size < MAP_THRESHOLD or not _ANON_FLAGS:
        return bytearray(size)
    return memoryview(mmap.mmap(-1, size, flags=_ANON_FLAGS | _POPULATE))


def map_file(fd: int, size: int) -> memoryview:
    """Map an open file privately: writable, copy-on-write, pages read on first use.

    The file must not be truncated while mapped; stores only ever replace or
    unlink files, which leaves existing mappings intact.
    """
    return memoryview(
        mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE),
    )
