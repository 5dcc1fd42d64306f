"""Objects on a Redis server or a Redis Cluster: :class:`RedisConnector`.

Each object is one Redis string (a 28-byte head with a random version token,
then the payload) or, above 256 MiB, a Redis list of that head and the
payload's chunks; every write replaces the value atomically and gets a new
token. Large values bypass redis-py's command packing and reply parsing,
which copy every byte two or three times: commands are framed here and the
payload's own buffers go to ``sendall``; replies are read with ``recv_into``
straight into one preallocated buffer. Everything else (connections,
authentication, TLS, small replies) is redis-py's. With ``cluster=True`` the
same runs on the master serving each key's slot.

The connector is split by concept; each helper module imports none of the
ones above it in this list, and none imports this one:

- :mod:`~proxystore.connectors.redis_options`: checks of the arguments and ``redis_kwargs``.
- :mod:`~proxystore.connectors.redis_cluster`: slot routing, ``MOVED``/``ASK``/``TRYAGAIN``.
- :mod:`~proxystore.connectors.redis_probe`: whether the fast path can run on a
  redis-py connection (else plain redis-py calls; ``PROXYSTORE_REDIS_FAST_PATH=0``
  forces that fallback).
- :mod:`~proxystore.connectors.redis_replies`: the reply reader, value parsing and checks.
- :mod:`~proxystore.connectors.redis_wire`: the value layout and command framing.

This module keeps the connector: connections and their retries, error
translation, and the reads and writes that combine the helpers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from proxystore.connectors.protocol import Entry
from proxystore.connectors.redis_cluster import ClusterRoutes
from proxystore.connectors.redis_cluster import redirection
from proxystore.connectors.redis_options import check_arguments
from proxystore.connectors.redis_options import check_cluster_arguments
from proxystore.connectors.redis_options import check_redis_kwargs
from proxystore.connectors.redis_options import with_resp2
from proxystore.connectors.redis_probe import fast_path_supported
from proxystore.connectors.redis_probe import fast_path_wanted
from proxystore.connectors.redis_replies import BadValue
from proxystore.connectors.redis_replies import ReplyReader
from proxystore.connectors.redis_replies import assemble_list
from proxystore.connectors.redis_replies import head_token
from proxystore.connectors.redis_replies import parse_value
from proxystore.connectors.redis_replies import response_error
from proxystore.connectors.redis_wire import CONNECTION_ERRORS
from proxystore.connectors.redis_wire import HEAD
from proxystore.connectors.redis_wire import coalesce
from proxystore.connectors.redis_wire import pack_transaction
from proxystore.connectors.redis_wire import pack_transaction_plain
from proxystore.connectors.redis_wire import read_transaction
from proxystore.connectors.redis_wire import send_gets
from proxystore.connectors.redis_wire import send_lranges
from proxystore.connectors.redis_wire import wait_command
from proxystore.exceptions import ProxyStoreError
from proxystore.exceptions import SerializationError
from proxystore.exceptions import StoreAuthenticationError
from proxystore.exceptions import StoreConfigError
from proxystore.exceptions import StoreConnectionError
from proxystore.exceptions import StoreError
from proxystore.exceptions import StoreFullError
from proxystore.exceptions import StoreIOError
from proxystore.serialize import Buffer

__all__ = ['RedisConnector']

T = TypeVar('T')

#: Idle connections a connector keeps out of redis-py's pool (see ``_take_spare``).
_SPARES = 4
# Not in every redis-py this package supports (>= 4.2): matched by name as well.
_OUT_OF_MEMORY: tuple[type[Exception], ...] = tuple(
    c for c in [getattr(redis.exceptions, 'OutOfMemoryError', None)] if c is not None
)
_NO_PERMISSION: tuple[type[Exception], ...] = tuple(
    c for c in [getattr(redis.exceptions, 'NoPermissionError', None)] if c is not None
)


class RedisConnector:
    """Keep objects on a Redis server or a Redis Cluster.

    Args:
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
        cluster: ``hostname``/``port`` name any node of a Redis Cluster:
            objects spread over its masters by key (see ``docs/scaling.md``).
            Needs ``db=0`` (a cluster has one database).
        replicas_ack: After each write, wait (``WAIT``) until this many
            replicas of the key's master hold it, for at most half of
            ``timeout``; fewer raise
            :class:`~proxystore.exceptions.StoreIOError`. 0 (the default)
            does not wait.
        redis_kwargs: Extra keyword arguments for ``redis.Redis``: TLS
            (``ssl=True``, ``ssl_ca_certs=...``) and keep-alive options. They
            travel inside proxies, so put no secrets here. Options that would
            change the replies (``decode_responses``, ``protocol``,
            ``encoding``...) or duplicate an argument above are refused.

    Raises:
        StoreConfigError: an argument has the wrong type or range (the
            message names it and what is accepted), ``redis_kwargs`` holds
            an option the store cannot work with, or ``cluster=True`` names
            a server that is not a cluster node.
        StoreConnectionError: ``cluster=True`` and no node is reachable
            (the slot table is read at construction).

    """

    #: Options that tune this process only (not part of a store's identity).
    local_options = frozenset({'timeout', 'retries', 'replicas_ack'})

    def __init__(
        self,
        hostname: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        share_credentials: bool = False,
        timeout: float = 30.0,
        retries: int = 3,
        cluster: bool = False,
        replicas_ack: int = 0,
        redis_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_arguments(hostname, port, db, username, password, share_credentials, timeout, retries)
        check_cluster_arguments(cluster, replicas_ack, db)
        self._redis_kwargs = check_redis_kwargs(redis_kwargs)
        self.hostname = hostname
        self.port = port
        self._db = db
        self._username = username or os.environ.get('PROXYSTORE_REDIS_USERNAME') or None
        self._password = password or os.environ.get('PROXYSTORE_REDIS_PASSWORD') or None
        self._share_credentials = share_credentials
        self._timeout = timeout
        self._retries = retries
        self._cluster = cluster
        self._replicas_ack = replicas_ack
        self._routes: ClusterRoutes | None = None
        self._fast_path = fast_path_wanted()
        self._fast_class: type | None = None
        #: Idle connections of the single server's pool kept at hand (see ``_take_spare``).
        self._spares: list[Any] = []
        self._spares_pid = os.getpid()
        if cluster:
            self._routes = ClusterRoutes(self._connect_cluster())
            self._client: Any = self._routes.client
        else:
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
                **with_resp2(self._redis_kwargs),
            )

    def _connect_cluster(self) -> Any:
        """A ``RedisCluster`` client; reads the slot table from the entry node now."""
        from redis.cluster import RedisCluster

        try:
            return RedisCluster(
                host=self.hostname,
                port=self.port,
                username=self._username,
                password=self._password,
                socket_timeout=self._timeout,
                socket_connect_timeout=min(self._timeout, 5.0),
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), self._retries),
                # Slots of a dead master fail; the other masters keep serving.
                require_full_coverage=False,
                **with_resp2(self._redis_kwargs),
            )
        except redis.exceptions.RedisClusterException as e:
            message = str(e)
            if 'cannot be connected' in message:  # redis-py < 5 drops the reason: ask the node
                reason = self._entry_error()
                message += f' ({reason})' if reason is not None else ''
            if any(
                m in message
                for m in ('NOAUTH', 'WRONGPASS', 'authenticated', 'Authentication', 'password')
            ):
                # redis-py wraps the node's authentication error in its own.
                where = f'Redis Cluster at {self.hostname}:{self.port}'
                raise self._auth_error(where, redis.exceptions.AuthenticationError(message)) from e
            if 'not enabled' in message.lower() or 'cluster mode' in message.lower():
                raise StoreConfigError(
                    f'RedisStore cluster=True, but {self.hostname}:{self.port} is not a Redis '
                    f'Cluster node ({e}). Pass cluster=False for a single server.',
                ) from e
            raise StoreConnectionError(
                f'Cannot reach the Redis Cluster at {self.hostname}:{self.port}: '
                f'{message.rstrip(". ")}. Check that the node is running and '
                'that this host can connect to it; any node of the cluster is a valid entry point.',
            ) from e
        except redis.exceptions.RedisError as e:
            with self._errors():
                raise
            raise AssertionError('unreachable') from e  # pragma: no cover

    def _entry_error(self) -> Exception | None:
        """Why the entry node refuses a plain connection (e.g. authentication), if it does."""
        client = redis.Redis(
            host=self.hostname,
            port=self.port,
            username=self._username,
            password=self._password,
            socket_timeout=min(self._timeout, 5.0),
            socket_connect_timeout=min(self._timeout, 5.0),
            **with_resp2(self._redis_kwargs),
        )
        try:
            client.ping()
        except redis.exceptions.RedisError as e:
            return e
        finally:
            client.close()
        return None

    def __repr__(self) -> str:
        kind = 'cluster' if self._cluster else 'server'
        return f'{type(self).__name__}({self.hostname!r}, {self.port}, {kind})'

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this connector (credentials only if shared).

        Defaults are left out, which keeps pickled proxies small.
        """
        config: dict[str, Any] = {'hostname': self.hostname, 'port': self.port}
        if self._db:
            config['db'] = self._db
        if self._timeout != 30.0:
            config['timeout'] = self._timeout
        if self._retries != 3:
            config['retries'] = self._retries
        if self._cluster:
            config['cluster'] = True
        if self._replicas_ack:
            config['replicas_ack'] = self._replicas_ack
        if self._redis_kwargs:
            config['redis_kwargs'] = self._redis_kwargs
        if self._share_credentials:
            config.update(
                username=self._username,
                password=self._password,
                share_credentials=True,
            )
        return config

    def where(self, key: str | None = None, node: str | None = None) -> str:
        """The server (or cluster node) and key, for error messages."""
        if node is not None and node.startswith("b'"):  # redis-py < 4.3 names b'host':port
            node = node[2:].replace("':", ':', 1)
        if self._routes is not None:
            if node is None and key is not None:
                with contextlib.suppress(Exception):
                    node = self._routes.node(key)
            where = f'Redis Cluster node {node or "?"} (entry {self.hostname}:{self.port}'
            return where + (f', key {key!r})' if key is not None else ')')
        where = f'Redis at {self.hostname}:{self.port}'
        return where + (f' (key {key!r})' if key is not None else '')

    @contextlib.contextmanager
    def _errors(self, key: str | None = None, node: str | None = None) -> Iterator[None]:
        """Translate redis-py errors into ProxyStore errors naming host, port and key."""
        try:
            yield
        except ProxyStoreError:
            raise
        except (
            redis.exceptions.ClusterDownError,
            redis.exceptions.TryAgainError,
            redis.exceptions.ClusterError,
            redis.exceptions.RedisClusterException,
        ) as e:
            reason = str(e).rstrip('.') or type(e).__name__
            raise StoreConnectionError(
                f'{self.where(key, node)} cannot serve the request now: {reason}. A master '
                'may be down (its slots fail until a replica takes over) or slots are moving: '
                'retry shortly, or raise retries=.',
            ) from e
        except redis.exceptions.AuthenticationError as e:
            raise self._auth_error(self.where(key, node), e) from e
        except redis.exceptions.BusyLoadingError as e:
            raise StoreConnectionError(
                f'{self.where(key, node)} is still loading its data set: {str(e).rstrip(".")}. '
                'Retry shortly, or raise retries= so the store waits for it.',
            ) from e
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            # OSError: socket errors and timeouts of our own reply reader (redis_replies).
            reason = str(e).rstrip('.') or type(e).__name__
            raise StoreConnectionError(
                f'Cannot reach {self.where(key, node)}: {reason}. Check that redis-server is '
                'running and that this host can connect to that address.',
            ) from e
        except redis.exceptions.ResponseError as e:
            # redis-py strips the OOM/NOPERM prefix it turns into a class: test both.
            message = str(e)
            if isinstance(e, _OUT_OF_MEMORY) or message.startswith('OOM'):
                raise StoreFullError(
                    f'{self.where(key, node)} is out of memory (maxmemory reached), nothing was '
                    f'written: {message}. Evict objects, or raise maxmemory on the server.',
                ) from e
            if isinstance(e, _NO_PERMISSION) or message.startswith('NOPERM'):
                raise self._auth_error(self.where(key, node), e) from e
            if message.startswith('NOAUTH'):
                raise self._auth_error(self.where(key, node), e) from e
            raise StoreError(f'{self.where(key, node)} refused the command: {message}') from e
        except redis.exceptions.RedisError as e:
            raise StoreError(f'{self.where(key, node)} failed: {e}') from e

    @staticmethod
    def _auth_error(where: str, e: Exception) -> StoreAuthenticationError:
        if isinstance(e, _NO_PERMISSION) or 'no permissions' in str(e):
            return StoreAuthenticationError(
                f'{where} refused the command for this user: {e}. Grant the user the '
                'commands and keys the store needs (SET, GET, RPUSH, DEL, MULTI, EXEC, LRANGE, '
                'LINDEX, GETRANGE, EXISTS, TYPE) with ACL SETUSER, or connect as another user.',
            )
        return StoreAuthenticationError(
            f'{where} refused authentication: {e}. Pass username=/password= to the store, '
            'or set PROXYSTORE_REDIS_USERNAME/PROXYSTORE_REDIS_PASSWORD in this process.',
        )

    def _foreign(self, key: str, what: str) -> SerializationError:
        return SerializationError(
            f'{self.where(key)} holds {what}, not an object ProxyStore can read. Another '
            'tool may use this key: evict it, or let the store create keys (set without key=).',
        )

    @staticmethod
    def _connection(pool: Any) -> Any:
        try:
            return pool.get_connection()
        except TypeError:  # redis-py < 5.3 needs a command name
            return pool.get_connection('_')

    def _run(
        self,
        operation: Callable[[Any], T],
        key: str | None,
        pool: Any = None,
        node: str | None = None,
        retries: int | None = None,
    ) -> T:
        """Run ``operation(connection)``, retrying connection errors with backoff.

        Operations here are idempotent (a whole transaction, or a read), so a
        retry after a dropped connection is safe. A connection that failed in
        any way is closed, never returned to the pool half-read. ``pool`` and
        ``node`` name a cluster node's pool (default: the single server's);
        ``retries`` overrides the store's.
        """
        own = pool is None  # the single server's pool: keep idle connections at hand
        pool = self._client.connection_pool if own else pool
        attempt = 0
        while True:
            connection = None
            spare = False
            try:
                if own:
                    connection = self._take_spare()
                    spare = connection is not None
                if connection is None:
                    connection = self._connection(pool)
                result = operation(connection)
            except BaseException as e:
                if connection is not None:
                    connection.disconnect()
                    pool.release(connection)
                if isinstance(e, CONNECTION_ERRORS) and not isinstance(
                    e, redis.exceptions.AuthenticationError
                ):
                    if spare:  # idle too long (server timeout, restart): retry on a fresh one
                        continue
                    attempt += 1
                    if attempt <= (self._retries if retries is None else retries):
                        time.sleep(ExponentialBackoff(cap=1.0, base=0.05).compute(attempt))
                        continue
                with self._errors(key, node):  # translated here only: the common path has no
                    raise  # context manager to enter
            if own and len(self._spares) < _SPARES and pool.max_connections > 4 * _SPARES:
                self._spares.append(connection)
            else:
                pool.release(connection)
            return result

    def _take_spare(self) -> Any:
        """An idle connection kept out of the pool by this process, or None.

        Taking a connection from redis-py's pool (and giving it back) costs
        about as much as a small GET: connections that end an operation in
        step (every reply read) stay here instead, a few at most (one per
        concurrent thread). A forked child never uses its parent's.
        """
        if self._spares_pid != os.getpid():
            self._spares = []  # the parent's sockets: not ours to use or close
            self._spares_pid = os.getpid()
            return None
        try:
            return self._spares.pop()
        except IndexError:
            return None

    def _on_nodes(
        self,
        keys: Sequence[str],
        operation: Callable[[Any, list[int], bool], dict[int, Exception]],
    ) -> None:
        """Run ``operation(connection, indexes, asking)`` on each master serving ``keys``."""
        assert self._routes is not None
        self._routes.on_nodes(
            keys,
            operation,
            run=lambda op, key, pool, node: self._run(
                op, key, pool, node, retries=min(self._retries, 1)
            ),
            errors=self._errors,
            retries=self._retries,
        )

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Write ``key`` in one ``MULTI``/``EXEC`` transaction (atomic, even when chunked)."""
        self.put_batch([(key, parts)])

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        """Write many keys in one round trip (one per master on a cluster)."""
        if self._routes is not None:
            self._put_batch_cluster(items)
            return
        key = items[0][0] if len(items) == 1 else None

        def transaction(connection: Any) -> None:
            buffers, queued = self._pack(connection, items, asking=False)
            connection.send_packed_command(coalesce(buffers))
            error = read_transaction(connection, queued)
            acked = connection.read_response() if self._replicas_ack else None
            if error is not None:
                raise error
            if acked is not None:
                self._check_acked(int(acked), [k for k, _ in items], None)

        self._run(transaction, key)

    def _put_batch_cluster(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        """One round trip per master; one ``MULTI`` per slot (a transaction cannot span slots)."""
        assert self._routes is not None
        keys = [key for key, _ in items]
        slots = [self._routes.slot(key) for key in keys]
        alone: set[int] = set()  # answered TRYAGAIN in a multi-key transaction

        def write(connection: Any, indexes: list[int], asking: bool) -> dict[int, Exception]:
            by_slot: dict[Any, list[int]] = {}
            for i in indexes:
                by_slot.setdefault(('alone', i) if i in alone else slots[i], []).append(i)
            buffers: list[Buffer] = []
            transactions = []
            for n, group in enumerate(by_slot.values()):
                last = n == len(by_slot) - 1
                packed, queued = self._pack(
                    connection, [items[i] for i in group], asking=asking, wait=last
                )
                buffers.extend(packed)
                transactions.append((group, queued))
            connection.send_packed_command(coalesce(buffers))
            redirected: dict[int, Exception] = {}
            failure: Exception | None = None
            for group, queued in transactions:
                error = read_transaction(connection, queued, asking=asking)
                if error is None:
                    continue
                redirect = redirection(error)
                if redirect is not None:
                    redirected.update((i, error) for i in group)
                    if redirect[0] == 'TRYAGAIN':
                        alone.update(group)
                elif failure is None:
                    failure = error
            acked = connection.read_response() if self._replicas_ack else None
            if failure is not None:
                raise failure
            if acked is not None:
                written = [keys[i] for i in indexes if i not in redirected]
                self._check_acked(int(acked), written, connection)
            return redirected

        self._on_nodes(keys, write)

    def _pack(
        self,
        connection: Any,
        items: Sequence[tuple[str, Sequence[Buffer]]],
        *,
        asking: bool,
        wait: bool = True,
    ) -> tuple[list[Any], int]:
        """One write transaction for ``connection`` (``WAIT`` after it if ``replicas_ack``).

        Framed here with the payload's own buffers on the fast path, by
        redis-py on the fallback (which copies them, with hiredis).
        """
        if self._use_fast_path(connection):
            buffers, queued = pack_transaction(items, asking=asking)
            if wait and self._replicas_ack:
                buffers.append(wait_command(self._replicas_ack, self._timeout / 2))
            return buffers, queued
        buffers, queued = pack_transaction_plain(connection, items, asking=asking)
        if wait and self._replicas_ack:
            wait_ms = max(1, int(self._timeout / 2 * 1000))
            buffers.extend(connection.pack_commands([('WAIT', self._replicas_ack, wait_ms)]))
        return buffers, queued

    def _use_fast_path(self, connection: Any) -> bool:
        """True if this store may frame and read on ``connection`` itself."""
        if not self._fast_path:
            return False
        if type(connection) is self._fast_class:  # probed already: skip the lookup
            return True
        supported = fast_path_supported(connection)
        if supported:
            self._fast_class = type(connection)
        return supported

    def _check_acked(self, acked: int, keys: list[str], connection: Any) -> None:
        """Raise :class:`StoreIOError` if fewer than ``replicas_ack`` replicas have ``keys``."""
        if acked >= self._replicas_ack or not keys:
            return
        node = f'{connection.host}:{connection.port}' if connection is not None else None
        shown = ', '.join(repr(k) for k in keys[:3]) + (' ...' if len(keys) > 3 else '')
        raise StoreIOError(
            f'{self.where(None, node)}: only {acked} of the {self._replicas_ack} replicas '
            f'required (replicas_ack) acknowledged the write of {shown} within '
            f'{self._timeout / 2:g} s. The object is on the master and readable, but not '
            'durable: it is lost if the master dies now. Check the replicas (INFO replication),'
            ' lower replicas_ack, or raise timeout; set the object again to retry.',
        )

    # -- reads: every one returns the version token read with the bytes ----------

    def get(self, key: str) -> Entry | None:
        """The bytes under ``key`` and their version token, from one ``GET``.

        The token is the random 16 bytes the writer put in the value's head, so
        it changes with every write by any client and is read atomically with
        the payload. An object stored as a list (larger than one chunk, or
        written by an older version) answers the ``GET`` with ``WRONGTYPE``
        and is then read with ``LRANGE`` on the same connection. Values
        written with plain ``SET`` by other tools and lists with the older
        head are unversioned: their token is None, as is a missing key's.
        """
        return self.get_batch([key])[0]

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        """``(bytes, token)`` of each key, in one pipelined round trip (see :meth:`get`).

        Lists take a second round trip. On a cluster: one round trip per
        master holding some of the keys.
        """
        results: list[Any] = self._read_batch(keys)
        for n, (key, reply) in enumerate(zip(keys, results)):
            if reply is None or not isinstance(reply, redis.exceptions.ResponseError):
                continue
            # GET and LRANGE both said WRONGTYPE: the key changed form between
            # them (a concurrent write), or it holds a hash, set, stream...
            again = reply
            for _ in range(3):
                again = self._read_batch([key])[0]
                if again is None or not isinstance(again, redis.exceptions.ResponseError):
                    break
            else:
                raise self._other_type(key)
            results[n] = again
        return results

    def _read_batch(self, keys: Sequence[str]) -> list[Any]:
        """Entries of ``keys``; a key that is neither a string nor a list keeps its error reply."""
        replies: list[Any] = [None] * len(keys)

        def read(connection: Any, indexes: list[int], asking: bool) -> dict[int, Exception]:
            fast = self._use_fast_path(connection)
            redirected: dict[int, Exception] = {}
            lists: list[int] = []
            for form in ('GET', 'LRANGE'):
                todo = indexes if form == 'GET' else lists
                if not todo:
                    break
                if fast:
                    self._read_fast(connection, form, keys, todo, asking, replies, redirected)
                else:
                    self._read_plain(connection, form, keys, todo, asking, replies, redirected)
                lists = [
                    i
                    for i in todo
                    if isinstance(replies[i], redis.exceptions.ResponseError)
                    and 'WRONGTYPE' in str(replies[i])
                ]
            return redirected

        try:
            if self._routes is not None:
                self._on_nodes(keys, read)
            else:
                self._run(
                    lambda c: read(c, list(range(len(keys))), False),
                    keys[0] if len(keys) == 1 else None,
                )
        except BadValue as e:
            key = keys[e.index]
            if e.size is not None:
                raise MemoryError(
                    f'{self.where(key)}: cannot allocate {e.size} bytes to read the object '
                    f'({e.reason}). Free memory in this process, or read it on a larger node.',
                ) from e
            raise self._foreign(key, e.reason) from None
        for key, reply in zip(keys, replies):
            if isinstance(reply, redis.exceptions.ResponseError) and 'WRONGTYPE' not in str(reply):
                with self._errors(key):
                    raise response_error(reply)
        return replies

    @staticmethod
    def _read_fast(
        connection: Any,
        form: str,
        keys: Sequence[str],
        indexes: list[int],
        asking: bool,
        replies: list[Any],
        redirected: dict[int, Exception],
    ) -> None:
        """Pipelined GETs (or LRANGEs) read by ReplyReader, bulk data straight into buffers."""
        sock = getattr(connection, '_sock', None)
        if sock is None:
            connection.connect()
            sock = getattr(connection, '_sock', None)
        (send_gets if form == 'GET' else send_lranges)(connection, keys, indexes, asking)
        reader = ReplyReader(sock)
        try:
            for i in indexes:
                if asking:
                    reader.header()  # +OK
                reply = reader.read_value(i) if form == 'GET' else reader.read_list(i)
                if isinstance(reply, redis.exceptions.ResponseError) and redirection(reply):
                    redirected[i] = reply
                else:
                    replies[i] = reply
        finally:
            reader.close()

    @staticmethod
    def _read_plain(
        connection: Any,
        form: str,
        keys: Sequence[str],
        indexes: list[int],
        asking: bool,
        replies: list[Any],
        redirected: dict[int, Exception],
    ) -> None:
        """The fallback's pipelined GETs (or LRANGEs): redis-py frames and parses, then one copy.

        Fills ``replies`` like the fast path (an error reply per key is kept,
        to be raised or followed) and ``redirected``.
        """
        (send_gets if form == 'GET' else send_lranges)(connection, keys, indexes, asking)
        for i in indexes:
            if asking:
                connection.read_response()  # +OK
            try:
                reply = connection.read_response()
            except redis.exceptions.ResponseError as e:  # LOADING, NOAUTH: raised (not Response)
                if redirection(e):
                    redirected[i] = e
                else:
                    replies[i] = e
                continue
            if form == 'GET':
                replies[i] = None if reply is None else parse_value(i, reply)
            else:
                replies[i] = assemble_list(i, reply)

    def _other_type(self, key: str) -> SerializationError:
        """The error for a key holding neither a string nor a list (a hash, set, stream...)."""
        with self._errors(key):
            kind: Any = self._client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        return self._foreign(key, f'a Redis {kind}')

    def version(self, key: str) -> Hashable | None:
        """Token of ``key``'s current value (its head only, one round trip), None if missing.

        ``GETRANGE key 0 27`` and ``LINDEX key 0`` are pipelined: one of them
        answers (the other says ``WRONGTYPE``). Also None for unversioned
        values (plain ``SET``, the older head, data another tool wrote):
        callers must then treat the value as changed.
        """
        heads: list[Any] = [None]

        def read(connection: Any, indexes: list[int], asking: bool) -> dict[int, Exception]:
            ask = [('ASKING',)] if asking else []
            commands = [
                *ask,
                ('GETRANGE', key, 0, HEAD.size - 1),
                *ask,
                ('LINDEX', key, 0),
            ]
            connection.send_packed_command(connection.pack_commands(commands))
            redirected: dict[int, Exception] = {}
            found: list[Any] = []
            for _ in commands:
                try:
                    found.append(connection.read_response())
                except redis.exceptions.ResponseError as e:
                    found.append(e)
            for reply in found:
                if isinstance(reply, redis.exceptions.ResponseError):
                    if redirection(reply):
                        redirected[0] = reply
                    elif 'WRONGTYPE' not in str(reply):
                        raise reply
                elif isinstance(reply, bytes) and reply and reply != b'OK':
                    heads[0] = reply
            return redirected

        if self._routes is not None:
            self._on_nodes([key], read)
        else:
            self._run(lambda c: read(c, [0], False), key)
        return head_token(heads[0])

    def exists(self, key: str) -> bool:
        """Return whether ``key`` exists."""
        with self._errors(key):
            return bool(self._client.exists(key))

    def evict(self, key: str) -> None:
        """Delete ``key`` (a missing key is fine)."""
        with self._errors(key):
            self._client.delete(key)

    def close(self) -> None:
        """Close the connections (objects stay on the server)."""
        spares, self._spares = self._spares, []
        if self._spares_pid == os.getpid():
            for connection in spares:
                self._client.connection_pool.release(connection)
        self._client.close()

    def cleanup(self) -> None:
        """Close the connections. Objects stay on the server (it is shared); evict them."""
        self.close()
