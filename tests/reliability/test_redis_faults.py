"""Redis server faults: SIGKILL, SIGSTOP (hang), restart, kill mid-transfer, AOF loading.

Every test runs its own ``redis-server`` (free loopback port, private dir,
``appendfsync always``), so it can kill and restart it without disturbing the
rest of the suite. The contract checked: while the server is unreachable
every operation fails fast with :class:`StoreConnectionError` naming
``host:port``; once it is back the *same* store object works again, and every
object whose ``set`` returned before the fault is intact.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.exceptions import StoreConnectionError
from proxystore.store.redis import RedisStore
from tests.reliability._helpers import RedisServer
from tests.reliability._helpers import content_hash
from tests.reliability._helpers import patterned_array
from tests.reliability._helpers import sha256

pytestmark = pytest.mark.timeout(120)

#: A dead server answers "connection refused" at once: each failing operation,
#: retries and backoff included, must give up well within this many seconds.
DOWN_BOUND = 5.0
#: A hung server (SIGSTOP) costs timeouts: (retries + 1) reads plus a reconnect.
HUNG_BOUND = 8.0


def _objects(seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [
        np.frombuffer(rng.bytes(1), np.uint8),
        rng.integers(0, 1 << 30, size=(100, 37), dtype=np.int64),
        np.frombuffer(rng.bytes(3_000_001), np.uint8),
        rng.bytes(50_000),
        b'',
        'text \u00e9\u4e2d' * 1000,
        {'array': rng.random(10_000), 'blob': rng.bytes(1000), 'n': 7, 'nested': [1, (2, 3)]},
        patterned_array(9 * (1 << 20) + 5, seed=seed),
        [rng.bytes(100) for _ in range(50)],
    ]


def _store(server: RedisServer, **kwargs: Any) -> RedisStore:
    options: dict[str, Any] = {'timeout': 1, 'retries': 1}
    options.update(kwargs)
    store = RedisStore(
        f'faults-{os.urandom(4).hex()}', hostname='127.0.0.1', port=server.port, **options
    )
    ps.store.register_store(store)
    return store


def _fresh(proxy_bytes: bytes) -> Any:
    """A proxy as a worker would receive it: unpickled, unresolved, not bound to a store."""
    proxy = pickle.loads(proxy_bytes)
    assert not ps.proxy.is_resolved(proxy)
    return proxy


def _fill(store: RedisStore, seed: int) -> dict[str, tuple[str, bytes]]:
    """Set half the objects and proxy the other half; return key -> (hash, pickled proxy)."""
    acked: dict[str, tuple[str, bytes]] = {}
    for i, obj in enumerate(_objects(seed)):
        if i % 2:
            proxy = store.proxy(obj)
            key = ps.proxy.get_key(proxy)
            assert key is not None
        else:
            key = store.set(obj)
            proxy = store.proxy(key=key)
        acked[key] = (content_hash(obj), pickle.dumps(proxy))
    return acked


def _assert_intact(store: RedisStore, acked: dict[str, tuple[str, bytes]]) -> int:
    for key, (digest, proxy_bytes) in acked.items():
        assert content_hash(store.get(key, strict=True)) == digest, key
        assert content_hash(ps.proxy.extract(_fresh(proxy_bytes))) == digest, key
    return len(acked)


def _expect_connection_error(
    name: str,
    operation: Callable[[], Any],
    server: RedisServer,
    bound: float,
    outcomes: list[str],
) -> None:
    start = time.perf_counter()
    with pytest.raises(StoreConnectionError) as info:
        operation()
    elapsed = time.perf_counter() - start
    message = str(info.value)
    outcomes.append(f'{name}: {type(info.value).__name__} after {elapsed:.2f}s: {message[:160]}')
    assert isinstance(info.value, ConnectionError)
    assert server.address in message, message
    assert elapsed < bound, f'{name} took {elapsed:.2f}s to fail (bound {bound}s)'


def _report(record_property: Callable[[str, Any], None], title: str, lines: list[str]) -> None:
    record_property(title, '\n'.join(lines))
    print(f'\n[{title}]')
    for line in lines:
        print('  ' + line)


def _down_operations(
    store: RedisStore, acked: dict[str, tuple[str, bytes]]
) -> list[tuple[str, Callable[[], Any]]]:
    keys = list(acked)
    proxies = [_fresh(acked[k][1]) for k in keys[:2]]
    return [
        ('set', lambda: store.set(b'never stored', key='set-while-down')),
        ('set_batch', lambda: store.set_batch([b'a', b'b'])),
        ('proxy', lambda: store.proxy([1, 2, 3])),
        ('get(strict)', lambda: store.get(keys[0], strict=True)),
        ('get(uncached)', lambda: store.get(keys[1])),
        ('get_batch', lambda: store.get_batch(keys[:3], strict=True)),
        ('exists', lambda: store.exists(keys[0])),
        ('evict', lambda: store.evict('some-key')),
        ('proxy(key=)', lambda: store.proxy(key=keys[2])),
        ('resolve fresh proxy', lambda: ps.proxy.resolve(proxies[0])),
        ('use fresh proxy', lambda: len(proxies[1])),
    ]


def test_sigkill_then_restart_same_store_recovers(
    private_redis: RedisServer, record_property: Callable[[str, Any], None]
) -> None:
    server = private_redis
    store = _store(server)
    acked = _fill(store, seed=1)
    operations = _down_operations(store, acked)
    failed_proxies = [_fresh(acked[k][1]) for k in list(acked)[3:5]]

    server.kill()
    outcomes: list[str] = []
    for name, operation in operations:
        _expect_connection_error(name, operation, server, DOWN_BOUND, outcomes)
    for proxy in failed_proxies:
        _expect_connection_error('resolve', lambda p=proxy: ps.proxy.resolve(p), server, 5, [])
        assert not ps.proxy.is_resolved(proxy)  # a failed resolve can be retried

    start = time.perf_counter()
    server.start()
    outcomes.append(f'restart: ready after {time.perf_counter() - start:.2f}s')

    # The same store object, never re-initialised, works again.
    verified = _assert_intact(store, acked)
    for proxy, key in zip(failed_proxies, list(acked)[3:5]):
        assert content_hash(ps.proxy.extract(proxy)) == acked[key][0]
    assert store.get('set-while-down', strict=True) is None
    key = store.set({'after': 'restart'})
    assert store.get(key, strict=True) == {'after': 'restart'}
    outcomes.append(f'after restart: {verified} acknowledged objects verified intact')
    _report(record_property, 'redis SIGKILL', outcomes)


def test_hung_server_times_out_then_recovers(
    private_redis: RedisServer, record_property: Callable[[str, Any], None]
) -> None:
    server = private_redis
    store = _store(server, timeout=0.5, retries=1)
    acked = _fill(store, seed=2)
    keys = list(acked)
    proxy = _fresh(acked[keys[1]][1])
    pending = patterned_array(1 << 20, seed=3)

    server.signal(signal.SIGSTOP)
    outcomes: list[str] = []
    try:
        for name, operation in [
            ('set', lambda: store.set(pending, key='set-while-hung')),
            ('get(strict)', lambda: store.get(keys[0], strict=True)),
            ('exists', lambda: store.exists(keys[0])),
            ('resolve fresh proxy', lambda: ps.proxy.resolve(proxy)),
        ]:
            _expect_connection_error(name, operation, server, HUNG_BOUND, outcomes)
    finally:
        server.signal(signal.SIGCONT)

    assert server.ping(timeout=5) == b'+PONG'
    verified = _assert_intact(store, acked)
    assert content_hash(ps.proxy.extract(proxy)) == acked[keys[1]][0]
    # The timed-out set was never acknowledged: the server may still have run the
    # transaction it had buffered, but then completely (MULTI/EXEC), never partly.
    late = store.get('set-while-hung', strict=True)
    outcomes.append(
        f'unacknowledged set after resume: {"present" if late is not None else "absent"}'
    )
    if late is not None:
        assert content_hash(late) == content_hash(pending)
    outcomes.append(f'after SIGCONT: {verified} acknowledged objects verified intact')
    _report(record_property, 'redis SIGSTOP', outcomes)


@pytest.mark.parametrize('direction', ['set', 'get'])
def test_kill_during_large_transfer(
    private_redis: RedisServer, direction: str, record_property: Callable[[str, Any], None]
) -> None:
    """A server killed while a 192 MiB value is in flight: an error, and never a partial object."""
    server = private_redis
    # A generous reply timeout: the server fsyncs 192 MiB to its append-only file
    # before acknowledging; the fault under test is the kill, not a slow reply.
    store = _store(server, cache_size=0, timeout=30)
    big = patterned_array(192 << 20, seed=4)
    digest = content_hash(big)
    key = 'in-flight'
    if direction == 'get':
        store.set(big, key=key)
    outcome: dict[str, Any] = {}

    def transfer() -> None:
        start = time.perf_counter()
        try:
            if direction == 'set':
                store.set(big, key=key)
            else:
                outcome['value'] = content_hash(store.get(key, strict=True))
            outcome['result'] = 'completed'
        except Exception as e:
            outcome['result'] = e
        outcome['seconds'] = time.perf_counter() - start

    thread = threading.Thread(target=transfer)
    thread.start()
    time.sleep(0.05)
    server.kill()
    thread.join(30)
    assert not thread.is_alive(), f'{direction} hung after the server was killed'
    result = outcome['result']
    line = f'{direction} of 192 MiB, server killed after 50 ms: '
    if isinstance(result, Exception):
        line += f'{type(result).__name__} after {outcome["seconds"]:.2f}s: {str(result)[:150]}'
        assert isinstance(result, StoreConnectionError), repr(result)
        assert server.address in str(result)
    else:
        line += f'completed before the kill ({outcome["seconds"]:.2f}s)'
        if direction == 'get':
            assert outcome['value'] == digest
    server.start()
    stored = store.get(key, strict=True)
    if direction == 'get' or result == 'completed':
        assert stored is not None, 'an acknowledged object was lost'
    if stored is not None:
        assert content_hash(stored) == digest, 'a partial object was stored'
    line += f'; after restart the key is {"intact" if stored is not None else "absent"}'
    del stored
    store.evict(key)
    _report(record_property, f'redis kill mid-{direction}', [line])


def test_workflow_loop_survives_kill_and_restart(
    private_redis: RedisServer, record_property: Callable[[str, Any], None]
) -> None:
    """A producer/consumer loop keeps running through two SIGKILL + restart cycles."""
    server = private_redis
    store = _store(server)
    rng = random.Random(5)
    stop = threading.Event()
    acked: list[tuple[str, str, bytes]] = []
    stats = {'ok': 0, 'connection_errors': 0, 'ok_after_restart': 0, 'max_op': 0.0}
    unexpected: list[str] = []
    corrupt: list[str] = []
    restarted = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                data = rng.randbytes(rng.randint(1024, 65536))
                obj = (sha256(data), bytearray(data))
                proxy = store.proxy(obj)
                acked.append((ps.proxy.get_key(proxy) or '', obj[0], pickle.dumps(proxy)))
                key, digest, proxy_bytes = rng.choice(acked)
                got = ps.proxy.extract(pickle.loads(proxy_bytes))
                again = store.get(key, strict=True)
                for value in (got, again):
                    if value is None or value[0] != digest or sha256(value[1]) != digest:
                        corrupt.append(key)
                stats['ok'] += 1
                if restarted.is_set():
                    stats['ok_after_restart'] += 1
            except StoreConnectionError:
                stats['connection_errors'] += 1
                time.sleep(0.005)
            except Exception as e:
                unexpected.append(repr(e))
            stats['max_op'] = max(stats['max_op'], time.perf_counter() - start)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        timeline = []
        for cycle in range(2):
            time.sleep(0.4)
            restarted.clear()
            server.kill()
            timeline.append(f'cycle {cycle}: killed after {stats["ok"]} good iterations')
            time.sleep(0.5)
            errors_before = stats['connection_errors']
            stats['ok_after_restart'] = 0
            server.start()
            restarted.set()
            deadline = time.monotonic() + 10
            while stats['ok_after_restart'] < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            timeline.append(
                f'cycle {cycle}: restarted; {errors_before} connection errors so far, '
                f'{stats["ok_after_restart"]} good iterations after restart',
            )
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), 'the workflow loop hung'
    assert unexpected == [], unexpected[:5]
    assert corrupt == [], corrupt[:5]
    assert stats['connection_errors'] > 0
    assert stats['ok_after_restart'] >= 20
    assert stats['max_op'] < DOWN_BOUND * 2, stats
    for key, digest, proxy_bytes in acked:
        value = store.get(key, strict=True)
        assert value is not None, f'acknowledged object {key} lost'
        assert value[0] == digest and sha256(value[1]) == digest
        assert ps.proxy.extract(pickle.loads(proxy_bytes))[0] == digest
    summary = (
        f'{stats["ok"]} good iterations, {stats["connection_errors"]} StoreConnectionError, '
        f'0 other exceptions, slowest operation {stats["max_op"]:.2f}s, '
        f'{len(acked)} acknowledged objects verified intact after the restarts'
    )
    _report(record_property, 'redis workflow kill/restart', [*timeline, summary])


def test_hung_server_without_retries_raises_store_connection_error(
    private_redis: RedisServer,
) -> None:
    server = private_redis
    store = _store(server, timeout=0.5, retries=0)
    key = store.set(b'x' * 1000)
    assert store.get(key, strict=True) == b'x' * 1000  # a pooled, healthy connection
    server.signal(signal.SIGSTOP)
    try:
        with pytest.raises(StoreConnectionError):
            store.get(key, strict=True)
    finally:
        server.signal(signal.SIGCONT)


def test_get_while_server_loads_raises_store_connection_error(
    redis_factory: Callable[..., RedisServer],
) -> None:
    server = redis_factory()
    store = _store(server, timeout=5, retries=0)
    key = store.set(b'value')
    # ~20,000 commands in the append-only file and a 500 us delay per command keep
    # the restarted server loading for ~10 s (it answers clients every 1024
    # commands); the test only needs the first second and then kills it.
    filler = [f'filler-{i}' for i in range(7000)]
    store.set_batch([b'filler'] * len(filler), keys=filler)
    server.kill()
    server.start(extra=('--key-load-delay', '500'), wait=False)
    deadline = time.monotonic() + 10
    reply = None
    while time.monotonic() < deadline:
        reply = server.ping(timeout=2)
        if reply is not None:
            break
        time.sleep(0.005)
    assert reply is not None and reply.startswith(b'-LOADING'), reply
    try:
        with pytest.raises(StoreConnectionError):
            store.get(key, strict=True)
    finally:
        server.stop()
