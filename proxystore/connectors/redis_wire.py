"""How the Redis connector lays objects out in Redis, and frames the commands that write them.

Each object is a Redis *list*: a 28-byte head (``b'PXSV'``, the payload's
total length and a random 16-byte version token) followed by the payload in
chunks of at most 256 MiB, under Redis's 512 MB bulk-string limit. An object
that fits in one chunk is one Redis string instead, the same head with the
magic ``b'PXSS'`` in front of the payload. Writing replaces the value in one
``MULTI``/``EXEC`` transaction (or one ``SET``), so readers see the old object
or the new one, never a mix, and every write gets a new token.

Commands are framed here, not by redis-py, whose command packing copies every
byte: the payload's own buffers (array memory included) go to ``sendall``
unchanged. :func:`pack_transaction_plain` frames the same commands with
redis-py, for the fallback when the fast path is off. How values are read
back is :mod:`proxystore.connectors.redis_replies`. Internal to the Redis
connector.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any

import redis

from proxystore.serialize import Buffer

__all__ = [
    'CONNECTION_ERRORS',
    'CRLF',
    'HEAD',
    'HEAD_MAGIC',
    'TOKEN_SIZE',
    'VALUE_MAGIC',
    'coalesce',
    'command',
    'pack_transaction',
    'pack_transaction_plain',
    'read_transaction',
    'send_gets',
    'send_lranges',
    'wait_command',
]

#: Largest list element (and ``RPUSH`` command) written: under Redis's 512 MB limits.
_CHUNK = 256 * 1024 * 1024
#: Head of every list written now: magic, payload length, version token.
HEAD = struct.Struct('<4sQ16s')
HEAD_MAGIC = b'PXSV'
#: Magic of the same head in front of an object written as one Redis string
#: (every object that fits in one chunk): ``SET key head+payload``.
VALUE_MAGIC = b'PXSS'
TOKEN_SIZE = 16
CRLF = b'\r\n'
#: What a lost or timed-out connection raises, in redis-py and in our own socket reads.
CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _chunks(parts: Sequence[Buffer], size: int) -> list[memoryview]:
    """Split the payload's buffers into views of at most ``size`` bytes (no copies)."""
    chunks = []
    for part in parts:
        view = memoryview(part).cast('B')
        for start in range(0, view.nbytes, size):
            chunks.append(view[start : start + size])
    return chunks


def _bulk(data: bytes) -> bytes:
    return b'$%d\r\n%s\r\n' % (len(data), data)


def _list_groups(parts: Sequence[Buffer]) -> list[list[Buffer]]:
    """The list elements of one object (head, then chunks), grouped one ``RPUSH`` each.

    The head carries a fresh random token, so every write (even of identical
    bytes, from any process) gives the key a new version. Elements are
    grouped into as few ``RPUSH`` commands as keep each under 256 MiB (and so
    under Redis's query-buffer limit). Payload views are not copied.
    """
    chunks = _chunks(parts, _CHUNK)
    total = sum(c.nbytes for c in chunks)
    groups: list[list[Buffer]] = [[HEAD.pack(HEAD_MAGIC, total, os.urandom(TOKEN_SIZE))]]
    size = 0
    for chunk in chunks:
        if size + chunk.nbytes > _CHUNK:
            groups.append([])
            size = 0
        groups[-1].append(chunk)
        size += chunk.nbytes
    return groups


def _byte_views(parts: Sequence[Buffer]) -> tuple[list[Buffer], int]:
    """The payload's non-empty buffers as flat bytes (views, no copies) and their total size."""
    views: list[Buffer] = []
    total = 0
    for part in parts:
        view = part if type(part) is bytes else memoryview(part).cast('B')
        n = len(view)
        if n:
            views.append(view)
            total += n
    return views, total


def _fits_one_value(total: int) -> bool:
    """Whether a payload of ``total`` bytes is written as one string (else as a chunked list)."""
    return total + HEAD.size <= _CHUNK


def _value_head(total: int) -> bytes:
    """The head of a one-string value: a fresh random token, so every write is a new version."""
    return HEAD.pack(VALUE_MAGIC, total, os.urandom(TOKEN_SIZE))


def _pack_put(key: bytes, parts: Sequence[Buffer]) -> tuple[list[Buffer], int]:
    """Frame one object's write; payload views are not copied.

    An object that fits in one chunk is one ``SET key head+payload`` (atomic
    by itself, and it replaces a list as well); a larger one is ``DEL key``
    and ``RPUSH key head chunk...`` (atomic inside the caller's ``MULTI``).
    Returns the buffers to send and the number of commands they contain.
    """
    views, total = _byte_views(parts)
    if _fits_one_value(total):
        frame = b'*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s' % (
            len(key),
            key,
            total + HEAD.size,
            _value_head(total),
        )
        return [frame, *views, CRLF], 1
    groups = _list_groups(parts)
    out: list[Buffer] = [b'*2\r\n$3\r\nDEL\r\n' + _bulk(key)]
    for group in groups:
        out.append(b'*%d\r\n$5\r\nRPUSH\r\n' % (len(group) + 2) + _bulk(key))
        for item in group:
            out.append(b'$%d\r\n' % memoryview(item).nbytes)
            out.append(item)
            out.append(CRLF)
    return out, 1 + len(groups)


def command(*args: bytes) -> bytes:
    """One RESP command, framed (small arguments only)."""
    return b'*%d\r\n' % len(args) + b''.join(_bulk(a) for a in args)


_MULTI = command(b'MULTI')
_EXEC = command(b'EXEC')
_ASKING = command(b'ASKING')


def pack_transaction(
    items: Sequence[tuple[str, Sequence[Buffer]]], *, asking: bool = False
) -> tuple[list[Buffer], int]:
    """Frame ``[ASKING] MULTI (SET, or DEL and RPUSH...) per item EXEC``; payloads are not copied.

    A single object written by one ``SET`` needs no transaction: it is sent
    alone (``queued`` is then 0, see :func:`read_transaction`). Returns the
    buffers and the number of queued commands.
    """
    if len(items) == 1:
        packed, commands = _pack_put(items[0][0].encode('utf-8'), items[0][1])
        if commands == 1:
            return ([_ASKING, *packed] if asking else packed), 0
    buffers: list[Buffer] = [_ASKING, _MULTI] if asking else [_MULTI]
    queued = 0
    for key, parts in items:
        packed, commands = _pack_put(key.encode('utf-8'), parts)
        buffers.extend(packed)
        queued += commands
    buffers.append(_EXEC)
    return buffers, queued


def _plain_commands(key: str, parts: Sequence[Buffer]) -> list[tuple[Any, ...]]:
    """The commands :func:`_pack_put` frames, as redis-py arguments (the fallback)."""
    views, total = _byte_views(parts)
    if _fits_one_value(total):
        return [('SET', key, b''.join([_value_head(total), *views]))]
    return [('DEL', key), *(('RPUSH', key, *group) for group in _list_groups(parts))]


def pack_transaction_plain(
    connection: Any, items: Sequence[tuple[str, Sequence[Buffer]]], *, asking: bool = False
) -> tuple[list[Any], int]:
    """The fallback's ``pack_transaction``: the same commands, framed by redis-py."""
    commands: list[tuple[Any, ...]] = [('ASKING',)] if asking else []
    if len(items) == 1:
        single = _plain_commands(*items[0])
        if len(single) == 1:
            return list(connection.pack_commands(commands + single)), 0
    commands.append(('MULTI',))
    for key, parts in items:
        commands.extend(_plain_commands(key, parts))
    queued = len(commands) - 1 - asking  # SET, DEL and RPUSH commands
    commands.append(('EXEC',))
    return list(connection.pack_commands(commands)), queued


def read_transaction(connection: Any, queued: int, *, asking: bool = False) -> Exception | None:
    """Read the replies of one ``pack_transaction``: the first error, or None.

    ``queued == 0`` is a lone ``SET`` (no ``MULTI``): one reply. Every reply
    is consumed even after an error, so the connection stays usable for the
    replies that follow it in the same pipeline.
    """
    if queued == 0:
        error: Exception | None = None
        for _ in range(1 + asking):  # [+OK for ASKING], then the SET's reply
            try:
                connection.read_response()
            except redis.exceptions.ResponseError as e:
                error = e  # the SET's error (a redirection) wins over ASKING's
        return error
    errors: list[Exception] = []
    for _ in range(queued + 1 + asking):  # +OK for ASKING and MULTI, +QUEUED per command
        try:
            connection.read_response()
        except redis.exceptions.ResponseError as e:
            errors.append(e)
    try:
        replies = connection.read_response()
    except redis.exceptions.ResponseError as e:  # EXECABORT after a queuing error
        return errors[0] if errors else e
    for reply in replies or ():
        if isinstance(reply, Exception):
            return reply
    return errors[0] if errors else None


def wait_command(replicas: int, timeout: float) -> bytes:
    """``WAIT replicas milliseconds``: blocks until the connection's writes reached replicas."""
    return command(b'WAIT', b'%d' % replicas, b'%d' % max(1, int(timeout * 1000)))


def coalesce(buffers: Sequence[Buffer], small: int = 65536) -> list[Buffer]:
    """Join runs of small buffers so each ``sendall`` moves a useful amount.

    Large buffers (array data) pass through as views; only framing and small
    payloads are copied.
    """
    out: list[Buffer] = []
    run: list[Buffer] = []
    run_size = 0
    for buffer in buffers:
        n = memoryview(buffer).nbytes
        if n >= small:
            if run:
                out.append(b''.join(run))
                run, run_size = [], 0
            out.append(buffer)
            continue
        run.append(buffer)
        run_size += n
        if run_size >= small:
            out.append(b''.join(run))
            run, run_size = [], 0
    if run:
        out.append(b''.join(run))
    return out


def send_gets(connection: Any, keys: Sequence[str], indexes: list[int], asking: bool) -> None:
    """Pipeline ``GET key`` for ``keys[i]`` (each after ``ASKING`` when following ASK)."""
    commands: list[tuple[Any, ...]] = []
    for i in indexes:
        if asking:
            commands.append(('ASKING',))
        commands.append(('GET', keys[i]))
    connection.send_packed_command(connection.pack_commands(commands))


def send_lranges(connection: Any, keys: Sequence[str], indexes: list[int], asking: bool) -> None:
    """Pipeline ``LRANGE key 0 -1`` for ``keys[i]`` (each after ``ASKING`` when following ASK)."""
    commands: list[tuple[Any, ...]] = []
    for i in indexes:
        if asking:
            commands.append(('ASKING',))
        commands.append(('LRANGE', keys[i], 0, -1))
    connection.send_packed_command(connection.pack_commands(commands))
