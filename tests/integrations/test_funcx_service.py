"""The loopback FuncX service double, driven by the real ``funcx`` SDK client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip('funcx')

from globus_compute_sdk.errors import TaskExecutionFailed
from globus_sdk import GlobusAPIError
from globus_sdk import GlobusConnectionError

from proxystore.integrations.testing import funcx_tasks
from proxystore.integrations.testing.funcx_service import MAX_REQUEST_SIZE
from proxystore.integrations.testing.funcx_service import MAX_RESULT_SIZE
from proxystore.integrations.testing.funcx_service import FuncXServiceDouble
from proxystore.integrations.testing.funcx_service import wait_for_batch
from proxystore.integrations.testing.funcx_service import wait_for_result

pytestmark = pytest.mark.timeout(60)

MB = 1024 * 1024


@pytest.fixture
def service() -> Iterator[FuncXServiceDouble]:
    with FuncXServiceDouble() as service:
        yield service


@pytest.fixture
def client(service: FuncXServiceDouble) -> Any:
    return service.make_client()


@pytest.fixture
def endpoint_id() -> str:
    return str(uuid.uuid4())


def test_client_is_the_real_sdk_client(service: FuncXServiceDouble, client: Any) -> None:
    from funcx import FuncXClient
    from globus_compute_sdk.sdk.web_client import WebClient

    assert isinstance(client, FuncXClient)
    assert type(client.web_client) is WebClient
    assert client.funcx_service_address == service.address
    assert service.address.startswith('http://127.0.0.1:')


def test_version_check_passes(service: FuncXServiceDouble) -> None:
    client = service.make_client(do_version_check=True)
    client.version_check()


def test_register_function(service: FuncXServiceDouble, client: Any) -> None:
    function_id = client.register_function(funcx_tasks.add)

    assert str(uuid.UUID(function_id)) == function_id
    assert service.functions[function_id]['function_name'] == 'add'
    info = client.get_function(function_id)
    assert info['function_uuid'] == function_id
    assert info['function_name'] == 'add'


def test_run_and_get_result(service: FuncXServiceDouble, client: Any, endpoint_id: str) -> None:
    function_id = client.register_function(funcx_tasks.add)

    task_id = client.run(1, 2, endpoint_id=endpoint_id, function_id=function_id)

    assert wait_for_result(client, task_id) == 3
    assert service.task_ids == [task_id]
    assert len(service.submit_sizes) == 1
    assert 0 < service.result_sizes[task_id] < 1000


def test_task_status_reports_success(client: Any, endpoint_id: str) -> None:
    function_id = client.register_function(funcx_tasks.echo)
    task_id = client.run('a', key=[1, 2], endpoint_id=endpoint_id, function_id=function_id)

    wait_for_result(client, task_id)
    task = client.get_task(task_id)

    assert task['pending'] is False
    assert task['status'] == 'success'
    assert task['result'] == (('a',), {'key': [1, 2]})
    float(task['completion_t'])


def test_submit_size_counts_the_serialized_arguments(
    service: FuncXServiceDouble,
    client: Any,
    endpoint_id: str,
) -> None:
    function_id = client.register_function(funcx_tasks.nbytes)
    data = bytes(2 * MB)

    task_id = client.run(data, endpoint_id=endpoint_id, function_id=function_id)

    assert wait_for_result(client, task_id) == len(data)
    # base64 of dill: about 4/3 of the raw bytes crossed the service.
    assert 4 * len(data) / 3 < service.submit_sizes[-1] < 1.5 * len(data)


def test_batch_run_and_get_batch_result(
    service: FuncXServiceDouble,
    client: Any,
    endpoint_id: str,
) -> None:
    add_id = client.register_function(funcx_tasks.add)
    echo_id = client.register_function(funcx_tasks.echo)
    batch = client.create_batch()
    for i in range(4):
        batch.add(add_id, (i, 10))
    batch.add(echo_id, ('x',), {'y': 1})

    response = client.batch_run(endpoint_id, batch)

    assert response['endpoint_id'] == endpoint_id
    assert set(response['tasks']) == {add_id, echo_id}
    add_ids = response['tasks'][add_id]
    (echo_task,) = response['tasks'][echo_id]
    assert len(add_ids) == 4
    assert len(service.submit_sizes) == 1

    statuses = wait_for_batch(client, [*add_ids, echo_task])

    assert [statuses[t]['result'] for t in add_ids] == [10, 11, 12, 13]
    assert statuses[echo_task]['result'] == (('x',), {'y': 1})
    assert all(statuses[t]['status'] == 'success' for t in statuses)


def test_task_exception_fails_the_task(client: Any, endpoint_id: str) -> None:
    function_id = client.register_function(funcx_tasks.fail)
    task_id = client.run('boom', endpoint_id=endpoint_id, function_id=function_id)

    # SDK 2.x raises TaskExecutionFailed carrying the remote traceback as text
    # (it does not re-raise the original exception type).
    with pytest.raises(TaskExecutionFailed) as exc_info:
        wait_for_result(client, task_id)

    remote = exc_info.value.remote_data
    assert 'ValueError: boom' in remote
    assert 'in fail' in remote
    assert 'ValueError: boom' in str(exc_info.value)


def test_failed_task_is_left_out_of_batch_result(
    service: FuncXServiceDouble,
    client: Any,
    endpoint_id: str,
) -> None:
    fail_id = client.register_function(funcx_tasks.fail)
    add_id = client.register_function(funcx_tasks.add)
    batch = client.create_batch()
    batch.add(fail_id, ('boom',))
    batch.add(add_id, (1, 1))
    tasks = client.batch_run(endpoint_id, batch)['tasks']
    failed, ok = tasks[fail_id][0], tasks[add_id][0]
    service.wait()

    statuses = client.get_batch_result([failed, ok])

    assert statuses[ok]['result'] == 2
    assert failed not in statuses
    with pytest.raises(TaskExecutionFailed, match='boom'):
        client.get_result(failed)


def test_request_over_10mb_is_rejected_with_413(
    service: FuncXServiceDouble,
    client: Any,
    endpoint_id: str,
) -> None:
    function_id = client.register_function(funcx_tasks.nbytes)

    with pytest.raises(GlobusAPIError) as exc_info:
        client.run(bytes(12 * MB), endpoint_id=endpoint_id, function_id=function_id)

    error = exc_info.value
    assert error.http_status == 413
    assert error.code == 'TASK_PAYLOAD_TOO_LARGE'
    assert error.raw_json is not None
    assert 'exceeds the limit' in error.raw_json['reason']
    assert service.submit_sizes[-1] > MAX_REQUEST_SIZE
    assert service.task_ids == []


def test_result_over_10mb_fails_the_task(
    service: FuncXServiceDouble,
    client: Any,
    endpoint_id: str,
) -> None:
    function_id = client.register_function(funcx_tasks.make_bytes)
    task_id = client.run(11 * MB, endpoint_id=endpoint_id, function_id=function_id)

    with pytest.raises(TaskExecutionFailed) as exc_info:
        wait_for_result(client, task_id)

    remote = exc_info.value.remote_data
    assert 'MaxResultSizeExceeded' in remote
    assert f'exceeded current limit of {MAX_RESULT_SIZE}B' in remote
    assert task_id not in service.result_sizes


def test_limits_are_configurable(endpoint_id: str) -> None:
    with FuncXServiceDouble(max_request_size=4096, max_result_size=100, workers=1) as service:
        client = service.make_client()
        function_id = client.register_function(funcx_tasks.make_bytes)

        with pytest.raises(GlobusAPIError) as exc_info:
            client.run(bytes(5000), endpoint_id=endpoint_id, function_id=function_id)
        assert exc_info.value.code == 'TASK_PAYLOAD_TOO_LARGE'

        small = client.run(10, endpoint_id=endpoint_id, function_id=function_id)
        large = client.run(1000, endpoint_id=endpoint_id, function_id=function_id)
        assert wait_for_result(client, small) == bytes(10)
        with pytest.raises(TaskExecutionFailed, match='MaxResultSizeExceeded'):
            wait_for_result(client, large)


def test_unknown_function_and_task_are_api_errors(client: Any, endpoint_id: str) -> None:
    with pytest.raises(GlobusAPIError) as exc_info:
        client.run(1, endpoint_id=endpoint_id, function_id=str(uuid.uuid4()))
    assert exc_info.value.http_status == 404
    assert exc_info.value.code == 'FUNCTION_NOT_FOUND'

    with pytest.raises(GlobusAPIError) as exc_info:
        client.get_task(str(uuid.uuid4()))
    assert exc_info.value.code == 'TASK_NOT_FOUND'


def test_endpoint_must_be_a_uuid(client: Any) -> None:
    function_id = client.register_function(funcx_tasks.add)

    with pytest.raises(GlobusAPIError) as exc_info:
        client.run(1, 2, endpoint_id='not-a-uuid', function_id=function_id)
    assert exc_info.value.http_status == 400
    assert exc_info.value.code == 'INVALID_UUID'
    assert client.get_endpoint_status(str(uuid.uuid4()))['status'] == 'online'


def test_doubles_do_not_share_state() -> None:
    with FuncXServiceDouble() as first, FuncXServiceDouble() as second:
        assert first.address != second.address
        function_id = first.make_client().register_function(funcx_tasks.add)
        assert function_id in first.functions
        assert second.functions == {}


def test_stop_is_idempotent_and_frees_the_port() -> None:
    service = FuncXServiceDouble()
    service.start()
    client = service.make_client()
    client.register_function(funcx_tasks.add)
    service.stop()
    service.stop()

    with pytest.raises(GlobusConnectionError):
        client.register_function(funcx_tasks.add)
