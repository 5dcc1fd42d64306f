"""One contract suite for every connector, used alone (no Store above it).

See ``proxystore/connectors/protocol.py`` for the contract and
``docs/connectors.md`` for how to add a connector here.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from proxystore.connectors.file import FileConnector
from proxystore.connectors.local import LocalConnector
from proxystore.connectors.protocol import Connector
from proxystore.connectors.protocol import connector_version
from proxystore.connectors.shm import SharedMemoryConnector
from proxystore.connectors.shm import default_shm_dir
from proxystore.exceptions import StoreConnectionError
from proxystore.utils import import_class

KINDS = ['local', 'file', 'shm', 'redis', 'redis-cluster', 'node']
#: Connectors whose data another connector object (another process) can read.
SHARED = ['file', 'shm', 'redis', 'redis-cluster', 'node']


def _make(kind: str, request: pytest.FixtureRequest) -> Connector:
    if kind == 'local':
        return LocalConnector()
    if kind == 'file':
        return FileConnector(request.getfixturevalue('tmp_path') / 'files', owner='contract')
    if kind == 'shm':
        return SharedMemoryConnector(default_shm_dir(f'contract-{os.urandom(4).hex()}'))
    from proxystore.connectors.redis import RedisConnector

    if kind == 'node':  # the node tier over Redis, publishing on the first read
        from proxystore.connectors.node import NodeConnector

        host, port = request.getfixturevalue('redis_address')
        directory = request.getfixturevalue('tmp_path') / 'node'
        return NodeConnector(
            RedisConnector(host, port), directory=directory, min_readers=1, min_bytes=0
        )
    if kind == 'redis':
        host, port = request.getfixturevalue('redis_address')
        return RedisConnector(host, port)
    cluster = request.getfixturevalue('redis_cluster')
    return RedisConnector(cluster.host, cluster.port, cluster=True)


@pytest.fixture(params=KINDS)
def connector(request: pytest.FixtureRequest) -> Iterator[Connector]:
    made = _make(request.param, request)
    yield made
    cleanup = getattr(made, 'cleanup', None)
    if cleanup is not None and request.param not in ('redis', 'redis-cluster', 'node'):
        cleanup()
    made.close()


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest) -> Iterator[Connector]:
    made = _make(request.param, request)
    yield made
    getattr(made, 'cleanup', made.close)()


def _key(name: str) -> str:
    return f'{name}-{os.urandom(6).hex()}'


def _rebuild(connector: Connector) -> Connector:
    """What a worker does: the class by path, then ``config()`` (pickled on the way)."""
    cls = import_class(f'{type(connector).__module__}.{type(connector).__qualname__}')
    config = pickle.loads(pickle.dumps(connector.config()))
    rebuilt: Connector = cls(**config)
    return rebuilt


def test_is_a_connector(connector: Connector) -> None:
    assert isinstance(connector, Connector)


def test_put_then_get_concatenates_the_parts(connector: Connector) -> None:
    key = _key('parts')
    parts = [b'head-', bytearray(b'middle-'), memoryview(b'tail' * 1000)]
    connector.put(key, parts)
    entry = connector.get(key)
    assert entry is not None
    data, version = entry
    assert bytes(data) == b'head-middle-' + b'tail' * 1000
    assert version is not None and connector.exists(key)


def test_missing_key_is_none_everywhere(connector: Connector) -> None:
    key = _key('missing')
    assert connector.get(key) is None and not connector.exists(key)
    assert connector_version(connector, key) is None
    connector.evict(key)  # not an error
    present = _key('present')
    connector.put(present, [b'x'])
    entries = connector.get_batch([key, present, key])
    assert entries[0] is None and entries[2] is None
    assert entries[1] is not None and bytes(entries[1][0]) == b'x'


def test_version_changes_on_every_rewrite(connector: Connector) -> None:
    key = _key('versions')
    seen = []
    for value in (b'a', b'a', b'b' * 5000):  # the same bytes again still a new version
        connector.put(key, [value])
        entry = connector.get(key)
        assert entry is not None and bytes(entry[0]) == value
        assert connector_version(connector, key) == entry[1]
        seen.append(entry[1])
    assert len(set(seen)) == 3
    connector.evict(key)
    assert connector_version(connector, key) is None and connector.get(key) is None


def test_data_is_private_and_writable_where_cheap(connector: Connector) -> None:
    key = _key('private')
    source = bytearray(b'original')
    connector.put(key, [source])
    source[:] = b'changed!'  # the caller's buffer changes after put
    entry = connector.get(key)
    assert entry is not None and bytes(entry[0]) == b'original'


def test_batches_round_trip(connector: Connector) -> None:
    keys = [_key(f'batch{i}') for i in range(50)]
    connector.put_batch([(k, [f'value-{k}'.encode()]) for k in keys])
    entries = connector.get_batch(keys)
    assert [bytes(e[0]) for e in entries if e is not None] == [f'value-{k}'.encode() for k in keys]
    for key in keys:
        connector.evict(key)
    assert connector.get_batch(keys) == [None] * len(keys)


def test_config_rebuilds_a_connector_of_the_same_data(shared: Connector) -> None:
    key = _key('rebuilt')
    shared.put(key, [b'shared bytes'])
    other = _rebuild(shared)
    try:
        entry = other.get(key)
        assert entry is not None and bytes(entry[0]) == b'shared bytes'
        before = connector_version(shared, key)
        other.put(key, [b'rewritten by another client'])
        after = shared.get(key)
        assert after is not None and bytes(after[0]) == b'rewritten by another client'
        assert after[1] != before and connector_version(shared, key) == after[1]
        other.evict(key)
        assert not shared.exists(key)
    finally:
        other.close()


def _read_in_child(path: str, config: dict[str, Any], key: str, queue: Any) -> None:
    entry = import_class(path)(**config).get(key)
    queue.put(None if entry is None else bytes(entry[0]))


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_another_process_reads_it(shared: Connector, method: str) -> None:
    key = _key('process')
    shared.put(key, [b'across processes'])
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    path = f'{type(shared).__module__}.{type(shared).__qualname__}'
    child = context.Process(target=_read_in_child, args=(path, shared.config(), key, queue))
    child.start()
    assert queue.get(timeout=60) == b'across processes'
    child.join(60)
    assert child.exitcode == 0


def test_overwrites_are_atomic_for_concurrent_readers(connector: Connector) -> None:
    key = _key('atomic')
    size = 1 << 20
    values = [bytes([n]) * size for n in (1, 2)]
    connector.put(key, [values[0]])
    stop = threading.Event()
    torn: list[int] = []

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            connector.put(key, [values[n % 2][: size // 2], values[n % 2][size // 2 :]])

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(30):
            entry = connector.get(key)
            assert entry is not None
            data = bytes(entry[0])
            if data not in values:
                torn.append(len(data))
    finally:
        stop.set()
        writer.join()
    assert torn == []


def test_config_is_plain_and_has_no_secret(connector: Connector) -> None:
    config = connector.config()
    assert pickle.loads(pickle.dumps(config)) == config
    assert not any('secret' in k or 'password' in k for k in config)


def test_redis_connector_unreachable_is_connection_error(unused_port: int) -> None:
    from proxystore.connectors.redis import RedisConnector

    connector = RedisConnector('127.0.0.1', unused_port, timeout=1.0, retries=0)
    with pytest.raises(StoreConnectionError, match=f'127.0.0.1:{unused_port}'):
        connector.get('anything')


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port: int = sock.getsockname()[1]
    return port
