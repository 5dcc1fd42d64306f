"""Mapped reads of file and shared-memory stores: no SIGBUS, no descriptor per object.

A page of a mapped file is read when first touched; if the file is shorter by
then, the process dies of SIGBUS (exit -7 / 135) with nothing to catch. So
every fault here runs the reader in a child process (``fork`` and ``spawn``)
and asserts on its exit code and on what it reported.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import proxystore.connectors.buffers as buffers
from proxystore.connectors.buffers import LOCAL_FILE_SYSTEMS
from proxystore.connectors.buffers import REMOTE_FILE_SYSTEMS
from proxystore.connectors.buffers import can_map
from proxystore.connectors.buffers import file_system_type
from proxystore.store.file import FileStore
from proxystore.store.shm import SharedMemoryStore

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='needs Linux /proc'),
]

NOBODY = 65534
OBJECT_BYTES = 4 << 20
TMPFS_MAGIC = 0x01021994
NFS_MAGIC = 0x6969


def is_file_mapping(x: np.ndarray) -> bool:
    """Whether the array's memory lies in a file-backed mapping (``/proc/self/maps``)."""
    address = x.__array_interface__['data'][0]
    with open('/proc/self/maps') as f:
        for line in f:
            fields = line.split()
            start, end = (int(a, 16) for a in fields[0].split('-'))
            if start <= address < end:
                return fields[4] != '0'  # inode of the mapped file, 0 if anonymous
    return False


def on_local_fs(path: str | Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return can_map(fd)
    finally:
        os.close(fd)


def open_fds() -> int:
    return len(os.listdir('/proc/self/fd'))


# -- which file systems are mapped ------------------------------------------------


def test_local_and_remote_tables_are_disjoint() -> None:
    assert not set(LOCAL_FILE_SYSTEMS) & set(REMOTE_FILE_SYSTEMS)
    assert {'tmpfs', 'ext2/ext3/ext4', 'xfs', 'btrfs'} <= set(LOCAL_FILE_SYSTEMS.values())
    assert {'nfs', 'lustre', 'gpfs', 'beegfs', 'cifs', 'fuse'} <= set(REMOTE_FILE_SYSTEMS.values())


@pytest.mark.parametrize(
    ('magic', 'expected'),
    [(m, True) for m in LOCAL_FILE_SYSTEMS]
    + [(m, False) for m in REMOTE_FILE_SYSTEMS]
    + [(0x12345678, False), (None, False)],
    ids=lambda v: hex(v) if isinstance(v, int) and not isinstance(v, bool) else repr(v),
)
def test_can_map_by_statfs_magic(
    monkeypatch: pytest.MonkeyPatch, magic: int | None, expected: bool
) -> None:
    monkeypatch.setattr(buffers, 'file_system_type', lambda fd: magic)
    assert can_map(0) is expected


def test_real_statfs_magics(tmp_path: Path) -> None:
    fd = os.open('/dev/shm', os.O_RDONLY)
    try:
        assert file_system_type(fd) == TMPFS_MAGIC
        assert can_map(fd)
    finally:
        os.close(fd)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        magic = file_system_type(fd)
        assert magic is not None
        assert can_map(fd) is (magic in LOCAL_FILE_SYSTEMS)
    finally:
        os.close(fd)


def test_network_file_system_is_read_not_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore('nfs-like', store_dir=tmp_path, cache_size=0)
    data = np.arange(OBJECT_BYTES // 8, dtype=np.float64)
    key = store.set(data)
    if not on_local_fs(tmp_path):
        pytest.skip('the temporary directory is not on a local file system')
    assert is_file_mapping(store.get(key))  # local: mapped
    monkeypatch.setattr(buffers, 'file_system_type', lambda fd: NFS_MAGIC)
    monkeypatch.setattr(buffers, '_local_devices', {})  # forget what this device was
    out = store.get(key)
    assert not is_file_mapping(out) and np.array_equal(out, data) and out.flags.writeable
    store.evict(key)
    assert np.array_equal(out, data)


def test_mapped_reads_false_reads_into_memory(tmp_path: Path) -> None:
    store = FileStore('copying', store_dir=tmp_path, cache_size=0, mapped_reads=False)
    data = np.arange(OBJECT_BYTES // 8, dtype=np.float64)
    out = store.get(store.set(data))
    assert not is_file_mapping(out) and np.array_equal(out, data)


def test_writable_files_are_not_mapped(tmp_path: Path) -> None:
    """A file someone else can rewrite in place (write bits set) is read, not mapped."""
    store = FileStore('ro', store_dir=tmp_path, cache_size=0)
    key = store.set(np.ones(OBJECT_BYTES // 8))
    if not on_local_fs(tmp_path):
        pytest.skip('the temporary directory is not on a local file system')
    assert is_file_mapping(store.get(key))
    os.chmod(tmp_path / key, 0o600)
    out = store.get(key)
    assert not is_file_mapping(out) and float(out.sum()) == OBJECT_BYTES // 8


# -- a foreign in-place rewrite under a live mapped object ------------------------


@pytest.fixture(params=['disk', 'tmpfs'])
def world_dir(request: pytest.FixtureRequest) -> Iterator[str]:
    """A private directory the unprivileged reader can own (tmp_path's parents are 0700)."""
    parent = '/dev/shm' if request.param == 'tmpfs' else tempfile.gettempdir()
    directory = tempfile.mkdtemp(prefix='ps-mapped-', dir=parent)
    if os.geteuid() == 0:
        os.chown(directory, NOBODY, NOBODY)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _drop_privileges() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def _rewrite_in_place(path: str) -> str:
    """In another process: truncate the file and write a shorter content, like `cp` would."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        try:
            with open(path, 'r+b') as f:
                f.truncate(0)
                f.write(b'foreign' * 10)
            outcome = b'rewritten'
        except OSError as e:
            outcome = type(e).__name__.encode()
        os.write(write, outcome)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, 'rb') as f:
        return f.read().decode()


def _reader(
    kind: str, store_dir: str, unprivileged: bool, options: dict[str, Any], conn: Any
) -> None:
    if unprivileged:
        _drop_privileges()
    cls = SharedMemoryStore if kind == 'tmpfs' else FileStore
    store = cls('reader', store_dir=store_dir, cache_size=0, **options)
    data = np.arange(OBJECT_BYTES // 8, dtype=np.float64)
    key = store.set(data)
    out = store.get(key)
    conn.send(('mapped', is_file_mapping(out)))
    conn.send(('rewrite', _rewrite_in_place(os.path.join(store_dir, key))))
    conn.send(('intact', bool(np.array_equal(out, data))))  # touches every page
    conn.send(('done', None))


def _run_reader(method: str, *args: Any) -> tuple[int | None, dict[str, Any]]:
    ctx = multiprocessing.get_context(method)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_reader, args=(*args, child))
    proc.start()
    child.close()
    report: dict[str, Any] = {}
    with contextlib.suppress(EOFError):
        while True:
            what, value = parent.recv()
            report[what] = value
    proc.join(120)
    return proc.exitcode, report


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_foreign_rewrite_cannot_kill_a_reader_of_a_mapped_object(
    world_dir: str, method: str, record_property: Any
) -> None:
    """Before: the rewrite succeeded and touching the mapped array killed the reader (-7).

    Objects are published read-only, so a process of the same (unprivileged)
    user cannot rewrite one in place without first changing its mode.
    """
    kind = 'tmpfs' if world_dir.startswith('/dev/shm') else 'disk'
    exitcode, report = _run_reader(method, kind, world_dir, True, {})
    assert exitcode == 0, f'reader died with exit code {exitcode}; it reported {report}'
    assert report['mapped'] is True  # the object really was a mapping
    assert report['rewrite'] == 'PermissionError'
    assert report['intact'] is True
    record_property('foreign rewrite', f'{kind}/{method}: {report}')


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_mapped_reads_false_survives_even_a_privileged_rewrite(world_dir: str, method: str) -> None:
    """Root ignores file modes; a store that must survive root rewrites reads into memory."""
    if os.geteuid() != 0:
        pytest.skip('needs a privileged process to rewrite read-only files')
    kind = 'tmpfs' if world_dir.startswith('/dev/shm') else 'disk'
    exitcode, report = _run_reader(method, kind, world_dir, False, {'mapped_reads': False})
    assert exitcode == 0, f'reader died with exit code {exitcode}; it reported {report}'
    assert report == {'mapped': False, 'rewrite': 'rewritten', 'intact': True, 'done': None}


# -- no descriptor per live mapped object ------------------------------------------


def _hold_many(store_dir: str, count: int, size: int, conn: Any) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    store = FileStore('many', store_dir=store_dir, cache_size=0)
    keys = sorted(os.listdir(store_dir))
    fds_before = open_fds()
    held = []
    try:
        for key in keys:
            held.append(store.get(key))
    except Exception as e:
        conn.send({'error': f'{type(e).__name__}: {e}', 'held': len(held)})
        return
    ok = all(a.shape == (size // 8,) and a[0] == a[-1] == int(k) for a, k in zip(held, keys))
    conn.send(
        {
            'held': len(held),
            'mapped': sum(is_file_mapping(a) for a in held),
            'contents ok': ok,
            'extra fds': open_fds() - fds_before,
        },
    )


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_400_live_objects_under_rlimit_nofile_256(
    tmp_path: Path, method: str, record_property: Any
) -> None:
    """Before: every live mapping kept a duplicated descriptor, so EMFILE at ~250."""
    count, size = 400, 1_200_000
    writer = FileStore('many', store_dir=tmp_path)
    for i in range(count):
        writer.set(np.full(size // 8, i, dtype=np.float64), key=f'{i:04d}')
    ctx = multiprocessing.get_context(method)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_hold_many, args=(str(tmp_path), count, size, child))
    proc.start()
    child.close()
    report = parent.recv()
    proc.join(120)
    assert proc.exitcode == 0
    assert report.get('error') is None, report
    assert report['held'] == count and report['contents ok']
    assert report['extra fds'] <= 2, report
    if on_local_fs(tmp_path):
        assert report['mapped'] == count, report
    record_property('rlimit', f'{method}: {report}')
