"""Auto-proxying on a real local HighThroughputExecutor (worker processes)."""

from __future__ import annotations

import numpy as np
import pytest

parsl = pytest.importorskip('parsl')
from parsl import python_app  # noqa: E402

from proxystore.integrations.parsl import auto_proxy  # noqa: E402
from proxystore.proxy import get_key  # noqa: E402
from proxystore.proxy import is_proxy  # noqa: E402
from proxystore.proxy import is_resolved  # noqa: E402
from proxystore.store.base import Store  # noqa: E402
from tests.integrations import parsl_apps  # noqa: E402

pytestmark = pytest.mark.usefixtures('htex_dfk')

THRESHOLD = 10_000
TIMEOUT = 120


def test_workers_resolve_proxies_they_never_saw_created(shared_store: Store) -> None:
    kinds = auto_proxy(store=shared_store, threshold=THRESHOLD, lazy=True)(
        python_app(parsl_apps.kinds)
    )
    size = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.size))
    big = np.ones(THRESHOLD * 4, dtype=np.uint8)
    assert kinds(big, 1).result(timeout=TIMEOUT)['args'] == [True, False]
    assert size(big).result(timeout=TIMEOUT) == big.size
    assert shared_store.metrics()['get']['count'] == 0  # the submitting process fetched nothing


def test_array_result_does_not_hang(shared_store: Store) -> None:
    """Regression: a returned proxy of an array must travel as data, not as code.

    Parsl's worker serializes anything callable with an lru_cache'd code
    serializer that hashes it; hashing a proxy of an (unhashable) array failed
    and the workflow hung.
    """
    make = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.make))
    result = make(THRESHOLD * 10).result(timeout=TIMEOUT)
    assert is_proxy(result) and not is_resolved(result)
    assert isinstance(result, np.ndarray)  # answered without fetching
    assert not is_resolved(result)
    assert int(np.sum(result)) == THRESHOLD * 10


def test_map_reduce_with_evict_moves_only_proxies(shared_store: Store) -> None:
    double = auto_proxy(store=shared_store, threshold=THRESHOLD, evict=True)(
        python_app(parsl_apps.double)
    )
    total = auto_proxy(store=shared_store, threshold=THRESHOLD, evict=True)(
        python_app(parsl_apps.total)
    )
    arrays = [np.full(THRESHOLD, i, dtype=np.float64) for i in range(4)]
    doubled = [double(a) for a in arrays]
    keys = [get_key(d.result(timeout=TIMEOUT)) for d in doubled]
    assert all(keys)
    result = total(inputs=doubled).result(timeout=TIMEOUT)
    assert result == sum(float(np.sum(2 * a)) for a in arrays)
    # With evict, each object could be read exactly once: every key is gone,
    # and the submitting process read none of them.
    assert not any(shared_store.exists(k) for k in keys if k)
    assert shared_store.metrics()['get']['count'] == 0


def test_exception_in_worker_reaches_caller(shared_store: Store) -> None:
    fail = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.fail))
    with pytest.raises(ValueError, match='app failed on'):
        fail(np.ones(THRESHOLD + 1, dtype=np.uint8)).result(timeout=TIMEOUT)
