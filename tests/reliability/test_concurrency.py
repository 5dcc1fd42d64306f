"""Stress: 8 processes, and 8 threads sharing one store object, hammering each store.

Every worker owns a set of keys and tracks their expected state, so a lost
write (expected present, read nothing), a stale read (wrong version, or an
evicted key that came back) and a torn object (hash mismatch or undecodable
payload) are all detected and counted; keys of other workers are read too and
must be absent or intact. See :func:`tests.reliability._workers.run_ops`.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections import Counter
from typing import Any

import pytest

from proxystore.store.base import Store
from proxystore.utils import class_path
from tests.reliability import _workers

pytestmark = pytest.mark.timeout(240)

WORKERS = 8
OPS = 1000


def _verify_final(store: Store, results: list[dict[str, Any]]) -> Counter[str]:
    """Check, from the parent, the last state every worker left each of its keys in."""
    totals = Counter[str]()
    for result in results:
        for key, sha in result['final'].items():
            value = store.get(key, strict=True)
            if sha is None:
                totals['absent_ok' if value is None else 'stale'] += 1
            elif value is None:
                totals['lost'] += 1
            elif _workers._intact(value, key) and value['sha'] == sha:
                totals['verified'] += 1
            else:
                totals['torn' if not _workers._intact(value, key) else 'stale'] += 1
    return totals


def _summarise(kind: str, mode: str, results: list[dict[str, Any]], parent: Counter[str]) -> str:
    totals = Counter[str]()
    for result in results:
        totals.update(result['counts'])
    verified = totals['verified'] + totals['final_verified']
    return (
        f'{kind} ({mode}): operations={totals["ops"]} (set={totals["sets"]}, '
        f'get own={totals["gets_own"]}, get other={totals["gets_foreign"]}, '
        f'exists={totals["exists"]}, evict={totals["evicts"]}); '
        f'objects verified={verified} (+{parent["verified"]} re-verified by the parent); '
        f'absent as expected={totals["ok"] + totals["final_ok"] + parent["absent_ok"]}; '
        f'lost={totals["lost"] + totals["final_lost"] + parent["lost"]}; '
        f'torn={totals["torn"] + totals["final_torn"] + parent["torn"]}; '
        f'stale={totals["stale"] + totals["final_stale"] + parent["stale"]}; '
        f'stale cache hits={totals["stale_cache"]}; errors={totals["errors"]}'
    )


def _check(summary: str, results: list[dict[str, Any]], parent: Counter[str]) -> None:
    totals = Counter[str]()
    for result in results:
        totals.update(result['counts'])
    problems = [p for result in results for p in result['problems']][:10]
    assert totals['ops'] == WORKERS * OPS, summary
    assert totals['errors'] == 0, f'{summary}\n{problems}'
    for bad in ('lost', 'torn', 'stale'):
        n = totals[bad] + totals[f'final_{bad}'] + parent[bad]
        assert n == 0, f'{bad}={n}: {summary}\n{problems}'
    assert totals['verified'] > 0 and totals['final_verified'] > 0, summary


def _verify_and_report(
    store: Store, label: str, ordered: list[dict[str, Any]], elapsed: float, record_property: Any
) -> None:
    """Re-check every key's final state, report the counts, and assert nothing was lost."""
    parent = _verify_final(store, ordered)
    summary = _summarise(type(store).__name__, label, ordered, parent) + f'; {elapsed:.1f}s'
    record_property('counts', summary)
    print('\n' + summary)
    _check(summary, ordered, parent)


def test_processes_share_a_store(shared_store: Store, record_property: Any) -> None:
    ctx = multiprocessing.get_context('spawn')
    barrier = ctx.Barrier(WORKERS)
    results_queue = ctx.Queue()
    prefix = f'stress-{os.urandom(4).hex()}'
    procs = [
        ctx.Process(
            target=_workers.process_worker,
            args=(
                wid,
                WORKERS,
                class_path(type(shared_store)),
                shared_store.name,
                shared_store.config(),
                prefix,
                OPS,
                barrier,
                results_queue,
            ),
        )
        for wid in range(WORKERS)
    ]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    results: dict[int, dict[str, Any]] = {}
    try:
        for _ in procs:
            wid, result = results_queue.get(timeout=180)
            assert 'fatal' not in result, result.get('fatal')
            results[wid] = result
    except queue.Empty:
        pytest.fail(f'workers did not report in time; got {sorted(results)}')
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    elapsed = time.perf_counter() - start
    assert all(proc.exitcode == 0 for proc in procs), [p.exitcode for p in procs]
    ordered = [results[w] for w in range(WORKERS)]
    _verify_and_report(shared_store, f'{WORKERS} processes', ordered, elapsed, record_property)


def test_threads_share_one_store_object(store: Store, record_property: Any) -> None:
    """8 threads, one store object: data intact, and metrics equal the operations performed."""
    prefix = f'threads-{os.urandom(4).hex()}'
    barrier = threading.Barrier(WORKERS)
    results: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    store.reset_metrics()

    def worker(wid: int) -> None:
        try:
            barrier.wait(60)
            results[wid] = _workers.run_ops(store, wid, WORKERS, prefix, OPS, seed=2000 + wid)
        except BaseException as e:
            failures.append(repr(e))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    elapsed = time.perf_counter() - start
    assert not any(t.is_alive() for t in threads), 'a worker thread hung'
    assert failures == [], failures
    ordered = [results[w] for w in range(WORKERS)]
    # run_ops ends with one strict get per own key: include those in the expectations.
    metrics = store.metrics()
    _verify_and_report(store, f'{WORKERS} threads, one store', ordered, elapsed, record_property)

    totals = Counter[str]()
    for result in ordered:
        totals.update(result['counts'])
    final_gets = WORKERS * _workers.KEYS_PER_WORKER
    strict_gets = totals['strict_gets'] + final_gets
    assert metrics['set']['count'] == totals['sets'], (metrics, totals)
    assert metrics['exists']['count'] == totals['exists'], (metrics, totals)
    assert metrics['evict']['count'] == totals['evicts'], (metrics, totals)
    assert metrics['cache_hits'] + metrics['cache_misses'] == totals['nonstrict_gets'], metrics
    assert metrics['get']['count'] == strict_gets + metrics['cache_misses'], (metrics, totals)
    assert metrics['proxy']['count'] == 0 and metrics['resolve']['count'] == 0
    assert metrics['set']['bytes'] > 0 and metrics['get']['bytes'] > 0


@pytest.mark.parametrize('writer', ['set', 'evict'])
def test_cache_is_not_repopulated_by_a_read_that_raced_a_write(store: Store, writer: str) -> None:
    """Deterministic interleaving of the race the thread stress test can only hit by chance.

    Thread R: cache miss, ``connector.get`` returns v1 ... (paused) ... caches v1.
    Thread W:                     set(v2) or evict(), both invalidating the cache.
    Afterwards a non-strict get must not return v1.
    """
    key = store.set('v1', key=f'race-{writer}')
    entered, release = threading.Event(), threading.Event()
    original = store.connector.get  # what Store.get reads through, on every backend

    def paused_get(k: str) -> Any:
        data = original(k)
        if threading.current_thread().name == 'reader':
            entered.set()
            release.wait(10)
        return data

    store.connector.get = paused_get  # type: ignore[method-assign]
    reader = threading.Thread(target=store.get, args=(key,), name='reader')
    reader.start()
    assert entered.wait(10)
    if writer == 'set':
        store.set('v2', key=key)
    else:
        store.evict(key)
    release.set()
    reader.join(10)
    expected = 'v2' if writer == 'set' else None
    cached = store.get(key)  # first: a strict get would refresh the cache
    assert store.get(key, strict=True) == expected
    assert cached == expected, f'non-strict get returned {cached!r} after {writer}'
