"""Property tests (hypothesis): round-trips, hostile bytes, damaged payloads, random keys."""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import proxystore as ps
from proxystore.exceptions import InvalidKeyError
from proxystore.exceptions import SerializationError
from proxystore.exceptions import SignatureError
from proxystore.serialize import deserialize
from proxystore.serialize import payload_size
from proxystore.serialize import serialize
from proxystore.serialize import serialize_parts
from proxystore.store.base import Store
from proxystore.store.file import FileStore

pytestmark = pytest.mark.timeout(180)

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,  # parallel workers must not share an example database in the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECRET = b'reliability-secret'

# Payload layout (see proxystore.serialize): 12-byte header, 8 bytes per
# segment length, CRC-32, zero padding to 64, segments each padded to 64.
MAGIC = b'PXS\x01'
HEADER = struct.Struct('<4sBBHI')
KIND_PICKLE = 3
ALIGN = 64

# -- strategies ------------------------------------------------------------------

texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
    | st.binary(max_size=200)
    | st.binary(max_size=200).map(bytearray)
)
arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int32, np.int64, np.float32, np.float64, np.complex128]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12),
)
nested = st.recursive(
    scalars | arrays,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=10) | st.integers(), children, max_size=5)
    ),
    max_leaves=20,
)
# Top-level only: bytes, str and memoryview have their own (unpickled) payload kinds.
objects = nested | texts | st.binary(max_size=2000) | st.binary(max_size=500).map(memoryview)


def same(a: Any, b: Any) -> bool:
    """Structural equality that also checks types, NaN-aware and sign-of-zero-aware."""
    if isinstance(a, memoryview):
        return isinstance(b, memoryview) and a.tobytes() == b.tobytes()
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()  # bit-exact: NaNs and signed zeros included
        )
    return bool(a == b)


# -- serialize / deserialize ---------------------------------------------------------


@SETTINGS
@given(obj=objects)
def test_serialize_roundtrip(obj: Any) -> None:
    payload = serialize(obj)
    assert payload_size(serialize_parts(obj)) == len(payload)
    assert len(payload) % ALIGN == 0
    assert same(deserialize(payload), obj)
    assert same(deserialize(bytearray(payload)), obj)
    signed = serialize(obj, secret=SECRET)
    assert same(deserialize(signed, secret=SECRET), obj)
    with pytest.raises(SignatureError):
        deserialize(signed, secret=b'another secret')
    with pytest.raises(SignatureError):
        deserialize(payload, secret=SECRET)


@SETTINGS
@given(obj=objects)
def test_store_roundtrip(store: Store, obj: Any) -> None:
    key = store.set(obj)
    assert same(store.get(key, strict=True), obj)
    assert same(store.get(key), obj)  # from the cache this time
    if obj is not None:  # proxy(None) means "proxy an existing key" (documented)
        proxy = store.proxy(obj)
        fresh = pickle.loads(pickle.dumps(proxy))
        assert same(ps.proxy.extract(fresh), obj)
        store.evict(ps.proxy.get_key(proxy) or '')
    store.evict(key)
    assert store.get(key, strict=True) is None


def _deserialize_or_serialization_error(data: bytes, **kwargs: Any) -> tuple[bool, Any]:
    """(True, obj) if ``data`` deserialized, (False, error) if it raised SerializationError."""
    try:
        return True, deserialize(data, **kwargs)
    except SerializationError as e:
        return False, e


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """Bytes with a plausible header (random kind/flags/segments), optionally a valid CRC.

    Gets past the magic check so the length, CRC, UTF-8 and unpickling paths
    all see hostile input.
    """
    nseg = draw(st.integers(0, 4))
    kind = draw(st.integers(0, 5))
    flags = draw(st.integers(0, 3))
    segments = [draw(st.binary(max_size=150)) for _ in range(nseg)]
    lengths = [len(s) for s in segments]
    if draw(st.booleans()):
        lengths = [draw(st.integers(0, 2**64 - 1)) for _ in segments]
    prefix = HEADER.pack(MAGIC, kind, flags, 0, nseg) + struct.pack(f'<{nseg}Q', *lengths)
    crc = zlib.crc32(prefix)
    if kind == KIND_PICKLE and segments:
        crc = zlib.crc32(segments[0], crc)
    if draw(st.booleans()):
        crc = draw(st.integers(0, 2**32 - 1))
    out = prefix + struct.pack('<I', crc)
    out += bytes(-len(out) % ALIGN)
    for segment in segments:
        out += segment + bytes(-len(segment) % ALIGN)
    if flags & 1:
        out += draw(st.binary(min_size=32, max_size=32))
    if draw(st.booleans()):
        out += draw(st.binary(max_size=8))
    return out


@SETTINGS
@given(data=st.binary(max_size=600) | st.binary(max_size=300).map(lambda b: MAGIC + b))
def test_random_bytes_never_raise_anything_but_serialization_error(data: bytes) -> None:
    _deserialize_or_serialization_error(data)
    _deserialize_or_serialization_error(data, secret=SECRET)


@settings(SETTINGS, max_examples=200)
@given(data=framed_garbage())
def test_framed_garbage_never_raises_anything_but_serialization_error(data: bytes) -> None:
    _deserialize_or_serialization_error(data)
    ok, _ = _deserialize_or_serialization_error(data, secret=SECRET)
    assert not ok  # nothing unsigned (or signed with a random tag) passes a secret check


def _regions(payload: bytes) -> list[tuple[int, int, str]]:
    """Split a payload into (start, end, region): 'checked', 'raw' buffer data, 'padding', 'tag'."""
    _, kind, flags, _, nseg = HEADER.unpack_from(payload)
    table_end = HEADER.size + 8 * nseg
    lengths = struct.unpack_from(f'<{nseg}Q', payload, HEADER.size)
    regions = [(0, table_end + 4, 'checked')]
    offset = table_end + 4
    pad = -offset % ALIGN
    regions.append((offset, offset + pad, 'padding'))
    offset += pad
    for i, length in enumerate(lengths):
        region = 'checked' if (kind == KIND_PICKLE and i == 0) else 'raw'
        regions.append((offset, offset + length, region))
        offset += length
        regions.append((offset, offset + (-length % ALIGN), 'padding'))
        offset += -length % ALIGN
    if flags & 1:
        regions.append((offset, offset + 32, 'tag'))
    return [r for r in regions if r[1] > r[0]]


def _region_of(payload: bytes, position: int) -> str:
    for start, end, region in _regions(payload):
        if start <= position < end:
            return region
    raise AssertionError(f'position {position} outside the payload')


@SETTINGS
@given(obj=objects, data=st.data())
def test_truncated_or_extended_payload_raises(obj: Any, data: st.DataObject) -> None:
    for secret in (None, SECRET):
        payload = serialize(obj, secret=secret)
        cut = data.draw(st.integers(0, len(payload) - 1), label='cut')
        with pytest.raises(SerializationError):
            deserialize(payload[:cut], secret=secret)
        extra = data.draw(st.binary(min_size=1, max_size=70), label='extra')
        with pytest.raises(SerializationError):
            deserialize(payload + extra, secret=secret)


@SETTINGS
@given(obj=objects, data=st.data())
def test_bit_flip_is_detected_unless_inside_raw_buffer_data(obj: Any, data: st.DataObject) -> None:
    payload = serialize(obj)
    position = data.draw(st.integers(0, len(payload) - 1), label='position')
    bit = data.draw(st.integers(0, 7), label='bit')
    damaged = bytearray(payload)
    damaged[position] ^= 1 << bit
    region = _region_of(payload, position)
    ok, result = _deserialize_or_serialization_error(bytes(damaged))
    if region == 'checked':
        assert not ok, f'flip in the checked header/pickle stream at {position} went unnoticed'
    elif region == 'padding':
        # Not checked by the CRC, but harmless: the object must come back unchanged.
        assert ok and same(result, obj), f'flip in padding at {position} changed the object'
    # region == 'raw': array/bytes data is outside the CRC; any object (or an error) is fine.

    signed = serialize(obj, secret=SECRET)
    position = data.draw(st.integers(0, len(signed) - 1), label='signed position')
    damaged = bytearray(signed)
    damaged[position] ^= 1 << bit
    with pytest.raises(SerializationError):  # signed payloads: every byte is covered
        deserialize(bytes(damaged), secret=SECRET)


# -- keys ----------------------------------------------------------------------------

plain_keys = st.text(st.characters(exclude_categories=('Cs',)), min_size=1, max_size=300)


def _valid(key: str) -> bool:
    return 0 < len(key) <= 1024 and key[0] != '.' and not any(c in key for c in ('/', '\\', '\x00'))


invalid_keys = (
    st.just('')
    | plain_keys.map(lambda k: '.' + k)
    | st.tuples(plain_keys, st.sampled_from(['/', '\\', '\x00', '/../', '..\\']), plain_keys).map(
        ''.join
    )
    | st.just('x' * 1025)
    | st.sampled_from(['..', '.', '../etc', '/etc/passwd', '.tmp-abc'])
    | st.integers()
    | st.binary(min_size=1, max_size=10)
)


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob('*'))


@pytest.fixture
def contained_file_store(tmp_path: Path) -> Any:
    """A FileStore whose parent directory holds nothing else (to see escapes)."""
    store = FileStore(f'keys-{os.urandom(4).hex()}', store_dir=tmp_path / 'parent' / 'store')
    yield store
    store.cleanup()


def _file_name_too_long(store: Store, key: str) -> bool:
    return isinstance(store, FileStore) and len(key.encode('utf-8', 'surrogatepass')) > 200


@SETTINGS
@given(key=plain_keys | st.sampled_from(['a..b', ' ', '\n', 'con', '~', '$HOME', 'x' * 200]))
def test_valid_keys_roundtrip(store: Store, key: str) -> None:
    if not _valid(key):
        with pytest.raises(InvalidKeyError):
            store.set(b'v', key=key)
        return
    if _file_name_too_long(store, key):
        with pytest.raises(InvalidKeyError):  # documented FileStore limit: 200 bytes
            store.set(b'v', key=key)
        return
    value = {'key': key}
    assert store.set(value, key=key) == key
    assert store.exists(key)
    assert store.get(key, strict=True) == value
    assert ps.proxy.extract(pickle.loads(pickle.dumps(store.proxy(key=key)))) == value
    store.evict(key)
    assert not store.exists(key)


@SETTINGS
@given(key=invalid_keys)
def test_invalid_keys_raise_invalid_key_error(store: Store, key: Any) -> None:
    for operation in (
        lambda: store.set(b'v', key=key),
        lambda: store.get(key),
        lambda: store.get(key, strict=True),
        lambda: store.exists(key),
        lambda: store.evict(key),
        lambda: store.proxy(b'v', key=key),
        lambda: store.proxy(key=key),
    ):
        with pytest.raises(InvalidKeyError):
            operation()


@SETTINGS
@given(key=plain_keys | invalid_keys)
def test_file_store_never_writes_outside_its_directory(
    contained_file_store: FileStore, tmp_path: Path, key: Any
) -> None:
    store = contained_file_store
    parent = Path(store.store_dir).parent
    before = _listing(tmp_path)
    try:
        store.set(b'value', key=key)
    except InvalidKeyError:
        pass
    else:
        assert os.listdir(store.store_dir) == [key]
        assert store.get(key) == b'value'
        store.evict(key)
    for operation in (store.get, store.exists, store.evict):
        with contextlib.suppress(InvalidKeyError):
            operation(key)
    assert _listing(tmp_path) == before
    assert os.listdir(parent) == ['store']
    assert os.listdir(store.store_dir) == []  # no temporary files left either


# Keys that no backend can encode as UTF-8 (they once reached the backends and
# raised a raw UnicodeEncodeError there).
_SURROGATE_KEYS = [chr(0xD800), 'a' + chr(0xDFFF) + 'b', chr(0xDC80)]


@pytest.mark.parametrize(
    'key', _SURROGATE_KEYS, ids=['lone-high', 'lone-low-inside', 'escaped-byte']
)
def test_keys_with_lone_surrogates_are_rejected_or_roundtrip(store: Store, key: str) -> None:
    """A key is a str; one a backend cannot encode must raise InvalidKeyError, never leak."""
    directory = getattr(store, 'store_dir', None)
    try:
        store.set(b'v', key=key)
    except InvalidKeyError:
        for operation in (store.get, store.exists, store.evict):
            with pytest.raises(InvalidKeyError):
                operation(key)
    else:
        assert store.get(key, strict=True) == b'v'
        assert store.exists(key)
        store.evict(key)
        assert not store.exists(key)
    if directory is not None:
        assert os.listdir(directory) == [], 'debris left in the store directory'


@pytest.mark.parametrize(
    'obj',
    [
        {'array': np.arange(12, dtype=np.int64), 'text': 'caf\u00e9', 'raw': bytearray(b'xyz' * 9)},
        'a str payload \u4e2d',
        b'a bytes payload',
    ],
    ids=['pickle+buffers', 'str', 'bytes'],
)
def test_every_single_bit_flip_of_a_small_payload(obj: Any) -> None:
    """Exhaustive version of the property above, for a few small payloads."""
    payload = serialize(obj)
    signed = serialize(obj, secret=SECRET)
    outcomes = {'checked': 0, 'raw': 0, 'padding': 0}
    for position in range(len(payload)):
        region = _region_of(payload, position)
        for bit in range(8):
            damaged = bytearray(payload)
            damaged[position] ^= 1 << bit
            ok, result = _deserialize_or_serialization_error(bytes(damaged))
            if region == 'checked':
                assert not ok, (position, bit)
            elif region == 'padding':
                assert ok and same(result, obj), (position, bit)
            outcomes[region] += 1
    for position in range(len(signed)):
        damaged = bytearray(signed)
        damaged[position] ^= 0x10
        with pytest.raises(SerializationError):
            deserialize(bytes(damaged), secret=SECRET)
    assert outcomes['checked'] > 0
