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


def _child_writes(name: str, store_dir: str) -> str:
    store = SharedMemoryStore(name, store_dir=store_dir)  # the same store, in another process
    return store.set(np.full(10, 7.0))


def test_objects_outlive_the_process_that_wrote_them(shm: SharedMemoryStore) -> None:
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        key = pool.apply(_child_writes, (shm.name, shm.store_dir))
    # The writer exited; the object is still there.
    assert np.array_equal(shm.get(key), np.full(10, 7.0))
    proxy = pickle.loads(pickle.dumps(shm.proxy(key=key)))
    assert float(np.sum(proxy)) == 70.0


# -- distinct names never share objects (issue 10, item 1) ----------------------


def test_distinct_names_never_share_a_directory() -> None:
    """Before: 'team/a' and 'team_a' both became /dev/shm/proxystore-<uid>-team_a."""
    suffix = os.urandom(4).hex()
    names = [f'team/a-{suffix}', f'team_a-{suffix}', f'team%2Fa-{suffix}', f'team a-{suffix}']
    names += [f'{"x" * 300}{suffix}{i}' for i in range(2)]  # long: cut and hashed
    stores = [SharedMemoryStore(name) for name in names]
    try:
        assert len({s.store_dir for s in stores}) == len(stores)
        assert all(len(os.path.basename(s.store_dir)) < 200 for s in stores)
        keys = [s.set(f'value of {s.name}', key='same-key') for s in stores]
        stores[0].cleanup()
        assert stores[0].get(keys[0], strict=True) is None
        for store in stores[1:]:
            assert store.get('same-key', strict=True) == f'value of {store.name}'
        # The same name finds the same directory again (another process would too).
        assert SharedMemoryStore(names[1]).store_dir == stores[1].store_dir
    finally:
        for store in stores:
            store.cleanup()


@pytest.mark.parametrize('store_dir', ['', b'/dev/shm/x', 5])
def test_bad_store_dir_raises_store_config_error(store_dir: object) -> None:
    from proxystore.exceptions import StoreConfigError

    with pytest.raises(StoreConfigError, match='store_dir'):
        SharedMemoryStore('bad', store_dir=store_dir)  # type: ignore[arg-type]


def test_cleanup_keeps_foreign_files_in_a_given_directory() -> None:
    directory = f'/dev/shm/ps-test-{os.urandom(6).hex()}'
    os.mkdir(directory, 0o700)
    try:
        with open(os.path.join(directory, 'user-file'), 'wb') as f:
            f.write(b'keep me')
        store = SharedMemoryStore('given', store_dir=directory)
        key = store.set(np.ones(10))
        store.cleanup()
        assert os.listdir(directory) == ['user-file'] and key != 'user-file'
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
