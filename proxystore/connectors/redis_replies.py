"""How the Redis connector reads replies: RESP from the socket, bulk data straight into buffers.

redis-py's reply parsing copies every byte of a large value two or three
times; :class:`ReplyReader` reads replies with ``recv_into`` into one
preallocated, writable buffer per value instead, and checks each value's head
(the layout is :mod:`proxystore.connectors.redis_wire`'s) before allocating.
:func:`parse_value` and :func:`assemble_list` do the same checks on values
redis-py read (the fallback). A value this store cannot read raises
:class:`BadValue`, which the connector turns into a ProxyStore error naming
the key. Connections ask for RESP2; the reader skips RESP3 push frames
anyway. Internal to the Redis connector.
"""

from __future__ import annotations

import struct
from typing import Any

import redis

from proxystore.connectors.buffers import ALLOCATE_THRESHOLD
from proxystore.connectors.buffers import allocate
from proxystore.connectors.redis_wire import CRLF
from proxystore.connectors.redis_wire import HEAD
from proxystore.connectors.redis_wire import HEAD_MAGIC
from proxystore.connectors.redis_wire import TOKEN_SIZE
from proxystore.connectors.redis_wire import VALUE_MAGIC
from proxystore.serialize import Buffer

__all__ = [
    'BadValue',
    'ReplyReader',
    'assemble_list',
    'head_token',
    'parse_value',
    'response_error',
]

#: Head written before per-key versions (read, never written): magic, length.
_OLD_HEAD = struct.Struct('<4sQ')
_OLD_HEAD_MAGIC = b'PXSL'
#: No writer of this format puts more than this in one list element (Redis's
#: default bulk-string limit; chunks are 256 MiB), so a head announcing more
#: than ``(elements - 1) * _MAX_ELEMENT`` bytes is corrupt, not large.
_MAX_ELEMENT = 512 * 1024 * 1024


def _parse_head(head: Buffer) -> tuple[int, bytes | None] | None:
    """``(payload length, version token)`` of a list head this store wrote, else None.

    The older head layout has no token (None): such values are unversioned.
    """
    if len(head) == HEAD.size and head[:4] == HEAD_MAGIC:
        _, total, token = HEAD.unpack(head)
        return total, bytes(token)
    if len(head) == _OLD_HEAD.size and head[:4] == _OLD_HEAD_MAGIC:
        return _OLD_HEAD.unpack(head)[1], None
    return None


class BadValue(Exception):
    """Raised inside a read when the value of the ``index``-th key is not one we can read.

    Never leaves the connector: it turns it into a
    :class:`~proxystore.exceptions.SerializationError` (or ``MemoryError``)
    that names the key and the server. Not a connection error, so the read is
    not retried; the half-read connection is dropped.
    """

    def __init__(self, index: int, reason: str, *, size: int | None = None) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason
        self.size = size  # set when a plausible value did not fit in local memory


def response_error(error: redis.exceptions.ResponseError) -> redis.exceptions.ResponseError:
    """The redis-py class of an error reply the connector read itself (CLUSTERDOWN, TRYAGAIN)."""
    message = str(error)
    for prefix, cls in (
        ('CLUSTERDOWN', redis.exceptions.ClusterDownError),
        ('TRYAGAIN', redis.exceptions.TryAgainError),
    ):
        if message.startswith(prefix + ' '):
            return cls(message[len(prefix) + 1 :])
    return error


class _SocketBuffer:
    """Buffered reads from a socket: what ``sock.makefile('rb')`` gives, cheaper to create.

    Made per request (it may read ahead into the request's next reply, so one
    buffer must read all of a request's replies). Reads of at least the
    buffer's size go straight into the caller's memory.
    """

    __slots__ = ('_buffer', '_end', '_recv_into', '_start')

    def __init__(self, sock: Any, size: int = 16384) -> None:
        self._recv_into = sock.recv_into
        self._buffer = bytearray(size)
        self._start = 0
        self._end = 0

    def close(self) -> None:
        self._start = self._end = 0

    def _fill(self) -> int:
        """Receive more bytes after those buffered (compacting or growing first); 0 at EOF."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buffer):
            kept = self._end - self._start
            if self._start:
                self._buffer[:kept] = self._buffer[self._start : self._end]
            else:  # a line longer than the buffer
                self._buffer.extend(bytes(len(self._buffer)))
            self._start, self._end = 0, kept
        n: int = self._recv_into(memoryview(self._buffer)[self._end :])
        self._end += n
        return n

    def readline(self, limit: int) -> bytes:
        """The next line with its ``\\n``; without it if the peer closed or ``limit`` is hit."""
        while True:
            i = self._buffer.find(b'\n', self._start, self._end)
            if i >= 0:
                line = bytes(self._buffer[self._start : i + 1])
                self._start = i + 1
                return line
            if self._end - self._start >= limit or not self._fill():
                line = bytes(self._buffer[self._start : self._end])
                self._start = self._end
                return line

    def readinto(self, view: memoryview) -> int:
        """Fill the start of ``view`` (at least one byte unless the peer closed); the count."""
        available = self._end - self._start
        if not available:
            if view.nbytes >= len(self._buffer):
                n: int = self._recv_into(view)
                return n
            if not self._fill():
                return 0
            available = self._end - self._start
        n = min(available, view.nbytes)
        view[:n] = memoryview(self._buffer)[self._start : self._start + n]
        self._start += n
        return n


class ReplyReader:
    """Reads RESP replies from a connection's socket, bulk data straight into our buffers."""

    def __init__(self, sock: Any) -> None:
        self._file = _SocketBuffer(sock)

    def close(self) -> None:
        """Drop what was read ahead (the reader is made per request)."""
        self._file.close()

    def line(self) -> bytes:
        """The next line without its CRLF; a connection error if the server closed first."""
        line = self._file.readline(65536)
        if not line.endswith(CRLF):
            raise redis.exceptions.ConnectionError('Connection closed by server while reading.')
        return bytes(line[:-2])

    def header(self) -> bytes:
        """The first line of the next reply, after skipping RESP3 push and attribute frames.

        A RESP2 connection never receives them, and the store asks for RESP2;
        but a RESP3 connection (a newer redis-py's default, or ``HELLO 3``)
        may get ``>`` pushes (client tracking invalidations, maintenance
        notices) between replies at any time: they are read and dropped, not
        taken for the reply.
        """
        while True:
            line = self.line()
            if line[:1] not in (b'>', b'|'):
                return line
            self._skip(line)  # an attribute (|) precedes the reply it annotates

    def _skip(self, line: bytes) -> None:
        """Read and drop the rest of the RESP2/RESP3 value whose first line is ``line``."""
        kind = line[:1]
        if kind in (b'$', b'=', b'!'):  # bulk string, verbatim string, bulk error
            size = int(line[1:])
            if size >= 0:
                self.exact(memoryview(bytearray(size + 2)))
        elif kind in (b'*', b'>', b'~', b'%', b'|'):  # array, push, set, map, attribute
            count = int(line[1:]) * (2 if kind in (b'%', b'|') else 1)
            for _ in range(max(count, 0)):
                self._skip(self.line())
        # Anything else (+ - : _ , # () is one line, already read.

    def reply(self) -> bytes | redis.exceptions.ResponseError:
        """A simple reply's text (``+PONG`` gives ``b'PONG'``), or its error; other replies raw."""
        line = self.header()
        if line[:1] == b'-':
            return redis.exceptions.ResponseError(line[1:].decode(errors='replace'))
        if line[:1] in (b'$', b'*', b'=', b'!', b'~', b'%'):
            self._skip(line)
        return line[1:] if line[:1] == b'+' else line

    def exact(self, view: memoryview) -> None:
        """Fill all of ``view`` from the socket; a connection error if the server closed first."""
        filled = 0
        while filled < view.nbytes:
            n = self._file.readinto(view[filled:])
            if not n:
                raise redis.exceptions.ConnectionError('Connection closed by server while reading.')
            filled += n

    def bulk_into(self, view: memoryview) -> None:
        """Read a bulk string whose header was consumed, plus its CRLF, into ``view``."""
        self.exact(view)
        self.exact(memoryview(bytearray(2)))

    def read_list(
        self, index: int
    ) -> tuple[Buffer, bytes | None] | redis.exceptions.ResponseError | None:
        """Read an LRANGE reply: ``(payload, token)``, an error reply, or None if empty.

        Raises:
            BadValue: the list was not written by this store, or its chunks
                disagree with its head (the rest of the reply is left unread).

        """
        line = self.header()
        if line[:1] == b'-':
            return _error_reply(line)
        if line[:1] == b'_':  # RESP3 null
            return None
        if line[:1] != b'*':
            raise redis.exceptions.InvalidResponse(f'Protocol error: {line[:40]!r} for LRANGE')
        count = int(line[1:])
        if count <= 0:
            return None
        size = int(self.line()[1:])
        # Checked before reading: a foreign list's first element may be huge.
        if size not in (HEAD.size, _OLD_HEAD.size):
            raise BadValue(index, 'a Redis list that ProxyStore did not write')
        head = bytearray(size)
        self.bulk_into(memoryview(head))
        total, token = _check_head(index, head, count)
        buffer = _allocate(index, total)
        view = memoryview(buffer)
        position = 0
        for _ in range(count - 1):
            length = int(self.line()[1:])
            if position + length > total:
                raise BadValue(
                    index, f'a corrupt object: longer than the {total} bytes its head announces'
                )
            self.bulk_into(view[position : position + length])
            position += length
        if position != total:
            raise BadValue(
                index,
                f'a corrupt object: {position} bytes where its head announces {total}',
            )
        return buffer, token

    def read_value(
        self, index: int
    ) -> tuple[Buffer, bytes | None] | redis.exceptions.ResponseError | None:
        """Read a GET reply: ``(payload, token)``, an error reply (WRONGTYPE for a list), or None.

        A string without this store's head (``SET`` by another tool) is the
        payload itself, unversioned (token None). A small reply already in the
        receive buffer is parsed in place (the common case: one receive).

        Raises:
            BadValue: the head announces another length than the string holds.

        """
        f = self._file
        if f._start == f._end:
            f._fill()
        buf, start = f._buffer, f._start
        eol = buf.find(b'\n', start, f._end)
        if eol > start + 1 and buf[start] == 0x24 and buf[eol - 1] == 0x0D:  # $<size>\r\n
            size = int(buf[start + 1 : eol - 1])
            f._start = eol + 1
        else:
            line = self.header()
            if line[:1] == b'-':
                return _error_reply(line)
            if line[:1] == b'_':  # RESP3 null
                return None
            if line[:1] != b'$':
                raise redis.exceptions.InvalidResponse(f'Protocol error: {line[:40]!r} for GET')
            size = int(line[1:])
        if size < 0:
            return None
        body = f._start
        if f._end - body >= size + 2 and size < ALLOCATE_THRESHOLD:  # all here: slice it out
            if buf[body + size : body + size + 2] != CRLF:
                raise redis.exceptions.InvalidResponse('Protocol error: a bulk string without CRLF')
            f._start = body + size + 2
            if size >= HEAD.size and buf[body : body + 4] == VALUE_MAGIC:
                _, token = _check_value_head(index, buf[body : body + HEAD.size], size)
                return buf[body + HEAD.size : body + size], token
            return buf[body : body + size], None
        head = bytearray(min(size, HEAD.size))
        self.exact(memoryview(head))
        if size >= HEAD.size and head[:4] == VALUE_MAGIC:
            total, token = _check_value_head(index, head, size)
            buffer = _allocate(index, total)
            self.bulk_into(memoryview(buffer))
            return buffer, token
        buffer = _allocate(index, size)  # a plain value: the bytes are the payload
        view = memoryview(buffer)
        view[: len(head)] = head
        self.bulk_into(view[len(head) :])
        return buffer, None


def _error_reply(line: bytes) -> redis.exceptions.ResponseError:
    """The error of an ``-ERR...`` reply line; transient and authentication errors are raised."""
    message = line[1:].decode(errors='replace')
    if message.startswith('LOADING'):  # transient: retried like a lost connection
        raise redis.exceptions.BusyLoadingError(message)
    if message.startswith(('NOAUTH', 'WRONGPASS')):
        raise redis.exceptions.AuthenticationError(message)
    return redis.exceptions.ResponseError(message)  # NOPERM, WRONGTYPE: per key


def _check_value_head(index: int, head: Buffer, size: int) -> tuple[int, bytes]:
    """``(total, token)`` of a one-string value's head; its length must match the string's."""
    _, total, token = HEAD.unpack(head)
    if total != size - HEAD.size:
        raise BadValue(
            index, f'a corrupt object: {size - HEAD.size} bytes where its head announces {total}'
        )
    return total, bytes(token)


def parse_value(index: int, value: bytes) -> tuple[Buffer, bytes | None]:
    """The fallback's ``read_value``: ``(payload copy, token)`` of a GET reply's bytes."""
    size = len(value)
    if size >= HEAD.size and value[:4] == VALUE_MAGIC:
        total, token = _check_value_head(index, value[: HEAD.size], size)
        buffer = _allocate(index, total)
        memoryview(buffer)[:] = memoryview(value)[HEAD.size :]
        return buffer, token
    buffer = _allocate(index, size)
    memoryview(buffer)[:] = value
    return buffer, None


def _check_head(index: int, head: Buffer, count: int) -> tuple[int, bytes | None]:
    """``(total, token)`` of a list's head, refusing foreign lists and impossible sizes.

    Shared by the fast reader and the fallback: a head announcing more than
    its ``count - 1`` chunks can hold is corrupt, and is refused before any
    allocation.
    """
    parsed = _parse_head(head)
    if parsed is None:
        raise BadValue(index, 'a Redis list that ProxyStore did not write')
    total, token = parsed
    if total > (count - 1) * _MAX_ELEMENT:
        raise BadValue(
            index, f'a corrupt object: its head announces {total} bytes in {count - 1} chunks'
        )
    return total, token


def _allocate(index: int, total: int) -> Buffer:
    try:
        return allocate(total)
    except (MemoryError, OSError) as e:
        raise BadValue(index, str(e) or type(e).__name__, size=total) from e


def assemble_list(index: int, elements: Any) -> tuple[Buffer, bytes | None] | None:
    """The fallback's ``read_list``: ``(payload, token)`` from LRANGE's elements, None if empty.

    Raises:
        BadValue: as ``ReplyReader.read_list`` (lengths are checked before allocating).

    """
    if not elements:
        return None
    if not all(isinstance(e, bytes) for e in elements):
        raise BadValue(index, 'a Redis list that ProxyStore did not write')
    if len(elements[0]) not in (HEAD.size, _OLD_HEAD.size):
        raise BadValue(index, 'a Redis list that ProxyStore did not write')
    total, token = _check_head(index, elements[0], len(elements))
    size = sum(len(e) for e in elements[1:])
    if size > total:
        raise BadValue(index, f'a corrupt object: longer than the {total} bytes its head announces')
    if size != total:
        raise BadValue(index, f'a corrupt object: {size} bytes where its head announces {total}')
    buffer = _allocate(index, total)
    view = memoryview(buffer)
    position = 0
    for element in elements[1:]:
        view[position : position + len(element)] = element
        position += len(element)
    return buffer, token


def head_token(head: Any) -> bytes | None:
    """The version token in the first bytes of a value (``GETRANGE``) or list (``LINDEX``).

    None for a missing key and for unversioned values (plain ``SET``, the
    older list head, data another tool wrote).
    """
    if head is None or len(head) not in (HEAD.size, _OLD_HEAD.size):
        return None
    if head[:4] == VALUE_MAGIC:
        return bytes(head[-TOKEN_SIZE:])
    parsed = _parse_head(head)
    return parsed[1] if parsed is not None else None
