"""RedisStore errors: a full server, foreign or corrupt data, and argument checks.

Every test talks to a real redis-server: the shared per-worker one
(``redis_address``) or, for ``maxmemory``, a private one that no other test
uses.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_redis import factories

from tests.conftest import REDIS_SERVER
from tests.conftest import start_redis

redis = pytest.importorskip('redis')

import proxystore as ps  # noqa: E402
from proxystore.exceptions import SerializationError  # noqa: E402
from proxystore.exceptions import StoreAuthenticationError  # noqa: E402
from proxystore.exceptions import StoreConfigError  # noqa: E402
from proxystore.exceptions import StoreConnectionError  # noqa: E402
from proxystore.exceptions import StoreError  # noqa: E402
from proxystore.exceptions import StoreFullError  # noqa: E402
from proxystore.serialize import serialize  # noqa: E402
from proxystore.store.redis import RedisStore  # noqa: E402

redis_small_server = factories.redis_proc(
    executable=REDIS_SERVER or '/usr/bin/redis-server',
    host='127.0.0.1',
    port=None,
)


@pytest.fixture
def small_redis(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A private server whose ``maxmemory`` is 1 MiB above what it uses now (no eviction)."""
    host, port = start_redis(request, 'redis_small_server')
    client = redis.Redis(host=host, port=port)
    client.flushall()
    used = int(client.info('memory')['used_memory'])
    client.config_set('maxmemory-policy', 'noeviction')
    client.config_set('maxmemory', used + (1 << 20))
    yield host, port
    client.config_set('maxmemory', 0)
    client.flushall()
    client.close()


def _store(address: tuple[str, int], **kwargs: Any) -> RedisStore:
    return RedisStore(
        f'redis-{os.urandom(4).hex()}', hostname=address[0], port=address[1], **kwargs
    )


def _calls(client: Any, command: str) -> int:
    stats = client.info('commandstats').get(f'cmdstat_{command}')
    return int(stats['calls']) if stats else 0


# -- item 7: maxmemory ---------------------------------------------------------


def test_maxmemory_raises_store_full_error(small_redis: tuple[str, int]) -> None:
    host, port = small_redis
    store = _store(small_redis, retries=3)
    key = store.set(b'small', key='kept')
    with pytest.raises(StoreFullError) as info:
        store.set(os.urandom(4 << 20), key='kept')
    message = str(info.value)
    assert f'{host}:{port}' in message and "'kept'" in message and 'maxmemory' in message
    assert isinstance(info.value, OSError)
    with pytest.raises(StoreFullError):
        store.set_batch([os.urandom(1 << 20) for _ in range(4)])
    with pytest.raises(StoreFullError):
        store.proxy(os.urandom(4 << 20))
    # The refused transaction left the old value whole.
    assert store.get(key, strict=True) == b'small'


# -- item 7: corrupt and foreign data --------------------------------------------


def test_list_head_claiming_a_petabyte_is_corrupt_data_not_retried(
    redis_address: tuple[str, int],
) -> None:
    host, port = redis_address
    client = redis.Redis(host=host, port=port)
    key = f'huge-{os.urandom(4).hex()}'
    client.rpush(key, struct.pack('<4sQ', b'PXSL', 1 << 50), b'tiny')
    store = _store(redis_address, retries=3)
    before = _calls(client, 'lrange')
    with pytest.raises(SerializationError) as info:
        store.get(key)
    assert _calls(client, 'lrange') - before == 1  # read once, never retried
    assert not isinstance(info.value, ConnectionError)
    message = str(info.value)
    assert repr(key) in message and f'{host}:{port}' in message and store.name in message
    # The connection that held the half-read reply was dropped, not reused.
    assert store.set(b'fine', key=key) == key
    assert store.get(key) == b'fine'


@pytest.mark.parametrize('head', ['short', 'long'])
def test_list_whose_length_disagrees_with_its_head(
    redis_address: tuple[str, int], head: str
) -> None:
    host, port = redis_address
    client = redis.Redis(host=host, port=port)
    key = f'bad-{os.urandom(4).hex()}'
    claimed = 10 if head == 'short' else 2
    client.rpush(key, struct.pack('<4sQ', b'PXSL', claimed), b'12345')
    store = _store(redis_address)
    with pytest.raises(SerializationError, match=f'{host}:{port}') as info:
        store.get(key)
    assert repr(key) in str(info.value)
    assert store.get_batch([]) == []
    store.evict(key)


@pytest.mark.parametrize('kind', ['hash', 'set', 'zset', 'stream', 'foreign list', 'string'])
def test_foreign_data_is_serialization_error_naming_key_and_host(
    redis_address: tuple[str, int], kind: str
) -> None:
    host, port = redis_address
    client = redis.Redis(host=host, port=port)
    key = f'foreign-{kind.replace(" ", "-")}-{os.urandom(4).hex()}'
    if kind == 'hash':
        client.hset(key, 'field', 'value')
    elif kind == 'set':
        client.sadd(key, 'a', 'b')
    elif kind == 'zset':
        client.zadd(key, {'a': 1.0})
    elif kind == 'stream':
        client.xadd(key, {'a': 'b'})
    elif kind == 'foreign list':
        client.rpush(key, 'job-1', 'job-2')
    else:
        client.set(key, b'{"written": "by another tool"}')
    store = _store(redis_address)
    ps.store.register_store(store)
    other = store.set([1, 2, 3])
    for read in (
        lambda: store.get(key),
        lambda: store.get(key, strict=True),
        lambda: store.get_batch([other, key]),
        lambda: ps.proxy.extract(pickle.loads(pickle.dumps(store.proxy(key=key)))),
    ):
        with pytest.raises(SerializationError) as info:
            read()
        message = str(info.value)
        assert repr(key) in message, message
        assert f'{host}:{port}' in message, message
    if kind == 'string':  # raw bytes stay readable as such
        assert store.get(key, deserialize=False) == b'{"written": "by another tool"}'
    assert store.get(other) == [1, 2, 3]
    store.evict(key)


def test_plain_set_of_our_format_stays_readable(redis_address: tuple[str, int]) -> None:
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    key = f'plain-{os.urandom(4).hex()}'
    client.set(key, serialize({'a': [1, 2]}))
    store = _store(redis_address)
    ps.store.register_store(store)
    assert store.get(key) == {'a': [1, 2]}
    assert store.get_batch([key, 'missing-key']) == [{'a': [1, 2]}, None]
    proxy = pickle.loads(pickle.dumps(store.proxy(key=key)))
    assert proxy == {'a': [1, 2]}
    store.evict(key)


def test_permission_denied_is_an_authentication_error(redis_address: tuple[str, int]) -> None:
    """NOPERM (redis-py strips the prefix) names the missing permission, as AUTH failures do."""
    host, port = redis_address
    admin = redis.Redis(host=host, port=port)
    user = f'reader-{os.urandom(4).hex()}'
    admin.execute_command(
        'ACL', 'SETUSER', user, 'on', '>pw', '~*', '&*', '+@all', '-rpush', '-set'
    )
    try:
        store = _store(redis_address, username=user, password='pw', retries=0)
        with pytest.raises(StoreAuthenticationError, match=f'{host}:{port}'):
            store.set(b'x', key='denied')
        assert store.get('denied') is None  # reads are permitted
    finally:
        admin.execute_command('ACL', 'DELUSER', user)


# -- item 7: redis_kwargs that change replies --------------------------------------


@pytest.mark.parametrize(
    ('kwargs', 'named'),
    [
        ({'decode_responses': True}, 'decode_responses'),
        ({'protocol': 3}, 'protocol'),
        ({'encoding_errors': 'ignore'}, 'encoding_errors'),
        ({'encoding': 'latin-1'}, 'encoding'),
        ({'connection_pool': None}, 'connection_pool'),
        ({'single_connection_client': True}, 'single_connection_client'),
        ({'host': 'elsewhere'}, 'hostname='),
        ({'socket_timeout': 3}, 'timeout='),
        ({'retry_on_timeout': True}, 'retries='),
        ({'password': 'pw'}, 'password='),
        ({'ssl_ca_cert': 'ca.pem'}, 'ssl_ca_certs'),  # a typo: suggests the right name
        ({'ssl': 'yes'}, 'ssl'),
        ({'max_connections': 0}, 'max_connections'),
    ],
)
def test_redis_kwargs_that_would_break_the_store_are_refused(
    redis_address: tuple[str, int], kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(StoreConfigError, match='redis_kwargs') as info:
        _store(redis_address, redis_kwargs=kwargs)
    assert named in str(info.value)


def test_redis_kwargs_defaults_and_connection_options_are_accepted(
    redis_address: tuple[str, int],
) -> None:
    options = {
        'decode_responses': False,
        'protocol': 2,
        'encoding': 'utf-8',
        'socket_keepalive': True,
        'health_check_interval': 10,
        'client_name': 'proxystore-test',
        'max_connections': 8,
    }
    store = _store(redis_address, redis_kwargs=options)
    key = store.set('é' * 10)
    assert store.get(key) == 'é' * 10
    rebuilt = RedisStore.from_config(store.name + '-2', store.config())
    assert rebuilt.get(key) == 'é' * 10


# -- item 8: constructor arguments -----------------------------------------------------


@pytest.mark.parametrize(
    ('kwargs', 'named'),
    [
        ({'hostname': None}, 'hostname'),
        ({'hostname': ''}, 'hostname'),
        ({'hostname': 5}, 'hostname'),
        ({'hostname': 'local host'}, 'hostname'),
        ({'port': 'abc'}, 'port'),
        ({'port': '6379'}, 'port'),
        ({'port': 0}, 'port'),
        ({'port': 70000}, 'port'),
        ({'port': True}, 'port'),
        ({'port': 6379.0}, 'port'),
        ({'port': None}, 'port'),
        ({'timeout': -1}, 'timeout'),
        ({'timeout': 0}, 'timeout'),
        ({'timeout': '5'}, 'timeout'),
        ({'timeout': float('nan')}, 'timeout'),
        ({'timeout': float('inf')}, 'timeout'),
        ({'timeout': None}, 'timeout'),
        ({'timeout': True}, 'timeout'),
        ({'retries': -1}, 'retries'),
        ({'retries': '3'}, 'retries'),
        ({'retries': 1.5}, 'retries'),
        ({'retries': None}, 'retries'),
        ({'db': -1}, 'db'),
        ({'db': '0'}, 'db'),
        ({'db': None}, 'db'),
        ({'username': 5}, 'username'),
        ({'password': b'pw'}, 'password'),
        ({'share_credentials': 'yes'}, 'share_credentials'),
        ({'redis_kwargs': 'ssl=True'}, 'redis_kwargs'),
        ({'redis_kwargs': {1: True}}, 'redis_kwargs'),
    ],
)
def test_bad_constructor_arguments_are_store_config_errors(
    redis_address: tuple[str, int], kwargs: dict[str, Any], named: str
) -> None:
    arguments: dict[str, Any] = {'hostname': redis_address[0], 'port': redis_address[1]}
    arguments.update(kwargs)
    with pytest.raises(StoreConfigError) as info:
        RedisStore('checked', **arguments)
    message = str(info.value)
    assert named in message, message
    assert isinstance(info.value, ValueError)


def test_init_store_checks_redis_arguments_too() -> None:
    with pytest.raises(StoreConfigError, match='port'):
        ps.store.init_store('redis', name='checked', hostname='localhost', port='abc')
    assert 'checked' not in ps.store.registry._stores


def test_valid_edge_arguments_are_accepted(redis_address: tuple[str, int]) -> None:
    store = _store(
        redis_address, timeout=0.5, retries=0, db=1, username=None, password=None, cache_size=0
    )
    key = store.set(b'edge')
    assert store.get(key) == b'edge'
    client = redis.Redis(host=redis_address[0], port=redis_address[1], db=1)
    assert client.exists(key) == 1
    store.evict(key)


def test_store_error_still_reported_for_other_refusals(redis_address: tuple[str, int]) -> None:
    """A refusal that is neither full, auth nor foreign data stays a StoreError naming the host."""
    host, port = redis_address
    store = _store(redis_address, db=10_000, retries=0)  # beyond the server's 16 databases
    with pytest.raises(StoreError, match=f'{host}:{port}') as info:
        store.set(b'x')
    assert not isinstance(info.value, StoreConnectionError)


def test_value_too_large_for_this_process_is_not_retried(redis_address: tuple[str, int]) -> None:
    """A plausible head (1 TiB in 2,049 chunks) that cannot be allocated here: one read, no retry.

    Where the kernel refuses the mapping it is a ``MemoryError`` naming key and host; where it
    overcommits, the chunks turn out shorter than the head and it is corrupt data.
    """
    host, port = redis_address
    client = redis.Redis(host=host, port=port)
    key = f'tib-{os.urandom(4).hex()}'
    client.rpush(key, struct.pack('<4sQ', b'PXSL', 1 << 40), *([b'x'] * 2049))
    store = _store(redis_address, retries=3)
    before = _calls(client, 'lrange')
    with pytest.raises((MemoryError, SerializationError)) as info:
        store.get(key)
    assert _calls(client, 'lrange') - before == 1
    assert repr(key) in str(info.value) and f'{host}:{port}' in str(info.value)
    store.evict(key)
    assert store.get(key) is None
