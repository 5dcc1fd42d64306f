"""Auto-proxy changes where the bytes travel and nothing else: HTEX with Parsl's defaults.

The DataFlowKernel logs at DEBUG (Parsl's default), so the executor calls
``repr`` on every task argument. Each test compares with what plain Parsl
computes for the same app.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import numpy as np
import pytest

parsl = pytest.importorskip('parsl')
from parsl import join_app  # noqa: E402
from parsl import python_app  # noqa: E402
from parsl.data_provider.files import File  # noqa: E402

from proxystore.integrations.parsl import auto_proxy  # noqa: E402
from proxystore.integrations.parsl import disable_auto_proxy  # noqa: E402
from proxystore.integrations.parsl import enable_auto_proxy  # noqa: E402
from proxystore.integrations.parsl import proxy_app  # noqa: E402
from proxystore.proxy import get_key  # noqa: E402
from proxystore.proxy import is_proxy  # noqa: E402
from proxystore.proxy import is_resolved  # noqa: E402
from proxystore.store.base import Store  # noqa: E402
from tests.integrations import parsl_apps  # noqa: E402
from tests.integrations.conftest import count_objects  # noqa: E402

THRESHOLD = 10_000
TIMEOUT = 120


def _settles(condition: Any) -> bool:
    """Collect garbage until ``condition()`` holds (completion callbacks run in Parsl's threads)."""
    for _ in range(200):
        gc.collect()
        if condition():
            return True
        time.sleep(0.05)
    return False


def _auto(store: Store, fn: Any, **options: Any) -> Any:
    return auto_proxy(store=store, threshold=THRESHOLD, **options)(python_app(fn))


def test_default_logging_reads_nothing_in_the_submitter(htex_dfk: Any, shared_store: Store) -> None:
    """Item 1: with DEBUG logging HTEX repr()s every argument; that must not fetch."""
    make = _auto(shared_store, parsl_apps.make)
    double = _auto(shared_store, parsl_apps.double)
    total = _auto(shared_store, parsl_apps.total)
    shared_store.reset_metrics()
    doubled = [double(make(THRESHOLD * 4)) for _ in range(3)]
    assert total(inputs=doubled).result(timeout=TIMEOUT) == 3 * 2 * THRESHOLD * 4
    results = [d.result() for d in doubled]
    assert all(is_proxy(r) and not is_resolved(r) for r in results)
    assert 'unresolved' in repr(results[0])
    assert shared_store.metrics()['get']['count'] == 0
    with open(os.path.join(htex_dfk.run_dir, 'parsl.log')) as log:
        assert 'Pushing function' in log.read()  # the DEBUG lines that call repr()


@pytest.mark.parametrize('lazy', [False, True], ids=['objects', 'lazy'])
def test_task_that_modifies_and_returns_its_argument(
    htex_dfk: Any, shared_store: Store, lazy: bool
) -> None:
    """Item 2: ``x *= 2; return x`` returns the doubled data, as plain Parsl does."""
    app = _auto(shared_store, parsl_apps.double_in_place, lazy=lazy)
    result = app(np.ones(200_000)).result(timeout=TIMEOUT)
    assert float(np.sum(result)) == 400_000


def test_check_then_pass_through_with_evict(htex_dfk: Any, shared_store: Store) -> None:
    """Item 2: with evict=True, returning a read argument must not hand back an evicted key."""
    check = _auto(shared_store, parsl_apps.check_then_return, evict=True)
    total = _auto(shared_store, parsl_apps.total, evict=True)
    passed = check(np.ones(THRESHOLD * 2))
    assert total(inputs=[passed]).result(timeout=TIMEOUT) == THRESHOLD * 2


def test_each_task_gets_its_own_copy(htex_dfk: Any, shared_store: Store) -> None:
    """Item 2: in-place changes never leak between tasks sharing a worker."""
    ones = _auto(shared_store, parsl_apps.ones)
    in_place_sum = _auto(shared_store, parsl_apps.in_place_sum)
    produced = ones(250_000)
    sums = [in_place_sum(produced) for _ in range(7)]
    assert [s.result(timeout=TIMEOUT) for s in sums] == [500_000.0] * 7


def test_exact_argument_types(htex_dfk: Any, shared_store: Store) -> None:
    """Item 3: C-level exact-type checks pass, as with plain Parsl."""
    text = 'ab' * THRESHOLD
    mapping = {str(i): i for i in range(THRESHOLD)}
    array = np.ones(THRESHOLD * 2)
    for fn, arg in (
        (parsl_apps.text_checks, text),
        (parsl_apps.dict_checks, mapping),
        (parsl_apps.array_checks, array),
    ):
        plain = python_app(fn)(arg).result(timeout=TIMEOUT)
        assert _auto(shared_store, fn)(arg).result(timeout=TIMEOUT) == plain
        assert plain[0] is True
    # lazy=True: the function gets the proxy itself.
    assert _auto(shared_store, parsl_apps.is_a_proxy, lazy=True)(array).result(timeout=TIMEOUT)
    assert not _auto(shared_store, parsl_apps.is_a_proxy)(array).result(timeout=TIMEOUT)


@pytest.mark.parametrize('proxy_results', [True, False], ids=['results', 'no-results'])
def test_app_cache_hits_for_equal_arguments(
    htex_dfk: Any, shared_store: Store, proxy_results: bool
) -> None:
    """Item 4: memoization by content, never by the per-call key (and never by reading)."""
    size = proxy_app(
        parsl_apps.flat_length,
        store=shared_store,
        threshold=THRESHOLD,
        proxy_results=proxy_results,
        cache=True,
    )
    text = auto_proxy(store=shared_store, threshold=THRESHOLD, proxy_results=proxy_results)(
        python_app(parsl_apps.size, cache=True)
    )
    start = int.from_bytes(os.urandom(4), 'big')  # this DFK's memo table outlives the test
    first = size([list(range(start, start + THRESHOLD))] * 2)
    assert first.result(timeout=TIMEOUT) == 2 * THRESHOLD
    again = size([list(range(start, start + THRESHOLD))] * 2)  # equal, not the same object
    assert again.result(timeout=TIMEOUT) == 2 * THRESHOLD
    assert again.task_record['from_memo']
    other = size([list(range(start, start + THRESHOLD + 1))] * 2)
    assert other.result(timeout=TIMEOUT) == 2 * THRESHOLD + 2
    assert not other.task_record['from_memo']
    word = os.urandom(4).hex()
    assert text(word * THRESHOLD).result(timeout=TIMEOUT) == 8 * THRESHOLD
    hit = text(word * THRESHOLD)
    assert hit.result(timeout=TIMEOUT) == 8 * THRESHOLD and hit.task_record['from_memo']
    shared_store.reset_metrics()
    # A cached producer's result feeds a cached consumer: hits too.
    make = proxy_app(parsl_apps.ones, store=shared_store, threshold=THRESHOLD, cache=True)
    total = proxy_app(parsl_apps.total, store=shared_store, threshold=THRESHOLD, cache=True)
    n = THRESHOLD * 2 + start % 1000
    assert total(inputs=[make(n)]).result(timeout=TIMEOUT) == n
    again_total = total(inputs=[make(n)])
    assert again_total.result(timeout=TIMEOUT) == n
    assert again_total.task_record['from_memo']
    assert shared_store.metrics()['get']['count'] == 0


def test_enable_auto_proxy_with_cached_app(htex_dfk: Any, shared_store: Store) -> None:
    """Item 4: the DFK-wide switch with a ``cache=True`` app."""
    size = python_app(parsl_apps.size, cache=True)
    enable_auto_proxy(htex_dfk, store=shared_store, threshold=THRESHOLD)
    try:
        word = os.urandom(4).hex()
        assert size(word * THRESHOLD).result(timeout=TIMEOUT) == THRESHOLD * 8
        hit = size(word * THRESHOLD)
        assert hit.result(timeout=TIMEOUT) == THRESHOLD * 8 and hit.task_record['from_memo']
    finally:
        disable_auto_proxy(htex_dfk)


@join_app
def _join_two(n: int) -> Any:
    make = python_app(parsl_apps.make)
    return [make(n), make(n)]


def test_join_app_returning_futures(htex_dfk: Any, shared_store: Store) -> None:
    """Item 6: a join app returning a list of futures works under auto-proxy."""
    joined = auto_proxy(store=shared_store, threshold=THRESHOLD)(_join_two)
    arrays = joined(THRESHOLD * 2).result(timeout=TIMEOUT)
    assert [int(np.sum(a)) for a in arrays] == [THRESHOLD * 2] * 2


def test_plain_app_sharing_a_future_gets_the_object(htex_dfk: Any, shared_store: Store) -> None:
    """Item 8: proxying a future's value for an auto app does not leak into plain apps."""
    make = python_app(parsl_apps.make)
    kinds_auto = _auto(shared_store, parsl_apps.kinds, lazy=True)
    kinds_plain = python_app(parsl_apps.kinds)
    produced = make(THRESHOLD * 2)
    auto = kinds_auto(produced)
    plain = kinds_plain(produced)
    assert auto.result(timeout=TIMEOUT)['args'] == [True]
    assert plain.result(timeout=TIMEOUT)['args'] == [False]


def test_outputs_are_not_proxied(htex_dfk: Any, shared_store: Store, tmp_path: Any) -> None:
    """Item 8: Parsl reads ``outputs=`` in the submitting process: they stay as given."""
    app = auto_proxy(store=shared_store, threshold=1)(python_app(parsl_apps.write_output))
    target = File(str(tmp_path / 'out.txt'))
    future = app(np.ones(100), outputs=[target])
    assert future.result(timeout=TIMEOUT) == 100
    future.outputs[0].result(timeout=TIMEOUT)
    assert (tmp_path / 'out.txt').read_text() == '100'
    assert shared_store.metrics()['get']['count'] == 0


def test_auto_lifetimes_leave_nothing(htex_dfk: Any, shared_store: Store) -> None:
    """evict='auto': producer -> 3 consumers -> reducer leaves 0 objects once dropped."""
    before = count_objects(shared_store)
    make = _auto(shared_store, parsl_apps.make, evict='auto')
    double = _auto(shared_store, parsl_apps.double, evict='auto')
    total = _auto(shared_store, parsl_apps.total, evict='auto')
    produced = make(THRESHOLD * 3)
    doubled = [double(produced) for _ in range(3)]
    reduced = total(inputs=doubled)
    assert reduced.result(timeout=TIMEOUT) == 3 * 2 * THRESHOLD * 3
    held = doubled[0].result()
    del produced, doubled, reduced
    # The result the user still holds stays readable; everything else is gone
    # (arguments go in Parsl's completion callbacks, which may lag result()).
    assert _settles(lambda: count_objects(shared_store) == before + 1)
    assert int(np.sum(held)) == 2 * THRESHOLD * 3
    key = get_key(held)
    del held
    assert _settles(lambda: count_objects(shared_store) == before)
    assert key is not None and not shared_store.exists(key)


def test_auto_lifetimes_after_dependency_failure(htex_dfk: Any, shared_store: Store) -> None:
    """evict='auto': a task skipped after its dependency failed leaves nothing behind."""
    before = count_objects(shared_store)
    fail = _auto(shared_store, parsl_apps.fail, evict='auto')
    kinds = _auto(shared_store, parsl_apps.kinds, evict='auto')
    failed = fail([1])
    skipped = kinds(failed, np.ones(THRESHOLD * 2))
    with pytest.raises(Exception, match='Dependency failure'):
        skipped.result(timeout=TIMEOUT)
    del failed, skipped
    assert _settles(lambda: count_objects(shared_store) == before)
