"""Signed payloads, owner-only files, and Redis credentials that stay out of proxies."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytest_redis import factories

import proxystore as ps
from proxystore.exceptions import SignatureError
from proxystore.exceptions import StoreAuthenticationError
from proxystore.exceptions import StoreConfigError
from proxystore.serialize import serialize
from proxystore.store.base import SECRET_ENV
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from tests.conftest import REDIS_SERVER
from tests.conftest import start_redis

SECRET = 'correct horse battery staple'


class Exploit:
    """Unpickling this creates a file: proof that attacker code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def _tamper(store: Store, key: str, payload: bytes) -> None:
    if isinstance(store, FileStore):  # also SharedMemoryStore
        with open(os.path.join(store.store_dir, key), 'wb') as f:
            f.write(payload)
    else:
        store.connector.put(key, [payload])  # writes bytes the way an attacker with access could


@pytest.mark.parametrize('kind', ['file', 'shm', 'redis'])
def test_tampered_payload_rejected_before_unpickling(
    store_factory: Any, tmp_path: Path, kind: str
) -> None:
    store = store_factory(kind, secret=SECRET)
    key = store.set({'honest': 1})
    assert store.get(key) == {'honest': 1}
    flag = tmp_path / 'pwned'
    _tamper(store, key, serialize(Exploit(str(flag))))  # unsigned
    with pytest.raises(SignatureError, match='unsigned'):
        store.get(key, strict=True)
    _tamper(store, key, serialize(Exploit(str(flag)), secret=b'wrong secret'))
    with pytest.raises(SignatureError, match='does not match'):
        store.get(key, strict=True)
    assert not flag.exists()
    store.evict(key)  # cleanup() keeps files it did not write (this one has no store header)


def test_unsigned_store_would_run_it(store_factory: Any, tmp_path: Path) -> None:
    """The threat is real: without a secret, the same tampering runs code."""
    store = store_factory('file')
    key = store.set('x')
    flag = tmp_path / 'pwned'
    _tamper(store, key, serialize(Exploit(str(flag))))
    store.get(key, strict=True)
    assert flag.exists()


def test_secret_never_travels_in_a_proxy(store_factory: Any) -> None:
    store = store_factory('file', secret=SECRET)
    data = pickle.dumps(store.proxy(np.arange(5)))
    assert SECRET.encode() not in data
    assert store.config()['signed'] is True and 'secret' not in store.config()


def test_worker_without_secret_fails_loudly(
    store_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_factory('file', secret=SECRET)
    config = store.config()
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(StoreConfigError, match=SECRET_ENV):
        FileStore.from_config('worker-side', config)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    worker = FileStore.from_config('worker-side', config)
    assert worker.get(store.set([1, 2])) == [1, 2]


def _resolve_with_env(data: bytes, env: dict[str, str]) -> Any:
    os.environ.update(env)
    return list(pickle.loads(data))


def test_secret_from_environment_in_spawned_worker(
    store_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    store = store_factory('file')  # picks the secret up from the environment
    assert store.config().get('signed') is True
    data = pickle.dumps(store.proxy([1, 2, 3]))
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        assert pool.apply(_resolve_with_env, (data, {SECRET_ENV: SECRET})) == [1, 2, 3]


redis_auth_server = factories.redis_proc(
    executable=REDIS_SERVER or '/usr/bin/redis-server',
    host='127.0.0.1',
    port=None,
    password='redis-pass',
)


@pytest.fixture(scope='module')
def redis_auth(request: pytest.FixtureRequest) -> tuple[str, int]:
    return start_redis(request, 'redis_auth_server')


def test_redis_password(redis_auth: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    from proxystore.store.redis import RedisStore

    host, port = redis_auth
    monkeypatch.delenv('PROXYSTORE_REDIS_PASSWORD', raising=False)
    anonymous = RedisStore('anon', hostname=host, port=port, retries=0)
    with pytest.raises(StoreAuthenticationError, match='PROXYSTORE_REDIS_PASSWORD'):
        anonymous.set('x')
    with pytest.raises(StoreAuthenticationError, match=f'{host}:{port}'):
        anonymous.get('x')
    store = RedisStore('auth', hostname=host, port=port, password='redis-pass')
    proxy = store.proxy([1, 2])
    data = pickle.dumps(proxy)
    assert b'redis-pass' not in data
    ps.store.unregister_store('auth')
    # A worker with the password in its environment resolves the proxy.
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        env = {'PROXYSTORE_REDIS_PASSWORD': 'redis-pass'}
        assert pool.apply(_resolve_with_env, (data, env)) == [1, 2]
    shared = RedisStore(
        'shared', hostname=host, port=port, password='redis-pass', share_credentials=True
    )
    assert b'redis-pass' in pickle.dumps(shared.proxy([3]))


@pytest.fixture
def redis_tls(tmp_path: Path) -> Any:
    """A redis-server that speaks only TLS, with a self-signed certificate for 127.0.0.1."""
    import shutil
    import socket
    import subprocess
    import time

    openssl = shutil.which('openssl')
    if REDIS_SERVER is None or openssl is None:
        pytest.skip('redis-server and openssl are needed for the TLS test')
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run(
        [openssl, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
         '-keyout', str(key), '-out', str(cert), '-subj', '/CN=127.0.0.1',
         '-addext', 'subjectAltName=IP:127.0.0.1'],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [REDIS_SERVER, '--port', '0', '--tls-port', str(port), '--bind', '127.0.0.1',
         '--tls-cert-file', str(cert), '--tls-key-file', str(key),
         '--tls-ca-cert-file', str(cert), '--tls-auth-clients', 'no',
         '--save', '', '--dir', str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', port)) == 0:
                break
        if server.poll() is not None:
            pytest.skip(f'redis-server without TLS support: {server.stderr.read()[-200:]!r}')  # type: ignore[union-attr]
        time.sleep(0.05)
    yield port, str(cert)
    server.terminate()
    server.wait(timeout=10)


def test_redis_over_tls(redis_tls: tuple[int, str]) -> None:
    from proxystore.store.redis import RedisStore

    port, ca = redis_tls
    store = RedisStore(
        'tls', hostname='127.0.0.1', port=port, redis_kwargs={'ssl': True, 'ssl_ca_certs': ca}
    )
    big = np.random.default_rng(0).random(2_000_000)  # through the zero-copy send/receive path
    key = store.set(big)
    assert np.array_equal(store.get(key, strict=True), big)
    assert store.get_batch([key, 'missing'])[1] is None
    assert store.config()['redis_kwargs'] == {'ssl': True, 'ssl_ca_certs': ca}
    plain = RedisStore('no-tls', hostname='127.0.0.1', port=port, timeout=2, retries=0)
    with pytest.raises(ps.exceptions.StoreConnectionError, match=str(port)):
        plain.set('x')
