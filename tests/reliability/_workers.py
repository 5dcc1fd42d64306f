"""Functions run in spawned processes by the reliability tests.

Kept apart from the test modules so a spawned child imports only this module,
the standard library and proxystore (numpy only where a function needs it).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import time
import traceback
from collections import Counter
from typing import Any

# -- file store faults ------------------------------------------------------


def write_big(type_path: str, name: str, config: dict[str, Any], key: str, nbytes: int) -> None:
    """Rebuild the store and write one large array (the parent kills us mid-write)."""
    from proxystore.store.registry import lookup_store
    from tests.reliability._helpers import patterned_array

    store = lookup_store(type_path, name, config)
    array = patterned_array(nbytes, seed=7)
    store.set(array, key=key)


def set_over_file_size_limit(store_dir: str, name: str, limit: int) -> dict[str, Any]:
    """Under RLIMIT_FSIZE (SIGXFSZ ignored), write objects larger than the limit."""
    import resource
    import signal

    from proxystore.store.file import FileStore

    store = FileStore(name, store_dir=store_dir)
    small = os.urandom(100_000)
    before = store.set(small)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    report: dict[str, Any] = {'before': before, 'before_sha': hashlib.sha256(small).hexdigest()}
    too_big = {
        'bytes': os.urandom(2 * limit),
        'out-of-band buffers': [bytearray(os.urandom(limit // 2)) for _ in range(3)],
        'exactly over': os.urandom(limit),  # header and padding push it over the limit
    }
    for label, obj in too_big.items():
        start = time.perf_counter()
        try:
            store.set(obj, key=f'too-big-{len(report)}')
            report[label] = {'raised': None}
        except BaseException as e:
            report[label] = {
                'raised': type(e).__name__,
                'mro': [c.__name__ for c in type(e).__mro__],
                'errno': getattr(e, 'errno', None),
                'message': str(e),
                'seconds': time.perf_counter() - start,
                'listing': sorted(os.listdir(store_dir)),
            }
    report['before_intact'] = store.get(before, strict=True) == small
    after = os.urandom(10_000)
    report['after'] = store.set(after)
    report['after_intact'] = store.get(report['after'], strict=True) == after
    report['listing'] = sorted(os.listdir(store_dir))
    return report


def resolve_in_child(proxy_bytes: bytes) -> Any:
    """Resolve a pickled proxy in a fresh process (errors propagate to the parent)."""
    import proxystore as ps

    proxy = pickle.loads(proxy_bytes)
    return ps.proxy.extract(proxy)


def resolve_with_other_backend(proxy_bytes: bytes, name: str, store_dir: str) -> dict[str, Any]:
    """Register another backend under the proxy's store name, then resolve the proxy."""
    import proxystore as ps
    from proxystore.factory import StoreFactory

    proxy = pickle.loads(proxy_bytes)
    factory = ps.proxy.get_factory(proxy)
    assert isinstance(factory, StoreFactory)
    other = 'file' if factory.store_type.endswith('RedisStore') else 'local'
    kwargs = {'store_dir': store_dir} if other == 'file' else {}
    ps.store.init_store(other, name, **kwargs)
    try:
        ps.proxy.resolve(proxy)
    except Exception as e:
        return {
            'raised': type(e).__name__,
            'mro': [c.__name__ for c in type(e).__mro__],
            'message': str(e),
            'other': other,
        }
    return {'raised': None, 'other': other, 'value': ps.proxy.extract(proxy)}


# -- concurrency ---------------------------------------------------------------

KEYS_PER_WORKER = 24


def _key(prefix: str, wid: int, j: int) -> str:
    return f'{prefix}-w{wid}-k{j}'


def _value(key: str, wid: int, version: int, rng: random.Random) -> dict[str, Any]:
    data: bytes | bytearray = rng.randbytes(rng.randint(1024, 65536))
    if version % 2:
        # bytearray travels as an out-of-band buffer, outside the payload's CRC:
        # only the sha256 check below would catch it torn.
        data = bytearray(data)
    return {
        'key': key,
        'owner': wid,
        'version': version,
        'sha': hashlib.sha256(data).hexdigest(),
        'data': data,
    }


def _intact(value: Any, key: str) -> bool:
    return (
        isinstance(value, dict)
        and value.get('key') == key
        and isinstance(value.get('data'), (bytes, bytearray))
        and hashlib.sha256(value['data']).hexdigest() == value.get('sha')
    )


def run_ops(
    store: Any,
    wid: int,
    nworkers: int,
    prefix: str,
    nops: int,
    seed: int,
) -> dict[str, Any]:
    """Run ``nops`` random set/get/exists/evict operations and check every answer.

    The worker owns its keys: only it writes or evicts them, so it knows their
    expected state (absent, or present with a given version and hash) and
    reports any read that disagrees as *lost* (expected present, got nothing)
    or *stale* (wrong version, or an evicted key that came back). Keys of other
    workers may be absent or hold any version, but must never be *torn* (hash
    mismatch, or a payload that fails to deserialize).

    Counts needed to check the store's metrics are kept too (strict and
    non-strict gets, sets, exists, evicts).
    """
    from proxystore.exceptions import SerializationError

    rng = random.Random(seed)
    keys = [_key(prefix, wid, j) for j in range(KEYS_PER_WORKER)]
    expected: dict[str, tuple[int, str] | None] = dict.fromkeys(keys)
    versions = Counter[str]()
    c = Counter[str]()
    problems: list[str] = []

    def read(key: str, strict: bool) -> Any:
        c['strict_gets' if strict else 'nonstrict_gets'] += 1
        try:
            return store.get(key, strict=strict)
        except SerializationError as e:
            c['torn'] += 1
            problems.append(f'torn (undeserializable) {key}: {e}')
            return None

    def check_own(key: str, value: Any) -> str:
        want = expected[key]
        if value is None:
            return 'ok' if want is None else 'lost'
        if not _intact(value, key):
            return 'torn'
        if want is None:
            return 'stale'  # an evicted key came back
        return 'verified' if (value['version'], value['sha']) == want else 'stale'

    for _ in range(nops):
        r = rng.random()
        c['ops'] += 1
        try:
            if r < 0.35:
                key = rng.choice(keys)
                versions[key] += 1
                value = _value(key, wid, versions[key], rng)
                store.set(value, key=key)
                expected[key] = (value['version'], value['sha'])
                c['sets'] += 1
            elif r < 0.60:
                key = rng.choice(keys)
                strict = rng.random() < 0.5
                outcome = check_own(key, read(key, strict))
                if outcome in ('lost', 'stale') and not strict:
                    # Re-read past the local cache: a store-level loss, or a stale cache entry?
                    outcome = check_own(key, read(key, True))
                    if outcome in ('ok', 'verified'):
                        outcome = 'stale_cache'
                c[outcome] += 1
                if outcome not in ('ok', 'verified'):
                    problems.append(f'{outcome}: own key {key}, expected {expected[key]}')
                c['gets_own'] += 1
            elif r < 0.75:
                other = rng.choice([w for w in range(nworkers) if w != wid] or [wid])
                key = _key(prefix, other, rng.randrange(KEYS_PER_WORKER))
                value = read(key, rng.random() < 0.5)
                if value is not None:
                    if _intact(value, key) and value['owner'] == other:
                        c['verified'] += 1
                    else:
                        c['torn'] += 1
                        problems.append(f'torn: foreign key {key}')
                c['gets_foreign'] += 1
            elif r < 0.85:
                key = rng.choice(keys)
                c['exists'] += 1
                if store.exists(key) != (expected[key] is not None):
                    c['lost' if expected[key] is not None else 'stale'] += 1
                    problems.append(f'exists disagrees for {key}, expected {expected[key]}')
            else:
                key = rng.choice(keys)
                store.evict(key)
                expected[key] = None
                c['evicts'] += 1
        except Exception as e:  # every operation must succeed on a healthy store
            c['errors'] += 1
            problems.append(f'error: {type(e).__name__}: {e}')

    final: dict[str, str | None] = {}
    for key in keys:
        value = store.get(key, strict=True)
        outcome = check_own(key, value)
        c[f'final_{outcome}'] += 1
        if outcome not in ('ok', 'verified'):
            problems.append(f'final {outcome}: {key}')
        want = expected[key]
        final[key] = want[1] if want is not None else None
    for name in ('lost', 'torn', 'stale', 'stale_cache', 'errors', 'verified'):
        c.setdefault(name, 0)
    return {'counts': dict(c), 'problems': problems[:20], 'final': final}


def process_worker(
    wid: int,
    nworkers: int,
    type_path: str,
    name: str,
    config: dict[str, Any],
    prefix: str,
    nops: int,
    barrier: Any,
    queue: Any,
) -> None:
    """Entry point of one spawned worker: rebuild the store from name + config, run, report."""
    try:
        from proxystore.store.registry import lookup_store

        store = lookup_store(type_path, name, config)
        barrier.wait(120)
        start = time.perf_counter()
        result = run_ops(store, wid, nworkers, prefix, nops, seed=1000 + wid)
        result['seconds'] = time.perf_counter() - start
        result['pid'] = os.getpid()
        queue.put((wid, result))
    except BaseException:
        queue.put((wid, {'fatal': traceback.format_exc()}))
