"""Auto-proxying Parsl apps on a real ThreadPoolExecutor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

parsl = pytest.importorskip('parsl')
from parsl import python_app  # noqa: E402

from proxystore.exceptions import IntegrationConfigError  # noqa: E402
from proxystore.integrations.parsl import auto_proxy  # noqa: E402
from proxystore.integrations.parsl import disable_auto_proxy  # noqa: E402
from proxystore.integrations.parsl import enable_auto_proxy  # noqa: E402
from proxystore.integrations.parsl import proxy_app  # noqa: E402
from proxystore.proxy import get_key  # noqa: E402
from proxystore.proxy import is_proxy  # noqa: E402
from proxystore.proxy import is_resolved  # noqa: E402
from proxystore.store.base import Store  # noqa: E402
from tests.integrations import parsl_apps  # noqa: E402

pytestmark = pytest.mark.usefixtures('thread_dfk')

THRESHOLD = 10_000


def test_large_args_proxied_small_not(shared_store: Store) -> None:
    kinds = auto_proxy(store=shared_store, threshold=THRESHOLD, lazy=True)(
        python_app(parsl_apps.kinds)
    )
    big = np.ones(THRESHOLD + 1, dtype=np.uint8)
    small = np.ones(10)
    result = kinds(big, small, 5, 'x', k_big=big, k_small=small, inputs=[big, small]).result()
    assert result == {
        'args': [True, False, False, False],
        'kwargs': {'k_big': True, 'k_small': False},
        'inputs': [True, False],
    }


@pytest.mark.parametrize(
    ('size', 'proxied'), [(THRESHOLD - 1, False), (THRESHOLD, False), (THRESHOLD + 1, True)]
)
def test_threshold_edges(shared_store: Store, size: int, proxied: bool) -> None:
    kinds = auto_proxy(store=shared_store, threshold=THRESHOLD, lazy=True)(
        python_app(parsl_apps.kinds)
    )
    assert kinds(b'x' * size).result()['args'] == [proxied]
    assert kinds(np.zeros(size, dtype=np.uint8)).result()['args'] == [proxied]
    # Anything else is measured by its serialized size.
    assert kinds(list(range(size))).result()['args'] == [True]


def test_results_proxied_and_chained(shared_store: Store) -> None:
    double = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.double))
    total = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.total))
    arrays = [np.full(5_000, i, dtype=np.float64) for i in range(4)]
    doubled = [double(a) for a in arrays]
    first = doubled[0].result()
    # In one process the proxy already stands for the result: nothing to read.
    assert is_proxy(first) and is_resolved(first)
    assert total(inputs=doubled).result() == sum(float(np.sum(2 * a)) for a in arrays)


def test_no_accidental_resolves(shared_store: Store) -> None:
    """Threads share the process: every proxy already stands for its object, nothing is read."""
    double = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.double))
    total = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.total))
    arrays = [np.ones(2_000 * (i + 1)) for i in range(5)]
    shared_store.reset_metrics()
    result = total(inputs=[double(a) for a in arrays]).result()
    assert result == sum(2 * a.size for a in arrays)
    metrics = shared_store.metrics()
    # 5 arguments + 5 results were stored (for tasks that might run
    # elsewhere); the tasks received the objects themselves, as under plain
    # Parsl with threads: no reads.
    assert metrics['set']['count'] == 10
    assert metrics['get']['count'] == 0


def test_future_value_checked_once_known(shared_store: Store) -> None:
    make = python_app(parsl_apps.make)  # a plain app: returns a large array as is
    kinds = auto_proxy(store=shared_store, threshold=THRESHOLD, lazy=True)(
        python_app(parsl_apps.kinds)
    )
    future = make(THRESHOLD * 2)
    assert kinds(future, inputs=[make(10)]).result() == {
        'args': [True],
        'kwargs': {},
        'inputs': [False],
    }


def test_exceptions_reach_the_caller_unchanged(shared_store: Store) -> None:
    fail = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.fail))
    with pytest.raises(ValueError, match=f'app failed on {THRESHOLD + 1} items'):
        fail(np.ones(THRESHOLD + 1, dtype=np.uint8)).result()


def test_evict_leaves_no_keys(shared_store: Store) -> None:
    double = auto_proxy(store=shared_store, threshold=THRESHOLD, evict=True)(
        python_app(parsl_apps.double)
    )
    total = auto_proxy(store=shared_store, threshold=THRESHOLD, evict=True)(
        python_app(parsl_apps.total)
    )
    arrays = [np.ones(THRESHOLD) for _ in range(3)]
    doubled = [double(a) for a in arrays]
    keys = [get_key(d.result()) for d in doubled]
    assert all(k is not None for k in keys)
    assert total(inputs=doubled).result() == 6 * THRESHOLD
    assert not any(shared_store.exists(k) for k in keys if k is not None)


def test_proxy_app_combined_decorator(shared_store: Store) -> None:
    @proxy_app(store=shared_store, threshold=THRESHOLD)
    def length(x: Any) -> int:
        return len(x)

    assert length(np.ones(THRESHOLD + 1, dtype=np.uint8)).result() == THRESHOLD + 1
    assert length.__name__ == 'length'


def test_store_by_name_and_bad_settings(shared_store: Store) -> None:
    app = python_app(parsl_apps.size)
    assert auto_proxy(store=shared_store.name, threshold=1)(app)(b'abc').result() == 3
    with pytest.raises(IntegrationConfigError, match='no-such-store'):
        auto_proxy(store='no-such-store')
    for bad in (0, -5, 1.5, True):
        with pytest.raises(IntegrationConfigError, match='threshold'):
            auto_proxy(store=shared_store, threshold=bad)
    with pytest.raises(TypeError, match='python_app'):
        auto_proxy(store=shared_store)(parsl_apps.size)


def test_enable_for_whole_dfk(thread_dfk: Any, shared_store: Store) -> None:
    kinds = python_app(parsl_apps.kinds)
    double = python_app(parsl_apps.double)
    enable_auto_proxy(thread_dfk, store=shared_store, threshold=THRESHOLD, lazy=True)
    try:
        assert kinds(np.ones(THRESHOLD + 1, dtype=np.uint8), 1).result()['args'] == [True, False]
        doubled = double(np.ones(THRESHOLD))
        assert is_proxy(doubled.result())
        assert kinds(doubled).result()['args'] == [True]
    finally:
        disable_auto_proxy(thread_dfk)
    assert kinds(np.ones(THRESHOLD + 1, dtype=np.uint8)).result()['args'] == [False]
