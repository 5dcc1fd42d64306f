"""Parsl's deep dependency resolver under auto-proxy (HTEX, Parsl's default logging)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

parsl = pytest.importorskip('parsl')
from parsl import python_app  # noqa: E402
from parsl.dataflow.dependency_resolvers import DEEP_DEPENDENCY_RESOLVER  # noqa: E402

from proxystore.integrations.parsl import auto_proxy  # noqa: E402
from proxystore.integrations.testing.parsl_configs import htex_config  # noqa: E402
from proxystore.proxy import is_resolved  # noqa: E402
from proxystore.store.base import Store  # noqa: E402
from tests.integrations import parsl_apps  # noqa: E402
from tests.integrations.conftest import REPO_ROOT  # noqa: E402
from tests.integrations.conftest import running  # noqa: E402

THRESHOLD = 10_000
TIMEOUT = 120


@pytest.fixture(scope='module')
def deep_dfk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = htex_config(
        str(tmp_path_factory.mktemp('runinfo')),
        pythonpath=REPO_ROOT,
        dependency_resolver=DEEP_DEPENDENCY_RESOLVER,
    )
    yield from running(config)


def test_proxy_of_a_list_passed_directly(deep_dfk: Any, shared_store: Store) -> None:
    """Item 5: the deep resolver must not iterate (read) and rebuild a proxied list."""
    make = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.list_of_lists))
    length = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.flat_length))
    lists = make(THRESHOLD).result(timeout=TIMEOUT)
    assert not is_resolved(lists)
    shared_store.reset_metrics()
    assert length(lists).result(timeout=TIMEOUT) == 3 * THRESHOLD
    assert not is_resolved(lists)
    assert shared_store.metrics()['get']['count'] == 0


def test_list_holding_futures(deep_dfk: Any, shared_store: Store) -> None:
    """Item 5: futures inside a list are waited for, and the list is not pickled to size it."""
    make = python_app(parsl_apps.make)
    make_auto = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.make))
    length = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.flat_length))
    items = [make(THRESHOLD * 2), make_auto(THRESHOLD * 3), np.ones(THRESHOLD * 4)]
    assert length(items).result(timeout=TIMEOUT) == THRESHOLD * 9
    total = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.total))
    assert total(inputs=[[make_auto(THRESHOLD)], make_auto(THRESHOLD)]).result(
        timeout=TIMEOUT
    ) == pytest.approx(2 * THRESHOLD)
