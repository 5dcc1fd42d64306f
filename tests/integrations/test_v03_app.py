"""A v0.3.3 application runs unchanged on HTEX with Redis (Parsl's default logging)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

parsl = pytest.importorskip('parsl')

import proxystore as ps  # noqa: E402


def test_v03_task_server_on_htex_with_redis(htex_dfk: Any, redis_address: tuple[str, int]) -> None:
    from tests.integrations.v03_app import run_task

    host, port = redis_address
    name = f'v03-redis-{os.urandom(4).hex()}'
    store = ps.store.init_store(
        ps.store.STORES.REDIS, name=name, hostname=host, port=port, stats=True
    )
    store_type = ps.store.STORES.get_str_by_type(type(store))
    assert store_type == 'REDIS'
    futures = []
    for task in range(6):
        inputs = [store.proxy(np.full(1000, float(task + i))) for i in range(4)]
        futures.append(run_task(store_type, name, store.kwargs, inputs))
    for task, future in enumerate(futures):
        result, stats = future.result(timeout=120)
        assert list(result) == [1000.0 * (task + i) for i in range(4)]
        assert len(stats) == 4
        for per_method in stats.values():
            assert per_method['resolve']['calls'] == 1
            assert per_method['get']['calls'] >= 1
            assert per_method['resolve_async']['calls'] >= 1
            assert per_method['get']['avg_time_ms'] >= 0
    # The thinker's store has timings of its own keys too.
    # The submitting process read the 6 results and none of the 24 inputs.
    assert store.metrics()['get']['count'] == 6
