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


def test_permissions_owner_only_and_read_only(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path / 's')
    key = store.set([1])
    assert stat.S_IMODE(os.stat(tmp_path / 's').st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / 's' / key).st_mode) == 0o400
    store = FileStore('g', store_dir=tmp_path / 's', file_mode=0o660)
    key = store.set([1])  # write bits are dropped: objects are never rewritten in place
    assert stat.S_IMODE(os.stat(tmp_path / 's' / key).st_mode) == 0o440
    assert store.get(store.set([2], key=key), strict=True) == [2]  # overwrite by rename


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
    store.connector.store_dir = str(blocker)  # type: ignore[attr-defined]  # a directory that became a file behind our back
    with pytest.raises(StoreIOError) as info:
        store.set('x', key='k1')
    assert isinstance(info.value, OSError)
    assert (
        "'f'" in str(info.value) and "'k1'" in str(info.value) and str(blocker) in str(info.value)
    )


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path)
    key = store.set('kept')
    stale = tmp_path / f'{store.connector._tmp_prefix}dead-writer'
    fresh = tmp_path / f'{store.connector._tmp_prefix}live-writer'
    others = tmp_path / f'{FileStore("other", store_dir=tmp_path).connector._tmp_prefix}dead-writer'
    for path in (stale, fresh, others):
        path.write_bytes(b'partial')
    os.utime(stale, (1, 1))
    os.utime(others, (1, 1))
    assert store.remove_stale_temporaries(age=60) == 1
    assert not stale.exists() and fresh.exists() and store.get(key) == 'kept'
    assert others.exists()  # another store's temporary file is not ours to delete


def test_fsync_option_roundtrip(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path, fsync=True)
    assert store.get(store.set('durable')) == 'durable'
    assert store.config()['fsync'] is True


def test_arrays_come_back_writable(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path)
    out = store.get(store.set(np.arange(10)))
    out += 1
    assert out[0] == 1


# -- cleanup removes only what the store wrote (issue 10, item 1) -------------


def _foreign_files(directory: Path) -> dict[str, bytes]:
    files = {'notes.txt': b'my notes', 'data.bin': os.urandom(3000), '.hidden': b'h'}
    for name, content in files.items():
        (directory / name).write_bytes(content)
    (directory / 'subdir').mkdir()
    (directory / 'subdir' / 'inner').write_bytes(b'inner')
    return files


def test_cleanup_keeps_files_it_did_not_write(tmp_path: Path) -> None:
    """Before: cleanup() ran rmtree(store_dir), deleting the user's files."""
    directory = tmp_path / 'shared'
    directory.mkdir()
    files = _foreign_files(directory)
    store = FileStore('mine', store_dir=directory)
    other = FileStore('theirs', store_dir=directory)
    mine = [store.set(np.arange(i + 1)) for i in range(3)] + [store.set(b'raw', serialize=False)]
    mine.append(store.set(np.zeros(1 << 18)))  # 2 MiB: a mapped read
    theirs = other.set('not yours')
    (directory / f'{store.connector._tmp_prefix}killed-writer').write_bytes(b'partial')
    (directory / f'{other.connector._tmp_prefix}killed-writer').write_bytes(b'partial')
    store.cleanup()
    assert all(not (directory / key).exists() for key in mine)
    for name, content in files.items():
        assert (directory / name).read_bytes() == content
    assert (directory / 'subdir' / 'inner').read_bytes() == b'inner'
    assert other.get(theirs) == 'not yours'
    assert (directory / f'{other.connector._tmp_prefix}killed-writer').exists()
    assert not (directory / f'{store.connector._tmp_prefix}killed-writer').exists()
    assert directory.is_dir()  # the store did not create it


def test_cleanup_in_another_process_removes_objects_of_the_same_store(tmp_path: Path) -> None:
    import multiprocessing

    store = FileStore('shared-name', store_dir=tmp_path)
    (tmp_path / 'keep.txt').write_text('keep')
    keys = [store.set(i) for i in range(3)]
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        pool.apply(_cleanup_in_child, (str(tmp_path),))
    assert all(store.get(k, strict=True) is None for k in keys)
    assert (tmp_path / 'keep.txt').read_text() == 'keep'


def _cleanup_in_child(store_dir: str) -> None:
    FileStore('shared-name', store_dir=store_dir).cleanup()


def test_cleanup_of_current_directory_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: store_dir='' became the working directory and cleanup() wiped it."""
    monkeypatch.chdir(tmp_path)
    files = _foreign_files(tmp_path)
    store = FileStore('here', store_dir='.')
    key = store.set([1, 2])
    store.cleanup()
    assert not (tmp_path / key).exists()
    assert all((tmp_path / name).read_bytes() == content for name, content in files.items())
    assert os.getcwd() == str(tmp_path)


def test_directory_removed_only_if_created_and_empty(tmp_path: Path) -> None:
    made = FileStore('a', store_dir=tmp_path / 'made')
    made.set(1)
    made.cleanup()
    assert not (tmp_path / 'made').exists()
    made.set(2)  # made again, so removed again
    made.cleanup()
    assert not (tmp_path / 'made').exists()

    made = FileStore('a', store_dir=tmp_path / 'made')
    (tmp_path / 'made' / 'user-file').write_text('x')
    made.set(1)
    made.cleanup()
    assert (tmp_path / 'made' / 'user-file').exists()  # not empty: kept

    (tmp_path / 'existing').mkdir()
    found = FileStore('a', store_dir=tmp_path / 'existing')
    found.set(1)
    found.cleanup()
    assert (tmp_path / 'existing').is_dir() and not os.listdir(tmp_path / 'existing')


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('HOME', str(tmp_path))
    store = FileStore('home', store_dir='~/objects')
    assert store.store_dir == str(tmp_path / 'objects')


# -- constructor arguments (issue 10, item 8) -----------------------------------


@pytest.mark.parametrize(
    ('kwargs', 'argument'),
    [
        ({'store_dir': None}, 'store_dir'),
        ({'store_dir': ''}, 'store_dir'),
        ({'store_dir': b'/tmp/x'}, 'store_dir'),
        ({'store_dir': 5}, 'store_dir'),
        ({'file_mode': '0600'}, 'file_mode'),
        ({'file_mode': 0o1777}, 'file_mode'),
        ({'file_mode': -1}, 'file_mode'),
        ({'file_mode': 0o200}, 'file_mode'),
        ({'file_mode': True}, 'file_mode'),
        ({'file_mode': 6.0}, 'file_mode'),
        ({'fsync': 'yes'}, 'fsync'),
        ({'mapped_reads': 1}, 'mapped_reads'),
        ({'cache_size': -1}, 'cache_size'),
    ],
    ids=repr,
)
def test_bad_arguments_raise_store_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object], argument: str
) -> None:
    monkeypatch.chdir(tmp_path)
    args: dict[str, object] = {'store_dir': tmp_path / 'store', **kwargs}
    with pytest.raises(StoreConfigError, match=argument):
        FileStore('f', **args)  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == []  # nothing created on the way


def test_good_arguments_round_trip_through_config(tmp_path: Path) -> None:
    store = FileStore('f', store_dir=tmp_path, file_mode=0o440, fsync=True, mapped_reads=False)
    rebuilt = FileStore.from_config('f', store.config())
    assert rebuilt.config() == store.config()
    assert store.config()['mapped_reads'] is False


# -- per-key versions ---------------------------------------------------------------


def _overwrite_in_child(store_dir: str, key: str) -> None:
    FileStore('writer', store_dir=store_dir).set('new value', key=key)


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_version_changes_when_another_process_overwrites(tmp_path: Path, method: str) -> None:
    import multiprocessing

    store = FileStore('v', store_dir=tmp_path)
    key = store.set('old value')
    data, token = store.connector.get(key)
    assert data is not None and token is not None
    assert store.connector.version(key) == token  # unchanged key: equal tokens
    assert store.connector.get(key)[1] == token
    proc = multiprocessing.get_context(method).Process(
        target=_overwrite_in_child, args=(str(tmp_path), key)
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert store.connector.version(key) != token
    assert store.connector.get(key)[1] == store.connector.version(key)


def test_version_changes_on_every_rewrite_even_with_equal_stat(tmp_path: Path) -> None:
    """Same size, same second, maybe the same inode: the write id still differs."""
    store = FileStore('v', store_dir=tmp_path)
    other = FileStore('v2', store_dir=tmp_path)
    key = store.set(b'x' * 100)
    seen = {store.connector.version(key)}
    for writer in (other, store, other, store):
        writer.set(b'x' * 100, key=key)
        seen.add(store.connector.version(key))
    assert len(seen) == 5
    assert store.connector.version('missing') is None
    assert store.connector.get('missing') is None


def _read_in_child(name: str, store_dir: str, key: str) -> object:
    return FileStore(name, store_dir=store_dir).get(key)


def test_directory_made_again_by_another_process_is_removed(tmp_path: Path) -> None:
    """A worker rebuilding the store after cleanup() makes the directory; the owner removes it."""
    import multiprocessing

    directory = tmp_path / 'store'
    store = FileStore('owner', store_dir=directory)
    key = store.set('x')
    store.cleanup()
    assert not directory.exists()
    with multiprocessing.get_context('spawn').Pool(1) as pool:
        assert pool.apply(_read_in_child, ('owner', str(directory), key)) is None
    assert directory.is_dir()  # the worker's store made it again
    FileStore('other-name', store_dir=directory).cleanup()
    assert directory.is_dir()  # not made by that store
    store.cleanup()
    assert not directory.exists()
