"""Small objects on Redis: one ``SET`` of head + payload, read with one ``GET``.

Objects that fit in one chunk are a Redis string (``PXSS`` head: payload
length, 16-byte version token); larger ones stay chunked lists (``PXSV``
head). These tests cover both forms side by side: atomic overwrites between
them (also under readers in other processes), versions across forms, values
written in the list form by earlier versions, plain ``SET`` values of other
tools, one round trip per read, the cluster, and the spare connections a
store keeps out of redis-py's pool. ``test_redis_fallback`` re-runs them
without the fast path.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
from typing import Any

import numpy as np
import pytest

redis = pytest.importorskip('redis')

from proxystore.connectors import redis_wire  # noqa: E402
from proxystore.exceptions import SerializationError  # noqa: E402
from proxystore.serialize import serialize  # noqa: E402
from proxystore.store.redis import RedisStore  # noqa: E402
from tests.cluster import Cluster  # noqa: E402
from tests.cluster import entry  # noqa: E402
from tests.store.test_redis_versions import _check_consistent  # noqa: E402
from tests.store.test_redis_versions import _overwrite  # noqa: E402


def _store(address: tuple[str, int], **kwargs: Any) -> RedisStore:
    return RedisStore(f's-{os.urandom(4).hex()}', hostname=address[0], port=address[1], **kwargs)


def _client(address: tuple[str, int]) -> Any:
    return redis.Redis(host=address[0], port=address[1])


def _calls(client: Any, *commands: str) -> dict[str, int]:
    stats = client.info('commandstats')
    return {c: int(stats.get(f'cmdstat_{c}', {}).get('calls', 0)) for c in commands}


def test_a_small_object_is_one_string_with_a_versioned_head(
    redis_address: tuple[str, int],
) -> None:
    store, client = _store(redis_address), _client(redis_address)
    x = np.arange(128, dtype=np.float64)
    key = store.set(x)
    assert client.type(key) == b'string'  # before: a list (DEL + RPUSH in MULTI/EXEC)
    value = client.get(key)
    payload = b''.join(bytes(p) for p in store.serialize(x))
    magic, total, token = struct.unpack('<4sQ16s', value[:28])
    assert magic == b'PXSS' and total == len(payload) and value[28:] == payload
    assert store.connector.version(key) == token == store.connector.get(key)[1]
    assert np.array_equal(store.get(key), x)


def test_one_command_per_small_write_and_one_get_per_read(
    redis_address: tuple[str, int],
) -> None:
    store, client = _store(redis_address, cache_size=0), _client(redis_address)
    names = ('set', 'get', 'multi', 'exec', 'del', 'rpush', 'lrange')
    before = _calls(client, *names)
    key = store.set([1, 2, 3])
    assert store.get(key) == [1, 2, 3]
    after = _calls(client, *names)
    delta = {c: after[c] - before[c] for c in names}
    assert delta == {'set': 1, 'get': 1, 'multi': 0, 'exec': 0, 'del': 0, 'rpush': 0, 'lrange': 0}


def test_large_objects_stay_chunked_lists(
    redis_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_wire, '_CHUNK', 4096)
    store, client = _store(redis_address, cache_size=0), _client(redis_address)
    data = os.urandom(50_000)
    key = store.set(data, serialize=False)
    assert client.type(key) == b'list' and client.lindex(key, 0)[:4] == b'PXSV'
    assert client.llen(key) > 10
    before = _calls(client, 'get', 'lrange')
    entry_ = store.connector.get(key)
    assert entry_ is not None and bytes(entry_[0]) == data
    after = _calls(client, 'get', 'lrange')
    # GET answers WRONGTYPE, then LRANGE on the same connection.
    assert (after['get'] - before['get'], after['lrange'] - before['lrange']) == (1, 1)
    assert entry_[1] == store.connector.version(key) == client.lindex(key, 0)[12:]


def test_overwrites_between_forms_replace_atomically_and_change_the_version(
    redis_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, client = _store(redis_address, cache_size=0), _client(redis_address)
    small, large = os.urandom(1000), os.urandom(30_000)
    key = store.set(small, serialize=False)
    tokens = [store.connector.version(key)]
    for value, chunk, kind in [
        (large, 4096, b'list'),
        (small, redis_wire._CHUNK, b'string'),
        (large, 4096, b'list'),
        (large, redis_wire._CHUNK, b'string'),
    ]:
        monkeypatch.setattr(redis_wire, '_CHUNK', chunk)
        store.set(value, key=key, serialize=False)
        assert client.type(key) == kind
        data, token = store.connector.get(key)
        assert bytes(data) == value and token == store.connector.version(key)
        tokens.append(token)
    assert None not in tokens and len(set(tokens)) == len(tokens)


def test_strict_is_cached_sees_a_rewrite_in_the_other_form(
    redis_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = _store(redis_address), _store(redis_address)
    key = mine.set('small')
    assert mine.get(key) == 'small' and mine.is_cached(key, strict=True)
    monkeypatch.setattr(redis_wire, '_CHUNK', 64)
    theirs.set('now a chunked list', key=key)
    assert _client(redis_address).type(key) == b'list'  # the patch reached the writer
    assert not mine.is_cached(key, strict=True)
    assert mine.get(key, strict=True) == 'now a chunked list'
    assert mine.get(key) == 'now a chunked list' and mine.is_cached(key, strict=True)
    monkeypatch.undo()
    theirs.set('a string again', key=key)
    assert _client(redis_address).type(key) == b'string'
    assert not mine.is_cached(key, strict=True)


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_readers_see_whole_values_while_another_process_switches_forms(
    redis_address: tuple[str, int], method: str
) -> None:
    """A child rewrites the key alternately as a string and as a chunked list."""
    host, port = redis_address
    first, second = os.urandom(200_000), os.urandom(90_000)
    reader = _store(redis_address, cache_size=0)
    key = reader.set(first, serialize=False)
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        pending = [
            pool.apply_async(
                _overwrite, (host, port, key, second if i % 2 else first, 8192 if i % 3 else None)
            )
            for i in range(30)
        ]
        seen = _check_consistent(reader, key, {first: first, second: second}, reads=200)
        tokens = [p.get(60) for p in pending]
    assert len(set(tokens)) == 30 and len(seen) >= 1


def test_lists_written_by_the_previous_version_read_with_their_token(
    redis_address: tuple[str, int],
) -> None:
    """``PXSV`` lists (every object before one-string values) keep reading, versioned."""
    client, store = _client(redis_address), _store(redis_address, cache_size=0)
    key = f'old-{os.urandom(4).hex()}'
    payload = serialize({'old': [1, 2]})
    token = os.urandom(16)
    head = struct.pack('<4sQ16s', b'PXSV', len(payload), token)
    client.rpush(key, head, payload[:100], payload[100:])
    assert store.get(key) == {'old': [1, 2]}
    assert store.connector.version(key) == token == store.connector.get(key)[1]
    assert store.get_batch([key, 'missing-key']) == [{'old': [1, 2]}, None]
    store.set({'new': 1}, key=key)  # rewritten as one string
    assert client.type(key) == b'string' and store.get(key) == {'new': 1}


def test_plain_set_values_of_other_tools_read_in_one_get(redis_address: tuple[str, int]) -> None:
    client, store = _client(redis_address), _store(redis_address, cache_size=0)
    key = f'plain-{os.urandom(4).hex()}'
    client.set(key, serialize([4, 5]))
    before = _calls(client, 'get', 'lrange')
    assert store.get(key) == [4, 5]
    after = _calls(client, 'get', 'lrange')
    assert (after['get'] - before['get'], after['lrange'] - before['lrange']) == (1, 0)
    assert store.connector.version(key) is None and store.connector.get(key)[1] is None
    client.set(key, b'')  # empty and shorter than a head: still the payload itself
    assert bytes(store.connector.get(key)[0]) == b''


def test_a_string_with_our_head_and_a_wrong_length_is_corrupt(
    redis_address: tuple[str, int],
) -> None:
    client, store = _client(redis_address), _store(redis_address, cache_size=0)
    key = f'bad-{os.urandom(4).hex()}'
    client.set(key, struct.pack('<4sQ16s', b'PXSS', 1000, b't' * 16) + b'short')
    with pytest.raises(SerializationError, match='corrupt'):
        store.get(key)
    assert store.get(store.set('still usable')) == 'still usable'


def test_keys_of_other_types_are_refused_by_name(redis_address: tuple[str, int]) -> None:
    client, store = _client(redis_address), _store(redis_address)
    key = f'hash-{os.urandom(4).hex()}'
    client.hset(key, 'field', 'value')
    with pytest.raises(SerializationError, match='a Redis hash'):
        store.get(key)
    assert store.connector.version(key) is None


def test_a_killed_spare_connection_is_replaced_without_an_error(
    redis_address: tuple[str, int],
) -> None:
    """Connections a store keeps out of the pool may die while idle (CLIENT KILL, restarts)."""
    store, client = _store(redis_address, cache_size=0, retries=0), _client(redis_address)
    key = store.set('x')
    assert store.connector._spares  # type: ignore[attr-defined]
    name = f'victim-{os.urandom(4).hex()}'
    for connection in store.connector._spares:  # type: ignore[attr-defined]
        connection.send_command('CLIENT', 'SETNAME', name)
        connection.read_response()
    assert client.execute_command('CLIENT', 'KILL', 'SKIPME', 'yes', 'TYPE', 'normal') >= 1
    assert store.get(key) == 'x'  # retries=0: a stale spare does not count as a failure
    assert store.get(store.set('y')) == 'y'


def _spares_in_child(store: RedisStore, key: str, queue: Any) -> None:
    try:
        inherited = list(store.connector._spares)  # type: ignore[attr-defined]
        value = store.get(key)
        mine = store.connector._spares  # type: ignore[attr-defined]
        queue.put((value, bool(inherited), any(c in inherited for c in mine)))
    except BaseException as e:  # reported to the parent, which fails the test
        queue.put(repr(e))


def test_a_forked_child_never_uses_the_parents_spare_connections(
    redis_address: tuple[str, int],
) -> None:
    store = _store(redis_address, cache_size=0)
    key = store.set('from the parent')
    assert store.connector._spares  # type: ignore[attr-defined]
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    child = ctx.Process(target=_spares_in_child, args=(store, key, queue))
    child.start()
    result = queue.get(timeout=60)
    child.join(60)
    assert result == ('from the parent', True, False)
    assert store.get(key) == 'from the parent'  # the parent's connections still work


def test_small_and_large_objects_on_the_cluster(
    redis_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(
        f'c-{os.urandom(4).hex()}', cluster=True, cache_size=0, **entry(redis_cluster)
    )
    small = store.set_batch([np.arange(i + 1) for i in range(20)])
    key = store.set(np.arange(100))
    node = redis_cluster.node_of(key)
    assert node('TYPE', key).strip() == 'string'
    version = store.connector.version(key)
    assert isinstance(version, bytes)
    monkeypatch.setattr(redis_wire, '_CHUNK', 256)
    store.set(np.arange(1000), key=key)  # now a list in the same slot
    assert node('TYPE', key).strip() == 'list'
    assert store.connector.version(key) not in (None, version)
    assert np.array_equal(store.get(key), np.arange(1000))
    assert [len(x) for x in store.get_batch(small)] == list(range(1, 21))
