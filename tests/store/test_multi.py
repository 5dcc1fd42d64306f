"""MultiStore: routing by serialized size, finding keys, proxies of the route stores."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.exceptions import KeyNotFoundError
from proxystore.exceptions import NotBytesError
from proxystore.exceptions import SerializationError
from proxystore.exceptions import StoreConfigError
from proxystore.proxy import get_factory
from proxystore.proxy import get_key
from proxystore.proxy import is_resolved
from proxystore.serialize import payload_size
from proxystore.store import STORES
from proxystore.store import registry
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from proxystore.store.multi import MultiStore
from proxystore.store.shm import SharedMemoryStore
from tests.conftest import MULTI_SMALL_BYTES
from tests.conftest import _make_store
from tests.store import test_contract as contract

# -- the contract suite, run on a multi store -----------------------------------

# Contract tests whose premise a router does not meet, and why.
_NOT_FOR_A_ROUTER = {
    # A multi store has no cache of its own (its routes cache), and from_config
    # finds the same route stores, so a "second client" shares their caches.
    'test_cache_size_zero_disables_cache',
    'test_lru_eviction',
    'test_strict_get_sees_overwrites_by_other_clients',
    'test_is_cached_strict_after_another_client_overwrote',
    # The error names the route store that held the key, not the multi store.
    'test_proxy_of_evicted_key_names_store_and_key',
    # evict deletes the key from every route: one evict per route is counted.
    'test_metrics',
}

for _name in dir(contract):
    _test = getattr(contract, _name)
    if _name.startswith('test_') and _name not in _NOT_FOR_A_ROUTER:
        params = _test.__code__.co_varnames[: _test.__code__.co_argcount]
        if 'store' in params or 'shared_store' in params:
            globals()[_name] = _test


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A registered multi store: a file store for small objects, shared memory for large."""
    s = _make_store('multi', f'multi-{os.urandom(4).hex()}', request)
    ps.store.register_store(s)
    yield s
    s.cleanup()


@pytest.fixture
def shared_store(store: Store) -> Store:
    return store


def test_contract_store_uses_both_routes(store: MultiStore) -> None:
    # The contract suite above stores small and large objects (up to 3 MB
    # arrays), so it exercises both routes.
    first = store.set(b'x' * MULTI_SMALL_BYTES, serialize=False)
    second = store.set(b'x' * (MULTI_SMALL_BYTES + 1), serialize=False)
    assert [_route(store, first), _route(store, second)] == [
        [store.routes[0][0].name],
        [store.routes[1][0].name],
    ]


# -- fixtures -------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Any) -> Iterator[FileStore]:
    s = FileStore(f'small-{os.urandom(4).hex()}', store_dir=tmp_path / 'small')
    yield s
    s.cleanup()


@pytest.fixture
def large() -> Iterator[SharedMemoryStore]:
    s = SharedMemoryStore(f'large-{os.urandom(4).hex()}')
    yield s
    s.cleanup()


@pytest.fixture
def multi(small: FileStore, large: SharedMemoryStore) -> MultiStore:
    return MultiStore(f'multi-{os.urandom(4).hex()}', [(small, 1000), (large, None)])


def _route(multi: MultiStore, key: str) -> list[str]:
    return [store.name for store, _ in multi.routes if store.exists(key)]


# -- routing --------------------------------------------------------------------


def test_routes_by_serialized_size_at_the_exact_bound(
    small: FileStore, large: SharedMemoryStore
) -> None:
    obj = list(range(50))
    size = payload_size(small.serialize(obj))
    at_bound = MultiStore('at', [(small, size), (large, None)])
    below = MultiStore('below', [(small, size - 1), (large, None)])
    key = at_bound.set(obj)
    assert _route(at_bound, key) == [small.name]  # exactly max_bytes: the small route
    key = below.set(obj)
    assert _route(below, key) == [large.name]  # one byte more than max_bytes: the next
    assert below.get(key) == obj


def test_raw_bytes_route_by_their_length(multi: MultiStore) -> None:
    exact = multi.set(b'x' * 1000, serialize=False)
    more = multi.set(b'x' * 1001, serialize=False)
    assert _route(multi, exact) == [multi.routes[0][0].name]
    assert _route(multi, more) == [multi.routes[1][0].name]
    assert multi.get(more, deserialize=False) == b'x' * 1001
    with pytest.raises(NotBytesError, match='serialize=False'):
        multi.set('text', serialize=False)


def test_three_routes(small: FileStore, large: SharedMemoryStore) -> None:
    middle = LocalStore('middle')
    multi = MultiStore('three', [(small, 200), (middle, 10_000), (large, None)])
    keys = [multi.set(b'a'), multi.set(np.ones(1000, dtype=np.uint8)), multi.set(np.ones(20_000))]
    assert [_route(multi, k) for k in keys] == [[small.name], ['middle'], [large.name]]


class Counted:
    """Counts how often it is pickled (to check that objects are serialized once)."""

    pickled = 0

    def __init__(self, size: int) -> None:
        self.data = b'x' * size

    def __reduce__(self) -> Any:
        Counted.pickled += 1
        return (Counted._rebuild, (self.data,))

    @staticmethod
    def _rebuild(data: bytes) -> Counted:
        obj = Counted(0)
        obj.data = data
        return obj


def test_every_object_is_serialized_once(multi: MultiStore) -> None:
    Counted.pickled = 0
    keys = [multi.set(Counted(10)), multi.set(Counted(5000))]
    multi.proxy(Counted(10))
    multi.proxy(Counted(5000))
    keys += multi.set_batch([Counted(10), Counted(5000)])
    multi.proxy_batch([Counted(10), Counted(5000)])
    payload = multi.serialize(Counted(5000))  # as the integrations' policy does
    multi.proxy(Counted(0), payload=payload)
    assert Counted.pickled == 9
    assert [_route(multi, k) for k in keys] == [[multi.routes[i % 2][0].name] for i in range(4)]


def test_overwrite_that_changes_size_class_leaves_no_stale_copy(multi: MultiStore) -> None:
    key = multi.set(b'small', key='k')
    assert _route(multi, key) == [multi.routes[0][0].name]
    multi.set(np.ones(1000), key='k')
    assert _route(multi, key) == [multi.routes[1][0].name]
    assert multi.get('k', strict=True).shape == (1000,)
    multi.set_batch(['small again'], keys=['k'])
    assert _route(multi, key) == [multi.routes[0][0].name]
    multi.evict('k')
    assert _route(multi, key) == [] and not multi.exists('k')


# -- batches --------------------------------------------------------------------


def test_batches_across_routes(multi: MultiStore) -> None:
    objs = [1, np.ones(500), 'two', np.zeros(300)]
    keys = multi.set_batch(objs)
    assert [len(_route(multi, k)) for k in keys] == [1, 1, 1, 1]
    assert _route(multi, keys[0]) == _route(multi, keys[2]) == [multi.routes[0][0].name]
    assert _route(multi, keys[1]) == _route(multi, keys[3]) == [multi.routes[1][0].name]
    # Another client (empty key index) finds every key, in one batch per route tried.
    other = MultiStore('other', multi.routes)
    out = other.get_batch([keys[3], 'missing', keys[0], keys[1]], default='d')
    assert np.array_equal(out[0], np.zeros(300)) and out[1] == 'd' and out[2] == 1
    assert np.array_equal(out[3], np.ones(500))
    proxies = other.proxy_batch(keys=keys)
    assert [get_factory(p).store_name for p in proxies] == [  # type: ignore[union-attr]
        _route(multi, k)[0] for k in keys
    ]
    with pytest.raises(KeyNotFoundError):
        other.proxy_batch(keys=[keys[0], 'missing'])


def test_proxy_batch_gives_each_route_stores_proxy(multi: MultiStore) -> None:
    proxies = multi.proxy_batch([np.ones(500), [1, 2]], evict=True)
    factories = [get_factory(p) for p in proxies]
    assert [f.store_name for f in factories] == [  # type: ignore[union-attr]
        multi.routes[1][0].name,
        multi.routes[0][0].name,
    ]
    assert isinstance(proxies[0], np.ndarray) and not is_resolved(proxies[0])
    assert proxies[1] == [1, 2]
    assert not multi.exists(get_key(proxies[1]))  # type: ignore[arg-type]


# -- finding keys ---------------------------------------------------------------


def test_keys_written_by_another_client_are_found(multi: MultiStore) -> None:
    writer = MultiStore('writer', multi.routes)
    key = writer.set(np.ones(500))
    assert multi.exists(key) and multi.get(key).shape == (500,)
    assert multi.is_cached(key) and multi.is_cached(key, strict=True)
    # The writer moves the key to the small route: this client finds it there.
    writer.set(b'now small', key=key)
    assert multi.get(key, strict=True) == b'now small'
    writer.evict(key)
    assert not multi.exists(key) and multi.get(key, strict=True) is None
    assert not multi.is_cached(key, strict=True)
    with pytest.raises(KeyNotFoundError, match=multi.name):
        multi.proxy(key=key)


# -- proxies in other processes -------------------------------------------------


def _resolve_in_child(data: bytes, queue: Any) -> None:
    from proxystore.store.objects import _live_stores

    before = set(registry._stores)
    proxy = pickle.loads(data)
    total = int(np.sum(proxy))
    factory = get_factory(proxy)
    queue.put(
        {
            'total': total,
            'store': type(factory.get_store()).__name__,  # type: ignore[union-attr]
            'new': sorted(set(registry._stores) - before),
            'stores': sorted(s.name for s in _live_stores),
        }
    )


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_proxies_rebuild_only_their_route_store_in_children(multi: MultiStore, method: str) -> None:
    ps.store.register_store(multi)
    context = multiprocessing.get_context(method)
    for obj, route in [(np.ones(1000), 1), (np.ones(10), 0)]:
        proxy = multi.proxy(obj)
        data = pickle.dumps(proxy)
        route_store = multi.routes[route][0]
        # Exactly the route store's own proxy (same key length, same fields).
        assert len(data) == len(pickle.dumps(route_store.proxy(obj)))
        queue = context.Queue()
        child = context.Process(target=_resolve_in_child, args=(data, queue))
        child.start()
        report = queue.get(timeout=60)
        child.join(60)
        assert child.exitcode == 0
        assert report['total'] == int(np.sum(obj))
        assert report['store'] == type(route_store).__name__
        if method == 'spawn':
            # A fresh process built the route store only: not the multi store,
            # not the other route.
            assert report['new'] == report['stores'] == [route_store.name]
        else:
            assert report['new'] == []  # the forked child found the inherited store


def _use_store_in_child(data: bytes, key: str, queue: Any) -> None:
    multi = pickle.loads(data)
    queue.put((type(multi).__name__, multi.get(key).shape, multi.set(np.ones(2000))))


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_pickled_multi_store_is_rebuilt_with_its_routes(multi: MultiStore, method: str) -> None:
    key = multi.set(np.ones(700))
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    child = context.Process(target=_use_store_in_child, args=(pickle.dumps(multi), key, queue))
    child.start()
    kind, shape, child_key = queue.get(timeout=60)
    child.join(60)
    assert (kind, shape) == ('MultiStore', (700,))
    assert multi.get(child_key).shape == (2000,)


# -- configuration --------------------------------------------------------------


def test_config_round_trip(multi: MultiStore) -> None:
    config = multi.config()
    assert [r['max_bytes'] for r in config['routes']] == [1000, None]
    assert config['routes'][1]['type'] == 'proxystore.store.shm.SharedMemoryStore'
    clone = MultiStore.from_config(multi.name, config)
    assert clone.config() == config
    assert [s for s, _ in clone.routes] == [s for s, _ in multi.routes]  # found, not copied
    assert registry.identity(clone) == registry.identity(multi)
    assert pickle.loads(pickle.dumps(multi)) is multi  # a store pickles as a reference
    with pytest.raises(StoreConfigError, match='routes'):
        MultiStore.from_config('bad', {'routes': [('x', None)]})


def test_init_store_by_route_names(tmp_path: Any) -> None:
    ps.store.init_store('file', name='files', store_dir=str(tmp_path / 'f'))
    ps.store.init_store('local', name='memory')
    multi = ps.store.init_store(STORES.MULTI, name='m', routes=[('memory', 200), ('files', None)])
    assert isinstance(multi, MultiStore) and ps.store.get_store('m') is multi
    assert STORES.get_str_by_type(MultiStore) == 'MULTI'
    assert _route(multi, multi.set(b'tiny')) == ['memory']
    with pytest.raises(StoreConfigError, match="'route'"):
        ps.store.init_store('multi', name='m2', route=[('memory', None)])
    with pytest.raises(StoreConfigError, match='cache'):
        MultiStore('m3', [('memory', None)], cache_size=3)  # type: ignore[call-arg]
    with pytest.raises(StoreConfigError, match='owns_routes'):
        MultiStore('m4', [('memory', None)], owns_routes='yes')  # type: ignore[arg-type]


def test_owns_routes_decides_whether_cleanup_cleans_routes() -> None:
    a, b = LocalStore('a'), LocalStore('b')
    shared = MultiStore('shared', [(a, 10), (b, None)])
    key = shared.set(b'0123456789' * 5)
    shared.cleanup()
    assert shared.exists(key)  # routes untouched
    owning = MultiStore('owning', [(a, 10), (b, None)], owns_routes=True)
    owning.cleanup()
    assert not b.exists(key)


@pytest.mark.parametrize(
    ('routes', 'match'),
    [
        ([], 'non-empty'),
        ('small', 'non-empty'),
        ([('small',)], 'pair'),
        ([('small', 100), ('large', 100), ('local', None)], 'increasing'),
        ([('small', 200), ('large', 100), ('local', None)], 'increasing'),
        ([('small', 0), ('large', None)], 'positive'),
        ([('small', -5), ('large', None)], 'positive'),
        ([('small', 1.5), ('large', None)], 'positive'),
        ([('small', True), ('large', None)], 'positive'),
        ([('small', None), ('large', None)], 'not the last'),
        ([('small', 100), ('large', 1000)], r'\(store, None\)'),
        ([('small', 100), ('nowhere', None)], "'nowhere'.*registered"),
        ([('small', 100), ('multi', None)], 'itself'),
        ([('small', 100), ('small', None)], 'twice'),
        ([('small', 100), (42, None)], 'Store or a registered store name'),
        ([('small', 100), ('signed', None)], 'sign'),
    ],
)
def test_bad_routes(small: FileStore, large: SharedMemoryStore, routes: Any, match: str) -> None:
    ps.store.register_store(small)
    ps.store.register_store(large)
    ps.store.register_store(LocalStore('local'))
    ps.store.register_store(LocalStore('signed', secret='s3cret'))
    names = {'small': small.name, 'large': large.name}
    routes = (
        [(names.get(r[0], r[0]), *r[1:]) for r in routes] if isinstance(routes, list) else routes
    )
    with pytest.raises(StoreConfigError, match=match):
        ps.store.init_store('multi', name='multi', routes=routes)


def test_routes_signing_alike_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('PROXYSTORE_SECRET', 'same secret')
    a, b = LocalStore('sa'), LocalStore('sb')
    multi = MultiStore('signed', [(a, 10), (b, None)])
    key = multi.set(list(range(100)))
    assert b.get(key) == list(range(100))
    with pytest.raises(StoreConfigError, match='sign'):
        MultiStore('mixed', [(a, 10), (LocalStore('other', secret='another'), None)])
    with pytest.raises(SerializationError):
        multi.set(None, payload=[b'PXS'])


# -- metrics and stats ----------------------------------------------------------


def test_metrics_sum_the_routes_and_stats_come_from_the_route(tmp_path: Any) -> None:
    a = LocalStore('ma', stats=True)
    b = FileStore('mb', store_dir=tmp_path / 'b', stats=True)
    multi = MultiStore('metered', [(a, 100), (b, None)])
    assert multi.has_stats
    small_key, large_key = multi.set(1), multi.set(np.ones(100))
    multi.get(large_key)
    p = multi.proxy(np.ones(100))
    np.sum(p)
    m = multi.metrics()
    assert m['set']['count'] == 3 and m['get']['count'] == 2 and m['resolve']['count'] == 1
    assert m['set']['bytes'] == a.metrics()['set']['bytes'] + b.metrics()['set']['bytes']
    assert set(multi.stats(large_key)) >= {'set', 'get'}
    assert set(multi.stats(small_key)) == {'set'}
    assert 'resolve' in multi.stats(p)
    assert multi.stats('missing') == {}
    multi.reset_metrics()
    assert a.metrics()['set']['count'] == b.metrics()['set']['count'] == 0
    plain = MultiStore('plain', [(LocalStore('pa'), 100), (b, None)])
    with pytest.raises(ValueError, match='stats=True'):
        plain.stats(large_key)


def test_key_index_is_bounded_and_lookups_fall_back_to_the_routes(
    multi: MultiStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import proxystore.store.multi as multi_module

    monkeypatch.setattr(multi_module, '_INDEX_SIZE', 2)
    keys = [multi.set(np.full(500, i)) for i in range(5)]
    assert len(multi._index) == 2
    assert [int(multi.get(k)[0]) for k in keys] == [0, 1, 2, 3, 4]
    assert len(multi._index) == 2


def test_a_multi_store_can_route_to_another(small: FileStore, large: SharedMemoryStore) -> None:
    middle = LocalStore('nested-middle')
    inner = MultiStore('inner', [(middle, 10_000), (large, None)])
    outer = MultiStore('outer', [(small, 200), (inner, None)])
    objs = [b'a', np.ones(1000, dtype=np.uint8), np.ones(20_000)]
    keys = outer.set_batch(objs)
    assert [_route(outer, k) for k in keys] == [[small.name], ['inner'], ['inner']]
    assert [_route(inner, k) for k in keys[1:]] == [['nested-middle'], [large.name]]
    proxy = outer.proxy(np.ones(20_000))
    assert _factory_store(proxy) == large.name and float(np.sum(proxy)) == 20_000.0
    rebuilt = MultiStore.from_config('outer', outer.config())
    assert rebuilt.get(keys[2]).shape == (20_000,)


def _factory_store(proxy: Any) -> str:
    return get_factory(proxy).store_name  # type: ignore[union-attr,no-any-return]
