"""``node_cache=True``: a store option that puts the node-local tier under a remote store.

The tier itself (coordination, staleness, bounds, crashes) is tested alone in
``tests/connectors/test_node.py``; these tests check the store wiring: the
option travels to workers, is not part of identity, and is refused where it
makes no sense.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.connectors.node import NodeConnector
from proxystore.exceptions import StoreConfigError
from proxystore.store.base import Store
from proxystore.store.registry import identity

pytest.importorskip('redis')

from proxystore.connectors.redis import RedisConnector
from proxystore.store.redis import RedisStore


@pytest.fixture
def node_store(redis_address: tuple[str, int]) -> Any:
    store = RedisStore(
        f'node-{os.urandom(4).hex()}',
        redis_address[0],
        redis_address[1],
        node_cache=True,
        node_cache_bytes=64 << 20,
    )
    yield store
    store.cleanup()


def _read_in_worker(data: bytes, queue: Any) -> None:
    proxy = pickle.loads(data)
    total = float(np.sum(proxy))
    store = ps.store.get_store(proxy)
    assert store is not None
    queue.put((total, type(store._connector).__name__, store.config().get('node_cache')))


def test_option_wraps_the_connector_and_keeps_the_redis_one_visible(node_store: Store) -> None:
    assert isinstance(node_store.connector, RedisConnector)
    assert isinstance(node_store._connector, NodeConnector)
    config = node_store.config()
    assert config['node_cache'] is True and config['node_cache_bytes'] == 64 << 20
    key = node_store.set(np.arange(10))
    assert list(node_store.get(key)) == list(range(10))


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_workers_rebuild_the_tier_and_share_one_copy(node_store: Store, method: str) -> None:
    proxy = node_store.proxy(np.ones(1 << 17))  # 1 MiB: above the tier's 64 KiB minimum
    data = pickle.dumps(proxy)
    assert len(data) <= 300
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    for _ in range(2):  # the second reader on the node publishes the copy (min_readers=2)
        child = context.Process(target=_read_in_worker, args=(data, queue))
        child.start()
        assert queue.get(timeout=60) == (float(1 << 17), 'NodeConnector', True)
        child.join(60)
        assert child.exitcode == 0
    tier = node_store._connector
    assert isinstance(tier, NodeConnector)
    sizes = [e.stat().st_size for e in os.scandir(tier.directory) if e.is_file()]
    assert any(size >= 1 << 20 for size in sizes), sizes  # one node copy of the array
    node_store.evict(ps.proxy.get_key(proxy))  # type: ignore[arg-type]
    sizes = [e.stat().st_size for e in os.scandir(tier.directory) if e.is_file()]
    assert not any(size >= 1 << 20 for size in sizes), sizes


def test_node_cache_is_not_part_of_identity(redis_address: tuple[str, int]) -> None:
    plain = RedisStore('same', redis_address[0], redis_address[1])
    tiered = RedisStore('same', redis_address[0], redis_address[1], node_cache=True)
    assert identity(plain) == identity(tiered)
    tiered.cleanup()


@pytest.mark.parametrize('kind', ['local', 'shm'])
def test_node_local_stores_refuse_it(kind: str) -> None:
    name = f'refuse-{kind}-{os.urandom(4).hex()}'
    with pytest.raises(StoreConfigError, match='node_cache'):
        ps.store.init_store(kind, name=name, node_cache=True)
    # Refused before anything is made: no shared-memory directory is left behind.
    from proxystore.connectors.shm import default_shm_dir

    assert not os.path.exists(default_shm_dir(name))


@pytest.mark.parametrize(
    ('options', 'match'),
    [
        ({'node_cache': 'yes'}, 'node_cache must be True or False'),
        ({'node_cache_bytes': 1 << 20}, 'needs node_cache=True'),
        ({'node_cache': True, 'node_cache_bytes': -1}, 'node_cache_bytes'),
    ],
)
def test_bad_node_cache_options(tmp_path: Path, options: dict[str, Any], match: str) -> None:
    with pytest.raises(StoreConfigError, match=match):
        ps.store.init_store('file', name='bad-node', store_dir=tmp_path / 's', **options)


def test_file_store_takes_it_too(tmp_path: Path) -> None:
    store = ps.store.init_store('file', name='file-node', store_dir=tmp_path / 's', node_cache=True)
    key = store.set(np.ones(1 << 17))
    assert float(np.sum(store.get(key))) == float(1 << 17)
    store.cleanup()
