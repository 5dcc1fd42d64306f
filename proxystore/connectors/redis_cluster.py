"""Cluster routing of the Redis connector: which master serves a key, and requests per master.

With ``cluster=True`` the connector talks to a Redis Cluster through redis-py's
``RedisCluster`` (any node is an entry point), and its fast path still runs,
on the connection pool of the master serving each key's slot: batches are
grouped by node (one round trip per node); ``MOVED`` replies refresh the slot
table and retry, ``ASK`` replies retry on the importing node after ``ASKING``
(a multi-key transaction answered ``TRYAGAIN`` there is split per key), as
redis-py does for its own commands. Internal to the Redis connector.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff

from proxystore.exceptions import StoreConnectionError

__all__ = ['ClusterRoutes', 'redirection']

#: ``operation(connection)`` of one node's share of a request: the redirections it met.
_NodeOperation = Callable[[Any], dict[int, Exception]]


def redirection(error: Exception | str) -> tuple[str, str] | None:
    """``('MOVED' or 'ASK', 'host:port')`` of a cluster redirection error, else None.

    ``('TRYAGAIN', '')`` for a multi-key transaction on a slot being migrated.

    redis-py strips the ``MOVED``/``ASK`` prefix into its error class; the
    connector's own reply reader keeps it: both forms are recognised.
    """
    if isinstance(error, redis.exceptions.MovedError):
        return 'MOVED', f'{error.host}:{error.port}'
    if isinstance(error, redis.exceptions.AskError):
        return 'ASK', f'{error.host}:{error.port}'
    if isinstance(error, redis.exceptions.TryAgainError) or str(error).startswith('TRYAGAIN'):
        return 'TRYAGAIN', ''  # a multi-key request on a slot being migrated: split, retry
    words = str(error).split()
    if len(words) == 3 and words[0] in ('MOVED', 'ASK'):
        return words[0], words[2]
    return None


class ClusterRoutes:
    """Which master serves a key, and that master's connection pool (cluster only).

    A thin layer over redis-py's slot table (``RedisCluster.nodes_manager``),
    so a ``MOVED`` that redis-py follows for its own commands also fixes ours.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def node(self, key: str) -> str:
        """``host:port`` of the master serving ``key``'s slot (per the cached table)."""
        return str(self.client.get_node_from_key(key).name)

    def slot(self, key: str) -> int:
        """The hash slot of ``key`` (a transaction cannot span slots)."""
        return int(self.client.keyslot(key))

    def pool(self, name: str) -> Any:
        """The connection pool of node ``name`` (``host:port``), learning the node if new."""
        node = self.client.get_node(node_name=name)
        if node is None:
            self.refresh()
            node = self.client.get_node(node_name=name)
        if node is None:  # an ASK target the cluster does not list
            raise redis.exceptions.ConnectionError(f'Redis Cluster node {name} is unknown')
        connection = node.redis_connection or self.client.get_redis_connection(node)
        return connection.connection_pool

    def refresh(self) -> None:
        """Reload the slot table from any reachable node (after MOVED or a failure)."""
        with contextlib.suppress(
            redis.exceptions.RedisError, redis.exceptions.RedisClusterException
        ):
            self.client.nodes_manager.initialize()

    def on_nodes(
        self,
        keys: Sequence[str],
        operation: Callable[[Any, list[int], bool], dict[int, Exception]],
        *,
        run: Callable[[_NodeOperation, str | None, Any, str], dict[int, Exception]],
        errors: Callable[[str | None, str | None], AbstractContextManager[None]],
        retries: int,
    ) -> None:
        """Run ``operation(connection, indexes, asking)`` on each master serving ``keys``.

        ``operation`` returns the redirection errors of the keys it could not
        handle there. ``MOVED`` refreshes the slot table and retries; ``ASK``
        retries on the importing node with ``ASKING``. A node that cannot be
        reached makes the store reload the slot table: if a replica took over
        its slots the keys go there at once, else the node is tried again with
        backoff, ``retries`` times, before its :class:`StoreConnectionError`
        is raised.

        The connector lends the rest: ``run(operation, key, pool, node)`` runs
        ``operation`` on a connection of ``pool`` (retrying a lost connection
        at most once: the other retries are these, with fresh routes), and
        ``errors(key, node)`` translates redis-py errors into ProxyStore's.
        """
        backoff = ExponentialBackoff(cap=1.0, base=0.05)
        pending = list(range(len(keys)))
        ask: dict[int, str] = {}
        failures: dict[str, int] = {}
        redirections = 0
        while pending:
            groups: dict[tuple[str, bool], list[int]] = {}
            with errors(keys[pending[0]] if len(pending) == 1 else None, None):
                for i in pending:
                    target = ask[i] if i in ask else self.node(keys[i])
                    groups.setdefault((target, i in ask), []).append(i)
            pending, ask, refresh = [], {}, False
            for (name, asking), indexes in groups.items():
                only = keys[indexes[0]] if len(indexes) == 1 else None
                try:
                    with errors(only, name):
                        pool = self.pool(name)
                    redirected = run(
                        lambda c, ix=indexes, a=asking: operation(c, ix, a),  # type: ignore[misc]
                        only,
                        pool,
                        name,
                    )
                except StoreConnectionError:
                    self.refresh()
                    failures[name] = failures.get(name, 0) + 1
                    moved = any(self.node(keys[i]) != name for i in indexes)
                    if not moved:
                        if failures[name] > retries:
                            raise
                        time.sleep(backoff.compute(failures[name]))
                    pending.extend(indexes)  # a replica took over, or one more try
                    continue
                for i, error in redirected.items():
                    kind, address = redirection(error) or ('', '')
                    if kind == 'ASK':
                        ask[i] = address
                    elif kind == 'TRYAGAIN':
                        if asking:
                            ask[i] = name
                    else:
                        refresh = True
                    pending.append(i)
                if redirected:
                    redirections += 1
            if redirections > 16:
                with errors(keys[pending[0]], None):
                    raise redis.exceptions.ClusterError(
                        f'still redirected after {redirections} rounds (slots keep moving)'
                    )
            if refresh:
                self.refresh()
