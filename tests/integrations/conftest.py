"""Parsl DataFlowKernels for the integration tests (one per test module)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

parsl = pytest.importorskip('parsl')

from proxystore.integrations.testing.parsl_configs import htex_config  # noqa: E402
from proxystore.integrations.testing.parsl_configs import thread_config  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def running(config: Any) -> Iterator[Any]:
    """Load ``config`` and yield its DataFlowKernel; clean it up afterwards (fixture body)."""
    dfk = parsl.load(config)
    yield dfk
    dfk.cleanup()
    parsl.clear()


@pytest.fixture(scope='module')
def thread_dfk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from running(thread_config(str(tmp_path_factory.mktemp('runinfo'))))


@pytest.fixture(scope='module')
def htex_dfk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """HTEX with Parsl's default configuration (DEBUG logging to parsl.log included)."""
    config = htex_config(str(tmp_path_factory.mktemp('runinfo')), workers=2, pythonpath=REPO_ROOT)
    yield from running(config)


def count_objects(store: Any) -> int:
    """How many objects ``store``'s backend holds right now (file, shm, redis or a cluster)."""
    config = store.config()
    if 'store_dir' in config:
        return len([n for n in os.listdir(config['store_dir']) if not n.startswith('.')])
    import redis

    if config.get('cluster'):  # every master's keys
        cluster = redis.cluster.RedisCluster(host=config['hostname'], port=config['port'])
        try:
            return sum(int(cluster.dbsize(target_nodes=n)) for n in cluster.get_primaries())
        finally:
            cluster.close()
    client = redis.Redis(host=config['hostname'], port=config['port'], db=config.get('db', 0))
    try:
        return int(client.dbsize())
    finally:
        client.close()
