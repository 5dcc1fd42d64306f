"""The small-object paths: file writes through O_TMPFILE, framing and plain-pickle fast paths.

Each fast path must write exactly what the general path writes (old readers
and the documented format depend on it) and keep the store's guarantees:
atomic replace, a new version on every write, nothing left by a killed writer.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import signal
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from proxystore import serialize as serialize_module
from proxystore.connectors import file as file_module
from proxystore.connectors.file import FileConnector
from proxystore.serialize import deserialize
from proxystore.serialize import serialize_parts
from proxystore.store.file import FileStore

# -- file connector: O_TMPFILE writes ---------------------------------------------------

needs_tmpfile = pytest.mark.skipif(not file_module._O_TMPFILE, reason='no O_TMPFILE here')


def _entries(path: Path) -> list[str]:
    return sorted(os.listdir(path))


@needs_tmpfile
def test_writes_are_linked_unnamed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new key is one ``linkat`` of a finished unnamed file: no temporary name, no rename."""
    renames: list[Any] = []
    real_replace = os.replace
    monkeypatch.setattr(os, 'replace', lambda *a: renames.append(a) or real_replace(*a))
    store = FileStore('tmpfile', store_dir=tmp_path / 's')
    key = store.set(np.arange(100))
    assert store.connector._unnamed  # type: ignore[attr-defined]
    assert renames == [] and _entries(tmp_path / 's') == [key]
    assert np.array_equal(store.get(key), np.arange(100))
    assert os.stat(tmp_path / 's' / key).st_mode & 0o777 == 0o400


@needs_tmpfile
def test_overwrite_links_then_renames_and_changes_the_version(tmp_path: Path) -> None:
    connector = FileConnector(tmp_path / 's')
    connector.put('k', [b'first'])
    before = connector.version('k')
    connector.put('k', [b'second'])  # the key exists: linked under a temporary name, renamed
    entry = connector.get('k')
    assert entry is not None and bytes(entry[0]) == b'second'
    assert entry[1] == connector.version('k') != before
    assert _entries(tmp_path / 's') == ['k']


@pytest.mark.parametrize('errno_', [errno.EOPNOTSUPP, errno.EISDIR])
def test_without_o_tmpfile_writes_use_named_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errno_: int
) -> None:
    real_open = os.open

    def refuse_tmpfile(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if file_module._O_TMPFILE and flags & file_module._O_TMPFILE == file_module._O_TMPFILE:
            raise OSError(errno_, os.strerror(errno_))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, 'open', refuse_tmpfile)
    store = FileStore('named', store_dir=tmp_path / 's')
    key = store.set([1, 2])
    second = store.set([3], key=key)
    assert store.get(second) == [3] and _entries(tmp_path / 's') == [key]
    assert not store.connector._unnamed  # type: ignore[attr-defined]


@needs_tmpfile
def test_a_refused_link_falls_back_to_named_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No /proc (or linkat refused): the object is written again the named way, once."""

    def no_link(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, 'link', no_link)
    store = FileStore('nolink', store_dir=tmp_path / 's')
    key = store.set('payload')
    assert store.get(key) == 'payload' and _entries(tmp_path / 's') == [key]
    assert not store.connector._unnamed  # type: ignore[attr-defined]


def test_store_dir_removed_under_an_unnamed_write_is_made_again(tmp_path: Path) -> None:
    store = FileStore('again', store_dir=tmp_path / 's')
    store.cleanup()
    assert not (tmp_path / 's').exists()
    key = store.set('back')
    assert store.get(key) == 'back'


def _write_forever(store_dir: str, key: str) -> None:
    connector = FileConnector(store_dir)
    values = [b'a' * 500_000, b'b' * 700_000]  # under 1 MiB: unnamed files
    n = 0
    while True:
        connector.put(key, [values[n % 2]])
        n += 1


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_a_killed_writer_leaves_a_whole_object_and_no_debris(tmp_path: Path, method: str) -> None:
    """SIGKILL among unnamed writes: the key holds a whole object, and at most one temporary
    (an overwrite caught between its link and its rename) is left for the stale sweep."""
    store_dir = tmp_path / 's'
    connector = FileConnector(store_dir)
    connector.put('k', [b'old'])
    before = connector.version('k')
    ctx = multiprocessing.get_context(method)
    child = ctx.Process(target=_write_forever, args=(str(store_dir), 'k'))
    child.start()
    deadline = time.monotonic() + 60
    while connector.version('k') == before and time.monotonic() < deadline:
        time.sleep(0.01)  # the first write landed: the next ones are overwrites
    time.sleep(0.05)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    entry = connector.get('k')
    assert entry is not None and bytes(entry[0]) in (b'a' * 500_000, b'b' * 700_000)
    assert len([n for n in _entries(store_dir) if n != 'k']) <= 1
    connector.remove_stale_temporaries(age=0)
    assert _entries(store_dir) == ['k']


def test_large_objects_use_a_named_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From 1 MiB on a write is a named temporary renamed over the key (a watchable write)."""
    renames: list[Any] = []
    real_replace = os.replace
    monkeypatch.setattr(os, 'replace', lambda *a: renames.append(a) or real_replace(*a))
    connector = FileConnector(tmp_path / 's')
    connector.put('big', [bytes(file_module._UNNAMED_MAX)])
    assert len(renames) == 1 and os.path.basename(renames[0][1]) == 'big'
    assert _entries(tmp_path / 's') == ['big']


# -- serialization fast paths ---------------------------------------------------------------


def _reference_frame(kind: int, segments: list[bytes]) -> bytes:
    """The payload layout documented in ``proxystore.serialize``, built the slow way."""
    prefix = struct.pack('<4sBBHI', b'PXS\x01', kind, 0, 0, len(segments))
    prefix += struct.pack(f'<{len(segments)}Q', *(len(s) for s in segments))
    crc = zlib.crc32(prefix)
    if kind == 3:
        crc = zlib.crc32(segments[0], crc)
    header = prefix + struct.pack('<I', crc)
    out = header + bytes(-len(header) % 64)
    for segment in segments:
        out += segment + bytes(-len(segment) % 64)
    return out


@pytest.mark.parametrize(
    'obj',
    [
        np.arange(128, dtype=np.float64),  # 1 KB: one segment
        np.arange(1280, dtype=np.float64),  # 10 KB: stream + one buffer
        {'a': np.arange(3000), 'b': [1, 2]},
        np.zeros(0),
        [1, 'two', (3.0, None)],
        12345,
    ],
)
def test_fast_framing_writes_the_documented_layout(obj: Any) -> None:
    parts = serialize_parts(obj)
    joined = b''.join(bytes(p) for p in parts)
    _, _, _, _, nseg = struct.unpack_from('<4sBBHI', joined)
    lengths = struct.unpack_from(f'<{nseg}Q', joined, 12)
    start = 64
    segments = []
    for n in lengths:
        segments.append(joined[start : start + n])
        start += n + (-n % 64)
    assert joined == _reference_frame(3, segments)
    back = deserialize(bytearray(joined))
    assert pickle.dumps(back) == pickle.dumps(obj)


@pytest.mark.parametrize('obj', [b'', b'bytes', 'text', memoryview(b'view')])
def test_fast_framing_of_raw_kinds(obj: Any) -> None:
    kind = {bytes: 0, str: 1, memoryview: 2}[type(obj)]
    data = obj.encode() if isinstance(obj, str) else bytes(obj)
    parts = serialize_parts(obj)
    assert b''.join(bytes(p) for p in parts) == _reference_frame(kind, [data])


def test_a_corrupt_fast_payload_is_still_named_by_the_general_checks() -> None:
    data = bytearray(b''.join(bytes(p) for p in serialize_parts(np.arange(100))))
    data[70] ^= 0xFF  # inside the pickle stream
    with pytest.raises(serialize_module.SerializationError, match='checksum'):
        deserialize(data)
    with pytest.raises(serialize_module.SerializationError, match='bytes where the header'):
        deserialize(data[:-1])


def _local_function() -> int:
    return 1


@pytest.mark.parametrize(
    ('obj', 'plain'),
    [
        (np.arange(10), True),
        ([1, 2.5, 'x', b'y', None, (True, 3j)], True),
        ({'k': np.ones(3), 'n': {1, 2}}, True),
        (np.array([object()]), False),  # object arrays may hold anything
        (lambda: 1, False),
        ([1, _local_function], False),
        (list(range(1000)), False),  # past the inspection budget: cloudpickle
        (np.ma.masked_array([1, 2]), False),  # an ndarray subclass
    ],
)
def test_plain_pickle_only_where_it_writes_what_cloudpickle_writes(obj: Any, plain: bool) -> None:
    assert serialize_module._plainly_picklable(obj) is plain
    if plain:
        assert pickle.dumps(obj, protocol=5) == cloudpickle.dumps(obj, protocol=5)


def test_a_module_registered_by_value_turns_plain_pickle_off() -> None:
    me = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(me)
    try:
        assert not serialize_module._plainly_picklable(np.arange(3))
    finally:
        cloudpickle.unregister_pickle_by_value(me)
    assert serialize_module._plainly_picklable(np.arange(3))
