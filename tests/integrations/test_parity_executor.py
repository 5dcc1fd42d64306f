"""The executor wrapper behaves like the executor it wraps (process pools, fork and spawn)."""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import os
from concurrent.futures import Executor
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from proxystore.integrations.executor import ProxyExecutor
from proxystore.proxy import get_key
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from tests.integrations import parsl_apps
from tests.integrations.conftest import count_objects

THRESHOLD = 10_000


def _pool(method: str) -> Executor:
    if method == 'threads':
        return ThreadPoolExecutor(2)
    return ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))


METHODS = ['fork', 'spawn', 'threads']


@pytest.mark.parametrize('method', METHODS)
def test_modify_and_return_argument(shared_store: Store, method: str) -> None:
    """Item 2: the task's result is the modified data, as with the bare executor."""
    with _pool(method) as bare:
        expected = float(np.sum(bare.submit(parsl_apps.double_in_place, np.ones(200_000)).result()))
    with ProxyExecutor(_pool(method), store=shared_store, threshold=THRESHOLD) as executor:
        result = executor.submit(parsl_apps.double_in_place, np.ones(200_000)).result()
        assert float(np.sum(result)) == expected == 400_000
        lazy = ProxyExecutor(_pool(method), store=shared_store, threshold=THRESHOLD, lazy=True)
        with lazy:
            result = lazy.submit(parsl_apps.double_in_place, np.ones(200_000)).result()
            assert float(np.sum(result)) == 400_000


@pytest.mark.parametrize('method', METHODS)
def test_each_task_its_own_copy_and_exact_types(shared_store: Store, method: str) -> None:
    """Items 2 and 3: in-place changes do not leak; exact-type checks pass."""
    with ProxyExecutor(_pool(method), store=shared_store, threshold=THRESHOLD) as executor:
        if method != 'threads':  # threads share one object, with or without the wrapper
            produced = executor.submit(parsl_apps.ones, 250_000).result()
            sums = [executor.submit(parsl_apps.in_place_sum, produced) for _ in range(6)]
            assert [s.result() for s in sums] == [500_000.0] * 6
        text = 'ab' * THRESHOLD
        with _pool(method) as bare:
            plain = bare.submit(parsl_apps.text_checks, text).result()
        assert executor.submit(parsl_apps.text_checks, text).result() == plain


def test_worker_store_error_is_the_tasks_error(tmp_path: Any) -> None:
    """Item 7: a worker that cannot open a signed store fails that task; the pool lives on."""
    store = FileStore(f'signed-{os.urandom(4).hex()}', store_dir=tmp_path / 's', secret=b'k' * 32)
    os.environ.pop('PROXYSTORE_SECRET', None)
    try:
        with ProxyExecutor(_pool('spawn'), store=store, threshold=THRESHOLD) as executor:
            failed = executor.submit(parsl_apps.size, np.ones(THRESHOLD * 2))
            with pytest.raises(Exception, match=r'(?i)secret|sign'):
                failed.result(timeout=60)
            assert executor.submit(len, [1, 2]).result(timeout=60) == 2
            assert executor.submit(parsl_apps.size, [1]).result(timeout=60) == 1
    finally:
        store.cleanup()


@dataclasses.dataclass
class _Scale:
    factor: float

    def __call__(self, x: Any) -> float:
        return float(np.sum(x)) * self.factor


class _RecordingPool(ThreadPoolExecutor):
    """A real pool that records the chunksize its ``map`` was given."""

    endpoint_id = 'endpoint-1234'
    chunksizes: list[int]

    def map(self, fn: Any, *iterables: Any, timeout: Any = None, chunksize: int = 1) -> Any:
        self.chunksizes = [*getattr(self, 'chunksizes', []), chunksize]
        return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)


def test_accepts_what_the_executor_accepts(shared_store: Store) -> None:
    """Item 7: unhashable callables, attribute pass-through, map(chunksize=)."""
    pool = _RecordingPool(2)
    with ProxyExecutor(pool, store=shared_store, threshold=THRESHOLD) as executor:
        assert executor.submit(_Scale(2.0), np.ones(THRESHOLD * 2)).result() == 4.0 * THRESHOLD
        assert executor.endpoint_id == 'endpoint-1234'
        arrays = [np.ones(THRESHOLD * 2) for _ in range(4)]
        assert list(executor.map(parsl_apps.size, arrays, chunksize=2)) == [THRESHOLD * 2] * 4
        assert pool.chunksizes == [2]
        assert list(executor.map(parsl_apps.size, [[1], [1, 2]])) == [1, 2]
    with pytest.raises(AttributeError):
        _ = executor.no_such_attribute


def test_evict_on_shutdown_covers_inputs(shared_store: Store) -> None:
    """Item 7: objects made for ``inputs=`` items are evicted on shutdown too."""
    before = count_objects(shared_store)
    executor = ProxyExecutor(
        _pool('spawn'), store=shared_store, threshold=THRESHOLD, evict_on_shutdown=True
    )
    arrays = [np.ones(THRESHOLD * 2) for _ in range(3)]
    assert executor.submit(parsl_apps.total, inputs=arrays).result() == 6 * THRESHOLD
    result = executor.submit(parsl_apps.double, arrays[0]).result()
    assert get_key(result) is not None
    executor.shutdown()
    assert count_objects(shared_store) == before


@pytest.mark.parametrize('method', METHODS)
def test_auto_lifetimes(shared_store: Store, method: str) -> None:
    """evict='auto': arguments go when their task is done, results when dropped."""
    before = count_objects(shared_store)
    with ProxyExecutor(_pool(method), store=shared_store, threshold=THRESHOLD, evict='auto') as ex:
        produced = ex.submit(parsl_apps.ones, THRESHOLD).result()
        doubled = [ex.submit(parsl_apps.double, produced) for _ in range(3)]
        total = ex.submit(parsl_apps.total, inputs=[d.result() for d in doubled])
        assert total.result() == 6 * THRESHOLD
        held = doubled[0].result()
        del doubled, total, produced
        gc.collect()
        assert count_objects(shared_store) == before + 1
        assert float(np.sum(held)) == 2 * THRESHOLD
        del held
        gc.collect()
        assert count_objects(shared_store) == before
