"""The ProxyStore v0.3 surface: stats, has_stats, kwargs, type names, get_store(proxy)."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.exceptions import UnknownStoreTypeError
from proxystore.store import STORES
from proxystore.store.base import Store
from proxystore.store.stats import KeyStats
from proxystore.store.stats import TimeStats
from tests.conftest import STORE_KINDS
from tests.conftest import _make_store

EXPECTED_NAMES = {
    'local': 'LOCAL',
    'file': 'FILE',
    'shm': 'SHM',
    'redis': 'REDIS',
}


@pytest.fixture(params=STORE_KINDS)
def stats_store(request: pytest.FixtureRequest) -> Any:
    store = _make_store(request.param, f'stats-{request.param}', request, stats=True)
    yield store
    store.cleanup()


def test_every_store_type_accepts_stats_through_init_store(
    request: pytest.FixtureRequest, tmp_path: Any, redis_address: tuple[str, int]
) -> None:
    host, port = redis_address
    kwargs: dict[str, dict[str, Any]] = {
        'LOCAL': {},
        'FILE': {'store_dir': str(tmp_path / 'f')},
        'SHM': {},
        'REDIS': {'hostname': host, 'port': port},
    }
    for member in STORES:
        if member is STORES.MULTI:
            continue  # its options are routes; stats belong to the route stores
        store = ps.store.init_store(
            member, name=f'v03-{member.name}', stats=True, **kwargs[member.name]
        )
        assert store.has_stats
        store.cleanup()


def test_stats_per_key_and_method(stats_store: Store) -> None:
    key = stats_store.set([1, 2, 3])
    stats_store.get(key)
    stats_store.get(key, strict=True)
    stats_store.exists(key)
    stats = stats_store.stats(key)
    assert set(stats) == {'set', 'get', 'exists'}
    assert stats['get'].calls == 2 and stats['set'].calls == 1
    row = dataclasses.asdict(stats['get'])
    assert set(row) == {'calls', 'avg_time_ms', 'min_time_ms', 'max_time_ms'}
    assert 0 <= row['min_time_ms'] <= row['avg_time_ms'] <= row['max_time_ms']
    assert stats_store.stats('never-seen') == {}


def test_stats_of_a_proxy_merge_factory_timings(stats_store: Store) -> None:
    proxy = stats_store.proxy(np.arange(10))
    ps.proxy.resolve_async(proxy)
    assert int(np.sum(proxy)) == 45
    stats = stats_store.stats(proxy)
    assert {'set', 'get', 'resolve', 'resolve_async'} <= set(stats)
    assert stats['resolve'].calls == 1 and stats['resolve_async'].calls == 1
    assert not ps.proxy.is_resolved(stats_store.proxy([1]))  # stats never resolve a proxy


def test_stats_without_stats_is_value_error(store: Store) -> None:
    assert not store.has_stats
    with pytest.raises(ValueError, match='stats=True'):
        store.stats(store.set(1))


def test_per_key_stats_are_bounded() -> None:
    stats = KeyStats(max_keys=100)
    for i in range(1000):
        stats.record(f'k{i}', 'get', 0.001)
    assert len(stats) == 100 and stats.get('k0') == {} and stats.get('k999')['get'].calls == 1


def test_time_stats_add() -> None:
    a, b = TimeStats(), TimeStats()
    a.add_time(1.0)
    a.add_time(3.0)
    b.add_time(5.0)
    total = a + b
    assert (total.calls, total.avg_time_ms, total.min_time_ms, total.max_time_ms) == (
        3,
        3.0,
        1.0,
        5.0,
    )


def test_kwargs_rebuild_an_equal_store(store: Store) -> None:
    if type(store) is ps.store.base.Store:  # composed: no v0.3 name, the class itself
        type_name: Any = ps.store.base.Store
    else:
        type_name = STORES.get_str_by_type(type(store))
        assert type_name == EXPECTED_NAMES[store.name.split('-')[0]]
    ps.store.unregister_store(store.name)
    rebuilt = ps.store.init_store(type_name, name=store.name, **store.kwargs)
    assert type(rebuilt) is type(store) and rebuilt.kwargs == store.kwargs
    if not isinstance(store, ps.store.base.Store) or store.stores_objects:
        return
    key = store.set('shared')
    assert rebuilt.get(key) == 'shared'


def test_get_str_by_type_unknown_class() -> None:
    class Custom(ps.store.local.LocalStore):
        pass

    with pytest.raises(UnknownStoreTypeError):
        STORES.get_str_by_type(Custom)


@pytest.mark.parametrize('target', ['a str', [1, 2], {'a': 1}, np.arange(3)])
def test_get_store_of_a_proxy_never_resolves(store: Store, target: Any) -> None:
    proxy = store.proxy(target)
    assert ps.store.get_store(proxy) is store
    assert not ps.proxy.is_resolved(proxy)
    elsewhere = pickle.loads(pickle.dumps(proxy))
    assert ps.store.get_store(elsewhere) is store and not ps.proxy.is_resolved(elsewhere)


def test_get_store_of_a_plain_proxy_or_unknown_name() -> None:
    assert ps.store.get_store(ps.proxy.Proxy(ps.factory.LambdaFactory(list))) is None
    assert ps.store.get_store('unknown-name') is None


def test_stats_off_costs_no_per_key_memory(store: Store) -> None:
    for _ in range(50):
        store.get(store.set(b'x'))
    assert store._key_stats is None
