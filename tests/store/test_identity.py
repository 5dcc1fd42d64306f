"""Store identity is name *and* configuration; signing cannot be bypassed by a namesake.

Each test here failed before stores were looked up by identity (the registry
returned whatever store had the proxy's name).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_redis import factories

import proxystore as ps
from proxystore.exceptions import SignatureError
from proxystore.exceptions import StoreConfigError
from proxystore.serialize import serialize
from proxystore.store import registry
from proxystore.store.base import SECRET_ENV
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from tests.conftest import REDIS_SERVER
from tests.conftest import start_redis

SECRET = 'identity-test-secret'


def test_file_proxy_reads_its_own_directory_not_a_namesakes(tmp_path: Path) -> None:
    a = FileStore('shared', store_dir=tmp_path / 'a')
    b = FileStore('shared', store_dir=tmp_path / 'b')
    key = a.set('from A')
    b.set('from B', key=key)
    data = pickle.dumps(a.proxy(key=key))
    ps.store.register_store(b)
    assert pickle.loads(data) == 'from A'
    assert ps.store.get_store('shared') is b  # the user's registration is untouched


other_redis = factories.redis_proc(
    executable=REDIS_SERVER or '/usr/bin/redis-server', host='127.0.0.1', port=None
)


def test_redis_proxy_reads_its_own_server(
    redis_address: tuple[str, int], request: pytest.FixtureRequest
) -> None:
    from proxystore.store.redis import RedisStore

    host, port = redis_address
    a = RedisStore('shared-redis', hostname=host, port=port)
    key = a.set('server A')
    data = pickle.dumps(a.proxy(key=key))
    # Another real server, registered under the same name.
    other_host, other_port = start_redis(request, 'other_redis')
    b = ps.store.init_store('redis', name='shared-redis', hostname=other_host, port=other_port)
    b.set('server B', key=key)
    assert pickle.loads(data) == 'server A'
    assert b.get(key) == 'server B'


def _resolve_with_namesake(data: bytes, store_dir: str) -> str:
    import proxystore as ps

    ps.store.init_store('file', name='shared', store_dir=store_dir)
    return str(ps.proxy.extract(pickle.loads(data)))


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_worker_with_namesake_reads_proxys_store(tmp_path: Path, method: str) -> None:
    a = FileStore('shared', store_dir=tmp_path / 'a')
    key = a.set('from A')
    FileStore('shared', store_dir=tmp_path / 'b').set('from B', key=key)
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        got = pool.apply_async(
            _resolve_with_namesake, (pickle.dumps(a.proxy(key=key)), str(tmp_path / 'b'))
        ).get(timeout=60)
    assert got == 'from A'


def test_store_without_secret_cannot_resolve_signed_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    signed = FileStore('signed', store_dir=tmp_path / 's', secret=SECRET)
    key = signed.set([1, 2, 3])
    data = pickle.dumps(signed.proxy(key=key))
    # An attacker replaces the value with an unsigned payload.
    with open(os.path.join(signed.store_dir, key), 'wb') as f:
        f.write(serialize(['tampered']))
    del signed  # this process now plays a worker that never had the signed store
    gc.collect()
    # The worker registered the name without a secret.
    ps.store.init_store('file', name='signed', store_dir=str(tmp_path / 's'))
    with pytest.raises(StoreConfigError, match=SECRET_ENV):
        ps.proxy.resolve(pickle.loads(data))
    # With the secret in its environment the worker verifies, and refuses the tampered value.
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with pytest.raises(SignatureError):
        ps.proxy.resolve(pickle.loads(data))


@pytest.mark.parametrize('secret', ['', b'', 5, 1.5, ['x']])
def test_bad_secret_is_config_error(tmp_path: Path, secret: Any) -> None:
    with pytest.raises(StoreConfigError, match='secret'):
        FileStore('bad-secret', store_dir=tmp_path / 's', secret=secret)
    with pytest.raises(StoreConfigError, match='secret'):
        LocalStore('bad-secret', secret=secret)


def test_init_store_closes_the_store_it_replaces() -> None:
    closed: list[str] = []

    class Closing(LocalStore):
        def close(self) -> None:
            closed.append(self.name)

    first = ps.store.init_store(Closing, name='replaced')
    second = ps.store.init_store(Closing, name='replaced')
    assert closed == ['replaced'] and ps.store.get_store('replaced') is second
    assert first is not second
    ps.store.init_store(Closing, name='other')
    assert closed == ['replaced']


class SlowStore(LocalStore):
    """Takes a while to build, so concurrent first lookups overlap."""

    built = 0

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        time.sleep(0.05)
        type(self).built += 1
        self.ready = True


def test_concurrent_first_lookups_build_one_store() -> None:
    SlowStore.built = 0
    path = f'{__name__}.SlowStore'
    barrier = threading.Barrier(8)
    found: list[Any] = []

    def lookup() -> None:
        barrier.wait()
        store = registry.lookup_store(path, 'slow', {'cache_size': 4})
        found.append((store, getattr(store, 'ready', False)))

    threads = [threading.Thread(target=lookup) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert SlowStore.built == 1
    assert len({id(s) for s, _ in found}) == 1 and all(ready for _, ready in found)


_RACE_SCRIPT = textwrap.dedent(
    """
    import os, pickle, sys, threading
    import proxystore as ps
    if os.environ.get('PRELOAD'):
        import proxystore.store.redis  # then only the registration race is left

    datas = pickle.load(sys.stdin.buffer)
    proxies = [pickle.loads(d) for d in datas]
    barrier = threading.Barrier(len(proxies))
    errors = []

    def use(p):
        barrier.wait()
        try:
            ps.proxy.resolve_async(p)
            assert ps.proxy.extract(p) == [1, 2, 3]
        except BaseException as e:
            errors.append(f'{type(e).__name__}: {e}')

    threads = [threading.Thread(target=use, args=(p,)) for p in proxies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 'proxystore.store.redis' in sys.modules
    print('ERRORS', errors)
    sys.exit(1 if errors else 0)
    """
)


@pytest.mark.parametrize('preload', ['', '1'])
def test_fresh_interpreter_threads_resolve_never_imported_store_type(
    redis_address: tuple[str, int], preload: str
) -> None:
    # Issue 13, items 6 and 7: a half-imported backend module and a store
    # registered before its constructor finished. Before the fix this failed
    # in most runs (4 threads, 4 proxies each, fresh interpreter).
    from proxystore.store.redis import RedisStore

    host, port = redis_address
    store = RedisStore(f'race-{os.urandom(4).hex()}', hostname=host, port=port)
    datas = [pickle.dumps(store.proxy([1, 2, 3])) for _ in range(4)]
    failures = []
    for _ in range(6):
        run = subprocess.run(
            [sys.executable, '-c', _RACE_SCRIPT],
            check=False,
            input=pickle.dumps(datas),
            capture_output=True,
            timeout=120,
            env={**os.environ, 'PRELOAD': preload},
        )
        if run.returncode != 0:
            failures.append(run.stdout.decode() + run.stderr.decode()[-2000:])
    assert not failures, failures[0]
