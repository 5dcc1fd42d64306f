"""The node-local tier (``proxystore/connectors/node.py``) over a real redis-server.

Readers are real processes started with ``fork`` (inheriting the connector,
then ``after_fork()``) and ``spawn`` (rebuilding it from ``config()``). The
inner connector counts its fetches in Redis, so fetches by every process on
the node are counted.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from proxystore.connectors.node import NodeConnector
from proxystore.connectors.protocol import Connector
from proxystore.connectors.redis import RedisConnector
from proxystore.exceptions import StoreConfigError
from tests.connectors import _workers
from tests.connectors._instrumented import InstrumentedConnector
from tests.reliability.conftest import small_tmpfs  # noqa: F401 - a real 2 MiB tmpfs

MiB = 1 << 20
START_METHODS = ['fork', 'spawn']


@pytest.fixture
def shm_dir() -> Iterator[str]:
    """A private directory in /dev/shm (the tier's real home), removed afterwards."""
    if not os.path.isdir('/dev/shm'):
        pytest.skip('no /dev/shm')
    path = f'/dev/shm/proxystore-test-{uuid.uuid4().hex}'
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Setup:
    """One test's inner store: the real RedisConnector, private keys, a fetch counter.

    ``remote`` writes the same keys as another client (another node) would:
    not through the tier, and not counted.
    """

    def __init__(self, host: str, port: int, directory: str) -> None:
        self.host, self.port, self.directory = host, port, directory
        self.tag = uuid.uuid4().hex
        self.count_key = f'{self.tag}:fetches'
        self.gate_key = f'{self.tag}:gate'
        self.client = redis.Redis(host=host, port=port)
        self.remote = self.inner(count_key=f'{self.tag}:remote-fetches')

    def inner(self, *, gate: bool = False, count_key: str | None = None, db: int = 0) -> Connector:
        redis_config = RedisConnector(self.host, self.port, db=db).config()
        return InstrumentedConnector(
            'proxystore.connectors.redis.RedisConnector',
            redis_config,
            self.host,
            self.port,
            f'{self.tag}:',
            count_key or self.count_key,
            self.gate_key if gate else None,
        )

    def node(self, *, gate: bool = False, **options: Any) -> NodeConnector:
        """The tier over this inner store; publishing on the first read unless told otherwise."""
        options.setdefault('directory', self.directory)
        options.setdefault('min_readers', 1)
        return NodeConnector(self.inner(gate=gate), **options)

    def fetches(self) -> int:
        return int(self.client.get(self.count_key) or 0)


@pytest.fixture
def setup(redis_address: tuple[str, int], shm_dir: str) -> Iterator[Setup]:
    s = Setup(*redis_address, shm_dir)
    yield s
    s.client.close()


def copies(node: NodeConnector) -> dict[str, int]:
    """The node copies on disk: file name -> size."""
    names = os.listdir(node.directory)
    return {
        n: os.path.getsize(os.path.join(node.directory, n))
        for n in names
        if len(n) == 40 and not n.startswith('.')
    }


def digest(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def run_readers(
    method: str, node: NodeConnector, key: str, n: int, *, barrier: bool = True
) -> list[tuple[int, str | None]]:
    """Start ``n`` reader processes at once and return their (pid, digest) reports."""
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    gate = ctx.Barrier(n) if barrier else None
    arg: Any = node if method == 'fork' else node.config()
    procs = [
        ctx.Process(target=_workers.read, args=(arg, key, gate, queue), daemon=True)
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return reports


# -- coordination -------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds (a hang guard, not a timing assertion)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'gave up waiting for {what}'
        time.sleep(0.01)


def want_count(node: NodeConnector, key: str) -> int:
    try:
        return os.path.getsize(_copy_path(node, key) + '.want')
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize('min_readers', [1, 2])
@pytest.mark.parametrize('method', START_METHODS)
def test_eight_concurrent_first_readers_fetch_once(
    setup: Setup, method: str, min_readers: int
) -> None:
    # The first fetch is held until the 7 others wait for it, so "concurrent"
    # does not depend on the scheduler.
    node = setup.node(gate=True, min_readers=min_readers)
    payload = os.urandom(4 * MiB)
    node.put('big', [payload])
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    arg: Any = node if method == 'fork' else node.config()
    procs = [
        ctx.Process(target=_workers.read, args=(arg, 'big', None, queue), daemon=True)
        for _ in range(8)
    ]
    for p in procs:
        p.start()
    assert setup.client.blpop([setup.gate_key + ':entered'], timeout=60) is not None
    wait_for(lambda: want_count(node, 'big') == 7, '7 readers waiting for the first fetch')
    setup.client.rpush(setup.gate_key, 'go')
    reports = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert [d for _, d in reports] == [digest(payload)] * 8
    assert setup.fetches() == 1
    [size] = copies(node).values()
    assert 4 * MiB < size <= 4 * MiB + 1088  # payload and header
    # Later readers in this process map the copy: still one fetch for the node.
    entry = node.get('big')
    assert entry is not None and digest(entry[0]) == digest(payload)
    assert setup.fetches() == 1


@pytest.mark.parametrize('method', START_METHODS)
def test_eight_readers_at_once_without_a_gate(setup: Setup, method: str) -> None:
    # Unheld, on a loaded machine a reader may come after the first fetch has
    # ended: it then fetches again and publishes (the second read of a version).
    node = setup.node(min_readers=2)
    payload = os.urandom(4 * MiB)
    node.put('big', [payload])
    reports = run_readers(method, node, 'big', 8)
    assert [d for _, d in reports] == [digest(payload)] * 8
    assert setup.fetches() <= 2
    assert len(copies(node)) == 1


@pytest.mark.parametrize('method', START_METHODS)
def test_one_reader_per_node_writes_no_copy_the_second_publishes(setup: Setup, method: str) -> None:
    node = setup.node(min_readers=2)
    payload = os.urandom(2 * MiB)
    node.put('k', [payload])
    for readers, fetches, published in ((1, 1, 0), (1, 2, 1), (3, 2, 1)):
        reports = run_readers(method, node, 'k', readers, barrier=False)
        assert [d for _, d in reports] == [digest(payload)] * readers
        assert setup.fetches() == fetches
        assert len(copies(node)) == published
    old_copy = os.stat(_copy_path(node, 'k')).st_ino
    setup.remote.put('k', [payload])  # a new version (same bytes) elsewhere starts over
    run_readers(method, node, 'k', 1)
    assert setup.fetches() == 3
    assert not os.path.exists(_copy_path(node, 'k'))  # the stale copy is removed, not served
    run_readers(method, node, 'k', 1)
    assert setup.fetches() == 4
    assert os.stat(_copy_path(node, 'k')).st_ino != old_copy
    run_readers(method, node, 'k', 2)
    assert setup.fetches() == 4


@pytest.mark.parametrize('method', START_METHODS)
def test_killed_first_reader_does_not_block_others(setup: Setup, method: str) -> None:
    # lock_timeout is far longer than the test's wait: the others must get the
    # lock because the kernel released it, not because they gave up waiting.
    node = setup.node(gate=True, lock_timeout=3600)  # publishes on the first read
    payload = os.urandom(2 * MiB)
    node.put('big', [payload])
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    arg: Any = node if method == 'fork' else node.config()
    first = ctx.Process(target=_workers.read, args=(arg, 'big', None, queue), daemon=True)
    first.start()
    entered = setup.client.blpop([setup.gate_key + ':entered'], timeout=60)
    assert entered is not None, 'the first reader never started its fetch'
    assert int(entered[1]) == first.pid  # it holds the key's lock, blocked inside the fetch
    os.kill(first.pid, signal.SIGKILL)
    first.join(30)
    assert first.exitcode == -signal.SIGKILL
    assert setup.fetches() == 0
    reports = run_readers(method, node, 'big', 3)
    assert [d for _, d in reports] == [digest(payload)] * 3
    assert setup.fetches() == 1
    assert len(copies(node)) == 1


# -- correctness ----------------------------------------------------------------------------


@pytest.mark.parametrize('method', START_METHODS)
def test_overwrite_elsewhere_is_never_served_stale(setup: Setup, method: str) -> None:
    node = setup.node()
    old, new = os.urandom(MiB), os.urandom(MiB)  # same size: only the version tells them apart
    node.put('k', [old])
    entry = node.get('k')
    assert entry is not None and bytes(entry[0]) == old
    assert len(copies(node)) == 1
    setup.remote.put('k', [new])  # another client, on another node: this node's copy is stale
    entry = node.get('k')
    assert entry is not None and bytes(entry[0]) == new
    assert [d for _, d in run_readers(method, node, 'k', 2)] == [digest(new)] * 2
    assert setup.fetches() == 2  # old once, new once


def test_delete_elsewhere_is_a_miss(setup: Setup) -> None:
    node = setup.node()
    node.put('k', [os.urandom(MiB)])
    assert node.get('k') is not None
    setup.remote.evict('k')
    assert node.get('k') is None
    assert not node.exists('k')


def test_evict_and_put_remove_the_node_copy(setup: Setup) -> None:
    node = setup.node()
    node.put('a', [os.urandom(MiB)])
    node.put_batch([('b', [os.urandom(MiB)]), ('c', [os.urandom(MiB)])])
    for key in 'abc':
        assert node.get(key) is not None
    assert len(copies(node)) == 3
    node.evict('a')
    assert len(copies(node)) == 2
    assert node.get('a') is None and not setup.remote.exists('a')
    node.put('b', [b'x' * MiB])
    node.put_batch([('c', [b'y' * MiB])])
    assert copies(node) == {}
    entry = node.get('b')
    assert entry is not None and bytes(entry[0]) == b'x' * MiB


def test_byte_bound_removes_least_recently_read(setup: Setup) -> None:
    size = MiB + 128  # payload plus its header
    node = setup.node(max_bytes=3 * size + 100)
    payloads = {k: os.urandom(MiB) for k in 'abcde'}
    for k, v in payloads.items():
        node.put(k, [v])
    names = {k: hashlib.sha256(k.encode()).hexdigest()[:40] for k in payloads}
    for k in 'abc':
        assert node.get(k) is not None
    assert set(copies(node)) == {names[k] for k in 'abc'}
    assert node.get('a') is not None  # 'a' is now more recent than 'b'
    assert node.get('d') is not None
    assert set(copies(node)) == {names[k] for k in 'acd'}
    assert node.get('e') is not None
    assert set(copies(node)) == {names[k] for k in 'ade'}
    assert sum(copies(node).values()) <= 3 * size + 100
    # Everything still reads correctly, whether or not it has a copy.
    for k, v in payloads.items():
        entry = node.get(k)
        assert entry is not None and bytes(entry[0]) == v
        assert sum(copies(node).values()) <= 3 * size + 100


def test_object_larger_than_the_bound_is_served_unpublished(setup: Setup) -> None:
    node = setup.node(max_bytes=MiB)
    payload = os.urandom(2 * MiB)
    node.put('k', [payload])
    for _ in range(2):
        entry = node.get('k')
        assert entry is not None and bytes(entry[0]) == payload
    assert copies(node) == {}


@pytest.mark.parametrize('method', START_METHODS)
def test_margin_larger_than_free_space_publishes_nothing(setup: Setup, method: str) -> None:
    free = os.statvfs('/dev/shm').f_bavail * os.statvfs('/dev/shm').f_frsize
    node = setup.node(min_free_bytes=free + (1 << 30))
    payload = os.urandom(2 * MiB)
    node.put('k', [payload])
    entry = node.get('k')
    assert entry is not None and bytes(entry[0]) == payload
    assert [d for _, d in run_readers(method, node, 'k', 4)] == [digest(payload)] * 4
    assert copies(node) == {}
    assert setup.fetches() == 5  # no copy: every reader fetched


def test_full_tmpfs_reads_work_and_nothing_is_published(
    setup: Setup, request: pytest.FixtureRequest
) -> None:
    tmpfs: Path = request.getfixturevalue('small_tmpfs')  # skipped if we cannot mount
    node = setup.node(directory=str(tmpfs), min_free_bytes=0, max_bytes=4 * MiB)
    fs = os.statvfs(tmpfs)
    filler = tmpfs / 'filler'
    filler.write_bytes(b'\0' * (fs.f_bavail * fs.f_frsize - 512 * 1024))  # 512 KiB stay free
    payload = os.urandom(MiB)
    node.put('k', [payload])
    for _ in range(2):
        entry = node.get('k')
        assert entry is not None and bytes(entry[0]) == payload
    assert copies(node) == {}
    assert not [n for n in os.listdir(node.directory) if n.startswith('.tmp')]
    filler.unlink()  # room again: the next first read publishes
    node2 = setup.node(directory=str(tmpfs), min_free_bytes=0, max_bytes=4 * MiB)
    entry = node2.get('k')
    assert entry is not None and bytes(entry[0]) == payload
    assert len(copies(node2)) == 1


@pytest.mark.parametrize('method', START_METHODS)
def test_failed_write_leaves_nothing_and_serves(setup: Setup, method: str) -> None:
    # The space check passes, then the write fails part-way (EFBIG under
    # RLIMIT_FSIZE, as ENOSPC would when another writer takes the space).
    node = setup.node()
    payload = os.urandom(3 * MiB)
    node.put('k', [payload])
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        report = pool.apply(_workers.read_under_file_size_limit, (node.config(), 'k', MiB))
    assert report == digest(payload)
    assert copies(node) == {}
    assert not [n for n in os.listdir(node.directory) if n.startswith('.tmp')]


def test_many_keys_under_a_low_descriptor_limit(setup: Setup) -> None:
    node = setup.node()
    keys = [f'k{i}' for i in range(300)]
    payloads = [os.urandom(16) * (MiB // 16) for _ in range(3)]
    for i, key in enumerate(keys):
        node.put(key, [payloads[i % 3]])
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        first = pool.apply(_workers.read_many_under_fd_limit, (node.config(), keys, 256))
        again = pool.apply(_workers.read_many_under_fd_limit, (node.config(), keys, 256))
    expected = [digest(payloads[i % 3]) for i in range(len(keys))]
    for report in (first, again):  # fetched and published, then mapped from the copies
        assert report['digests'] == expected
        assert report['after'] <= report['before'] + 2
    assert len(copies(node)) == 300
    assert setup.fetches() == 300


# -- damaged copies, small and unversioned objects, batches ------------------------------------


def _copy_path(node: NodeConnector, key: str) -> str:
    return os.path.join(node.directory, hashlib.sha256(key.encode()).hexdigest()[:40])


@pytest.mark.parametrize(
    'damage',
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:40],  # shorter than its header
        lambda b: b[:8] + b'\xff' + b[9:],  # header bytes changed (CRC)
        lambda b: b'',  # empty
        lambda b: b + b'extra',  # longer than the header says
    ],
    ids=['truncated', 'header-only', 'corrupt-header', 'empty', 'too-long'],
)
def test_damaged_copy_is_discarded_and_refetched(
    setup: Setup, damage: Callable[[bytes], bytes]
) -> None:
    node = setup.node()
    payload = os.urandom(MiB)
    node.put('k', [payload])
    assert node.get('k') is not None
    path = _copy_path(node, 'k')
    with open(path, 'rb') as f:
        content = f.read()
    os.unlink(path)
    with open(path, 'wb') as f:
        f.write(damage(content))
    os.chmod(path, 0o400)
    entry = node.get('k')
    assert entry is not None and bytes(entry[0]) == payload
    assert setup.fetches() == 2
    with open(path, 'rb') as f:
        assert f.read() == content[:128] or len(content) == os.path.getsize(path)
    entry = node.get('k')  # the republished copy is served
    assert entry is not None and bytes(entry[0]) == payload
    assert setup.fetches() == 2


def test_small_objects_are_not_published(setup: Setup) -> None:
    node = setup.node(min_bytes=1000)
    node.put('small', [b'x' * 999])
    node.put('large', [b'y' * 1000])
    for _ in range(3):
        small, large = node.get('small'), node.get('large')
        assert small is not None and bytes(small[0]) == b'x' * 999
        assert large is not None and bytes(large[0]) == b'y' * 1000
    assert list(copies(node)) == [hashlib.sha256(b'large').hexdigest()[:40]]
    assert setup.fetches() == 4  # small each time, large once
    setup.remote.put('small', [b'z' * 5000])  # grew: published on the next read
    small = node.get('small')
    assert small is not None and bytes(small[0]) == b'z' * 5000
    assert len(copies(node)) == 2


def test_values_without_versions_are_never_published(setup: Setup) -> None:
    # Another tool wrote the value with plain SET: RedisConnector reads it, but
    # has no version token for it, so a copy could never be checked.
    node = setup.node()
    setup.client.set(f'{setup.tag}:k', b'a' * MiB)
    entry = node.get('k')
    assert entry is not None and bytes(entry[0]) == b'a' * MiB
    setup.client.set(f'{setup.tag}:k', b'b' * MiB)
    entry = node.get('k')
    assert entry is not None and bytes(entry[0]) == b'b' * MiB
    assert copies(node) == {}
    assert node.get('missing') is None


def test_get_batch(setup: Setup) -> None:
    node = setup.node()
    payloads = {k: os.urandom(MiB) for k in 'abc'}
    for k, v in payloads.items():
        node.put(k, [v])
    assert node.get('a') is not None  # 'a' has a copy, 'b' and 'c' do not
    got = node.get_batch(['a', 'b', 'missing', 'c'])
    assert [None if e is None else bytes(e[0]) for e in got] == [
        payloads['a'],
        payloads['b'],
        None,
        payloads['c'],
    ]
    assert len(copies(node)) == 3
    setup.remote.put('b', [b'new'])
    got = node.get_batch(['a', 'b'])
    assert got[1] is not None and bytes(got[1][0]) == b'new'


# -- configuration -------------------------------------------------------------------------


def test_config_rebuilds_the_same_tier(setup: Setup) -> None:
    node = setup.node(max_bytes=10 * MiB, min_bytes=1, lock_timeout=5)
    config = node.config()
    assert config['inner'] == 'tests.connectors._instrumented.InstrumentedConnector'
    rebuilt = NodeConnector(**config)
    assert rebuilt.directory == node.directory
    assert rebuilt.config() == config
    node.put('k', [b'v' * 100])
    entry = rebuilt.get('k')
    assert entry is not None and bytes(entry[0]) == b'v' * 100
    assert set(config) - {'inner', 'inner_config'} <= set(NodeConnector.local_options)
    defaults = NodeConnector(setup.inner(), directory=setup.directory).config()
    assert set(defaults) == {'inner', 'inner_config', 'directory'}  # defaults are left out


def test_default_directory_is_per_user_and_per_inner_store(setup: Setup) -> None:
    first = NodeConnector(setup.inner())
    other = NodeConnector(RedisConnector(setup.host, setup.port, db=1))
    try:
        root = f'/dev/shm/proxystore-node-{os.geteuid()}'
        assert os.path.dirname(first.directory) == root
        assert first.directory != other.directory
        assert os.stat(first.directory).st_mode & 0o777 == 0o700
        assert NodeConnector(setup.inner()).directory == first.directory
    finally:
        first.cleanup()
        other.cleanup()
        for path in (first.directory, other.directory):
            shutil.rmtree(path, ignore_errors=True)


def test_directory_may_be_a_path(setup: Setup, tmp_path: Path) -> None:
    node = setup.node(directory=tmp_path / 'node')
    assert node.config()['directory'] == str(tmp_path / 'node')
    assert os.path.dirname(node.directory) == str(tmp_path / 'node')


def test_cleanup_removes_this_nodes_copies(setup: Setup) -> None:
    node = setup.node()
    node.put('k', [os.urandom(MiB)])
    assert node.get('k') is not None
    node.cleanup()
    assert not os.path.exists(node.directory)
    assert node.get('k') is not None  # the inner store still has it (redis keeps objects)
    assert node.get('k') is not None  # and the tier works again: its directory is back
    assert len(copies(node)) == 1


@pytest.mark.parametrize(
    ('options', 'match'),
    [
        ({'max_bytes': 0}, 'max_bytes'),
        ({'max_bytes': '1GB'}, 'max_bytes'),
        ({'min_bytes': -1}, 'min_bytes'),
        ({'min_free_bytes': 1.5}, 'min_free_bytes'),
        ({'lock_timeout': -1}, 'lock_timeout'),
        ({'lock_timeout': float('nan')}, 'lock_timeout'),
        ({'directory': ''}, 'directory'),
        ({'directory': b'/dev/shm/x'}, 'directory'),
        ({'directory': 3}, 'directory'),
    ],
)
def test_bad_options(setup: Setup, options: dict[str, Any], match: str) -> None:
    with pytest.raises(StoreConfigError, match=match):
        NodeConnector(setup.inner(), **{'directory': setup.directory, **options})


def test_bad_inner(setup: Setup, tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match='inner'):
        NodeConnector(42, directory=setup.directory)  # type: ignore[arg-type]
    with pytest.raises(StoreConfigError, match='cannot import'):
        NodeConnector('no.such.Connector', inner_config={}, directory=setup.directory)
    with pytest.raises(StoreConfigError, match='inner_config'):
        NodeConnector(setup.inner(), inner_config={}, directory=setup.directory)
    with pytest.raises(StoreConfigError, match='do not fit'):
        NodeConnector(
            'proxystore.connectors.redis.RedisConnector',
            inner_config={'host': 'x'},
            directory=setup.directory,
        )
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(StoreConfigError, match='not a directory'):
        NodeConnector(setup.inner(), directory=str(blocker))


def test_planted_directory_of_another_user_is_refused(setup: Setup, tmp_path: Path) -> None:
    node = setup.node(directory=str(tmp_path))
    shutil.rmtree(node.directory)
    os.symlink(tmp_path / 'elsewhere', node.directory)
    with pytest.raises(StoreConfigError, match='not a directory owned by this user'):
        setup.node(directory=str(tmp_path))


# -- more coordination: threads, leftovers, copies removed under readers ---------------------


def test_concurrent_first_readers_in_threads_fetch_once(setup: Setup) -> None:
    import threading

    node = setup.node()
    payload = os.urandom(4 * MiB)
    node.put('big', [payload])
    barrier = threading.Barrier(8)
    digests: list[str] = []

    def read() -> None:
        barrier.wait(60)
        entry = node.get('big')
        assert entry is not None
        digests.append(digest(entry[0]))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert digests == [digest(payload)] * 8
    assert setup.fetches() == 1


def test_leftovers_of_a_killed_writer_are_removed(setup: Setup) -> None:
    node = setup.node()
    dead = subprocess.Popen(['true'])
    dead.wait()
    leftover = os.path.join(node.directory, f'.tmp-{"0" * 40}-{dead.pid}-abcd')
    with open(leftover, 'wb') as f:
        f.write(b'\0' * MiB)
    live = os.path.join(node.directory, f'.tmp-{"1" * 40}-{os.getpid()}-abcd')
    with open(live, 'wb') as f:
        f.write(b'\0' * 10)
    node.put('k', [os.urandom(MiB)])
    assert node.get('k') is not None  # publishing scans the directory
    assert not os.path.exists(leftover)
    assert os.path.exists(live)  # a writer that is alive is left alone


def test_copies_removed_under_a_reader_stay_readable(setup: Setup) -> None:
    # A reader maps the copy; put, evict and the byte bound remove it meanwhile.
    node = setup.node(max_bytes=2 * MiB + 1000)
    old = os.urandom(MiB)
    node.put('k', [old])
    node.get('k')  # published
    held = node.get('k')  # served from the copy: a mapping of the file
    assert held is not None
    node.put('k', [b'n' * MiB])  # drops the copy
    for other in 'xyz':  # and fill the bound with other copies
        node.put(other, [os.urandom(MiB)])
        node.get(other)
    assert bytes(held[0]) == old
    entry = node.get('k')
    assert entry is not None and bytes(entry[0]) == b'n' * MiB


@pytest.mark.parametrize('method', START_METHODS)
def test_many_readers_of_many_keys_stay_within_the_bound(setup: Setup, method: str) -> None:
    bound = 3 * (MiB + 128)
    node = setup.node(max_bytes=bound)
    payloads = {f'k{i}': os.urandom(16) * (MiB // 16) for i in range(8)}
    for k, v in payloads.items():
        node.put(k, [v])
    ctx = multiprocessing.get_context(method)
    arg: Any = node if method == 'fork' else node.config()
    expected = {k: digest(v) for k, v in payloads.items()}
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_workers.report,
            args=(queue, _workers.read_keys, arg, list(payloads), seed),
            daemon=True,
        )
        for seed in range(4)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
    for result in results:
        assert result['digests'] == expected
        assert max(result['totals']) <= bound
    assert sum(copies(node).values()) <= bound


def test_small_keys_leave_no_files(setup: Setup) -> None:
    node = setup.node(min_bytes=1000)
    for i in range(20):
        node.put(f's{i}', [b'x' * 100])
        assert node.get(f's{i}') is not None
    assert [n for n in os.listdir(node.directory) if n != '.lock'] == []


def test_old_notes_of_unpublished_keys_are_swept(setup: Setup) -> None:
    import time

    node = setup.node(min_readers=2)
    node.put('once', [os.urandom(MiB)])
    assert node.get('once') is not None  # read once: a note, no copy
    note = _copy_path(node, 'once') + '.lock'
    assert os.path.exists(note) and copies(node) == {}
    recent = setup.node(min_readers=2)
    recent.put('recent', [os.urandom(MiB)])
    assert recent.get('recent') is not None
    hour_ago = time.time() - 3600
    os.utime(note, (hour_ago, hour_ago))
    node.put('shared', [os.urandom(MiB)])
    assert node.get('shared') is not None
    assert node.get('shared') is not None  # second read: published, which sweeps
    assert len(copies(node)) == 1
    assert not os.path.exists(note)
    assert os.path.exists(_copy_path(node, 'recent') + '.lock')  # younger notes stay
    assert node.get('once') is not None  # a swept note only means "not read yet"
    assert copies(node).keys() == {os.path.basename(_copy_path(node, 'shared'))}


@pytest.mark.parametrize('method', START_METHODS)
def test_hung_first_reader_is_waited_for_at_most_lock_timeout(setup: Setup, method: str) -> None:
    hung_node = setup.node(gate=True)
    payload = os.urandom(2 * MiB)
    hung_node.put('big', [payload])
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    arg: Any = hung_node if method == 'fork' else hung_node.config()
    hung = ctx.Process(target=_workers.read, args=(arg, 'big', None, queue), daemon=True)
    hung.start()
    try:
        assert setup.client.blpop([setup.gate_key + ':entered'], timeout=60) is not None
        # The first reader holds the lock and never returns; a reader with a
        # short lock_timeout gives up waiting and fetches for itself.
        impatient = setup.node(lock_timeout=0.2)
        entry = impatient.get('big')
        assert entry is not None and bytes(entry[0]) == payload
        assert setup.fetches() == 1  # the hung fetch has not counted yet
    finally:
        setup.client.rpush(setup.gate_key, 'go')
        hung.join(60)
    assert queue.get(timeout=60)[1] == digest(payload)


def test_after_fork_drops_the_parents_lock_handles(setup: Setup) -> None:
    # A thread of the parent holds a key's lock when the process forks. Its
    # fetch ends without a copy (min_readers=2); the child must then be able
    # to lock the key, which it cannot while it keeps the inherited descriptor.
    import threading

    node = setup.node(gate=True, min_readers=2, lock_timeout=3600)
    payload = os.urandom(MiB)
    node.put('k', [payload])
    parent_read: list[Any] = []
    thread = threading.Thread(target=lambda: parent_read.append(node.get('k')))
    thread.start()
    assert setup.client.blpop([setup.gate_key + ':entered'], timeout=60) is not None
    ctx = multiprocessing.get_context('fork')
    queue, go = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_workers.read_after_fork, args=(node, 'k', go, queue), daemon=True)
    child.start()
    assert queue.get(timeout=60) == 'forked'
    setup.client.rpush(setup.gate_key, 'go')
    thread.join(60)
    assert parent_read and parent_read[0] is not None and copies(node) == {}
    go.set()
    result = queue.get(timeout=60)
    child.join(30)
    assert result == digest(payload)
    assert len(copies(node)) == 1  # the child's read was the second: published


# -- under a Store ---------------------------------------------------------------------------


def test_a_store_over_the_tier_resolves_proxies_in_other_processes(
    redis_address: tuple[str, int], shm_dir: str
) -> None:
    import pickle

    import numpy as np

    import proxystore as ps
    from proxystore.store.base import Store

    host, port = redis_address
    node = NodeConnector(RedisConnector(host, port), directory=shm_dir, min_readers=1)
    store = ps.store.init_store(Store, name=f'node-{uuid.uuid4().hex[:8]}', connector=node)
    try:
        array = np.arange(300_000, dtype=np.float64)
        proxy = store.proxy(array)
        pickled = pickle.dumps(proxy)
        config = store.config()
        assert config['connector'] == 'proxystore.connectors.node.NodeConnector'
        ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(2) as pool:
            sums = pool.map(_workers.resolve_and_sum, [pickled] * 2)
        assert sums == [float(array.sum())] * 2
        assert len(copies(node)) == 1
    finally:
        store.cleanup()
