"""A connector wrapper for the node-tier tests: private keys, counted fetches, a gate.

``InstrumentedConnector`` wraps any connector (the tests use the real
``RedisConnector``). It prefixes every key (one test's keys never meet
another's on the shared per-worker redis-server), counts every fetch in a
Redis counter so tests can count the fetches of every process on the node,
and can hold the first fetch (across processes) at a gate, to kill or stall
a fetcher while it holds the node tier's lock.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Sequence
from typing import Any

import redis

from proxystore.connectors.protocol import Connector
from proxystore.connectors.protocol import Entry
from proxystore.connectors.protocol import connector_version
from proxystore.serialize import Buffer
from proxystore.utils import import_class


class InstrumentedConnector:
    """``inner`` with keys under ``prefix``; each ``get`` counted in ``count_key``.

    With ``gate_key``, the first ``get`` (across processes) pushes its pid to
    ``<gate_key>:entered`` and then blocks until something is pushed to ``gate_key``.
    """

    local_options = frozenset()

    def __init__(
        self,
        inner: str,
        inner_config: dict[str, Any],
        host: str,
        port: int,
        prefix: str,
        count_key: str,
        gate_key: str | None = None,
    ) -> None:
        self._args = {
            'inner': inner,
            'inner_config': inner_config,
            'host': host,
            'port': port,
            'prefix': prefix,
            'count_key': count_key,
            'gate_key': gate_key,
        }
        self.inner: Connector = import_class(inner)(**inner_config)
        self._client = redis.Redis(host=host, port=port)
        self.prefix = prefix
        self.count_key = count_key
        self.gate_key = gate_key

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _count(self, n: int = 1) -> None:
        if self.gate_key is not None and self._client.incr(self.gate_key + ':first') == 1:
            import os

            self._client.rpush(self.gate_key + ':entered', os.getpid())
            self._client.blpop([self.gate_key], timeout=0)
        self._client.incrby(self.count_key, n)

    def get(self, key: str) -> Entry | None:
        self._count()
        return self.inner.get(self._k(key))

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        self._count(len(keys))
        return self.inner.get_batch([self._k(k) for k in keys])

    def version(self, key: str) -> Hashable | None:
        return connector_version(self.inner, self._k(key))

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        self.inner.put(self._k(key), parts)

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        self.inner.put_batch([(self._k(k), parts) for k, parts in items])

    def exists(self, key: str) -> bool:
        return self.inner.exists(self._k(key))

    def evict(self, key: str) -> None:
        self.inner.evict(self._k(key))

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
