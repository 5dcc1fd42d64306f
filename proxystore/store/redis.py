"""A store on a Redis server, reachable from every node that can reach the server.

Each object is a Redis *list* of byte chunks. Writing replaces the list in one
``MULTI``/``EXEC`` transaction, so readers see the old object or the new one,
never a mix; splitting into chunks keeps every element under Redis's 512 MB
bulk-string limit and lets the client send the payload's buffers (array data
included) without first joining them into one copy. Values written by other
tools with plain ``SET`` are still readable.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from proxystore.exceptions import StoreConnectionError
from proxystore.exceptions import StoreError
from proxystore.exceptions import StoreFullError
from proxystore.serialize import Buffer
from proxystore.store.base import Store

__all__ = ['RedisStore']

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024 * 1024


def _chunks(parts: Sequence[Buffer], size: int) -> list[memoryview]:
    """Split the payload's buffers into views of at most ``size`` bytes (no copies)."""
    chunks = []
    for part in parts:
        view = memoryview(part).cast('B')
        for start in range(0, view.nbytes, size):
            chunks.append(view[start : start + size])
    return chunks


def _join(chunks: Sequence[bytes]) -> bytearray:
    """Concatenate chunks into one writable buffer (arrays rebuilt over it are writable)."""
    buffer = bytearray(sum(len(c) for c in chunks))
    view = memoryview(buffer)
    position = 0
    for chunk in chunks:
        view[position : position + len(chunk)] = chunk
        position += len(chunk)
    return buffer


class RedisStore(Store):
    """Store objects on a Redis server.

    Args:
        name: Name of the store.
        hostname: Redis server host.
        port: Redis server port.
        cache_size: Size of the local object cache (0 disables it).
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
        secret: Signing secret (see :class:`~proxystore.store.base.Store`).
        signed: Require signing (see :class:`~proxystore.store.base.Store`).

    """

    def __init__(
        self,
        name: str,
        *,
        hostname: str,
        port: int,
        cache_size: int = 16,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        share_credentials: bool = False,
        timeout: float = 30.0,
        retries: int = 3,
        redis_kwargs: dict[str, Any] | None = None,
        secret: str | bytes | None = None,
        signed: bool | None = None,
    ) -> None:
        super().__init__(name, cache_size=cache_size, secret=secret, signed=signed)
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
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            raise StoreConnectionError(
                f'Cannot reach {where}: {e}. Check that redis-server is running '
                'and that this host can connect to that address.',
            ) from e
        except redis.exceptions.ResponseError as e:
            if str(e).startswith('OOM'):
                raise StoreFullError(
                    f'{where} is out of memory: {e}. Evict objects or raise maxmemory.',
                ) from e
            raise StoreError(f'{where} refused the command: {e}') from e
        except redis.exceptions.RedisError as e:
            raise StoreError(f'{where} failed: {e}') from e

    def _queue_put(self, pipe: Any, key: str, parts: Sequence[Buffer]) -> None:
        pipe.delete(key)
        batch: list[memoryview] = []
        batch_bytes = 0
        for chunk in _chunks(parts, _CHUNK):
            if batch and batch_bytes + chunk.nbytes > _CHUNK:
                pipe.rpush(key, *batch)
                batch, batch_bytes = [], 0
            batch.append(chunk)
            batch_bytes += chunk.nbytes
        if batch:
            pipe.rpush(key, *batch)

    def _put(self, key: str, parts: Sequence[Buffer]) -> None:
        self._put_batch([(key, parts)])

    def _put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        with self._errors(items[0][0] if len(items) == 1 else None):
            pipe = self._client.pipeline(transaction=True)
            for key, parts in items:
                self._queue_put(pipe, key, parts)
            pipe.execute()

    def _get(self, key: str) -> Buffer | None:
        return self._get_batch([key])[0]

    def _get_batch(self, keys: Sequence[str]) -> list[Buffer | None]:
        with self._errors(keys[0] if len(keys) == 1 else None):
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.lrange(key, 0, -1)
            replies = pipe.execute(raise_on_error=False)
            results: list[Buffer | None] = []
            for key, reply in zip(keys, replies):
                if isinstance(reply, redis.exceptions.ResponseError) and 'WRONGTYPE' in str(reply):
                    value: Any = self._client.get(key)  # written by another tool with SET
                    results.append(bytearray(value) if value is not None else None)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results.append(_join(reply) if reply else None)
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
