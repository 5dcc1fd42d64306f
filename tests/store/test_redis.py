"""RedisStore specifics: chunked values, foreign values, connection errors."""

from __future__ import annotations

import socket

import numpy as np
import pytest

redis = pytest.importorskip('redis')

from proxystore.connectors import redis_wire  # noqa: E402
from proxystore.exceptions import StoreConnectionError  # noqa: E402
from proxystore.store.redis import RedisStore  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def test_quickstart(redis_address: tuple[str, int]) -> None:
    import proxystore as ps

    REDIS_HOST, REDIS_PORT = redis_address
    x = np.array([1, 2, 3])
    store = ps.store.init_store('redis', name='redis', hostname=REDIS_HOST, port=REDIS_PORT)
    p = store.proxy(x)
    assert isinstance(store, ps.store.base.Store) and isinstance(store, RedisStore)
    assert np.array_equal(p, x) and isinstance(p, np.ndarray)


def test_chunked_values(redis_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_wire, '_CHUNK', 1000)
    store = RedisStore('r', hostname=redis_address[0], port=redis_address[1])
    data = np.random.default_rng(0).integers(0, 255, 25_000, dtype=np.uint8)
    key = store.set(data)
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    assert client.llen(key) > 20
    assert np.array_equal(store.get(key), data)
    store.evict(key)
    assert client.exists(key) == 0


def test_value_written_with_plain_set(redis_address: tuple[str, int]) -> None:
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    client.set('foreign', b'plain bytes')
    store = RedisStore('r', hostname=redis_address[0], port=redis_address[1])
    assert store.get('foreign', deserialize=False) == b'plain bytes'
    assert store.proxy(key='foreign') is not None


def test_unreachable_server_names_host_and_port() -> None:
    port = _free_port()
    store = RedisStore('dead', hostname='127.0.0.1', port=port, timeout=1, retries=1)
    with pytest.raises(StoreConnectionError, match=f'127.0.0.1:{port}') as info:
        store.set('x')
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(StoreConnectionError, match='redis-server'):
        store.get('x')


def test_credentials_do_not_travel_unless_shared(redis_address: tuple[str, int]) -> None:
    host, port = redis_address
    store = RedisStore('r', hostname=host, port=port, password=None, username=None)
    assert 'password' not in store.config()
    shared = RedisStore('r2', hostname=host, port=port, share_credentials=True)
    assert 'password' in shared.config()
