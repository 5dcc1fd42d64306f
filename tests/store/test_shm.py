"""SharedMemoryStore specifics: memory-mapped, copy-on-write reads and segment lifetime."""

from __future__ import annotations

import multiprocessing
import os
import pickle

import numpy as np
import pytest

import proxystore as ps
from proxystore.store import STORES
from proxystore.store.shm import SharedMemoryStore


@pytest.fixture
def shm() -> SharedMemoryStore:
    store = SharedMemoryStore(f'shm-test-{os.urandom(4).hex()}')
    yield store
    store.cleanup()


def test_default_dir_is_in_dev_shm(shm: SharedMemoryStore) -> None:
    assert shm.store_dir.startswith('/dev/shm/proxystore-')
    assert STORES.SHM.load() is SharedMemoryStore
    assert ps.store.init_store('shm', name='via-registry').store_dir.startswith('/dev/shm/')
    ps.store.get_store('via-registry').cleanup()  # type: ignore[union-attr]


def test_reads_map_the_stored_pages(shm: SharedMemoryStore) -> None:
    data = np.arange(1 << 20, dtype=np.float64)
    key = shm.set(data)
    out = shm.get(key)
    assert np.array_equal(out, data)
    assert out.flags.writeable
    out[:] = -1  # copy-on-write: the stored object is unchanged
    assert np.array_equal(shm.get(key, strict=True), data)


def test_evict_and_cleanup_release_segments(shm: SharedMemoryStore) -> None:
    key = shm.set(np.ones(1000))
    mapped = shm.get(key)
    shm.evict(key)
    assert not os.path.exists(os.path.join(shm.store_dir, key))
    assert mapped.sum() == 1000  # a live mapping survives the unlink
    shm.set(b'x')
    shm.cleanup()
    assert not os.path.exists(shm.store_dir)


def _child_writes(store_dir: str) -> str:
    store = SharedMemoryStore('child-writer', store_dir=store_dir)
    return store.set(np.full(10, 7.0))


def test_objects_outlive_the_process_that_wrote_them(shm: SharedMemoryStore) -> None:
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        key = pool.apply(_child_writes, (shm.store_dir,))
    # The writer exited; the object is still there.
    assert np.array_equal(shm.get(key), np.full(10, 7.0))
    proxy = pickle.loads(pickle.dumps(shm.proxy(key=key)))
    assert float(np.sum(proxy)) == 70.0
