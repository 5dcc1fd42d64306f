"""Parsl's MonitoringHub on HTEX: the submitting process still reads nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

parsl = pytest.importorskip('parsl')
pytest.importorskip('sqlalchemy')  # Parsl's monitoring database (parsl[monitoring])
from parsl import python_app  # noqa: E402
from parsl.monitoring import MonitoringHub  # noqa: E402

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
def monitored_dfk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    run_dir = tmp_path_factory.mktemp('runinfo')
    hub = MonitoringHub(
        logging_endpoint=f'sqlite:///{run_dir}/monitoring.db', resource_monitoring_interval=1
    )
    yield from running(htex_config(str(run_dir), pythonpath=REPO_ROOT, monitoring=hub))


def test_monitoring_reads_nothing_in_the_submitter(monitored_dfk: Any, shared_store: Store) -> None:
    make = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.make))
    total = auto_proxy(store=shared_store, threshold=THRESHOLD)(python_app(parsl_apps.total))
    shared_store.reset_metrics()
    made = [make(THRESHOLD * 2) for _ in range(3)]
    assert total(inputs=made).result(timeout=TIMEOUT) == 3 * THRESHOLD * 2
    assert not any(is_resolved(m.result()) for m in made)
    assert shared_store.metrics()['get']['count'] == 0
