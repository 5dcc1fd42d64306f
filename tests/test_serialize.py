"""Serialization: fast paths, zero-copy buffers, framing and corruption.

Every test runs against both implementations of the common payload's read and
framing: the pure-Python ones (the reference) and the compiled ones of
``proxystore._cframe``, as the proxy tests run against both proxies.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pytest

import proxystore.serialize as serialize_module
from proxystore.exceptions import SerializationError
from proxystore.exceptions import SignatureError
from proxystore.serialize import deserialize
from proxystore.serialize import payload_size
from proxystore.serialize import serialize
from proxystore.serialize import serialize_parts


@pytest.fixture(autouse=True, params=['c', 'python'])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with ``deserialize`` bound to one implementation (here and in the module)."""
    if request.param == 'c':
        if serialize_module._IMPLEMENTATION != 'c':
            pytest.skip('the C accelerator is not built here (or PROXYSTORE_PURE_PYTHON is set)')
        chosen = serialize_module._c.deserialize
    else:
        chosen = serialize_module._deserialize_python
    monkeypatch.setitem(globals(), 'deserialize', chosen)
    monkeypatch.setattr(serialize_module, 'deserialize', chosen)
    framing = (
        serialize_module._c.frame_pickle
        if request.param == 'c'
        else serialize_module._frame_pickle_python
    )
    monkeypatch.setattr(serialize_module, '_frame_pickle', framing)
    return str(request.param)


class UserClass:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserClass) and self.value == other.value

    def __repr__(self) -> str:
        return f'UserClass({self.value!r})'

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize(
    'obj',
    [
        b'',
        b'bytes',
        '',
        'str \u2603 \ud800',
        0,
        None,
        [1, 'a', None],
        {'k': (1, 2)},
        bytearray(b'abc'),
        UserClass([1, 2]),
    ],
    ids=repr,
)
def test_roundtrip(obj: Any) -> None:
    assert deserialize(serialize(obj)) == obj
    assert type(deserialize(serialize(obj))) is type(obj)


def test_bytes_and_str_are_not_pickled() -> None:
    data = b'x' * 1000
    parts = serialize_parts(data)
    assert any(p is data for p in parts)  # the very object, no copy
    payload = serialize('text')
    assert b'text' in payload and len(payload) <= 128


def test_lambda_via_cloudpickle() -> None:
    factor = 3
    f = deserialize(serialize(lambda x: x * factor))
    assert f(2) == 6


def test_memoryview_roundtrip_is_view() -> None:
    data = bytearray(b'0123456789')
    out = deserialize(bytearray(serialize(memoryview(data)[2:5])))
    assert isinstance(out, memoryview) and out.tobytes() == b'234'


@pytest.mark.parametrize(
    'array',
    [
        np.arange(1000, dtype=np.float64),
        np.arange(12).reshape(3, 4)[:, ::2],  # non-contiguous
        np.asfortranarray(np.arange(12).reshape(3, 4)),
        np.zeros((0, 5)),
        np.array([{'a': 1}, None, 'x'], dtype=object),
        np.arange(10, dtype='>i4'),
    ],
    ids=['float', 'noncontiguous', 'fortran', 'empty', 'object', 'bigendian'],
)
def test_numpy_arrays(array: np.ndarray) -> None:
    out = deserialize(bytearray(serialize(array)))
    assert out.dtype == array.dtype and out.shape == array.shape
    if array.dtype == object:
        assert out.tolist() == array.tolist()
    else:
        assert np.array_equal(out, array)


def test_arrays_are_out_of_band_and_zero_copy() -> None:
    array = np.arange(1 << 16, dtype=np.uint8)
    parts = serialize_parts(array)
    assert any(
        isinstance(p, memoryview) and np.shares_memory(np.frombuffer(p, np.uint8), array)
        for p in parts
    )
    buffer = bytearray(b''.join(parts))
    out = deserialize(buffer)
    assert np.shares_memory(out, np.frombuffer(buffer, np.uint8))
    assert out.flags.writeable
    out[0] = 99  # writable because the buffer is
    base = np.frombuffer(buffer, np.uint8).ctypes.data
    assert (out.ctypes.data - base) % 64 == 0  # segments are 64-byte aligned in the payload
    assert payload_size(parts) == len(buffer)


def test_read_only_input_gives_read_only_arrays() -> None:
    out = deserialize(serialize(np.arange(1 << 12)))  # large enough to be out-of-band
    assert not out.flags.writeable


def _segments(payload: bytes) -> int:
    return int.from_bytes(payload[8:12], 'little')


def test_small_buffers_stay_in_band_and_are_copies() -> None:
    small = np.arange(16, dtype=np.float64)
    parts = serialize_parts({'small': small, 'big': np.zeros(1 << 12)})
    assert _segments(serialize(small)) == 1  # the stream alone: no segment for 128 bytes
    buffer = bytearray(b''.join(parts))
    out = deserialize(buffer)
    assert np.array_equal(out['small'], small) and out['small'].flags.writeable
    # The small array owns its memory; only the big one is a view of the payload.
    payload = np.frombuffer(buffer, np.uint8)
    assert not np.shares_memory(out['small'], payload)
    assert np.shares_memory(out['big'], payload)


def test_many_tiny_arrays_cost_what_pickle_costs() -> None:
    """Before: 64-byte padding per segment made 65,536 one-byte arrays 3.4x pickle's size."""
    arrays = [np.full(1, i % 256, np.uint8) for i in range(1 << 16)]
    size = payload_size(serialize_parts(arrays))
    assert size <= len(pickle.dumps(arrays, protocol=5)) + 256
    out = deserialize(serialize(arrays))
    assert [int(a[0]) for a in out[:300]] == [i % 256 for i in range(300)]


@pytest.mark.timeout(300)
def test_more_buffers_than_segments_allowed_still_roundtrip() -> None:
    """Before: 2**20 + 1 one-byte arrays serialized, then deserialize refused them."""
    arrays = [np.full(1, i % 251, np.uint8) for i in range((1 << 20) + 1)]
    out = deserialize(serialize(arrays))
    assert len(out) == len(arrays) and int(out[-1][0]) == (1 << 20) % 251
    del out, arrays


def test_segment_limit_spills_large_buffers_in_band(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a (lowered) segment limit reached, further large buffers stay in the stream."""
    import proxystore.serialize as ser

    monkeypatch.setattr(ser, '_MAX_SEGMENTS', 4)
    arrays = [np.full(1 << 13, i, np.uint8) for i in range(10)]
    payload = serialize(arrays)
    assert _segments(payload) == 4
    out = deserialize(payload)
    assert all(np.array_equal(a, b) for a, b in zip(out, arrays))


def test_unpicklable_lambda_with_lock_and_socket() -> None:
    import socket

    lock = threading.Lock()
    with pytest.raises(SerializationError, match='lock'):
        serialize(lambda: lock.acquire(timeout=1))
    with socket.socket() as sock, pytest.raises(SerializationError, match='socket'):
        serialize({'connection': sock})


def test_unpicklable_object() -> None:
    with pytest.raises(SerializationError, match='lock'):
        serialize(threading.Lock())
    with pytest.raises(SerializationError):
        serialize({'nested': [threading.Lock()]})


@pytest.mark.parametrize('data', [b'', b'\x00', b'not a payload at all', pickle.dumps([1, 2])])
def test_foreign_data(data: bytes) -> None:
    with pytest.raises(SerializationError):
        deserialize(data)


def test_truncated_and_extended() -> None:
    payload = serialize({'a': list(range(100))})
    for cut in (1, 10, len(payload) // 2, len(payload) - 1):
        with pytest.raises(SerializationError, match='Cannot deserialize'):
            deserialize(payload[:cut])
    with pytest.raises(SerializationError):
        deserialize(payload + b'\x00')


def test_corrupt_pickle_stream_detected_by_checksum() -> None:
    payload = bytearray(serialize({'a': list(range(100))}))
    payload[100] ^= 0xFF
    with pytest.raises(SerializationError, match='checksum'):
        deserialize(payload)


def test_wrong_type_input() -> None:
    with pytest.raises(SerializationError):
        deserialize(12345)  # type: ignore[arg-type]


def test_value_errors_for_v03_compatibility() -> None:
    with pytest.raises(ValueError):
        deserialize(b'garbage bytes here')


def test_signed_payloads() -> None:
    payload = serialize([1, 2, 3], secret=b'k1')
    assert deserialize(payload, secret=b'k1') == [1, 2, 3]
    assert deserialize(payload) == [1, 2, 3]  # readers without a secret do not verify
    with pytest.raises(SignatureError):
        deserialize(payload, secret=b'k2')
    with pytest.raises(SignatureError, match='unsigned'):
        deserialize(serialize([1]), secret=b'k1')
    tampered = bytearray(payload)
    tampered[-40] ^= 1
    with pytest.raises(SerializationError):
        deserialize(tampered, secret=b'k1')


# -- the common payload (the compiled reader's share) and its edges ----------------


def _common(obj: Any) -> bytearray:
    return bytearray(serialize(obj))


@pytest.mark.parametrize(
    ('offset', 'what'),
    [(5, 'flags'), (6, 'reserved'), (8, 'segment count'), (12, 'length'), (20, 'crc')],
)
def test_damaged_header_of_common_payload_is_named(offset: int, what: str) -> None:
    payload = _common({'a': 1})
    payload[offset] ^= 0x01
    with pytest.raises(SerializationError, match='Cannot deserialize'):
        deserialize(payload)


def test_two_segment_payload_checks_and_views() -> None:
    array = np.arange(1024, dtype=np.float64)  # 8 KiB: out of band
    payload = bytearray(serialize(array))
    out = deserialize(payload)
    assert np.array_equal(out, array) and out.flags.writeable
    assert np.shares_memory(out, np.frombuffer(payload, dtype=np.uint8))
    del payload  # the array keeps the payload's memory alive
    assert float(out.sum()) == float(array.sum())
    damaged = bytearray(serialize(array))
    damaged[66] ^= 0xFF  # inside the pickle stream
    with pytest.raises(SerializationError, match='checksum'):
        deserialize(damaged)
    damaged = bytearray(serialize(array))
    damaged[20] ^= 0x01  # the buffer's length
    with pytest.raises(SerializationError, match='Cannot deserialize'):
        deserialize(damaged)


def test_unpickling_error_is_wrapped_with_its_cause() -> None:
    payload = serialize(UserClass(1))
    saved = UserClass
    try:
        del globals()['UserClass']
        with pytest.raises(SerializationError, match='Cannot unpickle the object') as info:
            deserialize(payload)
        assert isinstance(info.value.__cause__, AttributeError)
    finally:
        globals()['UserClass'] = saved


@pytest.mark.parametrize(
    'shape', ['bytes', 'bytearray', 'memoryview', 'doubles', 'strided', 'readonly']
)
def test_any_contiguous_or_strided_buffer_is_read(shape: str) -> None:
    payload = serialize([1.5, 'x', None])
    data: Any
    if shape == 'bytes':
        data = payload
    elif shape == 'bytearray':
        data = bytearray(payload)
    elif shape == 'memoryview':
        data = memoryview(bytearray(b'--' + payload))[2:]
    elif shape == 'doubles':  # a view of 8-byte items: read as its bytes
        data = memoryview(bytearray(payload)).cast('d')
    elif shape == 'strided':
        doubled = bytearray(2 * len(payload))
        doubled[::2] = payload
        data = memoryview(doubled)[::2]
    else:
        data = memoryview(payload)
    assert deserialize(data) == [1.5, 'x', None]


def test_arguments_match_the_reference() -> None:
    payload = serialize({'k': 1})
    assert deserialize(data=payload) == {'k': 1}
    assert deserialize(payload, secret=None) == {'k': 1}
    with pytest.raises(TypeError):
        deserialize(payload, b'positional secret')  # type: ignore[misc]
    with pytest.raises(TypeError):
        deserialize(payload, key=b'k')  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        deserialize()  # type: ignore[call-arg]


def test_both_readers_agree_on_many_payloads() -> None:
    rng = np.random.default_rng(7)
    objects: list[Any] = [b'x', 'y', memoryview(b'z'), {'n': 1}, list(range(300))]
    objects += [rng.random(n) for n in (0, 1, 100, 511, 512, 4096, 100_000)]
    for obj in objects:
        payload = bytearray(serialize(obj))
        one = serialize_module._deserialize_python(payload)
        two = deserialize(payload)
        if isinstance(obj, np.ndarray):
            assert np.array_equal(one, two) and one.dtype == two.dtype
        else:
            assert bytes(one) == bytes(two) if isinstance(obj, memoryview) else one == two


_REPORT = (
    'import json, sys, numpy as np\n'
    '{prelude}\n'
    'import proxystore.serialize as s\n'
    'x = np.arange(2000.0)\n'
    'ok = float(s.deserialize(s.serialize(x)).sum()) == float(x.sum())\n'
    'ok = ok and s.deserialize(s.serialize([1, "a"])) == [1, "a"]\n'
    'print(json.dumps({{"implementation": s._IMPLEMENTATION, "works": ok,\n'
    '    "compiled": type(s.deserialize).__name__ == "builtin_function_or_method"}}))\n'
)


def _fresh(prelude: str = '', **env: str) -> dict[str, Any]:
    """How a fresh interpreter's proxystore.serialize reads (the choice is made at import)."""
    import json
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != 'PROXYSTORE_PURE_PYTHON'}
    environ.update(env)
    out = subprocess.run(
        [sys.executable, '-c', _REPORT.format(prelude=prelude)],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def test_pure_python_forced_in_a_fresh_interpreter() -> None:
    report = _fresh('', PROXYSTORE_PURE_PYTHON='1')
    assert report == {'implementation': 'python', 'works': True, 'compiled': False}


def test_compiled_reader_is_used_when_built() -> None:
    import importlib.util

    if importlib.util.find_spec('proxystore._cframe') is None:
        pytest.skip('the C accelerator is not built in this environment')
    assert _fresh() == {'implementation': 'c', 'works': True, 'compiled': True}


@pytest.mark.parametrize(
    'prelude',
    [
        "sys.modules['proxystore._cframe'] = None",  # installed without a compiler
        'import types; stale = types.ModuleType("proxystore._cframe"); stale.API = 0; '
        "sys.modules['proxystore._cframe'] = stale",  # left by an older build
    ],
    ids=['missing', 'stale'],
)
def test_missing_or_stale_extension_falls_back(prelude: str) -> None:
    assert _fresh(prelude) == {'implementation': 'python', 'works': True, 'compiled': False}


def test_both_framings_write_the_same_bytes(implementation: str) -> None:
    reference = serialize_module._frame_pickle_python
    for n in (0, 1, 63, 64, 65, 1000, 4095, 4096, 100_000):
        stream = pickle.dumps(list(range(n)), protocol=5)
        buffers: list[Any] = [None, memoryview(bytearray(b'b' * n)), b'c' * n]
        for buffer in buffers:
            ours = serialize_module._frame_pickle(stream, buffer)
            assert [bytes(p) for p in ours] == [bytes(p) for p in reference(stream, buffer)]
            assert payload_size(ours) % 64 == 0


def test_framed_parts_are_views_not_copies() -> None:
    array = np.arange(2048, dtype=np.float64)  # out of band: the array's own memory
    parts = serialize_parts(array)
    views = [p for p in parts if isinstance(p, memoryview)]
    assert len(views) == 1 and np.shares_memory(np.frombuffer(views[0], dtype=np.uint8), array)
