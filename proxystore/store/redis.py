"""A store on a Redis server, reachable from every node that can reach the server.

Each object is a Redis *list*: a 28-byte head (``b'PXSV'``, the payload's
total length and a random 16-byte version token) followed by the payload in
chunks of at most 256 MiB, under Redis's 512 MB bulk-string limit. Writing
replaces the list in one ``MULTI``/``EXEC`` transaction, so readers see the
old object or the new one, never a mix, and every write gets a new token
(``LINDEX key 0`` reads it without the payload). Lists with the older 12-byte
head (``b'PXSL'``, no token) are still read, as unversioned values.

Large values bypass redis-py's command packing and reply parsing, which copy
every byte two or three times: commands are framed here and the payload's own
buffers (array memory included) are handed to ``sendall``; replies are read
with ``recv_into`` straight into one preallocated, writable buffer. Everything
else (connections, authentication, TLS, small replies) is redis-py's. Values
written by other tools with plain ``SET`` are still readable (unversioned).
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import math
import os
import ssl
import struct
import time
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from proxystore.exceptions import ProxyStoreError
from proxystore.exceptions import SerializationError
from proxystore.exceptions import StoreAuthenticationError
from proxystore.exceptions import StoreConfigError
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
#: Head of every list written now: magic, payload length, version token.
_HEAD = struct.Struct('<4sQ16s')
_HEAD_MAGIC = b'PXSV'
#: Head written before per-key versions (read, never written): magic, length.
_OLD_HEAD = struct.Struct('<4sQ')
_OLD_HEAD_MAGIC = b'PXSL'
_TOKEN_SIZE = 16
#: No writer of this format puts more than this in one list element (Redis's
#: default bulk-string limit; chunks are 256 MiB), so a head announcing more
#: than ``(elements - 1) * _MAX_ELEMENT`` bytes is corrupt, not large.
_MAX_ELEMENT = 512 * 1024 * 1024
_CRLF = b'\r\n'
_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
# Not in every redis-py this package supports (>= 4.2): matched by name as well.
_OUT_OF_MEMORY: tuple[type[Exception], ...] = tuple(
    c for c in [getattr(redis.exceptions, 'OutOfMemoryError', None)] if c is not None
)
_NO_PERMISSION: tuple[type[Exception], ...] = tuple(
    c for c in [getattr(redis.exceptions, 'NoPermissionError', None)] if c is not None
)


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

    The head carries a fresh random token, so every write (even of identical
    bytes, from any process) gives the key a new version.

    Returns the buffers to send and the number of commands they contain.
    Elements are grouped into as few ``RPUSH`` commands as keep each under
    256 MiB (and so under Redis's query-buffer limit).
    """
    chunks = _chunks(parts, _CHUNK)
    total = sum(c.nbytes for c in chunks)
    out: list[Buffer] = [b'*2\r\n$3\r\nDEL\r\n' + _bulk(key)]
    groups: list[list[Buffer]] = [[_HEAD.pack(_HEAD_MAGIC, total, os.urandom(_TOKEN_SIZE))]]
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


def _parse_head(head: bytes | bytearray) -> tuple[int, bytes | None] | None:
    """``(payload length, version token)`` of a list head this store wrote, else None.

    The older head layout has no token (None): such values are unversioned.
    """
    if len(head) == _HEAD.size and head[:4] == _HEAD_MAGIC:
        _, total, token = _HEAD.unpack(head)
        return total, bytes(token)
    if len(head) == _OLD_HEAD.size and head[:4] == _OLD_HEAD_MAGIC:
        return _OLD_HEAD.unpack(head)[1], None
    return None


class _BadValue(Exception):
    """Raised inside a read when the value of the ``index``-th key is not one we can read.

    Never leaves this module: the store turns it into a
    :class:`~proxystore.exceptions.SerializationError` (or ``MemoryError``)
    that names the key and the server. Not a connection error, so the read is
    not retried; the half-read connection is dropped.
    """

    def __init__(self, index: int, reason: str, *, size: int | None = None) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason
        self.size = size  # set when a plausible value did not fit in local memory


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

    def read_list(
        self, index: int
    ) -> tuple[Buffer, bytes | None] | redis.exceptions.ResponseError | None:
        """Read an LRANGE reply: ``(payload, token)``, an error reply, or None if empty.

        Raises:
            _BadValue: the list was not written by this store, or its chunks
                disagree with its head (the rest of the reply is left unread).

        """
        line = self.line()
        if line[:1] == b'-':
            message = line[1:].decode(errors='replace')
            if message.startswith('LOADING'):  # transient: retried like a lost connection
                raise redis.exceptions.BusyLoadingError(message)
            if message.startswith(('NOAUTH', 'WRONGPASS')):
                raise redis.exceptions.AuthenticationError(message)
            return redis.exceptions.ResponseError(message)  # NOPERM, WRONGTYPE: per key
        count = int(line[1:])
        if count <= 0:
            return None
        size = int(self.line()[1:])
        # Checked before reading: a foreign list's first element may be huge.
        if size not in (_HEAD.size, _OLD_HEAD.size):
            raise _BadValue(index, 'a Redis list that ProxyStore did not write')
        head = bytearray(size)
        self.bulk_into(memoryview(head))
        parsed = _parse_head(head)
        if parsed is None:
            raise _BadValue(index, 'a Redis list that ProxyStore did not write')
        total, token = parsed
        if total > (count - 1) * _MAX_ELEMENT:
            raise _BadValue(
                index,
                f'a corrupt object: its head announces {total} bytes in {count - 1} chunks',
            )
        try:
            buffer = allocate(total)
        except (MemoryError, OSError) as e:
            raise _BadValue(index, str(e) or type(e).__name__, size=total) from e
        view = memoryview(buffer)
        position = 0
        for _ in range(count - 1):
            length = int(self.line()[1:])
            if position + length > total:
                raise _BadValue(
                    index, f'a corrupt object: longer than the {total} bytes its head announces'
                )
            self.bulk_into(view[position : position + length])
            position += length
        if position != total:
            raise _BadValue(
                index,
                f'a corrupt object: {position} bytes where its head announces {total}',
            )
        return buffer, token


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_keepalive_options(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        _is_int(k) and (_is_int(v) or isinstance(v, bytes)) for k, v in value.items()
    )


_STR = (_is_optional_str, 'a str or None')
_BOOL = (_is_bool, 'True or False')
#: ``redis_kwargs`` options accepted, with a check of the value and what it accepts.
#: Only options that change how a connection is secured or kept alive: they
#: travel inside proxies, so each must be a plain, picklable value.
_ACCEPTED_KWARGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    'ssl': _BOOL,
    'ssl_keyfile': _STR,
    'ssl_certfile': _STR,
    'ssl_cert_reqs': (
        lambda v: v in ('none', 'optional', 'required') or isinstance(v, ssl.VerifyMode),
        "'none', 'optional', 'required' or an ssl.VerifyMode",
    ),
    'ssl_ca_certs': _STR,
    'ssl_ca_path': _STR,
    'ssl_ca_data': _STR,
    'ssl_check_hostname': _BOOL,
    'ssl_password': _STR,
    'ssl_min_version': (
        lambda v: v is None or isinstance(v, ssl.TLSVersion),
        'an ssl.TLSVersion or None',
    ),
    'ssl_ciphers': _STR,
    'ssl_validate_ocsp': _BOOL,
    'ssl_validate_ocsp_stapled': _BOOL,
    'ssl_ocsp_expected_cert': _STR,
    'socket_keepalive': _BOOL,
    'socket_keepalive_options': (_is_keepalive_options, 'a dict of int options to int or bytes'),
    'socket_read_size': (lambda v: _is_int(v) and v > 0, 'an int > 0'),
    'health_check_interval': (
        lambda v: (_is_int(v) or (isinstance(v, float) and math.isfinite(v))) and v >= 0,
        'a number of seconds >= 0',
    ),
    'max_connections': (lambda v: v is None or (_is_int(v) and v > 0), 'an int > 0 or None'),
    'client_name': _STR,
    'lib_name': _STR,
    'lib_version': _STR,
}
#: Options whose other values would change the replies this module parses
#: itself (bytes, RESP2) or how keys are encoded: only their defaults pass.
_FIXED_KWARGS: dict[str, tuple[Any, ...]] = {
    'decode_responses': (False,),
    'protocol': (None, 2, '2'),
    'encoding': ('utf-8', 'utf8', 'UTF-8'),
    'encoding_errors': ('strict',),
}
#: ``redis.Redis`` options that RedisStore sets from its own arguments.
_OWN_KWARGS = {
    'host': 'hostname',
    'port': 'port',
    'db': 'db',
    'username': 'username',
    'password': 'password',
    'socket_timeout': 'timeout',
    'socket_connect_timeout': 'timeout',
    'retry': 'retries',
    'retry_on_error': 'retries',
    'retry_on_timeout': 'retries',
}


def _redis_parameters() -> set[str]:
    return set(inspect.signature(redis.Redis.__init__).parameters) - {'self'}


def _check_redis_kwargs(redis_kwargs: Any) -> dict[str, Any]:
    """Return a copy of ``redis_kwargs`` if RedisStore can work with every option in it.

    Raises:
        StoreConfigError: naming the first option that is refused and why.

    """
    if redis_kwargs is None:
        return {}
    if not isinstance(redis_kwargs, Mapping) or not all(isinstance(k, str) for k in redis_kwargs):
        raise StoreConfigError(
            f'RedisStore redis_kwargs must be a dict of redis.Redis keyword arguments '
            f'(str keys) or None, got {redis_kwargs!r}.',
        )
    accepted = ', '.join(sorted(_ACCEPTED_KWARGS))
    parameters = _redis_parameters()
    for option, value in redis_kwargs.items():
        if option in _OWN_KWARGS:
            raise StoreConfigError(
                f'RedisStore redis_kwargs may not set {option!r}: pass '
                f'{_OWN_KWARGS[option]}= to RedisStore instead.',
            )
        if option in _FIXED_KWARGS:
            if value not in _FIXED_KWARGS[option] or isinstance(value, bool) != isinstance(
                _FIXED_KWARGS[option][0], bool
            ):
                raise StoreConfigError(
                    f'RedisStore redis_kwargs {option}={value!r} is not supported: RedisStore '
                    'reads replies itself as raw bytes over the RESP2 protocol, with UTF-8 '
                    f'keys. Remove {option!r} (its default, '
                    f'{_FIXED_KWARGS[option][0]!r}, is the only value accepted).',
                )
            continue
        if option not in _ACCEPTED_KWARGS:
            if option in parameters:
                reason = (
                    'it changes how RedisStore connects or what the server replies, or holds '
                    'a live object that cannot travel inside proxies'
                )
            else:
                close = difflib.get_close_matches(
                    option, [*_ACCEPTED_KWARGS, *_OWN_KWARGS, *_FIXED_KWARGS], n=1
                )
                reason = 'redis.Redis has no such option' + (
                    f' (did you mean {close[0]!r}?)' if close else ''
                )
            raise StoreConfigError(
                f'RedisStore redis_kwargs option {option!r} is not supported: {reason}. '
                f'Accepted options: {accepted}.',
            )
        check, expected = _ACCEPTED_KWARGS[option]
        if not check(value):
            raise StoreConfigError(
                f'RedisStore redis_kwargs {option} must be {expected}, got {value!r}.',
            )
        if option not in parameters:
            raise StoreConfigError(
                f'RedisStore redis_kwargs option {option!r} needs a newer redis-py than '
                f'{redis.__version__}: upgrade it (pip install -U redis) or remove the option.',
            )
    return dict(redis_kwargs)


def _check_arguments(
    hostname: Any,
    port: Any,
    db: Any,
    username: Any,
    password: Any,
    share_credentials: Any,
    timeout: Any,
    retries: Any,
) -> None:
    """Raise :class:`StoreConfigError` naming the first argument of a wrong type or range."""

    def fail(argument: str, accepted: str, value: Any) -> StoreConfigError:
        return StoreConfigError(
            f'RedisStore {argument} must be {accepted}, got {value!r} ({type(value).__name__}).',
        )

    if (
        not isinstance(hostname, str)
        or not hostname
        or any(c.isspace() or not c.isprintable() for c in hostname)
    ):
        raise fail('hostname', 'a non-empty host name or address (str, no spaces)', hostname)
    if not _is_int(port) or not 0 < port < 65536:
        raise fail('port', 'an int from 1 to 65535', port)
    if not _is_int(db) or db < 0:
        raise fail('db', 'an int >= 0 (a Redis database number)', db)
    if not _is_optional_str(username):
        raise fail('username', 'a str or None', username)
    if not _is_optional_str(password):
        raise fail('password', 'a str or None', password)
    if not _is_bool(share_credentials):
        raise fail('share_credentials', 'True or False', share_credentials)
    if (
        not (_is_int(timeout) or isinstance(timeout, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise fail('timeout', 'a finite number of seconds > 0', timeout)
    if not _is_int(retries) or retries < 0:
        raise fail('retries', 'an int >= 0', retries)


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
        redis_kwargs: Extra keyword arguments for ``redis.Redis``: TLS
            (``ssl=True``, ``ssl_ca_certs=...``) and keep-alive options. They
            travel inside proxies, so put no secrets here. Options that would
            change the replies (``decode_responses``, ``protocol``,
            ``encoding``...) or duplicate an argument above are refused.
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    Raises:
        StoreConfigError: an argument has the wrong type or range (the
            message names it and what is accepted), or ``redis_kwargs`` holds
            an option the store cannot work with.

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
        _check_arguments(
            hostname, port, db, username, password, share_credentials, timeout, retries
        )
        self._redis_kwargs = _check_redis_kwargs(redis_kwargs)
        super().__init__(name, **options)
        self.hostname = hostname
        self.port = port
        self._db = db
        self._username = username or os.environ.get('PROXYSTORE_REDIS_USERNAME') or None
        self._password = password or os.environ.get('PROXYSTORE_REDIS_PASSWORD') or None
        self._share_credentials = share_credentials
        self._timeout = timeout
        self._retries = retries
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

    def _where(self, key: str | None = None) -> str:
        where = f'Redis at {self.hostname}:{self.port} (store {self.name!r}'
        return where + (f', key {key!r})' if key is not None else ')')

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translate redis-py errors into ProxyStore errors naming host, port and key."""
        try:
            yield
        except ProxyStoreError:
            raise
        except redis.exceptions.AuthenticationError as e:
            raise self._auth_error(self._where(key), e) from e
        except redis.exceptions.BusyLoadingError as e:
            raise StoreConnectionError(
                f'{self._where(key)} is still loading its data set: {str(e).rstrip(".")}. '
                'Retry shortly, or raise retries= so the store waits for it.',
            ) from e
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            # OSError: socket errors and timeouts of this module's own reply reader.
            reason = str(e).rstrip('.') or type(e).__name__
            raise StoreConnectionError(
                f'Cannot reach {self._where(key)}: {reason}. Check that redis-server is running '
                'and that this host can connect to that address.',
            ) from e
        except redis.exceptions.ResponseError as e:
            # redis-py strips the OOM/NOPERM prefix it turns into a class: test both.
            message = str(e)
            if isinstance(e, _OUT_OF_MEMORY) or message.startswith('OOM'):
                raise StoreFullError(
                    f'{self._where(key)} is out of memory (maxmemory reached), nothing was '
                    f'written: {message}. Evict objects, or raise maxmemory on the server.',
                ) from e
            if isinstance(e, _NO_PERMISSION) or message.startswith('NOPERM'):
                raise self._auth_error(self._where(key), e) from e
            if message.startswith('NOAUTH'):
                raise self._auth_error(self._where(key), e) from e
            raise StoreError(f'{self._where(key)} refused the command: {message}') from e
        except redis.exceptions.RedisError as e:
            raise StoreError(f'{self._where(key)} failed: {e}') from e

    @staticmethod
    def _auth_error(where: str, e: Exception) -> StoreAuthenticationError:
        if isinstance(e, _NO_PERMISSION) or 'no permissions' in str(e):
            return StoreAuthenticationError(
                f'{where} refused the command for this user: {e}. Grant the user the '
                'commands and keys the store needs (RPUSH, DEL, MULTI, EXEC, LRANGE, LINDEX, '
                'GET, EXISTS, TYPE) with ACL SETUSER, or connect as another user.',
            )
        return StoreAuthenticationError(
            f'{where} refused authentication: {e}. Pass username=/password= to the store, '
            'or set PROXYSTORE_REDIS_USERNAME/PROXYSTORE_REDIS_PASSWORD in this process.',
        )

    def _foreign(self, key: str, what: str) -> SerializationError:
        return SerializationError(
            f'{self._where(key)} holds {what}, not an object ProxyStore can read. Another '
            'tool may use this key: evict it, or let the store create keys (set without key=).',
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

    # -- reads: every one returns the version token read with the bytes ----------

    def _get(self, key: str) -> Buffer | None:
        return self._get_batch_versioned([key])[0][0]

    def _get_batch(self, keys: Sequence[str]) -> list[Buffer | None]:
        return [data for data, _ in self._get_batch_versioned(keys)]

    def _get_versioned(self, key: str) -> tuple[Buffer | None, Hashable | None]:
        """The bytes under ``key`` and their version token, from one ``LRANGE``.

        The token is the random 16 bytes the writer put in the list head, so it
        changes with every write by any client and is read atomically with the
        payload. Values written with plain ``SET`` and lists with the older
        head are unversioned: their token is None, as is a missing key's.
        """
        return self._get_batch_versioned([key])[0]

    def _get_batch_versioned(
        self, keys: Sequence[str]
    ) -> list[tuple[Buffer | None, Hashable | None]]:
        """``(bytes, token)`` of each key, in one pipelined round trip (see ``_get_versioned``)."""

        def read(connection: Any) -> list[Any]:
            sock = getattr(connection, '_sock', None)
            if sock is None:
                connection.connect()
                sock = getattr(connection, '_sock', None)
            commands = [('LRANGE', key, 0, -1) for key in keys]
            connection.send_packed_command(connection.pack_commands(commands))
            reader = _ReplyReader(sock)
            try:
                return [reader.read_list(i) for i in range(len(keys))]
            finally:
                reader.close()

        try:
            replies = self._run(read, keys[0] if len(keys) == 1 else None)
        except _BadValue as e:
            key = keys[e.index]
            if e.size is not None:
                raise MemoryError(
                    f'{self._where(key)}: cannot allocate {e.size} bytes to read the object '
                    f'({e.reason}). Free memory in this process, or read it on a larger node.',
                ) from e
            raise self._foreign(key, e.reason) from None
        results: list[tuple[Buffer | None, Hashable | None]] = []
        for key, reply in zip(keys, replies):
            if reply is None or not isinstance(reply, redis.exceptions.ResponseError):
                results.append(reply if reply is not None else (None, None))
            elif 'WRONGTYPE' not in str(reply):
                with self._errors(key):
                    raise reply
            else:
                results.append((self._get_plain(key), None))
        return results

    def _get_plain(self, key: str) -> Buffer | None:
        """Read a value another tool wrote with plain ``SET`` (unversioned)."""
        with self._errors(key):
            try:
                value: Any = self._client.get(key)
            except redis.exceptions.ResponseError as e:
                if 'WRONGTYPE' not in str(e):
                    raise
                kind: Any = self._client.type(key)  # a hash, set, stream...
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                raise self._foreign(key, f'a Redis {kind}') from None
        return bytearray(value) if value is not None else None

    def _version(self, key: str) -> Hashable | None:
        """Token of ``key``'s current value (``LINDEX key 0``: the head only), None if missing.

        Also None for unversioned values (plain ``SET``, the older head, data
        another tool wrote): callers must then treat the value as changed.
        """
        with self._errors(key):
            try:
                head: Any = self._client.lindex(key, 0)
            except redis.exceptions.ResponseError as e:
                if 'WRONGTYPE' not in str(e):
                    raise
                return None
        if head is None:
            return None
        parsed = _parse_head(head)
        return parsed[1] if parsed is not None else None

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
