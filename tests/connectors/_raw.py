"""Test connectors over raw redis-py: a versioned store, and an instrumented wrapper.

``RawRedisConnector`` keeps each key as a Redis hash (``d``: the bytes, ``v``:
a random version token), written by one ``HSET`` so a value and its token
change together. ``InstrumentedConnector`` wraps any connector and counts its
fetches in a Redis counter, so tests can count fetches made by every process
on the node; it can also hold the first fetch at a gate (to kill a fetcher
while it holds the node tier's lock).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Hashable
from collections.abc import Sequence
from typing import Any

import redis

from proxystore.connectors.protocol import Connector
from proxystore.connectors.protocol import Entry
from proxystore.connectors.protocol import connector_version
from proxystore.serialize import Buffer


class RawRedisConnector:
    """Bytes under ``<prefix><key>`` as a hash of data and version token."""

    local_options = ()

    def __init__(self, host: str, port: int, prefix: str = '', versioned: bool = True) -> None:
        self.host, self.port, self.prefix, self.versioned = host, port, prefix, versioned
        self._client = redis.Redis(host=host, port=port)

    def _k(self, key: str) -> str:
        return self.prefix + key

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        self._client.hset(self._k(key), mapping={'d': b''.join(parts), 'v': os.urandom(16)})

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        pipe = self._client.pipeline(transaction=True)
        for key, parts in items:
            pipe.hset(self._k(key), mapping={'d': b''.join(parts), 'v': os.urandom(16)})
        pipe.execute()

    def _entry(self, reply: list[Any]) -> Entry | None:
        data, token = reply
        if data is None:
            return None
        return bytearray(data), (token if self.versioned else True)

    def get(self, key: str) -> Entry | None:
        return self._entry(self._client.hmget(self._k(key), ['d', 'v']))

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._k(key), ['d', 'v'])
        return [self._entry(reply) for reply in pipe.execute()]

    def version(self, key: str) -> Hashable | None:
        token = self._client.hget(self._k(key), 'v')
        if token is None:
            return None
        return token if self.versioned else True

    def exists(self, key: str) -> bool:
        return bool(self._client.exists(self._k(key)))

    def evict(self, key: str) -> None:
        self._client.delete(self._k(key))

    def close(self) -> None:
        self._client.close()

    def after_fork(self) -> None:
        self._client = redis.Redis(host=self.host, port=self.port)

    def config(self) -> dict[str, Any]:
        return {
            'host': self.host,
            'port': self.port,
            'prefix': self.prefix,
            'versioned': self.versioned,
        }


def load(path: str, config: dict[str, Any]) -> Connector:
    module, _, name = path.rpartition('.')
    connector: Connector = getattr(importlib.import_module(module), name)(**config)
    return connector


class InstrumentedConnector:
    """Counts every ``get`` in the Redis counter ``count_key`` (from any process).

    With ``gate_key``, the first ``get`` (across processes) pushes its pid to
    ``entered_key`` and then blocks until something is pushed to ``gate_key``.
    """

    local_options = ()

    def __init__(
        self,
        inner: str,
        inner_config: dict[str, Any],
        host: str,
        port: int,
        count_key: str,
        gate_key: str | None = None,
    ) -> None:
        self._args = {
            'inner': inner,
            'inner_config': inner_config,
            'host': host,
            'port': port,
            'count_key': count_key,
            'gate_key': gate_key,
        }
        self.inner = load(inner, inner_config)
        self._client = redis.Redis(host=host, port=port)
        self.count_key = count_key
        self.gate_key = gate_key

    def _count(self, n: int = 1) -> None:
        if self.gate_key is not None and self._client.incr(self.gate_key + ':first') == 1:
            self._client.rpush(self.gate_key + ':entered', os.getpid())
            self._client.blpop([self.gate_key], timeout=0)
        self._client.incrby(self.count_key, n)

    def get(self, key: str) -> Entry | None:
        self._count()
        return self.inner.get(key)

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        self._count(len(keys))
        return self.inner.get_batch(keys)

    def version(self, key: str) -> Hashable | None:
        return connector_version(self.inner, key)

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        self.inner.put(key, parts)

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        self.inner.put_batch(items)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def evict(self, key: str) -> None:
        self.inner.evict(key)

    def close(self) -> None:
        self.inner.close()
        self._client.close()

    def after_fork(self) -> None:
        hook = getattr(self.inner, 'after_fork', None)
        if hook is not None:
            hook()
        self._client = redis.Redis(host=str(self._args['host']), port=int(self._args['port']))

    def config(self) -> dict[str, Any]:
        return dict(self._args)
