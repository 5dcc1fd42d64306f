"""Stores and proxies in ``fork`` children as well as ``spawn`` ones.

Parsl and many process pools fork. A forked child inherits module-level
objects (the background resolve pool, locks) but not the threads behind
them; before the fork handlers, ``resolve_async`` in a forked child waited
forever on a pool with no threads.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.store.base import Store

pytestmark = pytest.mark.timeout(120)  # a hang is the bug these tests catch

METHODS = ['fork', 'spawn']


def _resolve_async_and_extract(data: bytes) -> float:
    import proxystore as ps

    proxy = pickle.loads(data)
    ps.proxy.resolve_async(proxy)
    return float(np.sum(ps.proxy.extract(proxy)))


def test_resolve_async_in_forked_child_after_parent_used_the_pool(shared_store: Store) -> None:
    first = shared_store.proxy(np.ones(10))
    ps.proxy.resolve_async(first)  # the parent's pool now has a thread
    assert float(np.sum(first)) == 10.0
    second = shared_store.proxy(np.ones(20))
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_resolve_async_and_extract, (pickle.dumps(second),))
        assert result.get(timeout=30) == 20.0


def test_forked_child_of_bound_proxy_resolves(shared_store: Store) -> None:
    # The child inherits the very proxy object (and its bound store), not a pickle.
    proxy = shared_store.proxy(np.arange(5.0))
    ps.proxy.resolve_async(shared_store.proxy([0]))
    ctx = multiprocessing.get_context('fork')
    queue: Any = ctx.Queue()

    def child() -> None:
        ps.proxy.resolve_async(proxy)
        queue.put(float(np.sum(ps.proxy.extract(proxy))))

    process = ctx.Process(target=child)
    process.start()
    assert queue.get(timeout=30) == 10.0
    process.join(30)
    assert process.exitcode == 0


def test_fork_while_another_thread_holds_the_cache_lock(shared_store: Store) -> None:
    key = shared_store.set([1, 2, 3])
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with shared_store._cache._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        ctx = multiprocessing.get_context('fork')
        queue: Any = ctx.Queue()
        process = ctx.Process(target=lambda: queue.put(shared_store.get(key)))
        process.start()
        assert queue.get(timeout=30) == [1, 2, 3]
        process.join(30)
    finally:
        release.set()
        thread.join()


def _worker_round_trip(data: bytes, key_out: list[str] | None = None) -> dict[str, Any]:
    import proxystore as ps

    proxy = pickle.loads(data)
    store = ps.store.get_store(proxy)
    assert store is not None
    key = store.set({'from': os.getpid()})
    return {'sum': float(np.sum(proxy)), 'key': key, 'name': store.name}


@pytest.mark.parametrize('method', METHODS)
def test_children_read_and_write_every_shared_store(shared_store: Store, method: str) -> None:
    proxy = shared_store.proxy(np.arange(1000.0))
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        results = pool.map(_worker_round_trip, [pickle.dumps(proxy)] * 4)
    for result in results:
        assert result['sum'] == float(np.arange(1000.0).sum())
        assert result['name'] == shared_store.name
        assert shared_store.get(result['key'])['from'] != os.getpid()


def _keys(_: int) -> list[str]:
    from proxystore.utils import create_key

    return [create_key() for _ in range(100)]


@pytest.mark.parametrize('method', METHODS)
def test_children_never_create_their_parents_keys(method: str) -> None:
    """Keys are drawn 64 at a time: a forked child must not hand out the parent's leftovers."""
    from proxystore.utils import create_key

    create_key()  # the parent now holds drawn keys it has not handed out
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        children = [key for keys in pool.map(_keys, range(4)) for key in keys]
    parent = [create_key() for _ in range(100)]
    assert len(set(children) | set(parent)) == len(children) + len(parent)


def test_threads_never_get_the_same_key() -> None:
    from proxystore.utils import create_key

    found: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        out.extend(create_key() for _ in range(2000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in found]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [key for keys in found for key in keys]
    assert len(set(everything)) == len(everything) == 16000
