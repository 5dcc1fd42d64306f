"""Turn objects into framed bytes and back, copying large buffers as little as possible.

``bytes``, ``str`` and ``memoryview`` objects are stored as they are, with no
pickling. Everything else goes through ``cloudpickle`` with pickle protocol 5
and *out-of-band buffers*: the memory of numpy arrays and other
``PickleBuffer`` exporters of at least 4 KiB is never copied into the pickle
stream, it is handed to the backend as its own segment, and on the way back
the arrays are rebuilt as views over the received buffer. Smaller buffers stay
in the stream (a segment costs a length entry and up to 63 bytes of padding,
so a million tiny arrays would otherwise grow ninefold), and they come back as
independent copies that do not keep the received buffer alive. A payload has
at most 2**20 segments; buffers beyond that stay in the stream too, so
everything :func:`serialize_parts` writes, :func:`deserialize` reads.

Every payload is *framed*:

============ =================================================================
bytes        content
============ =================================================================
0..3         magic ``b'PXS\\x01'`` (the last byte is the format version)
4            kind (bytes, str, memoryview, pickle)
5            flags (bit 0: an HMAC tag follows the segments)
6..7         reserved, zero
8..11        number of segments ``n``
12..12+8n    length of each segment (unsigned 64-bit, little-endian)
then         CRC-32 of everything above and of the pickle stream
then         zero padding to a multiple of 64, then each segment padded to 64
last 32      the HMAC-SHA256 tag, when flag bit 0 is set
============ =================================================================

The lengths catch truncated or padded data, the magic catches foreign data
and the CRC catches a damaged header or pickle stream, so bad input raises
:class:`SerializationError` instead of crashing inside ``pickle``. The CRC does
not cover raw buffer segments (array data) because checksumming hundreds of
megabytes would cost more than moving them; a damaged array segment cannot
execute code, and a store configured with a secret signs every byte.

This module is the reference implementation. When the optional accelerator
``proxystore._cframe`` is built, :func:`deserialize` is its compiled twin,
which reads the common payload (unsigned; a pickle stream and at most one
buffer) in C and hands everything else to the Python code here, and the
common payload is framed in C on write. ``PROXYSTORE_PURE_PYTHON=1`` (read at
import) switches it off.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
import sys
import zlib
from collections.abc import Sequence
from typing import Any
from typing import Union

import cloudpickle

from proxystore._compiled import load_compiled
from proxystore.exceptions import SerializationError
from proxystore.exceptions import SignatureError

__all__ = [
    'Buffer',
    'SerializationError',
    'SignatureError',
    'deserialize',
    'serialize',
    'serialize_parts',
    'payload_size',
]

#: Any object exposing the buffer protocol as contiguous bytes.
Buffer = Union[bytes, bytearray, memoryview]

_MAGIC = b'PXS\x01'
_loads = pickle.loads
_dumps = pickle.dumps
_HEADER = struct.Struct('<4sBBHI')
_CRC = struct.Struct('<I')
_ALIGN = 64
_PAD = bytes(_ALIGN)
_TAG_SIZE = 32
#: Most segments a payload may have (the pickle stream and its buffers);
#: :func:`deserialize` refuses more, so :func:`serialize_parts` never writes more.
_MAX_SEGMENTS = 1 << 20
#: Buffers smaller than this stay inside the pickle stream: out of band each
#: would cost a length entry and up to 63 bytes of padding, and a copy of a
#: few KiB is cheaper than a segment.
_INBAND_MAX = 4096

_KIND_BYTES = 0
_KIND_STR = 1
_KIND_MEMORYVIEW = 2
_KIND_PICKLE = 3

_FLAG_SIGNED = 0x01

#: Length tables of one and two segments, the common payloads (most objects
#: are one pickle stream, or a stream and one array).
_LENGTHS = {1: struct.Struct('<Q'), 2: struct.Struct('<QQ')}
#: Exact types that plain ``pickle`` writes exactly as ``cloudpickle`` does (by
#: value, with no globals of their own), so the C pickler can skip
#: cloudpickle's per-object Python hook. Containers qualify if their items do.
_PLAIN_SCALARS = frozenset({int, float, complex, bool, type(None), str, bytes, bytearray})
_PLAIN_CONTAINERS = frozenset({list, tuple, set, frozenset})
#: Most items :func:`_plainly_picklable` inspects before giving up (then
#: cloudpickle's fixed cost is small next to the pickling itself).
_PLAIN_BUDGET = 64


#: Header, length table and CRC of unsigned one- and two-segment payloads, read at once.
_ONE = struct.Struct('<4sBBHIQI')
_TWO = struct.Struct('<4sBBHIQQI')


def _lengths_struct(n: int) -> struct.Struct:
    cached = _LENGTHS.get(n)
    return cached if cached is not None else struct.Struct(f'<{n}Q')


#: cloudpickle's set of modules registered to be pickled by value (mutated in
#: place by ``register_pickle_by_value``); None if this cloudpickle has none.
_BY_VALUE_MODULES = getattr(cloudpickle.cloudpickle, '_PICKLE_BY_VALUE_MODULES', None)
#: ``numpy.ndarray`` once numpy is imported (this module never imports it).
_ndarray: Any = None


def _array_type() -> Any:
    """``numpy.ndarray`` if numpy is imported, else None (remembered once found)."""
    global _ndarray
    numpy = sys.modules.get('numpy')
    if numpy is not None:
        _ndarray = numpy.ndarray
    return _ndarray


def _plainly_picklable(obj: Any) -> bool:
    """Whether ``pickle`` and ``cloudpickle`` give the same stream for ``obj`` (cheap check).

    True for builtin scalars, numpy arrays without Python objects, and small
    builtin containers of those: none of them holds a function or class that
    cloudpickle would pickle by value. Anything else (or a large container)
    goes through cloudpickle, as does everything once a module is registered
    to be pickled by value.
    """
    if _BY_VALUE_MODULES is None or _BY_VALUE_MODULES:
        return False
    ndarray = _ndarray if _ndarray is not None else _array_type()
    if type(obj) is ndarray:  # the most common large object: no walk
        return not obj.dtype.hasobject
    budget = _PLAIN_BUDGET
    todo = [obj]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind in _PLAIN_SCALARS:
            continue
        if kind is ndarray:
            if item.dtype.hasobject:
                return False
            continue
        budget -= 1
        if budget < 0:
            return False
        if kind in _PLAIN_CONTAINERS:
            if len(item) > budget:
                return False
            todo.extend(item)
        elif kind is dict:
            if 2 * len(item) > budget:
                return False
            todo.extend(item)
            todo.extend(item.values())
        else:
            return False
    return True


def _padding(size: int) -> int:
    return -size % _ALIGN


def _as_bytes_view(buf: Any) -> memoryview:
    view = memoryview(buf)
    if not view.c_contiguous:  # e.g. a strided slice: its bytes, copied in order
        return memoryview(view.tobytes())
    if view.format != 'B' or view.ndim != 1:
        view = view.cast('B')
    return view


def serialize_parts(obj: Any, *, secret: bytes | None = None) -> list[Buffer]:
    """Serialize ``obj`` into a list of buffers whose concatenation is the payload.

    Large buffers of ``obj`` appear in the list as views of its own memory, so
    a backend that can write a list (``writev``, a pipelined Redis command)
    never makes a joined copy. Views are only valid while ``obj`` is unchanged.

    Args:
        obj: Any picklable object.
        secret: When given, an HMAC-SHA256 tag over the whole payload is
            appended, and :func:`deserialize` must be given the same secret.

    Raises:
        SerializationError: ``obj`` cannot be pickled.

    """
    segments: list[Buffer]
    if type(obj) is bytes:
        kind, segments = _KIND_BYTES, [obj]
    elif type(obj) is str:
        kind, segments = _KIND_STR, [obj.encode('utf-8', 'surrogatepass')]
    elif type(obj) is memoryview:
        kind, segments = _KIND_MEMORYVIEW, [_as_bytes_view(obj)]
    else:
        kind = _KIND_PICKLE
        buffers: list[pickle.PickleBuffer] = []

        def out_of_band(buf: pickle.PickleBuffer) -> bool:
            # A true return keeps the buffer in the stream. Past the segment
            # limit every buffer stays in-band, so any object stays readable.
            if len(buffers) >= _MAX_SEGMENTS - 1 or memoryview(buf).nbytes < _INBAND_MAX:
                return True
            buffers.append(buf)
            return False

        dumps = _dumps if _plainly_picklable(obj) else cloudpickle.dumps
        try:
            stream = dumps(obj, protocol=5, buffer_callback=out_of_band)
        except Exception as e:
            raise SerializationError(
                f'Cannot serialize an object of type {type(obj).__qualname__}: {e}. '
                'Objects holding locks, sockets, open files or other OS resources '
                'cannot be pickled; pass the data they hold instead.',
            ) from e
        if secret is None and len(buffers) < 2:  # the common payloads, framed directly
            return _frame_pickle(stream, _raw_buffer(buffers[0]) if buffers else None)
        segments = [stream, *map(_raw_buffer, buffers)]

    if secret is None and type(segments[0]) is bytes and len(segments) == 1:
        return _frame_one(kind, segments[0])
    flags = _FLAG_SIGNED if secret is not None else 0
    lengths = [len(s) if isinstance(s, bytes) else memoryview(s).nbytes for s in segments]
    prefix = _HEADER.pack(_MAGIC, kind, flags, 0, len(segments)) + _lengths_struct(
        len(segments)
    ).pack(*lengths)
    crc = zlib.crc32(prefix)
    if kind == _KIND_PICKLE:
        crc = zlib.crc32(segments[0], crc)
    header = prefix + _CRC.pack(crc)
    header += _PAD[: _padding(len(header))]

    parts: list[Buffer] = [header]
    for segment, length in zip(segments, lengths):
        if length:
            parts.append(segment)
        pad = _padding(length)
        if pad:
            parts.append(_PAD[:pad])
    if secret is not None:
        mac = hmac.new(secret, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part)
        parts.append(mac.digest())
    return parts


#: CRC-32 of the 20- or 28-byte header prefix of an unsigned pickle payload of one
#: or two segments, by segment lengths: those bytes are fixed by the lengths once
#: the other fields are checked, so the common write and read checksum only the
#: stream.
_PREFIX_CRCS: dict[Any, int] = {}
_PREFIX_CRCS_MAX = 4096


def _prefix_crc(view: Buffer, end: int, lengths: Any) -> int:
    """CRC-32 of ``view[:end]``, remembered under ``lengths``."""
    crc = _PREFIX_CRCS.get(lengths)
    if crc is None:
        if len(_PREFIX_CRCS) >= _PREFIX_CRCS_MAX:
            _PREFIX_CRCS.clear()
        crc = _PREFIX_CRCS[lengths] = zlib.crc32(view[:end])
    return crc


_ONE_PREFIX = struct.Struct('<4sBBHIQ')
_ONE_HEADER_PAD = bytes(_ALIGN - _ONE_PREFIX.size - _CRC.size)


def _frame_one(kind: int, segment: bytes) -> list[Buffer]:
    """:func:`serialize_parts`'s framing of an unsigned one-segment payload (most objects)."""
    length = len(segment)
    prefix = _ONE_PREFIX.pack(_MAGIC, kind, 0, 0, 1, length)
    if kind == _KIND_PICKLE:
        head = _PREFIX_CRCS.get(length)
        if head is None:
            head = _prefix_crc(prefix, 20, length)
        crc = zlib.crc32(segment, head)
    else:
        crc = zlib.crc32(prefix)
    header = prefix + _CRC.pack(crc) + _ONE_HEADER_PAD
    if not length:
        return [header]
    pad = -length % _ALIGN
    return [header, segment, _PAD[:pad]] if pad else [header, segment]


_TWO_PREFIX = struct.Struct('<4sBBHIQQ')


def _frame_two(stream: bytes, buffer: Buffer) -> list[Buffer]:
    """:func:`serialize_parts`'s framing of an unsigned pickle stream and one buffer."""
    length = len(stream)
    size = memoryview(buffer).nbytes
    prefix = _TWO_PREFIX.pack(_MAGIC, _KIND_PICKLE, 0, 0, 2, length, size)
    crc = zlib.crc32(stream, zlib.crc32(prefix))
    parts: list[Buffer] = [prefix + _CRC.pack(crc) + _PAD[: _ALIGN - _TWO_PREFIX.size - _CRC.size]]
    for segment, n in ((stream, length), (buffer, size)):
        if n:
            parts.append(segment)
            if n % _ALIGN:
                parts.append(_PAD[: -n % _ALIGN])
    return parts


def _raw_buffer(buf: pickle.PickleBuffer) -> Buffer:
    """An out-of-band buffer's bytes: a view of the object's memory where it is contiguous."""
    try:
        return buf.raw()
    except BufferError:  # pragma: no cover - exporters give contiguous data
        return memoryview(buf).tobytes()


def _frame_pickle(stream: bytes, buffer: Buffer | None) -> list[Buffer]:
    """The framing of an unsigned pickle stream and at most one out-of-band buffer."""
    return _frame_one(_KIND_PICKLE, stream) if buffer is None else _frame_two(stream, buffer)


def payload_size(parts: Sequence[Buffer]) -> int:
    """Total number of bytes in a list of buffers returned by :func:`serialize_parts`."""
    return sum(len(p) if isinstance(p, bytes) else memoryview(p).nbytes for p in parts)


def serialize(obj: Any, *, secret: bytes | None = None) -> bytes:
    """Serialize ``obj`` to one ``bytes`` object (see :func:`serialize_parts`).

    Raises:
        SerializationError: ``obj`` cannot be pickled.

    """
    return b''.join(serialize_parts(obj, secret=secret))


def _corrupt(reason: str) -> SerializationError:
    return SerializationError(
        f'Cannot deserialize: {reason}. The data is not a complete ProxyStore '
        'payload (truncated, damaged, or written by something else).',
    )


def _check_signature(view: memoryview, offset: int, secret: bytes, *, signed: bool) -> None:
    """Refuse an unsigned payload, or one whose tag (after ``offset``) does not match."""
    if not signed:
        raise SignatureError(
            'Refusing to deserialize an unsigned payload: this store has a '
            'secret, so every object it reads must be signed with it.',
        )
    tag = hmac.new(secret, view[:offset], hashlib.sha256).digest()
    if not hmac.compare_digest(tag, view[offset:]):
        raise SignatureError(
            'Refusing to deserialize: the payload signature does not match. '
            'The data was modified, or written with a different secret.',
        )


def _unpickle_error(e: BaseException) -> SerializationError:
    return SerializationError(
        f'Cannot unpickle the object: {type(e).__name__}: {e}. If a module '
        'or class is missing, make it importable in this process.',
    )


def _unpickle(stream: memoryview, buffers: Sequence[memoryview]) -> Any:
    try:
        return _loads(stream, buffers=buffers)
    except Exception as e:
        raise _unpickle_error(e) from e


def deserialize(data: Buffer | Any, *, secret: bytes | None = None) -> Any:
    """Rebuild the object serialized into ``data``.

    Arrays and other out-of-band buffers become views of ``data``'s memory
    (no copy), so they are writable exactly when ``data`` is (pass a
    ``bytearray`` for writable arrays). ``bytes`` are returned as a copy, and
    ``memoryview`` targets as a view of ``data``.

    Args:
        data: A payload from :func:`serialize` (any contiguous buffer).
        secret: The secret the payload was signed with, if any. With a secret,
            an unsigned or wrongly signed payload is refused before unpickling.

    Raises:
        SerializationError: ``data`` is empty, truncated, damaged or foreign,
            or unpickling failed (for example a class that cannot be imported).
        SignatureError: ``secret`` was given and the tag does not match.

    """
    try:
        view = memoryview(data)
    except TypeError as e:
        raise SerializationError(
            f'Cannot deserialize an object of type {type(data).__qualname__}: '
            'expected bytes, bytearray or memoryview.',
        ) from e
    if (
        type(data) is not bytearray
        and type(data) is not bytes
        and (view.format != 'B' or view.ndim != 1 or not view.c_contiguous)
    ):
        view = _as_bytes_view(view)
    total = view.nbytes
    if secret is None and total >= _ALIGN:
        # The common payload, checked exactly as below but inline (this is
        # every small object's read): an unsigned pickle of one or two segments.
        magic, kind, flags, reserved, nseg, length, crc = _ONE.unpack_from(view)
        if magic == _MAGIC and kind == _KIND_PICKLE and not flags and not reserved:
            end = _ALIGN + length
            if nseg == 1 and total == end + (-length % _ALIGN):
                head = _PREFIX_CRCS.get(length)
                if head is None:
                    head = _prefix_crc(view, 20, length)
                stream = view[_ALIGN:end]
                if zlib.crc32(stream, head) == crc:
                    return _unpickle(stream, ())
            elif nseg == 2:
                _, _, _, _, _, _, size, crc = _TWO.unpack_from(view)
                start = end + (-length % _ALIGN)
                stream = view[_ALIGN:end]
                if total == start + size + (-size % _ALIGN) and crc == zlib.crc32(
                    stream, _prefix_crc(view, 28, (length, size))
                ):
                    return _unpickle(stream, (view[start : start + size],))
    return _read_checked(view, total, secret)


def _read_checked(view: memoryview, total: int, secret: bytes | None) -> Any:
    """:func:`deserialize` of any payload: every check, each failure named."""
    if total < _HEADER.size:
        raise _corrupt(f'only {total} bytes, shorter than a header')
    magic, kind, flags, _, nseg = _HEADER.unpack_from(view)
    if magic != _MAGIC:
        if magic[:3] == _MAGIC[:3]:
            raise _corrupt(f'format version {magic[3]} is not supported by this version')
        raise _corrupt('missing ProxyStore header')
    if kind > _KIND_PICKLE or nseg == 0 or nseg > _MAX_SEGMENTS:
        raise _corrupt('invalid header')
    table_end = _HEADER.size + 8 * nseg
    if total < table_end + _CRC.size:
        raise _corrupt(f'only {total} bytes, shorter than its own header')
    lengths = _lengths_struct(nseg).unpack_from(view, _HEADER.size)
    (expected_crc,) = _CRC.unpack_from(view, table_end)
    offset = table_end + _CRC.size
    offset += -offset % _ALIGN
    starts = []
    for length in lengths:
        starts.append(offset)
        offset += length + (-length % _ALIGN)
    signed = flags & _FLAG_SIGNED
    expected_total = offset + (_TAG_SIZE if signed else 0)
    if total != expected_total:
        raise _corrupt(f'{total} bytes where the header announces {expected_total}')

    crc = zlib.crc32(view[:table_end])
    if kind == _KIND_PICKLE:
        crc = zlib.crc32(view[starts[0] : starts[0] + lengths[0]], crc)
    if crc != expected_crc:
        raise _corrupt('checksum mismatch')

    if secret is not None:
        _check_signature(view, offset, secret, signed=bool(signed))

    return _rebuild(kind, [view[s : s + n] for s, n in zip(starts, lengths)])


#: The pure-Python :func:`deserialize`: the reference, and the compiled one's general path.
_deserialize_python = deserialize
#: The pure-Python framing of the common payload (the reference of the compiled one).
_frame_pickle_python = _frame_pickle

# The accelerator's interface version this module expects (CFRAME_API in _cframe.c).
_C_API = 1
_c: Any = load_compiled('proxystore._cframe', _C_API, __name__)
if _c is not None:
    _c._setup(_loads, zlib.crc32, _unpickle_error, _deserialize_python)
    # The same functions, with the common payload read and framed in C (see _cframe.c).
    deserialize = _c.deserialize
    _frame_pickle = _c.frame_pickle
#: Which implementation reads the common payload: 'c' or 'python'.
_IMPLEMENTATION = 'python' if _c is None else 'c'


def _rebuild(kind: int, segments: list[memoryview]) -> Any:
    """The object of a checked payload's ``segments``."""
    if kind == _KIND_BYTES:
        return segments[0].tobytes()
    if kind == _KIND_STR:
        try:
            return str(segments[0], 'utf-8', 'surrogatepass')
        except UnicodeDecodeError as e:
            raise _corrupt('invalid UTF-8 in a str payload') from e
    if kind == _KIND_MEMORYVIEW:
        return segments[0]
    return _unpickle(segments[0], segments[1:])


def is_payload(head: Buffer) -> bool:
    """Whether ``head`` (a payload's first buffer) starts like :func:`serialize_parts` output."""
    return bytes(memoryview(head).cast('B')[:4]) == _MAGIC
