"""File and shared-memory store faults: writer killed mid-write, full disks, dead proxies."""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.connectors.file import FileConnector
from proxystore.exceptions import KeyNotFoundError
from proxystore.exceptions import StoreFullError
from proxystore.exceptions import StoreIOError
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.shm import SharedMemoryStore
from proxystore.utils import class_path
from tests.reliability import _workers
from tests.reliability._helpers import content_hash

pytestmark = pytest.mark.timeout(120)

TMP_PREFIX = '.tmp-'
BIG = 384 << 20


def _spawn() -> Any:
    return multiprocessing.get_context('spawn')


@pytest.fixture(params=['file', 'shm'])
def file_like_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FileStore]:
    name = f'{request.param}-kill-{os.urandom(4).hex()}'
    store: FileStore
    if request.param == 'file':
        store = FileStore(name, store_dir=tmp_path / 'store')
    else:
        store = SharedMemoryStore(name)
    yield store
    store.cleanup()


def test_writer_killed_mid_write_leaves_no_partial_object(
    file_like_store: FileStore, record_property: Any
) -> None:
    store = file_like_store
    key = 'big-object'
    directory = store.store_dir
    reader = FileStore(f'{store.name}-reader', store_dir=directory, cache_size=0)
    seen: list[str] = []
    reads = {'count': 0}
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            try:
                value = reader.get(key, strict=True)
            except Exception as e:
                seen.append(f'reader error {type(e).__name__}: {e}')
                continue
            reads['count'] += 1
            if value is not None:
                seen.append(f'reader saw an object of {getattr(value, "nbytes", "?")} bytes')

    thread = threading.Thread(target=read_loop)
    thread.start()
    proc = _spawn().Process(
        target=_workers.write_big,
        args=(class_path(type(store)), store.name, store.config(), key, BIG),
    )
    start = time.perf_counter()
    proc.start()
    temp: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.is_alive():
            names = os.listdir(directory)
            published = [n for n in names if not n.startswith(TMP_PREFIX)]
            assert published == [], f'an object was published before the write finished: {names}'
            temp = [n for n in names if n.startswith(TMP_PREFIX)]
            if temp:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(10)
        stop.set()
        thread.join(10)
    assert temp, f'never saw the temporary file (writer exit code {proc.exitcode})'
    assert proc.exitcode == -signal.SIGKILL
    killed_after = time.perf_counter() - start

    names = os.listdir(directory)
    leftovers = [n for n in names if n.startswith(TMP_PREFIX)]
    sizes = [os.path.getsize(os.path.join(directory, n)) for n in leftovers]
    assert [n for n in names if not n.startswith(TMP_PREFIX)] == [], names
    assert leftovers, 'the killed writer left no temporary file'
    assert all(size < BIG for size in sizes), f'temporary file was complete: {sizes}'
    assert seen == [], seen[:5]
    assert store.get(key) is None
    assert not store.exists(key)
    assert reader.get(key, strict=True) is None

    # The store is still fully usable next to the debris.
    array = np.arange(1000)
    k = store.set(array)
    assert np.array_equal(store.get(k, strict=True), array)
    store.cleanup()
    assert not os.path.exists(directory), 'cleanup() left the directory (and temp files) behind'
    line = (
        f'{type(store).__name__}: writer SIGKILLed {killed_after:.2f}s after start with '
        f'{sizes} of {BIG} bytes written; {reads["count"]} concurrent reads all returned None; '
        f'leftover {leftovers}; cleanup() removed them'
    )
    record_property('kill mid-write', line)
    print('\n' + line)


def _statvfs_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def test_full_tmpfs_raises_store_full_and_leaves_nothing(
    small_tmpfs: Path, record_property: Any
) -> None:
    store = FileStore(f'full-{os.urandom(4).hex()}', store_dir=small_tmpfs / 'store')
    earlier = {store.set(os.urandom(200_000)): None for _ in range(3)}
    for k in earlier:
        earlier[k] = content_hash(store.get(k, strict=True))
    free_before = _statvfs_free(small_tmpfs)
    outcomes = []
    for label, obj in [
        ('bytes of 3 MiB', os.urandom(3 << 20)),
        ('array of 3 MiB', np.frombuffer(os.urandom(3 << 20), np.uint8)),
        ('just over the free space', os.urandom(free_before + 4096)),
    ]:
        start = time.perf_counter()
        with pytest.raises(StoreFullError) as info:
            store.set(obj, key='too-big')
        elapsed = time.perf_counter() - start
        e = info.value
        assert isinstance(e, OSError) and isinstance(e, StoreIOError)
        assert e.errno == errno.ENOSPC
        assert store.name in str(e) and 'too-big' in str(e)
        assert sorted(os.listdir(store.store_dir)) == sorted(earlier), 'partial data left behind'
        assert _statvfs_free(small_tmpfs) == free_before, 'space of the failed write not freed'
        outcomes.append(f'{label}: {type(e).__name__} errno={e.errno} after {elapsed:.3f}s: {e}')
    for k, digest in earlier.items():
        assert content_hash(store.get(k, strict=True)) == digest
    # After freeing space the same store writes again.
    for k in list(earlier):
        store.evict(k)
    big = os.urandom(1 << 20)
    k = store.set(big)
    assert store.get(k, strict=True) == big
    store.cleanup()
    record_property('full tmpfs', '\n'.join(outcomes))
    print('\n' + '\n'.join(outcomes))


def test_file_size_limit_raises_store_full(tmp_path: Path, record_property: Any) -> None:
    """RLIMIT_FSIZE (EFBIG) in a child: StoreFullError, no partial file, reads still work."""
    store_dir = tmp_path / 'store'
    name = f'fsize-{os.urandom(4).hex()}'
    limit = 1 << 20
    with _spawn().Pool(1) as pool:
        report = pool.apply_async(
            _workers.set_over_file_size_limit, (str(store_dir), name, limit)
        ).get(timeout=60)
    lines = []
    for label in ('bytes', 'out-of-band buffers', 'exactly over'):
        outcome = report[label]
        assert outcome['raised'] == 'StoreFullError', outcome
        assert 'OSError' in outcome['mro'] and 'StoreIOError' in outcome['mro']
        assert outcome['errno'] == errno.EFBIG
        assert name in outcome['message']
        assert outcome['listing'] == [report['before']], outcome['listing']
        lines.append(
            f'{label}: {outcome["raised"]} errno={outcome["errno"]} after '
            f'{outcome["seconds"]:.3f}s: {outcome["message"]}',
        )
    assert report['before_intact']
    assert report['after_intact']
    assert report['listing'] == sorted([report['before'], report['after']])
    parent = FileStore(name, store_dir=store_dir)
    assert parent.get(report['before'], strict=True) is not None
    parent.cleanup()
    record_property('RLIMIT_FSIZE', '\n'.join(lines))
    print('\n' + '\n'.join(lines))


# -- proxies whose target is gone --------------------------------------------


def _assert_names_store_and_key(e: KeyNotFoundError, store: Store, key: str) -> None:
    assert e.store == store.name and e.key == key
    assert repr(store.name) in str(e) and repr(key) in str(e), str(e)


def test_proxy_after_evict_raises_key_not_found(shared_store: Store) -> None:
    proxy = shared_store.proxy({'payload': list(range(100))})
    key = ps.proxy.get_key(proxy)
    assert key is not None
    data = pickle.dumps(proxy)
    shared_store.evict(key)
    with pytest.raises(KeyNotFoundError) as info:
        ps.proxy.resolve(proxy)
    _assert_names_store_and_key(info.value, shared_store, key)
    with pytest.raises(KeyNotFoundError) as info:
        ps.proxy.resolve(pickle.loads(data))
    _assert_names_store_and_key(info.value, shared_store, key)
    # In another process the error crosses the process boundary intact.
    with _spawn().Pool(1) as pool:
        with pytest.raises(KeyNotFoundError) as info:
            pool.apply_async(_workers.resolve_in_child, (data,)).get(timeout=60)
    _assert_names_store_and_key(info.value, shared_store, key)


def test_evict_on_resolve_proxy_resolves_once(shared_store: Store) -> None:
    proxy = shared_store.proxy([1, 2, 3], evict=True)
    key = ps.proxy.get_key(proxy)
    assert key is not None
    data = pickle.dumps(proxy)
    with _spawn().Pool(1) as pool:
        assert pool.apply_async(_workers.resolve_in_child, (data,)).get(timeout=60) == [1, 2, 3]
    assert not shared_store.exists(key)
    with pytest.raises(KeyNotFoundError) as info:
        ps.proxy.resolve(pickle.loads(data))
    _assert_names_store_and_key(info.value, shared_store, key)


def test_proxy_after_cleanup(shared_store: Store) -> None:
    """File and shm stores delete their data on cleanup(); Redis keeps it (documented)."""
    proxy = shared_store.proxy({'x': 1})
    key = ps.proxy.get_key(proxy)
    assert key is not None
    data = pickle.dumps(proxy)
    shared_store.cleanup()
    if isinstance(shared_store.connector, FileConnector):  # FileStore, shm, composed
        with pytest.raises(KeyNotFoundError) as info:
            ps.proxy.resolve(proxy)
        _assert_names_store_and_key(info.value, shared_store, key)
        with _spawn().Pool(1) as pool:
            with pytest.raises(KeyNotFoundError) as info:
                pool.apply_async(_workers.resolve_in_child, (data,)).get(timeout=60)
        _assert_names_store_and_key(info.value, shared_store, key)
    else:
        assert ps.proxy.extract(proxy) == {'x': 1}
        shared_store.evict(key)


def test_proxy_in_process_where_name_is_another_backend(
    shared_store: Store, tmp_path: Path
) -> None:
    # Identity is name *and* configuration: the proxy reads from its own store,
    # never from the namesake this process registered.
    proxy = shared_store.proxy([4, 5, 6])
    with _spawn().Pool(1) as pool:
        result = pool.apply_async(
            _workers.resolve_with_other_backend,
            (pickle.dumps(proxy), shared_store.name, str(tmp_path / 'other')),
        ).get(timeout=60)
    assert result['raised'] is None and result['value'] == [4, 5, 6], result
    # The same, in this process.
    ps.store.unregister_store(shared_store.name)
    other = ps.store.init_store('local', shared_store.name)
    try:
        assert ps.proxy.extract(pickle.loads(pickle.dumps(proxy))) == [4, 5, 6]
        assert ps.store.get_store(shared_store.name) is other
    finally:
        ps.store.unregister_store(other.name)
