"""A multi store in the integrations: small objects to Redis, large ones to files, one workflow."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest

parsl = pytest.importorskip('parsl')
from parsl import python_app  # noqa: E402

import proxystore as ps  # noqa: E402
from proxystore.factory import StoreFactory  # noqa: E402
from proxystore.integrations.executor import ProxyExecutor  # noqa: E402
from proxystore.integrations.parsl import auto_proxy  # noqa: E402
from proxystore.integrations.testing.parsl_configs import htex_config  # noqa: E402
from proxystore.integrations.testing.parsl_configs import thread_config  # noqa: E402
from proxystore.proxy import get_factory  # noqa: E402
from proxystore.proxy import is_proxy  # noqa: E402
from proxystore.proxy import is_resolved  # noqa: E402
from proxystore.store.file import FileStore  # noqa: E402
from proxystore.store.multi import MultiStore  # noqa: E402
from proxystore.store.redis import RedisStore  # noqa: E402
from tests.integrations.conftest import REPO_ROOT  # noqa: E402
from tests.integrations.conftest import running  # noqa: E402

THRESHOLD = 1_000  # proxy anything larger than 1 kB
SMALL_ROUTE = 100_000  # proxied objects up to 100 kB go to Redis, larger ones to files
TIMEOUT = 120

SMALL = np.ones(5_000, dtype=np.uint8)  # proxied, to Redis
LARGE = np.ones(400_000, dtype=np.uint8)  # proxied, to the file store
TINY = b'tiny'  # passed by value


def where(*args: Any) -> list[str | None]:
    """Name the store each argument's proxy reads from (None: passed by value); no resolving."""
    names: list[str | None] = []
    for arg in args:
        factory = get_factory(arg) if is_proxy(arg) else None
        names.append(factory.store_name if isinstance(factory, StoreFactory) else None)
    return names


def grow(x: Any, times: int) -> Any:
    return np.concatenate([x] * times)


def total(x: Any) -> int:
    return int(np.sum(x))


def _store_of(proxy: Any) -> str:
    factory = get_factory(proxy)
    assert isinstance(factory, StoreFactory)
    return factory.store_name


@pytest.fixture
def multi(redis_address: tuple[str, int], tmp_path: Any) -> Iterator[MultiStore]:
    host, port = redis_address
    suffix = os.urandom(4).hex()
    redis = RedisStore(f'redis-{suffix}', hostname=host, port=port)
    files = FileStore(f'files-{suffix}', store_dir=tmp_path / 'files')
    store = ps.store.init_store(
        'multi', name=f'multi-{suffix}', routes=[(redis, SMALL_ROUTE), (files, None)]
    )
    assert isinstance(store, MultiStore)
    yield store
    redis.cleanup()
    files.cleanup()


@pytest.fixture(scope='module', params=['threads', 'htex'])
def dfk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    run_dir = str(tmp_path_factory.mktemp('runinfo'))
    if request.param == 'threads':
        config = thread_config(run_dir)
    else:
        config = htex_config(run_dir, workers=2, pythonpath=REPO_ROOT)
    yield from running(config)


def test_parsl_workflow_routes_small_to_redis_and_large_to_files(
    dfk: Any, multi: MultiStore
) -> None:
    redis, files = (store for store, _ in multi.routes)
    proxied = auto_proxy(store=multi, threshold=THRESHOLD)
    # lazy=True: the app sees the proxies themselves (by default it gets the objects).
    where_app = auto_proxy(store=multi, threshold=THRESHOLD, lazy=True)(python_app(where))
    grow_app = proxied(python_app(grow))
    total_app = proxied(python_app(total))

    # Arguments: each proxy reads from the route its size selects.
    names = where_app(SMALL, LARGE, TINY).result(timeout=TIMEOUT)
    assert names == [redis.name, files.name, None]

    # Results, proxied where they are computed (by the worker's multi store).
    small_result = grow_app(np.ones(10, dtype=np.uint8), 500).result(timeout=TIMEOUT)
    large_result = grow_app(SMALL, 100).result(timeout=TIMEOUT)
    assert is_proxy(small_result) and is_proxy(large_result)
    if dfk.executors.get('htex') is not None:  # in-process results stand for their objects
        assert not is_resolved(large_result)
    assert [_store_of(small_result), _store_of(large_result)] == [redis.name, files.name]

    # Chained apps move only proxies; the submitting process fetched nothing.
    multi.reset_metrics()
    assert total_app(large_result).result(timeout=TIMEOUT) == SMALL.size * 100
    assert where_app(small_result, large_result).result(timeout=TIMEOUT) == [
        redis.name,
        files.name,
    ]
    if dfk.executors.get('htex') is not None:
        assert multi.metrics()['get']['count'] == 0
    assert int(np.sum(small_result)) == 5_000


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_proxy_executor_over_a_process_pool(multi: MultiStore, method: str) -> None:
    redis, files = (store for store, _ in multi.routes)
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))
    with ProxyExecutor(
        pool, store=multi, threshold=THRESHOLD, evict_on_shutdown=True, lazy=True
    ) as executor:
        assert executor.submit(where, SMALL, LARGE, TINY).result() == [
            redis.name,
            files.name,
            None,
        ]
        results = list(executor.map(grow, [np.ones(10, dtype=np.uint8), SMALL], [500, 100]))
        assert [_store_of(r) for r in results] == [redis.name, files.name]
        assert executor.submit(total, results[1]).result() == SMALL.size * 100
        keys = [factory.key for factory in map(get_factory, results)]  # type: ignore[union-attr]
    # evict_on_shutdown found each key in its route.
    assert not any(multi.exists(k) for k in keys)
