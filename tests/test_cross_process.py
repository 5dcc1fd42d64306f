"""A spawned worker resolves proxies it never saw created."""

from __future__ import annotations

import multiprocessing
import pickle
from typing import Any

import numpy as np

import proxystore as ps
from proxystore.store.base import Store


def _resolve_in_worker(data: bytes) -> dict[str, Any]:
    """Runs in a fresh interpreter: no init_store was ever called here."""
    import proxystore as ps

    proxy = pickle.loads(data)
    assert not ps.proxy.is_resolved(proxy)
    assert isinstance(proxy, np.ndarray)  # answered without fetching
    assert not ps.proxy.is_resolved(proxy)
    total = float(np.sum(proxy))
    key = ps.proxy.get_key(proxy)
    store = ps.proxy.get_factory(proxy).get_store()  # type: ignore[attr-defined]
    return {
        'total': total,
        'registered': ps.store.get_store(store.name) is store,
        'key': key,
        'resolves': store.metrics()['resolve']['count'],
    }


def _resolve_two(data: list[bytes]) -> int:
    import proxystore as ps

    first, second = (pickle.loads(d) for d in data)
    len(first), len(second)
    store = ps.proxy.get_factory(first).get_store()  # type: ignore[attr-defined]
    return int(store.metrics()['resolve']['count'])


def test_spawned_worker_resolves_and_registers(shared_store: Store) -> None:
    array = np.arange(100_000, dtype=np.float64)
    proxy = shared_store.proxy(array)
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        result = pool.apply(_resolve_in_worker, (pickle.dumps(proxy),))
        assert result['total'] == float(array.sum())
        assert result['registered']
        assert result['key'] == ps.proxy.get_key(proxy)
        # Later proxies of the same store reuse the store object the worker rebuilt.
        count = pool.apply(
            _resolve_two,
            ([pickle.dumps(shared_store.proxy([1])), pickle.dumps(shared_store.proxy([2]))],),
        )
        assert count == 3
    assert not ps.proxy.is_resolved(proxy)


def test_evict_across_processes(shared_store: Store) -> None:
    proxy = shared_store.proxy(np.ones(10), evict=True)
    key = ps.proxy.get_key(proxy)
    assert key is not None
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        pool.apply(_resolve_in_worker, (pickle.dumps(proxy),))
    assert not shared_store.exists(key)
