"""Objects past the transport limits: 600 MB through Redis, 2.5 GB through a FileStore.

Redis refuses bulk strings over 512 MB, so the store must split the payload;
Linux writes at most ~2 GiB per ``write``/``writev`` call, so the file store
must resume partial writes. Both round-trips must keep the content hash.
One large object is alive at a time (the original is dropped before reading
back), and each test checks for room first and skips where there is none.
"""

from __future__ import annotations

import gc
import math
import os
import pickle
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

import proxystore as ps
from proxystore.store.file import FileStore
from proxystore.store.redis import RedisStore
from tests.reliability._helpers import RedisServer
from tests.reliability._helpers import patterned_array
from tests.reliability._helpers import sha256

pytestmark = pytest.mark.timeout(300)

GB = 10**9
REDIS_CHUNK = 256 * 1024 * 1024


def _mem_available() -> int:
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover


def _require(*, memory: int, disk_path: Path | None = None, disk: int = 0) -> None:
    """Skip (also in CI) when the machine lacks room: a size, not a missing install.

    Machines of this kind have been seen with under 300 MB of free disk; failing
    there would block every submission for a limit no code can change.
    """
    available = _mem_available()
    if available < memory:
        pytest.skip(f'needs {memory / GB:.1f} GB of free memory, {available / GB:.1f} GB available')
    if disk_path is not None:
        free = shutil.disk_usage(disk_path).free
        if free < disk:
            pytest.skip(f'needs {disk / GB:.1f} GB free on {disk_path}, {free / GB:.1f} GB free')


def test_600mb_through_redis(
    redis_factory: Callable[..., RedisServer], record_property: Any
) -> None:
    size = 600 * 10**6 + 12_345  # over Redis's 512 MB bulk-string limit
    # The array, the server's copy and the receive buffer (the array is dropped first).
    _require(memory=3 * size + GB)
    server = redis_factory(aof=False)
    store = RedisStore(
        f'big-{os.urandom(4).hex()}',
        hostname='127.0.0.1',
        port=server.port,
        cache_size=0,
        timeout=120,
    )
    ps.store.register_store(store)
    array = patterned_array(size, seed=11)
    digest = sha256(array)
    # Each buffer of the payload becomes list elements of at most 256 MiB.
    sizes = [memoryview(part).nbytes for part in store.serialize(array)]
    expected_elements = 1 + sum(math.ceil(n / REDIS_CHUNK) for n in sizes)
    assert max(sizes) > 512 * 2**20 > REDIS_CHUNK

    start = time.perf_counter()
    proxy = store.proxy(array)
    put = time.perf_counter() - start
    key = ps.proxy.get_key(proxy)
    assert key is not None
    payload = int(store.metrics()['set']['bytes'])
    assert payload > size
    del array  # one large object alive at a time
    gc.collect()

    client = redis.Redis(host='127.0.0.1', port=server.port)
    elements = client.llen(key)
    assert elements == expected_elements, (elements, sizes)
    head = client.lindex(key, 0)  # magic, payload length, 16-byte version token
    assert head is not None and len(head) == 28 and head[:4] == b'PXSV'
    client.close()

    start = time.perf_counter()
    back = ps.proxy.extract(pickle.loads(pickle.dumps(proxy)))
    got = time.perf_counter() - start
    assert back.nbytes == size
    assert sha256(back) == digest
    del back
    gc.collect()
    store.evict(key)
    assert not store.exists(key)
    line = (
        f'Redis: {size} byte array ({payload} byte payload) stored as a list of {elements} '
        f'elements; put {put:.1f}s, resolve {got:.1f}s, sha256 identical'
    )
    record_property('600 MB through Redis', line)
    print('\n' + line)


def test_2_5gb_through_file_store(tmp_path: Path, record_property: Any) -> None:
    size = 2_500 * 2**20 + 4_097  # over the ~2 GiB a single writev call moves
    _require(memory=int(1.2 * size) + GB, disk_path=tmp_path, disk=size + GB)
    store = FileStore(f'big-{os.urandom(4).hex()}', store_dir=tmp_path / 'big', cache_size=0)
    array = patterned_array(size, seed=12)
    digest = sha256(array)

    start = time.perf_counter()
    key = store.set(array)
    put = time.perf_counter() - start
    del array  # one large object alive at a time
    gc.collect()
    payload = int(store.metrics()['set']['bytes'])
    assert os.path.getsize(os.path.join(store.store_dir, key)) == payload
    assert [n for n in os.listdir(store.store_dir) if n != key] == []

    start = time.perf_counter()
    back = store.get(key, strict=True)
    got = time.perf_counter() - start
    assert back.nbytes == size
    assert sha256(back) == digest
    del back
    gc.collect()
    store.cleanup()
    assert not os.path.exists(store.store_dir)
    line = (
        f'FileStore: {size} byte array ({payload} byte file); put {put:.1f}s, '
        f'get {got:.1f}s, sha256 identical'
    )
    record_property('2.5 GB through FileStore', line)
    print('\n' + line)
