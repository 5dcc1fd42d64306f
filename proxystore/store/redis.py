"""A store on a Redis server, reachable from every node that can reach the server.

Each object is a Redis *list*: a 12-byte head (``b'PXSL'`` and the payload's
total length) followed by the payload in chunks of at most 256 MiB, under
Redis's 512 MB bulk-string limit. Writing replaces the list in one
``MULTI``/``EXEC`` transaction, so readers see the old object or the new one,
never a mix.

Large values bypass redis-py's command packing and reply parsing, which copy
every byte two or three times: commands are framed here and the payload's own
buffers (array memory included) are handed to ``sendall``; replies are read
with ``recv_into`` straight into one preallocated, writable buffer. Everything
else (connections, authentication, TLS, small replies) is redis-py's. Values
written by other tools with plain ``SET`` are still readable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from proxystore.exceptions import ProxyStoreError
from proxystore.exceptions import StoreAuthenticationError
from proxystore.exceptions import StoreConnectionError
from proxystore.exceptions import StoreError
from proxystore.exceptions import StoreFullError
from proxystore.serialize import Buffer
from proxystore.store.base import Store
from proxystore.store.buffers import allocate

__all__ = ['RedisStore']

logger = logging.getLogger(__name__)

T = TypeVar('T')

_CHUNK = 256 * 1024 * 1024
_HEAD = struct.Struct('<4sQ')
_HEAD_MAGIC = b'PXSL'
_CRLF = b'\r\n'
_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


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


def _pack_put(key: bytes, parts: Sequence[Buffer]) -> tuple[list[Buffer], int]:
    """Frame ``DEL key`` and ``RPUSH key head chunk...``; payload views are not copied.

    Returns the buffers to send and the number of commands they contain.
    Elements are grouped into as few ``RPUSH`` commands as keep each under
    256 MiB (and so under Redis's query-buffer limit).
    """
    chunks = _chunks(parts, _CHUNK)
    total = sum(c.nbytes for c in chunks)
    out: list[Buffer] = [b'*2\r\n$3\r\nDEL\r\n' + _bulk(key)]
    groups: list[list[Buffer]] = [[_HEAD.pack(_HEAD_MAGIC, total)]]
    size = 0
    for chunk in chunks:
        if size + chunk.nbytes > _CHUNK:
            groups.append([])
            size = 0
        groups[-1].append(chunk)
        size += chunk.nbytes
    for group in groups:
        out.append(b'*%d\r\n$5\r\nRPUSH\r\n' % (len(group) + 2) + _bulk(key))
        for item in group:
            out.append(b'$%d\r\n' % memoryview(item).nbytes)
            out.append(item)
            out.append(_CRLF)
    return out, 1 + len(groups)


def _coalesce(buffers: Sequence[Buffer], small: int = 65536) -> list[Buffer]:
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


class _ReplyReader:
    """Reads RESP replies from a connection's socket, bulk data straight into our buffers."""

    def __init__(self, sock: Any) -> None:
        self._file = sock.makefile('rb', buffering=65536)

    def close(self) -> None:
        self._file.close()

    def line(self) -> bytes:
        line = self._file.readline(65536)
        if not line.endswith(_CRLF):
            raise redis.exceptions.ConnectionError('Connection closed by server while reading.')
        return bytes(line[:-2])

    def exact(self, view: memoryview) -> None:
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

    def read_list(self) -> Buffer | redis.exceptions.ResponseError | None:
        """Read an LRANGE reply written by this store into one buffer (None if empty)."""
        line = self.line()
        if line[:1] == b'-':
            message = line[1:].decode(errors='replace')
            if message.startswith('LOADING'):  # transient: retried like a lost connection
                raise redis.exceptions.BusyLoadingError(message)
            if message.startswith(('NOAUTH', 'WRONGPASS', 'NOPERM')):
                raise redis.exceptions.AuthenticationError(message)
            return redis.exceptions.ResponseError(message)
        count = int(line[1:])
        if count <= 0:
            return None
        header = self.line()
        size = int(header[1:])
        head = bytearray(size)
        self.bulk_into(memoryview(head))
        if size != _HEAD.size or head[:4] != _HEAD_MAGIC:
            raise StoreError('A Redis list under this key was not written by ProxyStore.')
        (total,) = struct.unpack_from('<Q', head, 4)
        buffer = allocate(total)
        view = memoryview(buffer)
        position = 0
        for _ in range(count - 1):
            length = int(self.line()[1:])
            if position + length > total:
                raise StoreError('A stored object is longer than its head announces.')
            self.bulk_into(view[position : position + length])
            position += length
        if position != total:
            raise StoreError('A stored object is shorter than its head announces.')
        return buffer


class RedisStore(Store):
    """Store objects on a Redis server.

    Args:
        name: Name of the store.
        hostname: Redis server host.
        port: Redis server port.
        db: Redis database number.
        username: Redis ACL user name.
        password: Redis password.
        share_credentials: Put ``username``/``password`` in the store's
            configuration, which travels inside every proxy, so workers can
            connect without their own credentials. Off by default: a pickled
            proxy is then safe to log or send anywhere, and workers read
            ``PROXYSTORE_REDIS_USERNAME``/``PROXYSTORE_REDIS_PASSWORD``.
        timeout: Seconds to wait for the server when connecting and for each
            reply before raising :class:`~proxystore.exceptions.StoreConnectionError`.
        retries: Reconnect attempts (with exponential backoff) after a
            connection error before giving up.
        redis_kwargs: Extra keyword arguments for ``redis.Redis`` (TLS
            options such as ``ssl=True``, ``ssl_ca_certs=...``); they travel
            inside proxies, so put no secrets here.
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    """

    def __init__(
        self,
        name: str,
        *,
        hostname: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        share_credentials: bool = False,
        timeout: float = 30.0,
        retries: int = 3,
        redis_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.hostname = hostname
        self.port = int(port)
        self._db = db
        self._username = username or os.environ.get('PROXYSTORE_REDIS_USERNAME') or None
        self._password = password or os.environ.get('PROXYSTORE_REDIS_PASSWORD') or None
        self._share_credentials = share_credentials
        self._timeout = timeout
        self._retries = retries
        self._redis_kwargs = dict(redis_kwargs or {})
        self._client = redis.Redis(
            host=hostname,
            port=self.port,
            db=db,
            username=self._username,
            password=self._password,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 5.0),
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
            **self._redis_kwargs,
        )

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            'hostname': self.hostname,
            'port': self.port,
            'db': self._db,
            'timeout': self._timeout,
            'retries': self._retries,
        }
        if self._redis_kwargs:
            config['redis_kwargs'] = self._redis_kwargs
        if self._share_credentials:
            config.update(
                username=self._username,
                password=self._password,
                share_credentials=True,
            )
        return config

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translate redis-py errors into ProxyStore errors naming host, port and key."""
        where = f'Redis at {self.hostname}:{self.port} (store {self.name!r}'
        where += f', key {key!r})' if key is not None else ')'
        try:
            yield
        except ProxyStoreError:
            raise
        except redis.exceptions.AuthenticationError as e:
            raise self._auth_error(where, e) from e
        except redis.exceptions.BusyLoadingError as e:
            raise StoreConnectionError(
                f'{where} is still loading its data set: {str(e).rstrip(".")}. Retry shortly, '
                'or raise retries= so the store waits for it.',
            ) from e
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            # OSError: socket errors and timeouts of this module's own reply reader.
            reason = str(e).rstrip('.') or type(e).__name__
            raise StoreConnectionError(
                f'Cannot reach {where}: {reason}. Check that redis-server is running '
                'and that this host can connect to that address.',
            ) from e
        except redis.exceptions.ResponseError as e:
            if str(e).startswith(('NOAUTH', 'WRONGPASS', 'NOPERM')):
                raise self._auth_error(where, e) from e
            if str(e).startswith('OOM'):
                raise StoreFullError(
                    f'{where} is out of memory: {e}. Evict objects or raise maxmemory.',
                ) from e
            raise StoreError(f'{where} refused the command: {e}') from e
        except redis.exceptions.RedisError as e:
            raise StoreError(f'{where} failed: {e}') from e

    @staticmethod
    def _auth_error(where: str, e: Exception) -> StoreAuthenticationError:
        return StoreAuthenticationError(
            f'{where} refused authentication: {e}. Pass username=/password= to the store, '
            'or set PROXYSTORE_REDIS_USERNAME/PROXYSTORE_REDIS_PASSWORD in this process.',
        )

    def _connection(self) -> Any:
        pool = self._client.connection_pool
        try:
            return pool.get_connection()
        except TypeError:  # redis-py < 5.3 needs a command name
            return pool.get_connection('_')

    def _run(self, operation: Callable[[Any], T], key: str | None) -> T:
        """Run ``operation(connection)``, retrying connection errors with backoff.

        Operations here are idempotent (a whole transaction, or a read), so a
        retry after a dropped connection is safe. A connection that failed in
        any way is closed, never returned to the pool half-read.
        """
        pool = self._client.connection_pool
        backoff = ExponentialBackoff(cap=1.0, base=0.05)
        attempt = 0
        while True:
            with self._errors(key):
                connection = None
                try:
                    connection = self._connection()
                    result = operation(connection)
                except redis.exceptions.AuthenticationError:
                    if connection is not None:
                        connection.disconnect()
                        pool.release(connection)
                    raise
                except _CONNECTION_ERRORS:
                    if connection is not None:
                        connection.disconnect()
                        pool.release(connection)
                    attempt += 1
                    if attempt > self._retries:
                        raise
                    time.sleep(backoff.compute(attempt))
                    continue
                except BaseException:
                    if connection is not None:
                        connection.disconnect()
                        pool.release(connection)
                    raise
                pool.release(connection)
                return result

    def _put(self, key: str, parts: Sequence[Buffer]) -> None:
        self._put_batch([(key, parts)])

    def _put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        buffers: list[Buffer] = [b'*1\r\n$5\r\nMULTI\r\n']
        queued = 0
        for key, parts in items:
            packed, commands = _pack_put(key.encode('utf-8'), parts)
            buffers.extend(packed)
            queued += commands
        buffers.append(b'*1\r\n$4\r\nEXEC\r\n')
        buffers = _coalesce(buffers)

        def transaction(connection: Any) -> None:
            connection.send_packed_command(buffers)
            errors = []
            for _ in range(queued + 1):  # +OK for MULTI, +QUEUED for each command
                try:
                    connection.read_response()
                except redis.exceptions.ResponseError as e:
                    errors.append(e)
            try:
                replies = connection.read_response()
            except redis.exceptions.ResponseError as e:  # EXECABORT after a queuing error
                raise errors[0] if errors else e from None
            for reply in replies or ():
                if isinstance(reply, Exception):
                    raise reply

        self._run(transaction, items[0][0] if len(items) == 1 else None)

    def _get(self, key: str) -> Buffer | None:
        return self._get_batch([key])[0]

    def _get_batch(self, keys: Sequence[str]) -> list[Buffer | None]:
        def read(connection: Any) -> list[Any]:
            sock = getattr(connection, '_sock', None)
            if sock is None:
                connection.connect()
                sock = getattr(connection, '_sock', None)
            commands = [('LRANGE', key, 0, -1) for key in keys]
            connection.send_packed_command(connection.pack_commands(commands))
            reader = _ReplyReader(sock)
            try:
                return [reader.read_list() for _ in keys]
            finally:
                reader.close()

        replies = self._run(read, keys[0] if len(keys) == 1 else None)
        results: list[Buffer | None] = []
        for key, reply in zip(keys, replies):
            if isinstance(reply, redis.exceptions.ResponseError):
                if 'WRONGTYPE' not in str(reply):
                    with self._errors(key):
                        raise reply
                with self._errors(key):
                    value: Any = self._client.get(key)  # written by another tool with SET
                results.append(bytearray(value) if value is not None else None)
            else:
                results.append(reply)
        return results

    def _exists(self, key: str) -> bool:
        with self._errors(key):
            return bool(self._client.exists(key))

    def _evict(self, key: str) -> None:
        with self._errors(key):
            self._client.delete(key)

    def _close(self) -> None:
        self._client.close()

    def _cleanup(self) -> None:
        """Close the connections. Objects stay on the server (it is shared); evict them."""
        self._close()
