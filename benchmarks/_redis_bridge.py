"""The Redis store's byte layer seen as a connector, for ``node_tier.py``.

A bridge until ``proxystore.connectors.redis.RedisConnector`` exists. It lives
in its own module so that reader processes name its class as the parent does
(the node tier's directory is keyed by the inner connector's class path).
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from collections.abc import Sequence
from typing import Any

from proxystore.connectors.protocol import Entry
from proxystore.serialize import Buffer


class RedisStoreConnector:
    """The Redis store's byte layer (its fast path) seen as a connector.

    A bridge until ``RedisConnector`` exists: it calls the store's own
    template methods, so both columns read with the same code.
    """

    local_options = ()

    def __init__(self, hostname: str, port: int) -> None:
        from proxystore.store.redis import RedisStore

        self._args = {'hostname': hostname, 'port': port}
        self._store = RedisStore(f'bench-{uuid.uuid4().hex}', hostname=hostname, port=port)

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        self._store._put(key, parts)

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        self._store._put_batch(items)

    def get(self, key: str) -> Entry | None:
        data, version = self._store._get_versioned(key)
        return None if data is None else (data, version)

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self.get(k) for k in keys]

    def version(self, key: str) -> Hashable | None:
        return self._store._version(key)

    def exists(self, key: str) -> bool:
        return self._store._exists(key)

    def evict(self, key: str) -> None:
        self._store._evict(key)

    def close(self) -> None:
        self._store.close()

    def config(self) -> dict[str, Any]:
        return dict(self._args)
