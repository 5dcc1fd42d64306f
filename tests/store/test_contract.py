"""The contract every store passes: the same suite for each backend."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.exceptions import BatchSizeMismatchError
from proxystore.exceptions import InvalidKeyError
from proxystore.exceptions import KeyNotFoundError
from proxystore.exceptions import NotBytesError
from proxystore.exceptions import ProxyStoreError
from proxystore.exceptions import SerializationError
from proxystore.exceptions import StoreConfigError
from proxystore.proxy import Proxy
from proxystore.proxy import get_key
from proxystore.proxy import is_resolved
from proxystore.store.base import Store

OBJECTS = [
    b'bytes',
    'str',
    12,
    [1, 2, 3],
    {'nested': {'a': [1.5, None]}},
    np.arange(100, dtype=np.int64),
    np.zeros((0,)),
    np.asfortranarray(np.arange(20.0).reshape(4, 5)),
    np.arange(40.0).reshape(5, 8)[::2, 1::3],  # non-contiguous
    np.array([{'a': 1}, 'x', None], dtype=object),  # falls back to ordinary pickling
    np.ones(3_000_000, dtype=np.uint8),  # above the mapped-read threshold
]


@pytest.mark.parametrize(
    'obj', OBJECTS, ids=[f'{i}-{type(o).__name__}' for i, o in enumerate(OBJECTS)]
)
def test_set_get_roundtrip(store: Store, obj: Any) -> None:
    key = store.set(obj)
    assert isinstance(key, str) and key
    assert store.exists(key)
    out = store.get(key)
    assert type(out) is type(obj)
    if isinstance(obj, np.ndarray):
        assert out.dtype == obj.dtype and out.shape == obj.shape
        assert out.tolist() == obj.tolist()
        if obj.dtype != object and obj.size:
            out.flat[0] = 7  # arrays come back writable; the stored copy is unchanged
            assert store.get(key, strict=True).flat[0] == obj.flat[0]
    else:
        assert out == obj


def test_get_missing_returns_default(store: Store) -> None:
    assert store.get('missing') is None
    assert store.get('missing', default='d') == 'd'
    assert not store.exists('missing')


def test_set_with_key_and_overwrite(store: Store) -> None:
    assert store.set('v1', key='fixed') == 'fixed'
    assert store.get('fixed') == 'v1'
    store.set('v2', key='fixed')
    assert store.get('fixed') == 'v2'  # set drops the stale cache entry


def test_evict(store: Store) -> None:
    key = store.set([1])
    store.get(key)
    assert store.is_cached(key)
    store.evict(key)
    assert not store.exists(key)
    assert not store.is_cached(key)
    assert store.get(key) is None
    store.evict(key)  # evicting a missing key is fine


def test_set_does_not_cache_get_does(store: Store) -> None:
    key = store.set({'a': 1})
    assert not store.is_cached(key)
    first = store.get(key)
    assert store.is_cached(key) and store.is_cached(key, strict=True)
    assert store.get(key) is first  # served from the cache
    assert store.metrics()['cache_hits'] == 1


def test_strict_get_sees_overwrites_by_other_clients(shared_store: Store) -> None:
    store = shared_store
    other = type(store).from_config(store.name, store.config())
    key = store.set('old')
    assert store.get(key) == 'old'
    other.set('new', key=key)
    assert store.get(key) == 'old'  # a non-strict get may be stale
    assert store.get(key, strict=True) == 'new'
    assert store.get(key) == 'new'  # strict refreshed the cache


def test_cache_size_zero_disables_cache(store: Store) -> None:
    s = type(store).from_config(store.name + '-nocache', {**store.config(), 'cache_size': 0})
    key = s.set([1])
    s.get(key)
    assert not s.is_cached(key)
    s.cleanup() if s.stores_objects else None


def test_negative_cache_size(store: Store) -> None:
    with pytest.raises(StoreConfigError) as info:
        type(store).from_config('bad', {**store.config(), 'cache_size': -1})
    assert isinstance(info.value, ValueError)


def test_lru_eviction(store: Store) -> None:
    s = type(store).from_config(store.name, {**store.config(), 'cache_size': 2})
    keys = [s.set(i) for i in range(3)]
    for key in keys:
        s.get(key)
    assert [s.is_cached(k) for k in keys] == [False, True, True]


def test_batch_operations(store: Store) -> None:
    objs = [1, 'two', [3], np.ones(4)]
    keys = store.set_batch(objs)
    assert len(keys) == 4 and len(set(keys)) == 4
    out = store.get_batch([*keys, 'missing'], default='d')
    assert out[:3] == [1, 'two', [3]] and np.array_equal(out[3], np.ones(4)) and out[4] == 'd'
    assert store.set_batch(['a', 'b'], keys=['k1', 'k2']) == ['k1', 'k2']
    assert store.get('k2') == 'b'
    with pytest.raises(BatchSizeMismatchError) as info:
        store.set_batch([1, 2], keys=['only-one'])
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize('key', ['', '../escape', 'a/b', '.hidden', 'x\x00y', 5])
def test_invalid_keys(store: Store, key: Any) -> None:
    with pytest.raises(InvalidKeyError):
        store.set('x', key=key)
    if isinstance(key, str):
        with pytest.raises(InvalidKeyError):
            store.get(key)


def test_unpicklable_object(store: Store) -> None:
    with pytest.raises(SerializationError, match='lock'):
        store.set(threading.Lock())
    with pytest.raises(SerializationError):
        store.proxy({'lock': threading.Lock()})


def test_proxy_resolves_lazily(store: Store) -> None:
    data = np.arange(1000)
    p = store.proxy(data)
    assert isinstance(p, Proxy) and not is_resolved(p)
    key = get_key(p)
    assert key is not None and store.exists(key)
    assert np.array_equal(p, data)
    assert is_resolved(p)
    metrics = store.metrics()
    assert metrics['proxy']['count'] == 1 and metrics['resolve']['count'] == 1


def test_proxy_roundtrip_through_pickle(store: Store) -> None:
    p = store.proxy({'a': 1})
    q = pickle.loads(pickle.dumps(p))
    assert not is_resolved(q)
    assert q == {'a': 1}


def test_proxy_evict(store: Store) -> None:
    p = store.proxy([1, 2], evict=True)
    key = get_key(p)
    assert key is not None and store.exists(key)
    assert p == [1, 2]
    assert not store.exists(key)


def test_proxy_of_existing_key(store: Store) -> None:
    key = store.set('value')
    assert store.proxy(key=key) == 'value'
    with pytest.raises(KeyNotFoundError) as info:
        store.proxy(key='missing')
    assert isinstance(info.value, ValueError)
    assert 'missing' in str(info.value) and store.name in str(info.value)


def test_proxy_of_evicted_key_names_store_and_key(store: Store) -> None:
    p = store.proxy([1])
    key = get_key(p)
    assert key is not None
    store.evict(key)
    with pytest.raises(KeyNotFoundError) as info:
        len(p)
    assert key in str(info.value) and repr(store.name) in str(info.value)


def test_proxy_strict_sees_newest(store: Store) -> None:
    key = store.set('old')
    store.get(key)  # cache 'old'
    store.set('new', key=key) if store.stores_objects else type(store).from_config(
        store.name, store.config()
    ).set('new', key=key)
    assert store.proxy(key=key, strict=True) == 'new'


def test_proxy_resolved_skips_fetch(store: Store) -> None:
    data = [1, 2, 3]
    p = store.proxy(data, resolved=True)
    assert is_resolved(p) and ps.proxy.extract(p) is data
    assert store.metrics()['get']['count'] == 0
    q = pickle.loads(pickle.dumps(p))
    assert not is_resolved(q) and q == data


def test_proxy_batch(store: Store) -> None:
    proxies = store.proxy_batch([1, 'a', [2]])
    assert [p == o for p, o in zip(proxies, [1, 'a', [2]])] == [True] * 3
    keys = [get_key(p) for p in proxies]
    again = store.proxy_batch(keys=keys)  # type: ignore[arg-type]
    assert again[1] == 'a'


def test_serialize_false(store: Store) -> None:
    p = store.proxy(b'raw bytes', serialize=False)
    assert p == b'raw bytes' and type(ps.proxy.extract(p)) is bytes
    key = store.set(b'raw bytes', serialize=False)
    assert store.get(key, deserialize=False) == b'raw bytes'


def test_serialize_false_refuses_str_as_v03(store: Store) -> None:
    # v0.3: with serialize=False only bytes are accepted (TypeError).
    if store.stores_objects:
        assert ps.proxy.extract(store.proxy('text', serialize=False)) == 'text'
        return
    for call in (store.proxy, store.set):
        with pytest.raises(NotBytesError, match='needs bytes') as info:
            call('a string', serialize=False)
        assert isinstance(info.value, TypeError) and isinstance(info.value, ProxyStoreError)


def test_serialize_false_values_readable_by_batch_and_key_proxy(store: Store) -> None:
    keys = [store.set(b'one', serialize=False), store.set(b'two', serialize=False)]
    assert store.get_batch(keys, deserialize=False) == [b'one', b'two']
    p = store.proxy(key=keys[1], serialize=False)
    assert p == b'two'
    [q] = store.proxy_batch(keys=keys[:1], serialize=False)
    assert q == b'one'


def test_serialize_false_needs_bytes_or_str(store: Store) -> None:
    if store.stores_objects:
        data = {'a': 1}
        p = store.proxy(data, serialize=False)
        assert ps.proxy.extract(p) is data  # kept as the object itself
    else:
        with pytest.raises(SerializationError, match='serialize=False'):
            store.proxy({'a': 1}, serialize=False)


def test_metrics(store: Store) -> None:
    key = store.set(b'x' * 1000)
    store.get(key)
    store.exists(key)
    store.evict(key)
    m = store.metrics()
    assert m['set']['count'] == 1 and m['set']['bytes'] >= 1000
    assert m['get']['count'] == 1 and m['get']['bytes'] >= 1000
    assert m['exists']['count'] == 1 and m['evict']['count'] == 1
    assert all(m[op]['seconds'] >= 0 for op in ('set', 'get'))
    store.reset_metrics()
    assert store.metrics()['set']['count'] == 0


def test_config_rebuilds_equivalent_store(store: Store) -> None:
    clone = type(store).from_config(store.name, store.config())
    assert clone.config() == store.config()
    if not store.stores_objects:
        key = store.set('shared')
        assert clone.get(key) == 'shared'


def test_threads_share_one_store(store: Store) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(50):
                key = store.set((i, j))
                assert store.get(key) == (i, j)
                store.evict(key)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.metrics()['set']['count'] == 400


def test_gets_share_one_object_unless_copy(store: Store) -> None:
    key = store.set([1, 2])
    first, second = store.get(key), store.get(key)
    assert first is second  # one object per key and process (the cached one)
    private = store.get(key, copy=True)
    private.append(3)
    assert store.get(key) == [1, 2] and store.get(key, copy=True) is not first


def test_copy_proxies_resolve_to_private_objects(store: Store) -> None:
    p = store.proxy([1, 2], copy=True)
    q = pickle.loads(pickle.dumps(p))
    r = pickle.loads(pickle.dumps(p))
    q.append(3)
    assert r == [1, 2] and store.get(ps.proxy.get_key(p)) == [1, 2]
    plain = store.proxy([1, 2])
    assert len(pickle.dumps(p)) <= len(pickle.dumps(plain)) + 2  # one flag more


def test_cache_is_bounded_by_bytes(store_factory: Any) -> None:
    small = store_factory('file', cache_bytes=64 * 1024)
    big_key = small.set(np.ones(100_000))  # 800 kB: larger than the bound
    small.get(big_key)
    assert not small.is_cached(big_key)
    keys = [small.set(np.ones(1_000)) for _ in range(20)]  # 8 kB each
    for key in keys:
        small.get(key)
    cached = [k for k in keys if small.is_cached(k)]
    assert 0 < len(cached) <= 8 and cached == keys[-len(cached) :]
    assert small._cache.nbytes <= 64 * 1024


@pytest.mark.parametrize('keys', ['abc', b'abc'])
def test_batches_refuse_a_single_string_of_keys(store: Store, keys: Any) -> None:
    with pytest.raises(InvalidKeyError, match='single'):
        store.get_batch(keys)
    with pytest.raises(InvalidKeyError, match='single'):
        store.set_batch([1], keys=keys)
    with pytest.raises(InvalidKeyError, match='single'):
        store.proxy_batch(keys=keys)


@pytest.mark.parametrize('payload', [[b'xx'], [], [b'PXS']])
def test_set_refuses_a_payload_that_is_not_serialize_output(store: Store, payload: Any) -> None:
    with pytest.raises(SerializationError, match='payload='):
        store.set(None, payload=payload)
    with pytest.raises(SerializationError, match='payload='):
        store.proxy([1], payload=payload)


def test_unknown_store_option_is_config_error(store_factory: Any) -> None:
    with pytest.raises(StoreConfigError, match="'cache_siz'"):
        store_factory('local', cache_siz=3)


def _overwrite_in_child(store: Store, key: str) -> None:
    store.set('from the child', key=key)


@pytest.mark.parametrize('writer', ['other store object', 'fork', 'spawn'])
def test_is_cached_strict_after_another_client_overwrote(shared_store: Store, writer: str) -> None:
    # v0.3 tracked a per-key version for remote stores: strict checks see another
    # client's overwrite, not only whether the key exists.
    key = shared_store.set('original')
    assert shared_store.get(key) == 'original'
    assert shared_store.is_cached(key, strict=True)
    if writer == 'other store object':
        other = type(shared_store).from_config(shared_store.name, shared_store.config())
        other.set('overwritten', key=key)
        expected = 'overwritten'
    else:
        import multiprocessing

        process = multiprocessing.get_context(writer).Process(
            target=_overwrite_in_child, args=(shared_store, key)
        )
        process.start()
        process.join(60)
        assert process.exitcode == 0
        expected = 'from the child'
    assert shared_store.is_cached(key)  # the local cache still holds the old object
    assert not shared_store.is_cached(key, strict=True)
    assert shared_store.get(key, strict=True) == expected
    assert shared_store.is_cached(key, strict=True)
