"""A store on a Redis server or a Redis Cluster, reachable from every node that can reach it.

How objects are laid out, versioned, chunked, written atomically and routed
over a cluster is the :class:`~proxystore.connectors.redis.RedisConnector`'s.
"""

from __future__ import annotations

from typing import Any

from proxystore.connectors.redis import RedisConnector
from proxystore.store.base import Store

__all__ = ['RedisStore']


class RedisStore(Store):
    """Store objects on a Redis server (a :class:`RedisConnector`).

    Args:
        name: Name of the store.
        hostname: Redis server host (with ``cluster=True``: any cluster node).
        port: Redis server port.
        db: Redis database number (0 with ``cluster=True``).
        username: Redis ACL user name (default ``PROXYSTORE_REDIS_USERNAME``).
        password: Redis password (default ``PROXYSTORE_REDIS_PASSWORD``).
        share_credentials: Put the credentials in the configuration that
            travels inside proxies (off: workers use their own environment).
        timeout: Seconds to wait for the server before ``StoreConnectionError``.
        retries: Reconnect attempts, with exponential backoff.
        cluster: ``hostname``/``port`` name a node of a Redis Cluster.
        replicas_ack: Replicas that must hold each write (``WAIT``) before ``set`` returns.
        redis_kwargs: Extra ``redis.Redis`` options (TLS, keep-alive).
        options: Options of every store (``cache_size``, ``cache_bytes``, ``secret``,
            ``signed``, ``stats``): see :class:`~proxystore.store.base.Store`.

    Raises:
        StoreConfigError: an argument is invalid (the message names it).
        StoreConnectionError: ``cluster=True`` and no node is reachable.

    """

    local_options = Store.local_options | RedisConnector.local_options

    def __init__(
        self,
        name: str,
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
        **options: Any,
    ) -> None:
        connector = RedisConnector(
            hostname,
            port,
            db=db,
            username=username,
            password=password,
            share_credentials=share_credentials,
            timeout=timeout,
            retries=retries,
            cluster=cluster,
            replicas_ack=replicas_ack,
            redis_kwargs=redis_kwargs,
        )
        super().__init__(name, connector, **options)

    @property
    def hostname(self) -> str:
        """The Redis host (the entry node of a cluster)."""
        return self._redis().hostname

    @property
    def port(self) -> int:
        """The Redis port."""
        return self._redis().port

    def _redis(self) -> RedisConnector:
        connector = self.connector
        assert isinstance(connector, RedisConnector)
        return connector

    def _connector_config(self) -> dict[str, Any]:
        return self._redis().config()
