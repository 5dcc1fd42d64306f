"""Shared fixtures: real stores of every backend, each on private resources.

Every xdist worker starts its own ``redis-server`` on a free loopback port
(pytest-redis), and file stores live in per-test temporary directories, so
the suite runs in parallel with no fixed ports or shared paths.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_redis import factories

import proxystore as ps
from proxystore.store import registry
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore

# Parsl's HighThroughputExecutor starts process_worker_pool.py from PATH: make
# this interpreter's bin/ visible even when the virtual environment is not
# activated (the README runs `.venv/bin/python -m pytest`).
_BIN = os.path.dirname(sys.executable)
if _BIN not in os.environ.get('PATH', '').split(os.pathsep):
    os.environ['PATH'] = _BIN + os.pathsep + os.environ.get('PATH', '')

REDIS_SERVER = shutil.which('redis-server')

redis_server = factories.redis_proc(
    executable=REDIS_SERVER or '/usr/bin/redis-server',
    host='127.0.0.1',
    port=None,
)


def start_redis(request: pytest.FixtureRequest, fixture: str) -> tuple[str, int]:
    """(host, port) of the pytest-redis process fixture ``fixture``.

    Skips where redis-server is truly absent, but fails in CI, whose set-up
    must install it.
    """
    if REDIS_SERVER is None:
        if os.environ.get('CI'):
            pytest.fail('redis-server is not installed; .ci/run must install it.')
        pytest.skip('redis-server is not installed')
    proc = request.getfixturevalue(fixture)
    return proc.host, int(proc.port)


@pytest.fixture(scope='session')
def redis_address(request: pytest.FixtureRequest) -> tuple[str, int]:
    """(host, port) of a real redis-server private to this xdist worker."""
    return start_redis(request, 'redis_server')


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    """Each test starts with an empty store registry."""
    yield
    for name in list(registry._stores):
        registry.unregister_store(name)


def _make_store(kind: str, name: str, request: pytest.FixtureRequest, **kwargs: Any) -> Store:
    if kind == 'local':
        return LocalStore(name, **kwargs)
    if kind == 'file':
        tmp = request.getfixturevalue('tmp_path')
        return FileStore(name, store_dir=tmp / 'store', **kwargs)
    if kind == 'shm':
        from proxystore.store.shm import SharedMemoryStore

        return SharedMemoryStore(name, **kwargs)
    if kind == 'redis':
        from proxystore.store.redis import RedisStore

        host, port = request.getfixturevalue('redis_address')
        return RedisStore(name, hostname=host, port=port, **kwargs)
    if kind == 'multi':
        # Small objects in a file store, the rest in shared memory (both readable
        # by other processes); store options go to the routes. Not in STORE_KINDS:
        # tests/store/test_multi.py runs the contract suite on it, minus the tests
        # whose premise a router does not meet (it has no cache of its own).
        from proxystore.store.multi import MultiStore
        from proxystore.store.shm import SharedMemoryStore

        small = _make_store('file', f'{name}-small', request, **kwargs)
        large = SharedMemoryStore(f'{name}-large', **kwargs)
        return MultiStore(name, [(small, MULTI_SMALL_BYTES), (large, None)], owns_routes=True)
    if kind == 'composed':
        # The generic composition: Store(name, connector), rebuilt in workers from
        # the connector's class path and config (no thin subclass involved).
        from proxystore.connectors.file import FileConnector

        tmp = request.getfixturevalue('tmp_path')
        return Store(name, FileConnector(tmp / 'composed', owner=name), **kwargs)
    if kind == 'redis-cluster':
        from proxystore.store.redis import RedisStore

        cluster = request.getfixturevalue('redis_cluster')  # one per xdist worker
        return RedisStore(name, hostname=cluster.host, port=cluster.port, cluster=True, **kwargs)
    raise AssertionError(kind)


#: Largest payload the ``multi`` kind puts in its small-object route.
MULTI_SMALL_BYTES = 4096

STORE_KINDS = ['local', 'file', 'shm', 'redis', 'redis-cluster', 'composed']


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A registered store of each backend (the contract suite runs on all)."""
    s = _make_store(request.param, f'{request.param}-{os.urandom(4).hex()}', request)
    ps.store.register_store(s)
    yield s
    s.cleanup()


@pytest.fixture(params=['file', 'shm', 'redis', 'redis-cluster', 'composed'])
def shared_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A store whose objects other processes can read."""
    s = _make_store(request.param, f'{request.param}-{os.urandom(4).hex()}', request)
    ps.store.register_store(s)
    yield s
    s.cleanup()


@pytest.fixture
def store_factory(request: pytest.FixtureRequest) -> Any:
    """Build an extra store of a given kind: ``store_factory('file', cache_size=0)``."""
    made: list[Store] = []

    def make(kind: str, **kwargs: Any) -> Store:
        s = _make_store(kind, f'{kind}-{os.urandom(4).hex()}', request, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()


# -- Redis Cluster (tests/cluster.py): fixtures usable by every test module ----------

from tests.cluster import private_cluster  # noqa: E402,F401
from tests.cluster import redis_cluster  # noqa: E402,F401
from tests.cluster import replicated_cluster  # noqa: E402,F401
