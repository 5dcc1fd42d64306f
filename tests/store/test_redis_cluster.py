"""RedisStore on a real Redis Cluster: placement, batches, versions, resharding, errors."""

from __future__ import annotations

import multiprocessing
import pickle
from typing import Any

import numpy as np
import pytest

redis = pytest.importorskip('redis')

import proxystore as ps  # noqa: E402
from proxystore.connectors import redis_wire  # noqa: E402
from proxystore.exceptions import SerializationError  # noqa: E402
from proxystore.exceptions import StoreConfigError  # noqa: E402
from proxystore.exceptions import StoreConnectionError  # noqa: E402
from proxystore.exceptions import StoreIOError  # noqa: E402
from proxystore.store.redis import RedisStore  # noqa: E402
from tests.cluster import Cluster  # noqa: E402
from tests.cluster import Node  # noqa: E402
from tests.cluster import entry  # noqa: E402


def _store(cluster: Cluster, **kwargs: Any) -> RedisStore:
    name = f'cluster-{np.random.randint(1 << 30)}'
    return RedisStore(name, cluster=True, **entry(cluster), **kwargs)


def test_init_store_cluster_spreads_keys_over_every_master(redis_cluster: Cluster) -> None:
    store = ps.store.init_store('redis', name='rc', cluster=True, **entry(redis_cluster))
    assert isinstance(store, RedisStore)
    keys = [store.set(i) for i in range(60)]
    masters = redis_cluster.masters()
    assert len(masters) == 3
    holders = {redis_cluster.node_of(key).port for key in keys}
    assert holders == {m.port for m in masters}
    for master in masters:
        assert int(master('DBSIZE')) > 0
    assert [store.get(k) for k in keys] == list(range(60))
    for key in keys:
        store.evict(key)
    assert not any(store.exists(k) for k in keys)


def test_entry_point_can_be_any_node(redis_cluster: Cluster) -> None:
    stores = [
        RedisStore(f'rc-{n.port}', hostname='127.0.0.1', port=n.port, cluster=True)
        for n in redis_cluster.nodes
    ]
    key = stores[0].set('shared')
    assert all(s.get(key) == 'shared' for s in stores)
    stores[0].evict(key)


def test_batches_across_slots_and_nodes(redis_cluster: Cluster) -> None:
    store = _store(redis_cluster)
    objs = [np.full(100, i) for i in range(300)]
    keys = store.set_batch(objs)
    assert len({redis_cluster.keyslot(k) for k in keys}) > 250  # many slots, no CROSSSLOT
    assert len({redis_cluster.node_of(k).port for k in keys}) == 3
    got = store.get_batch(keys)
    assert all(np.array_equal(a, b) for a, b in zip(got, objs))
    proxies = store.proxy_batch(objs[:50])
    assert all(np.array_equal(p, o) for p, o in zip(proxies, objs[:50]))
    # A batch mixing present and missing keys on several nodes.
    missing = [f'missing-{i}' for i in range(20)]
    assert store.get_batch([*keys[:5], *missing], default='none')[5:] == ['none'] * 20
    # Explicit keys sharing a slot (hash tag) go in one transaction.
    tagged = [f'{{tag}}-{i}' for i in range(10)]
    store.set_batch(list(range(10)), keys=tagged)
    assert len({redis_cluster.keyslot(k) for k in tagged}) == 1
    assert store.get_batch(tagged) == list(range(10))


def test_chunked_object_stays_in_one_slot(
    redis_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_wire, '_CHUNK', 64 * 1024)
    store = _store(redis_cluster)
    data = np.random.default_rng(1).integers(0, 255, 2_000_000, dtype=np.uint8)
    key = store.set(data)
    node = redis_cluster.node_of(key)
    assert int(node('LLEN', key)) > 30  # head + many chunks, all in one list
    assert int(node('EXISTS', key)) == 1
    assert np.array_equal(store.get(key), data)
    store.evict(key)


def test_versions_on_the_cluster(redis_cluster: Cluster) -> None:
    store = _store(redis_cluster)
    key = store.set('one', key='versioned')
    data, token = store.connector.get(key)
    assert data is not None and token is not None
    assert store.connector.version(key) == token
    store.set('two', key=key)
    assert store.connector.version(key) not in (None, token)
    keys = store.set_batch([1, 2, 3])
    entries = store.connector.get_batch([*keys, 'absent'])
    assert all(e is not None and e[1] is not None for e in entries[:3]) and entries[3] is None
    assert store.connector.version('absent') is None
    store.evict(key)


def test_foreign_values_on_the_cluster(redis_cluster: Cluster) -> None:
    store = _store(redis_cluster)
    client = redis.cluster.RedisCluster(host=redis_cluster.host, port=redis_cluster.port)
    client.set('plain-value', b'plain bytes')
    assert store.get('plain-value', deserialize=False) == b'plain bytes'
    assert store.connector.version('plain-value') is None
    client.hset('a-hash', 'f', 'v')
    with pytest.raises(SerializationError, match='Redis hash'):
        store.get('a-hash')
    client.rpush('a-list', b'x' * 5)
    with pytest.raises(SerializationError, match='did not write'):
        store.get('a-list')
    client.delete('plain-value', 'a-hash', 'a-list')
    client.close()


def test_config_round_trip_rebuilds_a_cluster_store(redis_cluster: Cluster) -> None:
    store = _store(redis_cluster, replicas_ack=0)
    config = store.config()
    assert config['cluster'] is True and 'replicas_ack' not in config
    assert _store(redis_cluster, replicas_ack=1).config()['replicas_ack'] == 1
    # A single-server store's config (and so its proxies) is unchanged.
    single = RedisStore('single', hostname='127.0.0.1', port=1)
    assert 'cluster' not in single.config() and 'replicas_ack' not in single.config()
    rebuilt = RedisStore.from_config('rebuilt', config)
    key = store.set([1, 2])
    assert rebuilt.get(key) == [1, 2]
    store.evict(key)


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'cluster': 'yes'}, 'cluster must be True or False'),
        ({'cluster': 1}, 'cluster must be True or False'),
        ({'replicas_ack': -1}, 'replicas_ack must be an int >= 0'),
        ({'replicas_ack': True}, 'replicas_ack must be an int >= 0'),
        ({'replicas_ack': 1.0}, 'replicas_ack must be an int >= 0'),
        ({'cluster': True, 'db': 1}, 'db must be 0 with cluster=True'),
    ],
)
def test_bad_cluster_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(StoreConfigError, match=match):
        RedisStore('bad', hostname='127.0.0.1', port=1, **kwargs)


def test_cluster_true_on_a_single_server_is_a_config_error(
    redis_address: tuple[str, int],
) -> None:
    host, port = redis_address
    with pytest.raises(StoreConfigError, match=f'{host}:{port} is not a Redis Cluster node'):
        RedisStore('not-a-cluster', hostname=host, port=port, cluster=True)


def test_unreachable_cluster_names_the_entry_point() -> None:
    from tests.cluster import _free_port

    port = _free_port()
    with pytest.raises(StoreConnectionError, match=f'127.0.0.1:{port}'):
        RedisStore('dead', hostname='127.0.0.1', port=port, cluster=True, timeout=1, retries=0)


def test_replicas_ack_without_replicas_raises_store_io_error(redis_cluster: Cluster) -> None:
    store = _store(redis_cluster, replicas_ack=1, timeout=1)
    with pytest.raises(StoreIOError, match=r'only 0 of the 1 replicas') as info:
        store.set('x', key='not-durable')
    assert 'not-durable' in str(info.value)
    assert store.get('not-durable') == 'x'  # on the master, as the message says
    with pytest.raises(StoreIOError, match='replicas_ack'):
        store.set_batch(list(range(20)))
    store.evict('not-durable')


def test_replicas_ack_on_a_single_server(redis_address: tuple[str, int]) -> None:
    host, port = redis_address
    store = RedisStore('single-ack', hostname=host, port=port, replicas_ack=1, timeout=1)
    with pytest.raises(StoreIOError, match=f'{host}:{port}.*only 0 of the 1 replicas'):
        store.set('x', key='single-ack-key')
    store.evict('single-ack-key')


# -- resharding ---------------------------------------------------------------


def _slot_owner_and_other(cluster: Cluster, key: str) -> tuple[Node, Node]:
    source = cluster.node_of(key)
    target = next(m for m in cluster.masters() if m.port != source.port)
    return source, target


def _migrate(source: Node, target: Node, keys: list[str]) -> None:
    reply = source('MIGRATE', '127.0.0.1', str(target.port), '', '0', '5000', 'KEYS', *keys)
    assert reply.strip() in ('OK', 'NOKEY'), reply


def test_resharding_mid_use_is_followed(private_cluster: Cluster) -> None:
    cluster = private_cluster
    store = _store(cluster)
    keys = [f'{{moving}}-{i}' for i in range(10)]
    values = [np.full(1000, i) for i in range(10)]
    store.set_batch(values, keys=keys)
    slot = cluster.keyslot(keys[0])
    source, target = _slot_owner_and_other(cluster, keys[0])
    target('CLUSTER', 'SETSLOT', str(slot), 'IMPORTING', source.node_id())
    source('CLUSTER', 'SETSLOT', str(slot), 'MIGRATING', target.node_id())
    _migrate(source, target, keys[:5])
    # Mid-migration: moved keys answer ASK, the others are still on the source.
    assert source('EXISTS', keys[0]).startswith('ASK')
    assert source('EXISTS', keys[9]).strip() == '1'
    got = store.get_batch(keys)
    assert all(np.array_equal(g, v) for g, v in zip(got, values))
    assert store.get(keys[0]) is not None
    assert store.connector.version(keys[0]) is not None
    # New keys in the migrating slot are created on the importing node (ASK + ASKING).
    store.set('new', key='{moving}-new')
    assert store.get('{moving}-new') == 'new'
    store.set_batch(['a', 'b'], keys=['{moving}-a', '{moving}-b'])
    assert store.get_batch(['{moving}-a', '{moving}-b']) == ['a', 'b']
    # Finish: the rest moves, and every master learns the new owner.
    _migrate(source, target, [*keys[5:]])
    for node in cluster.masters():
        node('CLUSTER', 'SETSLOT', str(slot), 'NODE', target.node_id())
    assert int(target('CLUSTER', 'COUNTKEYSINSLOT', str(slot))) == 13
    # The store's slot table still names the source: MOVED is followed.
    got = store.get_batch(keys)
    assert all(np.array_equal(g, v) for g, v in zip(got, values))
    store.set('rewritten', key=keys[3])
    assert int(target('EXISTS', keys[3])) == 1
    assert store.get(keys[3]) == 'rewritten'
    assert store.exists(keys[9])
    store.evict(keys[9])
    assert not store.exists(keys[9])


# -- a dead master without replicas ---------------------------------------------


def test_dead_master_fails_only_its_keys(private_cluster: Cluster) -> None:
    cluster = private_cluster
    store = _store(cluster, timeout=2, retries=1)
    keys = store.set_batch(list(range(60)))
    victim = cluster.node_of(keys[0])
    theirs = [k for k in keys if cluster.node_of(k).port == victim.port]
    others = [k for k in keys if cluster.node_of(k).port != victim.port]
    victim.kill()
    for phase in ('just killed', 'marked failed'):
        with pytest.raises(StoreConnectionError, match=f'127.0.0.1:{victim.port}') as info:
            store.get(theirs[0])
        assert theirs[0] in str(info.value), phase
        with pytest.raises(StoreConnectionError, match=f'127.0.0.1:{victim.port}'):
            store.get_batch(theirs[:3])
        with pytest.raises(StoreConnectionError):
            store.set('lost', key=theirs[1])
        with pytest.raises(StoreConnectionError):
            store.exists(theirs[2])
        with pytest.raises(StoreConnectionError):
            store.get_batch(keys)  # a batch that touches the dead master fails as a whole
        assert [store.get(k) for k in others] == [keys.index(k) for k in others]
        assert store.get_batch(others) == [keys.index(k) for k in others]
        assert store.exists(others[0])
        new = store.set('fresh', key=f'{{{others[0]}}}-new')
        assert store.get(new) == 'fresh'
        if phase == 'just killed':
            _wait_marked_failed(cluster, victim)


def _wait_marked_failed(cluster: Cluster, victim: Node, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    live = next(n for n in cluster.nodes if n.alive)
    while time.monotonic() < deadline:
        for line in live('CLUSTER', 'NODES').splitlines():
            if f':{victim.port}@' in line and 'fail' in line.split()[2].split(','):
                return
        time.sleep(0.1)
    raise AssertionError('the dead master was never marked failed')


# -- proxies in other processes -----------------------------------------------------


def _resolve(data: bytes) -> float:
    proxy = pickle.loads(data)
    return float(np.sum(proxy))


@pytest.mark.parametrize('method', ['spawn', 'fork'])
def test_proxy_resolves_in_child(redis_cluster: Cluster, method: str) -> None:
    store = ps.store.init_store('redis', name=f'rc-{method}', cluster=True, **entry(redis_cluster))
    array = np.arange(50_000, dtype=np.float64)
    proxy = store.proxy(array)
    key = ps.proxy.get_key(proxy)
    assert key is not None
    store.get(key)  # the parent has live connections before a fork
    data = pickle.dumps(proxy)
    assert len(data) <= 300
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        assert pool.apply(_resolve, (data,)) == float(array.sum())
    store.evict(key)


# -- error translation, as on a single server ---------------------------------------


def test_full_master_raises_store_full_error(private_cluster: Cluster) -> None:
    from proxystore.exceptions import StoreFullError

    store = _store(private_cluster)
    small = store.set('fits')
    for master in private_cluster.masters():
        master('CONFIG', 'SET', 'maxmemory-policy', 'noeviction')
        master('CONFIG', 'SET', 'maxmemory', '1')
    with pytest.raises(StoreFullError, match=r'Redis Cluster node 127\.0\.0\.1:\d+.*out of memory'):
        store.set(np.zeros(100_000))
    with pytest.raises(StoreFullError):
        store.set_batch([np.zeros(1000) for _ in range(10)])
    assert store.get(small) == 'fits'  # reads still work


def test_authentication_errors_on_the_cluster(private_cluster: Cluster) -> None:
    from proxystore.exceptions import StoreAuthenticationError

    for node in private_cluster.nodes:
        node('ACL', 'SETUSER', 'limited', 'on', '>limited-pw', '~*', '+@all', '-rpush', '-set')
        node('CONFIG', 'SET', 'requirepass', 'secret-pw')
    with pytest.raises(StoreAuthenticationError, match='password'):
        RedisStore('no-pass', cluster=True, **entry(private_cluster))
    store = RedisStore('pass', cluster=True, password='secret-pw', **entry(private_cluster))
    assert store.get(store.set('ok')) == 'ok'
    limited = RedisStore(
        'limited',
        cluster=True,
        username='limited',
        password='limited-pw',
        **entry(private_cluster),
    )
    with pytest.raises(StoreAuthenticationError, match='ACL SETUSER'):
        limited.set('refused')
