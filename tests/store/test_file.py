"""FileStore specifics: atomic files, permissions, layout and errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from proxystore.exceptions import InvalidKeyError
from proxystore.exceptions import StoreConfigError
from proxystore.exceptions import StoreIOError
from proxystore.store.file import FileStore


def test_creates_dir_and_cleanup_removes_it(tmp_path: Path) -> None:
    d = tmp_path / 'a' / 'b'
    store = FileStore('f', store_dir=d)
    assert d.is_dir()
    store.set('x')
    store.cleanup()
    assert not d.exists()


def test_permissions_owner_only(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path / 's')
    key = store.set([1])
    assert stat.S_IMODE(os.stat(tmp_path / 's').st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / 's' / key).st_mode) == 0o600


def test_one_file_per_key_no_temp_left(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path)
    keys = {store.set(np.ones(1000)) for _ in range(5)}
    assert set(os.listdir(tmp_path)) == keys


def test_store_dir_not_a_directory(tmp_path: Path) -> None:
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(StoreConfigError, match='store_dir'):
        FileStore('f', store_dir=blocker / 'sub')
    with pytest.raises(StoreConfigError):
        FileStore('f', store_dir=blocker)


def test_key_too_long_for_a_file_name(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path)
    with pytest.raises(InvalidKeyError, match='bytes'):
        store.set('x', key='k' * 300)


def test_store_usable_after_cleanup(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path / 's')
    old = store.set('old')
    store.cleanup()
    assert store.get(old) is None
    assert store.get(store.set('x')) == 'x'  # the directory is made again


def test_io_error_names_store_key_and_dir(tmp_path: Path) -> None:
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    store = FileStore('f', store_dir=tmp_path / 's')
    store.store_dir = str(blocker)  # a directory that became a file behind our back
    with pytest.raises(StoreIOError) as info:
        store.set('x', key='k1')
    assert isinstance(info.value, OSError)
    assert (
        "'f'" in str(info.value) and "'k1'" in str(info.value) and str(blocker) in str(info.value)
    )


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path)
    key = store.set('kept')
    stale = tmp_path / '.tmp-dead-writer'
    fresh = tmp_path / '.tmp-live-writer'
    stale.write_bytes(b'partial')
    fresh.write_bytes(b'partial')
    os.utime(stale, (1, 1))
    assert store.remove_stale_temporaries(age=60) == 1
    assert not stale.exists() and fresh.exists() and store.get(key) == 'kept'


def test_fsync_option_roundtrip(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path, fsync=True)
    assert store.get(store.set('durable')) == 'durable'
    assert store.config()['fsync'] is True


def test_arrays_come_back_writable(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path)
    out = store.get(store.set(np.arange(10)))
    out += 1
    assert out[0] == 1
