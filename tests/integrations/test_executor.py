"""The executor wrapper on real concurrent.futures executors."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from proxystore.exceptions import IntegrationConfigError
from proxystore.integrations.executor import ProxyExecutor
from proxystore.proxy import get_key
from proxystore.proxy import is_proxy
from proxystore.proxy import is_resolved
from proxystore.store.base import Store
from tests.integrations import parsl_apps

THRESHOLD = 10_000


def _process_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn'))


@pytest.mark.parametrize(
    'make_pool', [lambda: ThreadPoolExecutor(2), _process_pool], ids=['threads', 'processes']
)
def test_submit_and_map(shared_store: Store, make_pool: Any) -> None:
    with ProxyExecutor(make_pool(), store=shared_store, threshold=THRESHOLD, lazy=True) as executor:
        kinds = executor.submit(
            parsl_apps.kinds, np.ones(THRESHOLD + 1, dtype=np.uint8), 3
        ).result()
        assert kinds['args'] == [True, False]
        arrays = [np.full(THRESHOLD, i, dtype=np.float64) for i in range(3)]
        doubled = list(executor.map(parsl_apps.double, arrays))
        # Unresolved where a worker process made them; in-process, already resolved.
        assert all(is_proxy(d) for d in doubled)
        assert executor.submit(parsl_apps.total, inputs=doubled).result() == 2 * THRESHOLD * 3
        with pytest.raises(ValueError, match='app failed'):
            executor.submit(parsl_apps.fail, [1]).result()


def test_fetched_once_per_consuming_task(shared_store: Store) -> None:
    with ProxyExecutor(_process_pool(), store=shared_store, threshold=THRESHOLD) as executor:
        shared_store.reset_metrics()
        arrays = [np.ones(THRESHOLD) for _ in range(4)]
        for _ in range(2):  # engines and callers poke at arguments and results
            [hash(a.tobytes()[:1]) for a in arrays]
        doubled = [executor.submit(parsl_apps.double, a) for a in arrays]
        results = [d.result() for d in doubled]
        [repr(type(r)) for r in results]
        [callable(r) for r in results]
        [isinstance(r, np.ndarray) for r in results]
        # The tasks read in the workers; the submitting process reads nothing.
        assert shared_store.metrics()['get']['count'] == 0
        assert executor.submit(parsl_apps.total, inputs=results).result() == 8 * THRESHOLD
        assert shared_store.metrics()['get']['count'] == 0


def test_evict_on_shutdown(shared_store: Store) -> None:
    executor = ProxyExecutor(
        _process_pool(), store=shared_store, threshold=THRESHOLD, evict_on_shutdown=True
    )
    result = executor.submit(parsl_apps.double, np.ones(THRESHOLD)).result()
    keys = [get_key(result)]
    assert all(shared_store.exists(k) for k in keys if k)
    executor.shutdown()
    assert not any(shared_store.exists(k) for k in keys if k)


def test_bad_threshold(shared_store: Store) -> None:
    with pytest.raises(IntegrationConfigError):
        ProxyExecutor(ThreadPoolExecutor(1), store=shared_store, threshold=0)


def test_proxies_of_unknown_type_pass_through_unresolved(shared_store: Store) -> None:
    from proxystore.factory import LambdaFactory
    from proxystore.integrations.policy import ProxyPolicy
    from proxystore.proxy import Proxy

    calls = []
    lazy = Proxy(LambdaFactory(lambda: calls.append(1) or np.ones(THRESHOLD * 2)))
    policy = ProxyPolicy(shared_store, THRESHOLD)
    assert policy.maybe_proxy(lazy) is lazy
    assert not calls and not is_resolved(lazy)
