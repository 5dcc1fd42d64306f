"""RedisStore without its fast path: forced by ``PROXYSTORE_REDIS_FAST_PATH=0``, or chosen
because redis-py's private surface differs from what the fast path expects.

The Redis contract, version, error, chunking and cluster tests are re-run here
(imported below) with the fallback forced, so both paths keep the same
guarantees: atomic replace, chunking, the ``PXSV`` versioned head, error
translation and the cluster's redirections.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

redis = pytest.importorskip('redis')

import proxystore as ps  # noqa: E402
from proxystore.connectors import redis_probe  # noqa: E402
from proxystore.connectors import redis_replies  # noqa: E402
from proxystore.connectors import redis_wire  # noqa: E402
from proxystore.store.base import Store  # noqa: E402
from proxystore.store.redis import RedisStore  # noqa: E402
from tests.conftest import _make_store  # noqa: E402

# The suites re-run with the fallback forced (pytest collects imported tests).
from tests.store.test_contract import *  # noqa: E402,F403
from tests.store.test_redis import *  # noqa: E402,F403
from tests.store.test_redis_cluster import *  # noqa: E402,F403
from tests.store.test_redis_errors import *  # noqa: E402,F403
from tests.store.test_redis_small import *  # noqa: E402,F403
from tests.store.test_redis_versions import *  # noqa: E402,F403

# Tests of the contract suite that build non-Redis stores: nothing to re-run.
del test_cache_is_bounded_by_bytes  # noqa: F821
del test_unknown_store_option_is_config_error  # noqa: F821


@pytest.fixture(autouse=True)
def fallback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Force the fallback in this process and in the processes it starts."""
    monkeypatch.setenv('PROXYSTORE_REDIS_FAST_PATH', '0')

    def refuse(self: Any, sock: Any) -> None:
        raise AssertionError('the fast path read a socket although it is turned off')

    monkeypatch.setattr(redis_replies.ReplyReader, '__init__', refuse)
    yield


@pytest.fixture(params=['redis', 'redis-cluster'])
def store(request: pytest.FixtureRequest, fallback: None) -> Iterator[Store]:
    """The contract suite's ``store``, Redis kinds only."""
    s = _make_store(request.param, f'{request.param}-{os.urandom(4).hex()}', request)
    ps.store.register_store(s)
    yield s
    s.cleanup()


@pytest.fixture(params=['redis', 'redis-cluster'])
def shared_store(request: pytest.FixtureRequest, fallback: None) -> Iterator[Store]:
    """The contract suite's ``shared_store``, Redis kinds only."""
    s = _make_store(request.param, f'{request.param}-{os.urandom(4).hex()}', request)
    ps.store.register_store(s)
    yield s
    s.cleanup()


def test_env_var_turns_the_fast_path_off(
    redis_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('PROXYSTORE_REDIS_FAST_PATH', 'off')
    off = RedisStore('off', hostname=redis_address[0], port=redis_address[1])
    assert not off.connector._fast_path  # type: ignore[attr-defined]
    monkeypatch.setenv('PROXYSTORE_REDIS_FAST_PATH', '1')
    assert RedisStore('on', hostname=redis_address[0], port=redis_address[1]).connector._fast_path


class _WrappedSocket:
    """What a redis-py that wraps its socket might hold in ``_sock``: no ``makefile``."""

    def __init__(self, sock: socket.socket) -> None:
        self._inner = sock

    def __getattr__(self, name: str) -> Any:
        if name in ('makefile', 'recv_into') or name.startswith('__'):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self._inner.recv_into(buffer, nbytes, flags)


class _WrappingConnection(redis.connection.Connection):  # type: ignore[misc]
    """A real redis-py connection whose private ``_sock`` is not a socket."""

    def _connect(self) -> Any:
        return _WrappedSocket(super()._connect())


def test_a_different_private_surface_falls_back_to_plain_calls(
    redis_address: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before the feature test, the fast path called ``_sock.makefile``: AttributeError."""
    monkeypatch.undo()  # the real reply reader: the probe must refuse this socket itself
    caplog.set_level('WARNING', logger='proxystore.connectors.redis')
    monkeypatch.setattr(redis_wire, '_CHUNK', 1000)
    probes: list[Any] = []
    probe = redis_probe._probe_fast_path
    monkeypatch.setattr(redis_probe, '_probe_fast_path', lambda c: probes.append(c) or probe(c))
    store = RedisStore('wrapped', hostname=redis_address[0], port=redis_address[1])
    assert store.connector._fast_path
    store.connector._client.connection_pool.connection_class = _WrappingConnection
    store.connector._client.connection_pool.disconnect()
    data = np.arange(5000, dtype=np.uint16)  # 10 kB: ten chunks
    keys = store.set_batch([data, b'x', data])
    assert np.array_equal(store.get(keys[0]), data) and store.get(keys[1]) == b'x'
    assert [len(x) for x in store.get_batch(keys)] == [5000, 1, 5000]
    token = store.connector.get(keys[0])[1]
    assert isinstance(token, bytes) and token == store.connector.version(keys[0])
    assert redis.Redis(host=redis_address[0], port=redis_address[1]).llen(keys[0]) > 10
    assert len(probes) == 1  # once per connection class and redis-py version
    # Warned once, under the connector's logger name (the one users filter on).
    warned = [r for r in caplog.records if 'differs from what' in r.getMessage()]
    assert [r.name for r in warned] == ['proxystore.connectors.redis']


def test_the_probe_accepts_real_connections(
    redis_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # the real reply reader
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    connection = client.connection_pool.make_connection()
    assert redis_probe._probe_fast_path(connection)
    connection.send_command('PING')  # the connection is still in step after the probe
    assert connection.read_response() in (b'PONG', 'PONG', True)
    connection.disconnect()
