"""Auto-proxying through the real funcx SDK client against the loopback service double."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip('funcx')

from globus_sdk import GlobusAPIError

from proxystore.integrations.funcx import proxy_client
from proxystore.integrations.testing import funcx_tasks
from proxystore.integrations.testing.funcx_service import FuncXServiceDouble
from proxystore.integrations.testing.funcx_service import wait_for_batch
from proxystore.integrations.testing.funcx_service import wait_for_result
from proxystore.proxy import is_proxy
from proxystore.proxy import is_resolved
from proxystore.store.base import Store

MB = 1024 * 1024
ENDPOINT = str(uuid.uuid4())


@pytest.fixture(scope='module')
def service() -> Iterator[FuncXServiceDouble]:
    with FuncXServiceDouble(workers=2) as double:
        yield double


def test_large_argument_fails_plain_and_succeeds_wrapped(
    service: FuncXServiceDouble,
    shared_store: Store,
) -> None:
    client = service.make_client()
    function_id = client.register_function(funcx_tasks.nbytes)
    data = bytes(50 * MB)
    with pytest.raises(GlobusAPIError) as info:
        client.run(data, endpoint_id=ENDPOINT, function_id=function_id)
    assert info.value.code == 'TASK_PAYLOAD_TOO_LARGE'

    wrapped = proxy_client(client, store=shared_store, threshold=100_000)
    before = len(service.submit_sizes)
    task_id = wrapped.run(data, endpoint_id=ENDPOINT, function_id=function_id)
    assert wait_for_result(wrapped, task_id) == 50 * MB
    assert service.submit_sizes[before] < 2_000  # the request carried a proxy, not 50 MB


def test_batches_proxy_arguments(service: FuncXServiceDouble, shared_store: Store) -> None:
    wrapped = proxy_client(service.make_client(), store=shared_store, threshold=1_000)
    function_id = wrapped.register_function(funcx_tasks.nbytes)
    batch = wrapped.create_batch()
    sizes = [10, 5_000, 20 * MB]
    for size in sizes:
        batch.add(function_id, args=(bytes(size),))
    before = len(service.submit_sizes)
    response = wrapped.batch_run(ENDPOINT, batch)
    task_ids = response['tasks'][function_id]
    results = wait_for_batch(wrapped, task_ids)
    assert [results[t]['result'] for t in task_ids] == sizes
    assert service.submit_sizes[before] < 5_000


def test_results_come_back_as_proxies(service: FuncXServiceDouble, shared_store: Store) -> None:
    client = service.make_client()
    plain_id = client.register_function(funcx_tasks.make_bytes)
    task_id = client.run(20 * MB, endpoint_id=ENDPOINT, function_id=plain_id)
    with pytest.raises(Exception, match='exceeded'):
        wait_for_result(client, task_id)

    wrapped = proxy_client(client, store=shared_store, threshold=100_000)
    function_id = wrapped.register_function(funcx_tasks.make_bytes)
    result = wait_for_result(
        wrapped, wrapped.run(20 * MB, endpoint_id=ENDPOINT, function_id=function_id)
    )
    assert is_proxy(result) and not is_resolved(result)
    assert len(result) == 20 * MB
    small = wait_for_result(wrapped, wrapped.run(10, endpoint_id=ENDPOINT, function_id=function_id))
    assert small == bytes(10) and not is_proxy(small)


def test_kwargs_and_arrays(service: FuncXServiceDouble, shared_store: Store) -> None:
    wrapped = proxy_client(service.make_client(), store=shared_store, threshold=1_000)
    function_id = wrapped.register_function(funcx_tasks.echo)
    array = np.arange(10_000)
    task_id = wrapped.run(
        1, array, endpoint_id=ENDPOINT, function_id=function_id, big=array, small=2
    )
    args, kwargs = wait_for_result(wrapped, task_id)
    # The echoed arguments were proxies on the worker; returned, they are large
    # again and come back as proxies of the same data.
    assert args[0] == 1 and np.array_equal(args[1], array)
    assert np.array_equal(kwargs['big'], array) and kwargs['small'] == 2


def test_passthrough_attributes(service: FuncXServiceDouble, shared_store: Store) -> None:
    client = service.make_client()
    wrapped: Any = proxy_client(client, store=shared_store)
    assert wrapped.web_client is client.web_client
    assert wrapped.get_endpoint_status(ENDPOINT)['status'] == 'online'


def test_task_gets_its_own_exact_object(service: FuncXServiceDouble, shared_store: Store) -> None:
    """Items 2 and 3: like the plain client, the task doubles its own array and sees an ndarray."""
    client = service.make_client()
    plain_id = client.register_function(funcx_tasks.double_in_place)
    plain = wait_for_result(
        client, client.run(np.ones(20_000), endpoint_id=ENDPOINT, function_id=plain_id)
    )
    wrapped = proxy_client(client, store=shared_store, threshold=1_000)
    function_id = wrapped.register_function(funcx_tasks.double_in_place)
    result = wait_for_result(
        wrapped, wrapped.run(np.ones(20_000), endpoint_id=ENDPOINT, function_id=function_id)
    )
    assert float(np.sum(result)) == float(np.sum(plain)) == 40_000
    type_id = wrapped.register_function(funcx_tasks.exact_type)
    task_id = wrapped.run(np.ones(20_000), endpoint_id=ENDPOINT, function_id=type_id)
    assert wait_for_result(wrapped, task_id) == 'ndarray'


def test_auto_lifetimes_leave_nothing(service: FuncXServiceDouble, shared_store: Store) -> None:
    """evict='auto': arguments go once the outcome is fetched, results once dropped."""
    import gc

    from tests.integrations.conftest import count_objects

    before = count_objects(shared_store)
    wrapped = proxy_client(service.make_client(), store=shared_store, threshold=1_000, evict='auto')
    echo_id = wrapped.register_function(funcx_tasks.echo)
    nbytes_id = wrapped.register_function(funcx_tasks.nbytes)
    fail_id = wrapped.register_function(funcx_tasks.fail)
    data = bytes(50_000)
    echoed = wait_for_result(wrapped, wrapped.run(data, endpoint_id=ENDPOINT, function_id=echo_id))
    assert bytes(echoed[0][0]) == data  # a result proxy, still readable while held
    batch = wrapped.create_batch()
    for _ in range(3):
        batch.add(nbytes_id, args=(data,))
    ids = wrapped.batch_run(ENDPOINT, batch)['tasks'][nbytes_id]
    assert [r['result'] for r in wait_for_batch(wrapped, ids).values()] == [50_000] * 3
    with pytest.raises(Exception, match='boom'):
        wait_for_result(
            wrapped, wrapped.run('boom' * 1_000, endpoint_id=ENDPOINT, function_id=fail_id)
        )
    assert count_objects(shared_store) == before + 1  # only the held result
    # The SDK keeps every fetched result in its task table: the result's
    # object goes with the last reference, the user's or the client's.
    del echoed
    gc.collect()
    assert count_objects(shared_store) == before + 1
    del wrapped
    gc.collect()
    assert count_objects(shared_store) == before
