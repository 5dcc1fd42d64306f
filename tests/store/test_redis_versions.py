"""RedisStore per-key versions: ``_version`` and ``_get_versioned``.

A key's token must change whenever the key is rewritten (by this store object,
another store object, or another process started with ``fork`` or
``spawn``), stay the same while the key is untouched, and come from the very
read that returned the bytes, so a reader never pairs one value's bytes with
another value's token.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import threading
from typing import Any

import pytest

redis = pytest.importorskip('redis')

from proxystore.connectors import redis_wire  # noqa: E402
from proxystore.serialize import serialize  # noqa: E402
from proxystore.store.redis import RedisStore  # noqa: E402


def _store(address: tuple[str, int], **kwargs: Any) -> RedisStore:
    return RedisStore(f'v-{os.urandom(4).hex()}', hostname=address[0], port=address[1], **kwargs)


def _overwrite(host: str, port: int, key: str, value: bytes, chunk: int | None = None) -> bytes:
    """Run in a child process: rewrite ``key`` and return the token it now has.

    ``chunk`` applies to this call only (a pool's child runs many of them).
    """
    from proxystore.store.redis import RedisStore

    default = redis_wire._CHUNK
    redis_wire._CHUNK = default if chunk is None else chunk
    try:
        store = RedisStore('child', hostname=host, port=port)
        store.set(value, key=key, serialize=False)
    finally:
        redis_wire._CHUNK = default
    form = redis.Redis(host=host, port=port).type(key)
    assert form == (b'list' if chunk is not None and len(value) > chunk else b'string')
    token = store.connector.version(key)
    store.close()
    assert isinstance(token, bytes)
    return token


def test_missing_key_has_no_version(redis_address: tuple[str, int]) -> None:
    store = _store(redis_address)
    assert store.connector.version('never-written') is None
    assert store.connector.get('never-written') is None


def test_token_is_stable_until_the_key_is_rewritten(redis_address: tuple[str, int]) -> None:
    store = _store(redis_address)
    key = store.set(b'one', serialize=False)
    data, token = store.connector.get(key)
    assert bytes(data) == b'one'  # type: ignore[arg-type]
    assert token is not None
    assert store.connector.version(key) == token
    assert store.connector.version(key) == token
    assert store.connector.get(key)[1] == token
    store.set(b'one', key=key, serialize=False)  # same bytes, new write: new token
    assert store.connector.version(key) not in (None, token)
    store.evict(key)
    assert store.connector.version(key) is None


def test_another_store_object_changes_the_token(redis_address: tuple[str, int]) -> None:
    mine, theirs = _store(redis_address), _store(redis_address)
    key = mine.set([1, 2, 3])
    before = mine.connector.version(key)
    theirs.set([4, 5, 6], key=key)
    data, after = mine.connector.get(key)
    assert after is not None and after != before
    assert after == theirs.connector.version(key)
    assert mine._decode(data, True, key) == [4, 5, 6]


def test_batch_writes_give_each_key_its_own_token(redis_address: tuple[str, int]) -> None:
    store = _store(redis_address)
    keys = store.set_batch([b'a', b'a', b'a'], serialize=False)
    tokens = [store.connector.version(k) for k in keys]
    assert None not in tokens and len(set(tokens)) == 3


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_another_process_changes_the_token(redis_address: tuple[str, int], method: str) -> None:
    host, port = redis_address
    store = _store(redis_address)
    key = store.set(b'parent', serialize=False)
    _, before = store.connector.get(key)
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        child_token = pool.apply(_overwrite, (host, port, key, b'child'))
        data, after = store.connector.get(key)
        assert bytes(data) == b'child'  # type: ignore[arg-type]
        assert after == child_token != before
        # Rewritten again with identical bytes: the token still moves.
        again = pool.apply(_overwrite, (host, port, key, b'child'))
    assert again != child_token and store.connector.version(key) == again


def test_values_written_with_plain_set_are_unversioned(redis_address: tuple[str, int]) -> None:
    """Plain SET values (other tools) carry no token: callers must treat them as always changed."""
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    key = f'plain-{os.urandom(4).hex()}'
    payload = b''.join(bytes(p) for p in [serialize({'x': 1})])
    client.set(key, payload)
    store = _store(redis_address)
    data, token = store.connector.get(key)
    assert bytes(data) == payload and token is None  # type: ignore[arg-type]
    assert store.connector.version(key) is None
    assert store.get(key) == {'x': 1}


def test_get_and_get_batch_read_each_key_once(redis_address: tuple[str, int]) -> None:
    """``_get``/``_get_batch`` share the versioned read: one GET per key, no extra round trip."""
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    store = _store(redis_address, cache_size=0)
    keys = store.set_batch([b'a', b'b', b'c'], serialize=False)

    def calls() -> dict[str, int]:
        stats = client.info('commandstats')
        return {
            c: int(stats.get(f'cmdstat_{c}', {}).get('calls', 0))
            for c in ('get', 'lrange', 'lindex', 'getrange')
        }

    before = calls()
    entries = store.connector.get_batch(keys)
    assert [bytes(e[0]) for e in entries if e is not None] == [b'a', b'b', b'c']
    assert bytes(store.connector.get(keys[0])[0]) == b'a'  # type: ignore[arg-type]
    after = calls()
    assert after['get'] - before['get'] == 4
    assert all(after[c] == before[c] for c in ('lrange', 'lindex', 'getrange'))


def _check_consistent(
    reader: RedisStore, key: str, values: dict[bytes, bytes], reads: int
) -> dict[bytes, bytes]:
    """Read ``key`` repeatedly; every read must be one whole value, and one token one value."""
    seen: dict[bytes, bytes] = {}
    for _ in range(reads):
        data, token = reader.connector.get(key)
        assert data is not None and isinstance(token, bytes)
        value = bytes(data)
        assert value in values, 'a reader saw a mix of two values'
        assert seen.setdefault(token, value) == value, 'one token paired with two values'
    return seen


def test_reader_sees_whole_values_and_matching_tokens_under_rewrites(
    redis_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer thread alternates two multi-chunk values; a reader never sees a mix."""
    monkeypatch.setattr(redis_wire, '_CHUNK', 4096)
    first, second = os.urandom(200_000), os.urandom(150_000)
    writer, reader = _store(redis_address), _store(redis_address)
    key = writer.set(first, serialize=False)
    stop = threading.Event()
    writes = [0]

    def rewrite() -> None:
        while not stop.is_set():
            writer.set(second if writes[0] % 2 else first, key=key, serialize=False)
            writes[0] += 1

    thread = threading.Thread(target=rewrite)
    thread.start()
    try:
        seen = _check_consistent(reader, key, {first: first, second: second}, reads=300)
    finally:
        stop.set()
        thread.join(30)
    assert writes[0] > 10 and len(seen) > 1
    assert redis.Redis(host=redis_address[0], port=redis_address[1]).type(key) == b'list'


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_reader_consistent_while_another_process_rewrites(
    redis_address: tuple[str, int], method: str
) -> None:
    host, port = redis_address
    first, second = os.urandom(300_000), os.urandom(100_000)
    reader = _store(redis_address)
    key = reader.set(first, serialize=False)
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        pending = [
            pool.apply_async(_overwrite, (host, port, key, second if i % 2 else first, 8192))
            for i in range(40)
        ]
        seen = _check_consistent(reader, key, {first: first, second: second}, reads=200)
        tokens = [p.get(60) for p in pending]
    assert len(set(tokens)) == 40
    assert len(seen) >= 1


def test_lists_with_the_older_head_stay_readable_and_unversioned(
    redis_address: tuple[str, int],
) -> None:
    """Objects written before version tokens (12-byte ``PXSL`` head) still read."""
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    key = f'old-{os.urandom(4).hex()}'
    payload = serialize([1, 2, 3])
    client.rpush(key, struct.pack('<4sQ', b'PXSL', len(payload)), payload[:10], payload[10:])
    store = _store(redis_address)
    assert store.get(key) == [1, 2, 3]
    assert store.connector.version(key) is None
    data, token = store.connector.get(key)
    assert bytes(data) == payload and token is None  # type: ignore[arg-type]
    store.set([4], key=key)  # rewritten in the new layout: versioned from now on
    assert isinstance(store.connector.version(key), bytes)
    assert client.get(key)[:4] == b'PXSS'  # one string: head + payload


def _rewrite_with_inherited_store(store: RedisStore, key: str, queue: Any) -> None:
    """Run in a forked child: use the parent's store object (and its pooled connections)."""
    try:
        store.set(b'from the fork', key=key, serialize=False)
        queue.put(store.connector.version(key))
    except BaseException as e:  # reported to the parent, which fails the test
        queue.put(repr(e))


def test_forked_child_rewrites_through_the_inherited_store(redis_address: tuple[str, int]) -> None:
    store = _store(redis_address)
    key = store.set(b'parent', serialize=False)
    before = store.connector.version(key)  # the parent's pool now holds a connection
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    child = ctx.Process(target=_rewrite_with_inherited_store, args=(store, key, queue))
    child.start()
    token = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0 and isinstance(token, bytes), token
    data, after = store.connector.get(key)
    assert bytes(data) == b'from the fork' and after == token != before  # type: ignore[arg-type]
    assert store.get(key, deserialize=False) == b'from the fork'
