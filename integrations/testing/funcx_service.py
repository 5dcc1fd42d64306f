"""Loopback HTTP double of the FuncX (Globus Compute) web service.

Tests of the FuncX integration need the real ``funcx`` SDK client to submit
tasks and fetch results, without Globus Auth and without the network. This
module serves the few web-service routes that client uses on 127.0.0.1 and
runs each task in local worker processes, the way an endpoint would:

* ``GET  /v2/version``: version information (for ``version_check``).
* ``POST /v2/functions``: register a function; ``GET /v2/functions/<id>``.
* ``POST /v3/endpoints/<endpoint_id>/submit``: submit a batch of tasks.
* ``GET  /v2/tasks/<task_id>``: status (and result) of one task.
* ``POST /v2/batch_status``: status (and results) of several tasks.
* ``GET  /v2/endpoints/<endpoint_id>/status``: always online.

Functions, arguments and results cross the double exactly as they cross the
hosted service: strings made by the SDK's own ``ComputeSerializer`` (base64 of
dill), inside JSON bodies. The double enforces the hosted service's published
data limits (10 MB per submit request, 10 MB per serialized result), so a test
can show what does and does not fit through the service, and it records the
size of every submit body in :attr:`FuncXServiceDouble.submit_sizes`.

Example:
    ```python
    import uuid

    from proxystore.integrations.testing import funcx_tasks
    from proxystore.integrations.testing.funcx_service import FuncXServiceDouble
    from proxystore.integrations.testing.funcx_service import wait_for_result

    with FuncXServiceDouble() as service:
        client = service.make_client()
        function_id = client.register_function(funcx_tasks.add)
        task_id = client.run(1, 2, endpoint_id=str(uuid.uuid4()), function_id=function_id)
        assert wait_for_result(client, task_id) == 3
    ```

"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import logging
import multiprocessing
import socket
import threading
import time
import traceback
import uuid
from concurrent.futures import Future
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import globus_sdk
from globus_compute_sdk.errors import MaxResultSizeExceeded
from globus_compute_sdk.errors import TaskPending
from globus_compute_sdk.sdk.web_client import WebClient
from globus_compute_sdk.serialize import ComputeSerializer

__all__ = [
    'MAX_REQUEST_SIZE',
    'MAX_RESULT_SIZE',
    'FuncXServiceDouble',
    'LoopbackLoginManager',
    'wait_for_result',
    'wait_for_batch',
]

logger = logging.getLogger(__name__)

MAX_REQUEST_SIZE = 10 * 1024 * 1024
"""Largest submit request body (bytes) the hosted service accepts (10 MB)."""
MAX_RESULT_SIZE = 10 * 1024 * 1024
"""Largest serialized task result (bytes) the hosted service returns (10 MB)."""

# Versions reported by ``GET /v2/version``: low enough for any 2.x SDK.
_MIN_SDK_VERSION = '2.0.0'
_MIN_EP_VERSION = '2.0.0'
_READ_CHUNK = 1024 * 1024

# A worker's outcome: ('result', serialized result) or ('exception', error text).
_Outcome = tuple[str, str]
_JSON = dict[str, Any]


class _APIError(Exception):
    """An error answered to the client in the web service's error shape."""

    def __init__(self, http_status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.http_status = http_status
        self.code = code
        self.reason = reason

    def body(self) -> _JSON:
        """The JSON error body, shaped like the FuncX service's error responses.

        ``globus_sdk`` reads ``code`` into ``GlobusAPIError.code``; the rest
        (``status``, ``error_args``, ``reason``, ``http_status_code``) is the
        FuncX web service's ``ResponseError.pack()`` layout.
        """
        return {
            'status': 'Failed',
            'code': self.code,
            'error_args': [self.reason],
            'reason': self.reason,
            'http_status_code': self.http_status,
        }


@dataclass
class _Task:
    """Book-keeping for one submitted task."""

    task_id: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    future: Future[_Outcome]
    completion_t: str | None = None


_worker_serializer: ComputeSerializer | None = None


def _format_error(exc: BaseException, tb: TracebackType | None) -> str:
    """Render a task failure like an endpoint does: a short traceback as text."""
    if isinstance(exc, MaxResultSizeExceeded):
        # A limit of the service, not a bug in the user's code: no traceback.
        return ''.join(traceback.format_exception_only(type(exc), exc))
    return ''.join(traceback.format_exception(type(exc), exc, tb))


def _execute_task(function_code: str, task_payload: str, max_result_size: int) -> _Outcome:
    """Run one task in a worker process, as an endpoint's worker would.

    ``function_code`` is the registered ``pack_buffers([function])`` and
    ``task_payload`` the submitted ``pack_buffers([args, kwargs])``, so
    together they form the three-buffer task the SDK's serializer unpacks.
    The result is serialized here, with the same size check an endpoint makes.
    """
    global _worker_serializer
    if _worker_serializer is None:
        _worker_serializer = ComputeSerializer()
    serializer = _worker_serializer
    try:
        function, args, kwargs = serializer.unpack_and_deserialize(function_code + task_payload)
    except Exception as e:
        return 'exception', _format_error(e, e.__traceback__)
    try:
        result = function(*args, **kwargs)
    except Exception as e:
        # Drop this frame: the traceback starts in the user's function.
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        return 'exception', _format_error(e, tb)
    try:
        serialized = serializer.serialize(result)
    except Exception as e:
        return 'exception', _format_error(e, e.__traceback__)
    if len(serialized) > max_result_size:
        error = MaxResultSizeExceeded(len(serialized), max_result_size)
        return 'exception', _format_error(error, None)
    return 'result', serialized


def _check_uuid(value: str, what: str) -> str:
    """Return ``value`` normalized if it is a UUID, else answer 400."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _APIError(400, 'INVALID_UUID', f'Invalid {what} UUID: {value!r}') from None


class LoopbackLoginManager:
    """Login manager for the SDK ``Client`` that needs no Globus Auth.

    ``Client`` accepts any object with the ``LoginManagerProtocol`` methods;
    this one builds the SDK's own ``WebClient`` (so the real request and
    error-parsing code runs) with a :class:`globus_sdk.NullAuthorizer`.
    """

    def ensure_logged_in(self) -> None:
        """Nothing to do: the double does not authenticate."""

    def logout(self) -> bool:
        """Nothing to forget; report success."""
        return True

    def run_login_flow(self) -> None:
        """Refuse: the SDK only asks after an auth error, which the double never sends."""
        raise RuntimeError('the FuncX service double has no login flow')

    def get_auth_client(self) -> globus_sdk.AuthClient:
        """Refuse: nothing in the double talks to Globus Auth."""
        raise NotImplementedError('the FuncX service double has no Globus Auth client')

    def get_web_client(self, *, base_url: str | None = None, app_name: str | None = None) -> Any:
        """Return the SDK's ``WebClient`` for ``base_url``, unauthenticated.

        Retries are off so a test fails at once instead of backing off, and
        proxy variables from the environment are ignored: the double is only
        ever on the loopback interface.
        """
        if base_url is None:
            raise ValueError('the FuncX service double needs an explicit base_url')
        client = WebClient(
            base_url=base_url,
            app_name=app_name,
            authorizer=globus_sdk.NullAuthorizer(),
            transport_params={'max_retries': 0},
        )
        client.transport.session.trust_env = False
        return client


class _Server(ThreadingHTTPServer):
    """HTTP server that knows the double it serves and its open connections.

    The SDK keeps connections alive, and ``server_close`` only closes the
    listening socket, so :meth:`close_connections` ends the open ones: after
    ``stop()`` nothing answers in the double's name.
    """

    daemon_threads = True

    def __init__(self, double: FuncXServiceDouble) -> None:
        super().__init__(('127.0.0.1', 0), _Handler)
        self.double = double
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open connection (their handler threads then end)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Route requests to the double; every answer is JSON with a length."""

    protocol_version = 'HTTP/1.1'
    server_version = 'FuncXServiceDouble/1'
    # Idle keep-alive connections end after this long (seconds).
    timeout = 60
    # Headers and body are written separately: without TCP_NODELAY, Nagle's
    # algorithm and the client's delayed ACK add ~40 ms to every response.
    disable_nagle_algorithm = True

    @property
    def double(self) -> FuncXServiceDouble:
        server = self.server
        assert isinstance(server, _Server)
        return server.double

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug('%s - %s', self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch('GET')

    def do_POST(self) -> None:
        self._dispatch('POST')

    def do_PUT(self) -> None:
        self._dispatch('PUT')

    def do_DELETE(self) -> None:
        self._dispatch('DELETE')

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        parts = [p for p in path.split('/') if p]
        try:
            body = self._read_body()
            status, data = self.double._route(method, parts, body)
        except _APIError as e:
            status, data = e.http_status, e.body()
        except Exception as e:  # pragma: no cover - a bug in the double
            logger.exception('FuncX service double failed on %s %s', method, path)
            err = _APIError(500, 'INTERNAL_ERROR', f'{type(e).__name__}: {e}')
            status, data = err.http_status, err.body()
        self._send_json(status, data)

    def _read_body(self) -> bytes | int:
        """Read the request body, or only count it once it is over the limit.

        Returns the body, or its size if it exceeds the submit limit (so a
        16 MB body is drained from the socket, not kept in memory).
        """
        length = int(self.headers.get('Content-Length') or 0)
        if length <= self.double.max_request_size:
            return self.rfile.read(length)
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(_READ_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
        return length

    def _send_json(self, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FuncXServiceDouble:
    """A loopback FuncX web service that runs tasks in local processes.

    Start it as a context manager (or with :meth:`start` and :meth:`stop`);
    it listens on a free port of 127.0.0.1, so doubles in parallel test
    processes never collide. Any UUID is accepted as an endpoint id: every
    endpoint runs its tasks in this double's worker processes.

    Args:
        max_request_size: largest submit request body in bytes; a larger one
            is answered with HTTP 413 and error code ``TASK_PAYLOAD_TOO_LARGE``.
        max_result_size: largest serialized result in bytes; a task whose
            result is larger fails with ``MaxResultSizeExceeded``.
        workers: number of worker processes running tasks.
        start_method: multiprocessing start method of the workers. ``spawn``
            is safe in a threaded process such as this server.

    Attributes:
        address: base URL of the service, e.g. ``http://127.0.0.1:41234``
            (set by :meth:`start`).
        submit_sizes: byte size of every submit request body received, in
            order, including rejected ones: what crossed the service on the
            way to the endpoint.
        result_sizes: byte size of each task's serialized result, by task id
            (failed tasks are absent): what crossed the service on the way back.
        functions: registered functions by function id, as the JSON the SDK
            sent (``function_name``, ``function_code``, ...).

    """

    def __init__(
        self,
        *,
        max_request_size: int = MAX_REQUEST_SIZE,
        max_result_size: int = MAX_RESULT_SIZE,
        workers: int = 2,
        start_method: str = 'spawn',
    ) -> None:
        self.max_request_size = max_request_size
        self.max_result_size = max_result_size
        self.workers = workers
        self.start_method = start_method
        self.address = ''
        self.submit_sizes: list[int] = []
        self.result_sizes: dict[str, int] = {}
        self.functions: dict[str, _JSON] = {}
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> FuncXServiceDouble:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the worker pool and the HTTP server on a free loopback port."""
        if self._server is not None:
            raise RuntimeError('the FuncX service double is already running')
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context(self.start_method),
        )
        self._server = _Server(self)
        host, port = self._server.server_address[:2]
        self.address = f'http://{host!s}:{port}'
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name=f'funcx-service-double-{port}',
            daemon=True,
        )
        self._thread.start()
        logger.debug('FuncX service double listening at %s', self.address)

    def stop(self) -> None:
        """Stop serving, cancel tasks not yet started and stop the workers."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def make_client(self, **kwargs: Any) -> Any:
        """Return a real ``funcx.FuncXClient`` that talks to this double.

        Keyword arguments go to the client (``do_version_check`` defaults to
        ``False``); the address and a :class:`LoopbackLoginManager` are set.
        """
        if not self.address:
            raise RuntimeError('start the FuncX service double before making a client')
        # Imported here: importing funcx warns that it was renamed.
        from funcx import FuncXClient

        kwargs.setdefault('do_version_check', False)
        return FuncXClient(
            funcx_service_address=self.address,
            login_manager=LoopbackLoginManager(),
            **kwargs,
        )

    @property
    def task_ids(self) -> list[str]:
        """Ids of all tasks submitted so far, in submission order."""
        with self._lock:
            return list(self._tasks)

    def wait(self, task_ids: list[str] | None = None, timeout: float | None = 30) -> None:
        """Block until the given tasks (default: all so far) have finished.

        Raises:
            TimeoutError: some task is still running after ``timeout`` seconds.

        """
        with self._lock:
            ids = list(self._tasks) if task_ids is None else task_ids
            futures = [self._tasks[t].future for t in ids if t in self._tasks]
        _, not_done = concurrent.futures.wait(futures, timeout=timeout)
        if not_done:
            raise TimeoutError(f'{len(not_done)} task(s) still running after {timeout} s')

    # Request handling (called from the server's threads).

    def _route(self, method: str, parts: list[str], body: bytes | int) -> tuple[int, Any]:
        """Answer one request: ``(HTTP status, JSON data)``.

        The third path segment of every route with an id is the id, so the
        route is matched with that segment written as ``*``.
        """
        ident = parts[2] if len(parts) > 2 else ''
        shape = [*parts[:2], '*', *parts[3:]] if len(parts) > 2 else parts
        route = f'{method} /{"/".join(shape)}'
        if route == 'POST /v3/endpoints/*/submit':
            return 200, self._submit(ident, body)
        if isinstance(body, int):
            raise _APIError(413, 'PAYLOAD_TOO_LARGE', f'Request body of {body} B is too large')
        if route == 'GET /v2/version':
            return 200, self._version()
        if route == 'POST /v2/functions':
            return 200, self._register_function(_load_json(body))
        if route == 'GET /v2/functions/*':
            return 200, self._get_function(ident)
        if route == 'GET /v2/tasks/*':
            return 200, self._get_task(ident)
        if route == 'POST /v2/batch_status':
            return 200, self._batch_status(_load_json(body))
        if route == 'GET /v2/endpoints/*/status':
            return 200, self._endpoint_status(ident)
        path = '/'.join(parts)
        raise _APIError(404, 'NOT_FOUND', f'The FuncX service double has no route {method} /{path}')

    def _version(self) -> _JSON:
        return {
            'api': 'funcx-service-double',
            'min_sdk_version': _MIN_SDK_VERSION,
            'min_ep_version': _MIN_EP_VERSION,
        }

    def _register_function(self, data: _JSON) -> _JSON:
        name = data.get('function_name')
        code = data.get('function_code')
        if not isinstance(name, str) or not isinstance(code, str):
            reason = 'function_name and function_code are required'
            raise _APIError(400, 'REQUEST_MALFORMED', reason)
        function_id = str(uuid.uuid4())
        with self._lock:
            self.functions[function_id] = dict(data)
        logger.debug('registered function %s as %s', name, function_id)
        return {'function_uuid': function_id}

    def _get_function(self, function_id: str) -> _JSON:
        with self._lock:
            data = self.functions.get(function_id)
        if data is None:
            raise _APIError(404, 'FUNCTION_NOT_FOUND', f'Function {function_id} not found')
        return {'function_uuid': function_id, **data}

    def _endpoint_status(self, endpoint_id: str) -> _JSON:
        _check_uuid(endpoint_id, 'endpoint')
        return {'status': 'online', 'details': {'total_workers': self.workers}}

    def _submit(self, endpoint_id: str, body: bytes | int) -> _JSON:
        """Accept a batch: ``{"tasks": {function_id: [payload, ...]}, ...}``."""
        size = body if isinstance(body, int) else len(body)
        with self._lock:
            self.submit_sizes.append(size)
        if isinstance(body, int):
            raise _APIError(
                413,
                'TASK_PAYLOAD_TOO_LARGE',
                f'Task payload of {size} bytes exceeds the limit of {self.max_request_size} bytes',
            )
        endpoint_id = _check_uuid(endpoint_id, 'endpoint')
        data = _load_json(body)
        tasks = data.get('tasks')
        if not isinstance(tasks, dict) or not all(
            isinstance(payloads, list) and all(isinstance(p, str) for p in payloads)
            for payloads in tasks.values()
        ):
            reason = 'tasks must map function ids to lists of payloads'
            raise _APIError(400, 'REQUEST_MALFORMED', reason)
        task_group_id = data.get('task_group_id') or str(uuid.uuid4())
        with self._lock:
            pool = self._pool
            codes: dict[str, str] = {}
            for function_id in tasks:
                function = self.functions.get(function_id)
                if function is None:
                    raise _APIError(404, 'FUNCTION_NOT_FOUND', f'Function {function_id} not found')
                codes[function_id] = function['function_code']
        if pool is None:
            raise _APIError(503, 'SERVICE_UNAVAILABLE', 'The FuncX service double is stopping')

        submitted: dict[str, list[str]] = {}
        for function_id, payloads in tasks.items():
            for payload in payloads:
                task_id = str(uuid.uuid4())
                future = pool.submit(
                    _execute_task, codes[function_id], payload, self.max_result_size
                )
                task = _Task(task_id, function_id, endpoint_id, str(task_group_id), future)
                with self._lock:
                    self._tasks[task_id] = task
                future.add_done_callback(functools.partial(self._finished, task))
                submitted.setdefault(function_id, []).append(task_id)
        logger.debug('accepted %d task(s) for endpoint %s', len(submitted), endpoint_id)
        return {
            'request_id': str(uuid.uuid4()),
            'task_group_id': str(task_group_id),
            'endpoint_id': endpoint_id,
            'tasks': submitted,
        }

    def _finished(self, task: _Task, future: Future[_Outcome]) -> None:
        """Stamp the completion time and record the result's size."""
        task.completion_t = str(time.time())
        if not future.cancelled() and future.exception() is None:
            kind, payload = future.result()
            if kind == 'result':
                with self._lock:
                    self.result_sizes[task.task_id] = len(payload)

    def _task_status(self, task: _Task) -> _JSON:
        """The task document the SDK's ``Client._update_task_table`` reads."""
        status: _JSON = {'task_id': task.task_id}
        future = task.future
        if not future.done():
            status['status'] = 'running' if future.running() else 'waiting-for-ep'
            return status
        try:
            kind, payload = future.result()
        except (Exception, concurrent.futures.CancelledError) as e:
            # The worker died or the task was cancelled: not the user's code.
            kind, payload = 'exception', f'{type(e).__name__}: {e}'
        status['completion_t'] = task.completion_t or str(time.time())
        if kind == 'result':
            status.update(status='success', result=payload)
        else:
            status.update(status='failed', exception=payload)
        return status

    def _get_task(self, task_id: str) -> _JSON:
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            raise _APIError(404, 'TASK_NOT_FOUND', f'Task {task_id} not found')
        return self._task_status(task)

    def _batch_status(self, data: _JSON) -> _JSON:
        """Statuses of known tasks; unknown ids are left out, as the SDK allows."""
        task_ids = data.get('task_ids')
        if not isinstance(task_ids, list):
            raise _APIError(400, 'REQUEST_MALFORMED', 'task_ids must be a list')
        with self._lock:
            tasks = [self._tasks[t] for t in task_ids if t in self._tasks]
        return {
            'response': 'batch',
            'results': {task.task_id: self._task_status(task) for task in tasks},
        }


def _load_json(body: bytes) -> _JSON:
    """Parse a JSON object body, answering 400 on anything else."""
    try:
        data = json.loads(body or b'{}')
    except ValueError as e:
        raise _APIError(400, 'REQUEST_MALFORMED', f'Invalid JSON body: {e}') from None
    if not isinstance(data, dict):
        raise _APIError(400, 'REQUEST_MALFORMED', 'The JSON body must be an object')
    return data


def wait_for_result(
    client: Any,
    task_id: str,
    *,
    timeout: float = 30,
    interval: float = 0.05,
) -> Any:
    """Poll ``client.get_result(task_id)`` until the task is no longer pending.

    Returns the result, or raises what ``get_result`` raises for a failed
    task (``TaskExecutionFailed`` in SDK 2.x).

    Raises:
        TimeoutError: the task is still pending after ``timeout`` seconds.

    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get_result(task_id)
        except TaskPending:
            if time.monotonic() > deadline:
                raise TimeoutError(f'task {task_id} still pending after {timeout} s') from None
            time.sleep(interval)


def wait_for_batch(
    client: Any,
    task_ids: list[str],
    *,
    timeout: float = 30,
    interval: float = 0.05,
) -> dict[str, _JSON]:
    """Poll ``client.get_batch_result(task_ids)`` until no task is pending.

    Returns the SDK's per-task status dicts (``result`` for a success). The
    SDK 2.x ``get_batch_result`` logs and leaves out a task that failed (its
    status raises ``TaskExecutionFailed`` while being unpacked), so a failed
    task is absent here: ask ``get_result`` for its error.

    Raises:
        TimeoutError: some task is still pending after ``timeout`` seconds.

    """
    deadline = time.monotonic() + timeout
    while True:
        statuses: dict[str, _JSON] = client.get_batch_result(list(task_ids))
        if not any(status['pending'] for status in statuses.values()):
            return statuses
        if time.monotonic() > deadline:
            raise TimeoutError(f'tasks still pending after {timeout} s')
        time.sleep(interval)
