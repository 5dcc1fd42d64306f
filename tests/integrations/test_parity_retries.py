"""Retries under evict='auto' (HTEX with ``retries=1``, Parsl's default logging)."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

parsl = pytest.importorskip('parsl')
from parsl import python_app  # noqa: E402

from proxystore.integrations.parsl import auto_proxy  # noqa: E402
from proxystore.integrations.testing.parsl_configs import htex_config  # noqa: E402
from proxystore.store.base import Store  # noqa: E402
from tests.integrations import parsl_apps  # noqa: E402
from tests.integrations.conftest import REPO_ROOT  # noqa: E402
from tests.integrations.conftest import count_objects  # noqa: E402
from tests.integrations.conftest import running  # noqa: E402

THRESHOLD = 10_000
TIMEOUT = 120


@pytest.fixture(scope='module')
def retry_dfk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = htex_config(str(tmp_path_factory.mktemp('runinfo')), pythonpath=REPO_ROOT, retries=1)
    yield from running(config)


@pytest.mark.parametrize('evict', ['auto', True, False])
def test_retried_task_still_reads_its_input(
    retry_dfk: Any, shared_store: Store, tmp_path: Any, evict: Any
) -> None:
    app = auto_proxy(store=shared_store, threshold=THRESHOLD, evict=evict)(
        python_app(parsl_apps.fail_first_try)
    )
    before = count_objects(shared_store)
    future = app(np.ones(THRESHOLD * 2), str(tmp_path / 'marker'))
    if evict is True:  # read once, then gone: the retry cannot read it (documented)
        with pytest.raises(Exception, match='does not exist'):
            future.result(timeout=TIMEOUT)
        return
    assert future.result(timeout=TIMEOUT) == THRESHOLD * 2
    assert future.task_record['fail_count'] == 1
    if evict == 'auto':
        del future
        for _ in range(100):
            gc.collect()
            if count_objects(shared_store) == before:
                break
            time.sleep(0.05)  # completion callbacks run in Parsl's threads
        assert count_objects(shared_store) == before
