"""The proxy contract: transparent forwarding, laziness and pickling.

Every test runs against both implementations (``[c]``: the compiled
accelerator, ``[python]``: the pure-Python reference); see ``tests/proxy_impls.py``.
"""

from __future__ import annotations

import array
import asyncio
import collections
import collections.abc as abc
import contextlib
import copy
import ctypes
import json
import math
import multiprocessing
import operator
import os
import pathlib
import pickle
import sys
import threading
import types
import typing
import warnings
import weakref
from typing import Any

import cloudpickle
import numpy as np
import pytest

import proxystore as ps
import proxystore.proxy as proxy_module
from proxystore.exceptions import ProxyResolveError
from proxystore.factory import Factory
from proxystore.factory import LambdaFactory
from proxystore.factory import SimpleFactory
from proxystore.proxy import Proxy
from proxystore.proxy import extract
from proxystore.proxy import get_factory
from proxystore.proxy import get_key
from proxystore.proxy import is_proxy
from proxystore.proxy import is_resolved
from proxystore.proxy import resolve
from proxystore.proxy import resolve_async
from tests.proxy_impls import IMPLEMENTATIONS
from tests.proxy_impls import use

dill = pytest.importorskip('dill')


@pytest.fixture(autouse=True, params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    module = use(request.param, monkeypatch, globals())
    monkeypatch.setitem(globals(), 'Tagged', _tagged_class(module.Proxy))
    return module


class CountingFactory(Factory[Any]):
    """Counts calls, to prove laziness."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.calls = 0

    def resolve(self) -> Any:
        self.calls += 1
        return self.obj


class Point:
    """A user class with attributes, methods and a custom equality."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def norm2(self) -> int:
        return self.x * self.x + self.y * self.y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


class Resource:
    """A context manager that records entering and leaving."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def __enter__(self) -> str:
        self.log.append('enter')
        return 'inside'

    def __exit__(self, *args: Any) -> bool:
        self.log.append('exit')
        return False


def make(obj: Any) -> Proxy[Any]:
    return Proxy(SimpleFactory(obj))


def test_the_implementation_under_test(implementation: Any, request: pytest.FixtureRequest) -> None:
    expected = request.node.callspec.params['implementation']
    assert expected == implementation._IMPLEMENTATION
    store = ps.store.init_store('local', name='implementation-test')
    for p in (make([1]), store.proxy([1]), pickle.loads(pickle.dumps(make([1])))):
        assert type(p).__mro__[1] is implementation.Proxy and p == [1]
        compiled = [c.__name__ for c in type(p).__mro__ if c.__module__ == 'proxystore._cproxy']
        assert compiled == (['ProxyBase'] if expected == 'c' else [])


def test_quickstart_lambda_factory() -> None:
    obj = {'a': 1}

    def resolve_object() -> Any:
        return obj

    p = ps.proxy.Proxy(ps.factory.LambdaFactory(resolve_object))
    assert not is_resolved(p)
    assert p['a'] == 1
    assert is_resolved(p)
    assert extract(p) is obj


def test_lazy_until_first_use() -> None:
    factory = CountingFactory([1, 2, 3])
    p = Proxy(factory)
    assert factory.calls == 0
    assert isinstance(p, Proxy) and is_proxy(p)
    assert not is_proxy([1])
    assert len(p) == 3
    assert p[0] == 1 and sum(p) == 6
    assert factory.calls == 1


def test_not_a_factory_is_type_error() -> None:
    with pytest.raises(TypeError, match='Factory'):
        Proxy(lambda: 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    'obj',
    [
        7,
        'text',
        [3, 1, 2],
        {'k': 'v'},
        (1, 2),
        {1, 2},
        b'raw',
        3.5,
        Point(1, 2),
        np.arange(6).reshape(2, 3),
    ],
    ids=lambda o: type(o).__name__,
)
def test_forwards_common_protocols(obj: Any) -> None:
    p = make(obj)
    assert np.all(p == obj)
    assert not np.any(p != obj)
    assert str(p) == str(obj)
    assert repr(p) == repr(obj)
    if not isinstance(obj, np.ndarray):
        assert bool(p) == bool(obj)
    assert isinstance(p, type(obj))
    assert p.__class__ is type(obj)
    assert issubclass(type(p), Proxy) and type(p).__name__ == 'Proxy'
    assert dir(p) == dir(obj)
    if hasattr(obj, '__len__'):
        assert len(p) == len(obj)
    if isinstance(obj, (list, tuple, set, str, bytes, dict)):
        assert list(iter(p)) == list(iter(obj))
    if isinstance(obj, (int, str, tuple, bytes, float, Point)):
        assert hash(p) == hash(obj)


def test_arithmetic_reflected_and_comparisons() -> None:
    p = make(10)
    binary = [
        operator.add,
        operator.sub,
        operator.mul,
        operator.truediv,
        operator.floordiv,
        operator.mod,
        operator.pow,
        operator.lshift,
        operator.rshift,
        operator.and_,
        operator.or_,
        operator.xor,
        divmod,
        operator.lt,
        operator.le,
        operator.gt,
        operator.ge,
    ]
    for op in binary:
        assert op(p, 3) == op(10, 3), op
        assert op(3, p) == op(3, 10), op
    assert -p == -10 and +p == 10 and abs(make(-4)) == 4 and ~p == ~10
    assert pow(p, 2, 7) == pow(10, 2, 7)
    assert int(make(3.7)) == 3 and float(p) == 10.0 and complex(p) == 10
    assert [0, 1, 2][make(1)] == 1  # __index__
    assert round(make(2.567), 2) == 2.57
    assert math.floor(make(2.5)) == 2 and math.ceil(make(2.5)) == 3 and math.trunc(make(-2.5)) == -2
    assert f'{make(3.14159):.2f}' == '3.14'
    assert make(np.eye(2)) @ np.eye(2) is not None


def test_proxy_op_proxy() -> None:
    assert make(2) + make(3) == 5
    assert make(2) < make(3)
    assert make([1]) == make([1])


def test_inplace_operators() -> None:
    p = make(5)
    p += 1
    assert isinstance(p, Proxy) and p == 6
    p *= 2
    assert p == 12
    items = [1]
    q = make(items)
    q += [2]
    assert items == [1, 2]  # mutable targets are changed in place
    arr = np.zeros(3)
    r = make(arr)
    r += 1
    assert arr.tolist() == [1, 1, 1]


def test_attributes_get_set_delete() -> None:
    point = Point(3, 4)
    p = make(point)
    assert p.x == 3 and p.norm2() == 25
    p.x = 6
    assert point.x == 6
    p.z = 1
    assert point.z == 1  # type: ignore[attr-defined]
    del p.z
    assert not hasattr(point, 'z')
    with pytest.raises(AttributeError):
        p.missing


def test_containers_items() -> None:
    data = {'a': 1}
    p = make(data)
    p['b'] = 2
    assert data == {'a': 1, 'b': 2}
    assert 'b' in p
    del p['a']
    assert data == {'b': 2}
    lst = make([1, 2, 3, 4])
    assert lst[1:3] == [2, 3]
    assert list(reversed(lst)) == [4, 3, 2, 1]


def test_callable_and_context_manager() -> None:
    p = make(lambda a, b=1: a + b)
    assert p(1, b=2) == 3
    resource = Resource()
    with make(resource) as value:
        assert value == 'inside'
    assert resource.log == ['enter', 'exit']


def test_numpy_functions_and_isinstance() -> None:
    arr = np.arange(10, dtype=np.float64)
    p = make(arr)
    assert isinstance(p, np.ndarray)
    assert np.sum(p) == 45
    assert np.array_equal(np.asarray(p), arr)
    assert np.array_equal(p + 1, arr + 1)
    assert np.array_equal(np.add(p, p), arr * 2)
    assert p.shape == (10,) and p.dtype == np.float64
    assert np.mean(p) == 4.5


def test_isinstance_does_not_resolve_when_type_known() -> None:
    factory = CountingFactory(np.zeros(3))
    p = Proxy(factory)
    assert not isinstance(p, threading.Thread)  # LambdaFactory-like: type unknown
    assert factory.calls == 1  # an unknown type needs the target
    store = ps.store.init_store('local', name='isinstance-test')
    q = store.proxy(np.zeros(3))
    assert isinstance(q, np.ndarray) and not isinstance(q, dict)
    assert not is_resolved(q)
    assert not callable(q)  # an array is not callable; answered without resolving
    assert not is_resolved(q)


def test_proxy_of_proxy() -> None:
    inner = make([1, 2])
    outer = Proxy(SimpleFactory(inner))
    assert outer == [1, 2]
    assert len(outer) == 2
    assert isinstance(outer, list)


def test_proxy_of_class_isinstance() -> None:
    p = make(Point)
    assert isinstance(Point(1, 1), p)
    assert issubclass(Point, p)
    assert p(1, 2) == Point(1, 2)


def test_copy_and_deepcopy_copy_the_target() -> None:
    data = {'a': [1]}
    p = make(data)
    shallow = copy.copy(p)
    deep = copy.deepcopy(p)
    assert shallow == data and shallow is not data
    assert deep == data and deep['a'] is not data['a']


def test_weakref_to_proxy() -> None:
    p = make([1])
    ref = weakref.ref(p)
    assert ref() is p


@pytest.mark.parametrize(
    'dumps,loads',
    [
        (pickle.dumps, pickle.loads),
        (cloudpickle.dumps, pickle.loads),
        (dill.dumps, dill.loads),
    ],
    ids=['pickle', 'cloudpickle', 'dill'],
)
def test_pickle_pickles_only_the_factory(dumps: Any, loads: Any) -> None:
    big = np.ones(1_000_000)
    store = ps.store.init_store('local', name='pickle-test')
    p = store.proxy(big)
    unresolved = dumps(p)
    np.sum(p)  # resolve; the pickle must not grow
    resolved = dumps(p)
    assert len(unresolved) < 400 and len(resolved) < 400
    q = loads(resolved)
    assert isinstance(q, Proxy) and not is_resolved(q)
    assert np.array_equal(q, big)


def test_lambda_factory_pickles_with_cloudpickle() -> None:
    value = 41
    p = Proxy(LambdaFactory(lambda x: value + x, 1))
    q = pickle.loads(cloudpickle.dumps(p))
    assert q == 42


def test_module_functions() -> None:
    factory = CountingFactory('x')
    p = Proxy(factory)
    assert get_factory(p) is factory and p.__factory__ is factory
    assert get_key(p) is None
    resolve(p)
    assert is_resolved(p) and factory.calls == 1
    resolve(p)
    assert factory.calls == 1
    assert p.__wrapped__ == 'x'
    p.__wrapped__ = 'y'
    assert p == 'y'
    with pytest.raises(TypeError):
        extract('not a proxy')  # type: ignore[arg-type]


def test_resolve_async() -> None:
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return 'done'

    p = Proxy(LambdaFactory(slow))
    resolve_async(p)
    assert started.wait(5)
    assert not is_resolved(p)
    release.set()
    assert p == 'done'


def test_resolve_is_thread_safe() -> None:
    factory = CountingFactory([0])
    p = Proxy(factory)
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        len(p)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert factory.calls == 1


def test_attribute_error_in_factory_is_wrapped() -> None:
    def broken() -> Any:
        raise AttributeError('inner')

    p = Proxy(LambdaFactory(broken))
    with pytest.raises(ProxyResolveError, match='inner'):
        p.anything
    with pytest.raises(ProxyResolveError):
        hasattr(p, 'anything')


def test_other_factory_errors_propagate() -> None:
    def broken() -> Any:
        raise ValueError('boom')

    p = Proxy(LambdaFactory(broken))
    with pytest.raises(ValueError, match='boom'):
        len(p)
    assert not is_resolved(p)


# -- copy and deepcopy (issue 10, item 11) ---------------------------------------------------


def _mutate(obj: Any) -> bool:
    """Change a mutable object in place; False for immutable ones."""
    if isinstance(obj, dict):
        obj['a'].append(99)
    elif isinstance(obj, list):
        obj[0].append(99)
    elif isinstance(obj, np.ndarray):
        obj[0] = 99
    elif isinstance(obj, Point):
        obj.x = 99
    else:
        return False
    return True


COPY_TARGETS = [
    lambda: {'a': [1], 'b': 'x'},
    lambda: [[1], [2]],
    lambda: np.arange(4),
    lambda: Point(1, 2),
    lambda: 'text',
    lambda: 7,
]
COPY_IDS = ['dict', 'list', 'ndarray', 'Point', 'str', 'int']


@pytest.mark.parametrize('make_obj', COPY_TARGETS, ids=COPY_IDS)
@pytest.mark.parametrize('resolved_first', [False, True], ids=['unresolved', 'resolved'])
def test_deepcopy_copies_the_target_never_refetches(make_obj: Any, resolved_first: bool) -> None:
    obj = make_obj()
    store = ps.store.init_store('local', name='deepcopy-test')
    p = store.proxy(obj, evict=True)  # the store forgets the object after one resolve
    key = get_key(p)
    if resolved_first:
        resolve(p)
    deep = copy.deepcopy(p)
    again = copy.deepcopy(p)  # a new proxy would fetch again and fail: the key is gone
    assert store.metrics()['resolve']['count'] == 1 and not store.exists(key)  # type: ignore[arg-type]
    target = extract(p)
    for c in (deep, again):
        assert not is_proxy(c) and type(c) is type(obj)
        assert np.all(c == target)
    if _mutate(deep):
        assert not np.all(deep == target)  # independent of the target...
        assert np.all(again == target)  # ...and of the other copy


def test_deepcopy_shares_the_copy_with_the_target_through_memo() -> None:
    data = {'a': [1]}
    p = make(data)
    copied = copy.deepcopy([data, p, p])
    assert copied[0] is copied[1] is copied[2] and copied[0] is not data
    nested = copy.deepcopy({'proxy': p})
    assert not is_proxy(nested['proxy']) and nested['proxy'] == data


@pytest.mark.parametrize('make_obj', COPY_TARGETS, ids=COPY_IDS)
def test_copy_is_a_shallow_copy_of_the_target(make_obj: Any) -> None:
    obj = make_obj()
    store = ps.store.init_store('local', name='copy-test')
    p = store.proxy(obj, evict=True)
    first = copy.copy(p)
    second = copy.copy(p)  # no second fetch
    target = extract(p)
    assert store.metrics()['resolve']['count'] == 1
    for c in (first, second):
        assert not is_proxy(c) and type(c) is type(obj)
        assert np.all(c == target)
    if isinstance(obj, (dict, list, np.ndarray, Point)):
        assert first is not target
    if isinstance(obj, dict):
        assert first['a'] is target['a']  # shallow: the items are shared


# -- protocol and ABC checks answer as the target does (issue 10, item 12) ------------------


def _generator() -> Any:
    yield 1
    yield 2


async def _async_generator() -> Any:
    yield 1
    yield 2


async def _coroutine() -> int:
    return 7


@contextlib.asynccontextmanager
async def _async_resource() -> Any:
    yield 'async inside'


class Sequenceish:
    """Iterable only through the old ``__getitem__`` protocol."""

    def __getitem__(self, i: int) -> int:
        if i >= 2:
            raise IndexError(i)
        return i


PROTOCOL_TARGETS: dict[str, Any] = {
    'int': lambda: 5,
    'float': lambda: 2.5,
    'bool': lambda: True,
    'complex': lambda: 1j,
    'str': lambda: 'a/b',
    'bytes': lambda: b'a/b',
    'bytearray': lambda: bytearray(b'ab'),
    'list': lambda: [1, 2],
    'tuple': lambda: (1, 2),
    'dict': lambda: {'k': 1},
    'set': lambda: {1},
    'frozenset': lambda: frozenset({1}),
    'range': lambda: range(3),
    'generator': _generator,
    'list_iterator': lambda: iter([1, 2]),
    'function': lambda: len,
    'class': lambda: Point,
    'Point': lambda: Point(1, 2),
    'Sequenceish': Sequenceish,
    'Resource': Resource,
    'async_resource': _async_resource,
    'async_generator': _async_generator,
    'PurePosixPath': lambda: pathlib.PurePosixPath('a/b'),
    'ndarray': lambda: np.arange(3),
    'float32': lambda: np.float32(2.5),
    'dtype': lambda: np.dtype('f8'),
    'deque': lambda: collections.deque([1, 2]),
    'array': lambda: array.array('i', [1, 2]),
    'memoryview': lambda: memoryview(b'ab'),
    'mappingproxy': lambda: types.MappingProxyType({'k': 1}),
    'Counter': lambda: collections.Counter('ab'),
    'ctypes_array': lambda: (ctypes.c_int * 2)(1, 2),
    'None': lambda: None,
}

ABCS: list[Any] = [
    abc.Callable,
    abc.Iterable,
    abc.Iterator,
    abc.Generator,
    abc.Sized,
    abc.Container,
    abc.Collection,
    abc.Reversible,
    abc.Hashable,
    abc.Sequence,
    abc.MutableSequence,
    abc.Mapping,
    abc.Set,
    abc.Awaitable,
    abc.Coroutine,
    abc.AsyncIterable,
    abc.AsyncIterator,
    abc.AsyncGenerator,
    os.PathLike,
    contextlib.AbstractContextManager,
    contextlib.AbstractAsyncContextManager,
]

# typing's runtime protocols fall back to hasattr() on the instance, which a
# proxy of a known type can only answer by resolving.
PROTOCOLS: list[Any] = [
    typing.SupportsInt,
    typing.SupportsFloat,
    typing.SupportsComplex,
    typing.SupportsIndex,
    typing.SupportsAbs,
    typing.SupportsRound,
]

# Documented exceptions: these targets' builtins (int('5'), open('path'), ...) work
# without a special method, which a proxy needs to offer them.
DEVIATIONS: dict[type, set[Any]] = {
    str: {os.PathLike, typing.SupportsInt, typing.SupportsFloat, typing.SupportsComplex},
    bytes: {os.PathLike, typing.SupportsInt, typing.SupportsFloat, typing.SupportsComplex},
    bytearray: {typing.SupportsInt, typing.SupportsFloat, typing.SupportsComplex},
}


class KnownTypeFactory(CountingFactory):
    """Counts calls and knows its target's type (as store factories do)."""

    def target_type(self) -> type | None:
        return type(self.obj)


def _proxy_in_mode(obj: Any, mode: str) -> tuple[Proxy[Any], CountingFactory]:
    """A proxy of ``obj``: type known and unresolved, or type unknown (resolved or not)."""
    factory = KnownTypeFactory(obj) if mode == 'known' else CountingFactory(obj)
    p = Proxy(factory)
    if mode == 'unknown-resolved':
        resolve(p)
    return p, factory


MODES = ['known', 'unknown-resolved', 'unknown']


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('make_obj', list(PROTOCOL_TARGETS.values()), ids=list(PROTOCOL_TARGETS))
def test_abc_checks_answer_as_the_target(make_obj: Any, mode: str) -> None:
    obj = make_obj()
    p, factory = _proxy_in_mode(obj, mode)
    if mode != 'unknown':  # an unresolved proxy of unknown type is callable until resolved
        assert callable(p) == callable(obj)
    for cls in ABCS:
        expected = isinstance(obj, cls) or cls in DEVIATIONS.get(type(obj), ())
        assert isinstance(p, cls) == expected, cls
    assert callable(p) == callable(obj)
    assert isinstance(p, Proxy) and isinstance(p, type(obj))
    # Known types are answered without fetching; unknown ones resolve once.
    assert factory.calls == (0 if mode == 'known' else 1)
    for protocol in PROTOCOLS:  # hasattr() on the proxy: may resolve it
        expected = isinstance(obj, protocol) or protocol in DEVIATIONS.get(type(obj), ())
        assert isinstance(p, protocol) == expected, protocol


def _outcome(fn: Any, obj: Any) -> str:
    try:
        fn(obj)
    except Exception as e:  # the outcome is the exception's type
        return type(e).__name__
    return 'ok'


OPERATIONS: dict[str, Any] = {
    'call': lambda o: o(),
    'iter': iter,
    'next': next,
    'len': len,
    'reversed': reversed,
    'contains': lambda o: 1 in o,
    'getitem': lambda o: o[0],
    'hash': hash,
    'with': lambda o: contextlib.ExitStack().enter_context(o),
    'fspath': os.fspath,
    'int': int,
    'float': float,
    'complex': complex,
    'index': operator.index,
    'abs': abs,
    'round': round,
    'trunc': math.trunc,
    'floor': math.floor,
    'bytes': bytes,
}


_CTYPES_ARRAY = type(PROTOCOL_TARGETS['ctypes_array']())

# Documented: int()/float() of a buffer parse its bytes as text (ValueError on
# these), which a proxy cannot offer (it has no buffer): TypeError instead. A C
# type iterable only through __getitem__ is not iterated before it resolves.
DIFFERENT_OUTCOMES = {
    (kind, op, mode)
    for kind in (array.array, memoryview, _CTYPES_ARRAY)
    for op in ('int', 'float')
    for mode in MODES
} | {(_CTYPES_ARRAY, op, 'known') for op in ('iter', 'reversed', 'contains')}


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('make_obj', list(PROTOCOL_TARGETS.values()), ids=list(PROTOCOL_TARGETS))
def test_operations_succeed_or_fail_as_on_the_target(make_obj: Any, mode: str) -> None:
    for name, op in OPERATIONS.items():
        expected = _outcome(op, make_obj())  # fresh objects: generators are consumed
        p, _ = _proxy_in_mode(make_obj(), mode)
        if (type(make_obj()), name, mode) in DIFFERENT_OUTCOMES:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # e.g. int() delegating to __trunc__
            assert _outcome(op, p) == expected, name


@pytest.mark.parametrize('mode', MODES)
def test_next_on_a_proxy_of_an_iterator(mode: str) -> None:
    p, _ = _proxy_in_mode(_generator(), mode)
    assert next(p) == 1
    assert isinstance(p, abc.Iterator) and isinstance(p, abc.Generator)
    assert list(p) == [2]
    with pytest.raises(StopIteration):
        next(p)
    q, _ = _proxy_in_mode(iter('ab'), mode)
    assert next(q) == 'a' and next(q) == 'b'


@pytest.mark.parametrize('mode', MODES)
def test_await_and_async_protocols(mode: str) -> None:
    async def main() -> Any:
        coro, _ = _proxy_in_mode(_coroutine(), mode)
        gen, _ = _proxy_in_mode(_async_generator(), mode)
        ctx, _ = _proxy_in_mode(_async_resource(), mode)
        items = [x async for x in gen]
        async with ctx as value:
            pass
        return await coro, items, value

    assert asyncio.run(main()) == (7, [1, 2], 'async inside')


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('kind', ['str', 'bytes', 'Path'])
def test_proxy_of_a_path_works_as_a_path(tmp_path: pathlib.Path, kind: str, mode: str) -> None:
    file = tmp_path / 'data.txt'
    file.write_text('hello')
    path: Any = {'str': str(file), 'bytes': os.fsencode(file), 'Path': file}[kind]
    p, _ = _proxy_in_mode(path, mode)
    assert os.fspath(p) == os.fspath(path)
    with open(p) as f:
        assert f.read() == 'hello'
    assert os.path.exists(p) and os.path.join(p, os.fsencode('x') if kind == 'bytes' else 'x')
    if kind != 'bytes':
        assert pathlib.Path(p) == file
    else:
        with pytest.raises(TypeError):  # as for the bytes themselves
            pathlib.Path(p)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('obj', [5, [1], {'k': 'v'}, None], ids=['int', 'list', 'dict', 'None'])
def test_proxy_of_a_non_path_is_not_a_path(obj: Any, mode: str) -> None:
    p, _ = _proxy_in_mode(obj, mode)
    with pytest.raises(TypeError):
        os.fspath(p)
    with pytest.raises(TypeError):
        pathlib.Path(p)


def test_conversions_the_builtins_do_without_special_methods() -> None:
    assert int(make('5')) == 5 and int(make(b'7')) == 7 and int(make(bytearray(b'8'))) == 8
    assert float(make('2.5')) == 2.5 and float(make(b'1.5')) == 1.5
    assert complex(make('1+2j')) == 1 + 2j
    arr = np.arange(3, dtype=np.int64)
    assert bytes(make(arr)) == bytes(arr)  # the buffer, not one byte per item
    assert bytes(make(3)) == bytes(3) and bytes(make([1, 2])) == b'\x01\x02'
    assert math.floor(make(np.float32(2.5))) == 2 and math.ceil(make(np.float32(2.5))) == 3
    assert [10, 11][make(1)] == 11 and list(range(make(2))) == [0, 1]
    assert list(make(Sequenceish())) == [0, 1]
    assert '%s-%d' % (make('x'), make(3)) == 'x-3'  # noqa: UP031 - %d needs a real number
    with pytest.raises(TypeError):
        hash(make([1]))


def test_c_type_iterable_only_through_getitem() -> None:
    scalar = make(np.float64(1.5))  # numpy scalars have __getitem__ but are not iterable
    with pytest.raises(TypeError):
        iter(scalar)
    assert not isinstance(scalar, abc.Iterable) and not isinstance(scalar, abc.Container)
    with pytest.raises(TypeError):
        1 in scalar  # noqa: B015
    items = make((ctypes.c_int * 2)(1, 2))  # ctypes arrays are, but only an instance tells
    with pytest.raises(TypeError):
        iter(items)
    resolve(items)
    assert list(items) == [1, 2] and 2 in items and list(reversed(items)) == [2, 1]


def test_class_follows_the_target() -> None:
    p = Proxy(CountingFactory(5))  # type unknown: every special method until resolved
    assert callable(p) and not is_resolved(p)
    assert p + 1 == 6
    assert not callable(p) and not isinstance(p, abc.Iterable)
    p.__wrapped__ = [1, 2]
    assert isinstance(p, abc.MutableSequence) and len(p) == 2 and not callable(p)
    p.__wrapped__ = len
    assert callable(p) and p('abc') == 3
    q = make(5)
    q += 0.5  # an in-place operator on an immutable target rebinds it
    assert isinstance(q, float) and not isinstance(q, typing.SupportsIndex)
    del q.__wrapped__  # unresolved again: back to the factory's type
    assert isinstance(q, int) and isinstance(q, typing.SupportsIndex) and q == 5


def test_known_type_that_turns_out_different() -> None:
    class Liar(Factory[Any]):
        def resolve(self) -> Any:
            return len

        def target_type(self) -> type | None:
            return int

    p = Proxy(Liar())
    assert not callable(p)
    resolve(p)
    assert callable(p) and p('ab') == 2


def test_type_of_a_proxy() -> None:
    p, q = make(5), make([1])
    assert type(p) is not type(q) and type(p).__name__ == type(q).__name__ == 'Proxy'
    assert type(make(6)) is type(p)  # one class per set of special methods
    assert issubclass(type(p), Proxy) and is_proxy(p) and is_proxy(q)
    assert type(pickle.loads(pickle.dumps(p))) is type(p)


_TAGGED: dict[type, type] = {}


def _tagged_class(base: type) -> Any:
    """A user subclass of ``base`` (the Proxy of one implementation), named ``Tagged``."""
    if base not in _TAGGED:

        class Tagged(base):  # type: ignore[valid-type,misc]
            """A user subclass of Proxy."""

            __slots__ = ()

            def tag(self) -> str:
                return 'tagged'

        Tagged.__qualname__ = 'Tagged'  # pickle finds it as tests.test_proxy.Tagged
        _TAGGED[base] = Tagged
    return _TAGGED[base]


Tagged = _tagged_class(Proxy)


def test_subclass_of_proxy_keeps_its_methods() -> None:
    p = Tagged(SimpleFactory([1]))
    assert isinstance(p, Tagged) and Tagged.tag(p) == 'tagged' and len(p) == 1
    assert not callable(p)
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, Tagged) and q == [1]


def test_store_proxy_answers_checks_without_resolving_and_stays_small() -> None:
    store = ps.store.init_store('local', name='abc-store-test')
    proxies = [store.proxy(np.zeros(3)), store.proxy({'a': 1}), store.proxy(5)]
    arr, mapping, number = proxies
    assert not callable(arr) and isinstance(arr, abc.Sized) and not isinstance(arr, abc.Hashable)
    assert isinstance(mapping, abc.Mapping) and not callable(mapping)
    assert not isinstance(number, abc.Iterable) and isinstance(number, abc.Hashable)
    assert not any(is_resolved(p) for p in proxies)
    for p in proxies:
        assert len(pickle.dumps(p)) <= 300


def _checks_in_child(data: bytes) -> dict[str, Any]:
    proxy = pickle.loads(data)
    checks = {
        'callable': callable(proxy),
        'sized': isinstance(proxy, abc.Sized),
        'hashable': isinstance(proxy, abc.Hashable),
        'resolved_before_use': is_resolved(proxy),
    }
    checks['total'] = float(np.sum(proxy))
    checks['callable_after'] = callable(proxy)
    return checks


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_checks_in_another_process(tmp_path: pathlib.Path, method: str) -> None:
    store = ps.store.init_store('file', name=f'abc-{method}', store_dir=str(tmp_path / 'store'))
    p = store.proxy(np.arange(4.0))
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        checks = pool.apply(_checks_in_child, (pickle.dumps(p),))
    assert checks == {
        'callable': False,
        'sized': True,
        'hashable': False,
        'resolved_before_use': False,
        'total': 6.0,
        'callable_after': False,
    }


def test_json_needs_the_target() -> None:
    p = make({'a': [1, 2]})
    with pytest.raises(TypeError, match='not JSON serializable'):
        json.dumps(p)  # the C encoder checks the exact type
    assert json.dumps(p, default=extract) == '{"a": [1, 2]}'
    assert json.dumps({'nested': p}, default=extract) == '{"nested": {"a": [1, 2]}}'
    assert json.dumps(extract(p)) == '{"a": [1, 2]}'


# `match` is Python 3.10+ syntax; the project supports 3.9.
_MATCH_SOURCE = """
def _match(subject):
    match subject:
        case {'k': value}:
            return ('mapping', value)
        case [first, *_]:
            return ('sequence', first)
        case Point(x=x):
            return ('Point', x)
        case str():
            return ('str', subject)
        case _:
            return 'other'
"""


@pytest.mark.parametrize('mode', ['known', 'unknown-resolved'])
@pytest.mark.parametrize(
    'obj',
    [{'k': 1}, [1, 2], (3,), collections.deque([4]), 'text', Point(5, 6), 7],
    ids=['dict', 'list', 'tuple', 'deque', 'str', 'Point', 'int'],
)
@pytest.mark.skipif(sys.version_info < (3, 10), reason='match statements need Python 3.10')
def test_match_statement_patterns(obj: Any, mode: str) -> None:
    namespace: dict[str, Any] = {'Point': Point}
    exec(_MATCH_SOURCE, namespace)
    match = namespace['_match']
    p, _ = _proxy_in_mode(obj, mode)
    assert match(p) == match(obj)


def _new_class_proxy_is_not_callable() -> bool:
    kind = type('BrandNew', (), {})  # forces a class lookup under the lock
    return callable(Proxy(SimpleFactory(kind())))


@pytest.mark.skipif(not hasattr(os, 'register_at_fork'), reason='fork only')
def test_fork_while_the_class_lock_is_held() -> None:
    ctx = multiprocessing.get_context('fork')
    with proxy_module._classes_lock, ctx.Pool(1) as pool:  # as if another thread held it
        result = pool.apply_async(_new_class_proxy_is_not_callable)
        assert result.get(timeout=30) is False


_PARENT_PID = os.getpid()
_release = threading.Event()
_forked_proxy: list[Proxy[Any]] = []


def _slow_in_parent() -> list[int]:
    if os.getpid() == _PARENT_PID:
        _release.wait(30)  # a fetch still running in a parent thread at fork time
    return [1, 2]


def _use_inherited_proxy() -> int:
    return len(_forked_proxy[0])


@pytest.mark.skipif(not hasattr(os, 'register_at_fork'), reason='fork only')
def test_fork_while_a_thread_resolves_the_proxy() -> None:
    p = Proxy(LambdaFactory(_slow_in_parent))
    _forked_proxy[:] = [p]
    _release.clear()
    user = threading.Thread(target=len, args=(p,))
    user.start()
    try:
        while id(p) not in proxy_module._resolving:  # the thread holds the proxy's lock
            user.join(0.01)
        ctx = multiprocessing.get_context('fork')
        with ctx.Pool(1) as pool:  # the child inherits the held lock
            assert pool.apply_async(_use_inherited_proxy).get(timeout=30) == 2
    finally:
        _release.set()
        user.join()
    assert p == [1, 2]


@pytest.mark.timeout(60)
def test_a_proxy_that_resolves_to_itself_is_refused() -> None:
    # Before: the C slots forwarded len() between the two forever (a hang), the
    # pure-Python ones until RecursionError.
    proxies: dict[str, Proxy[Any]] = {}
    proxies['a'] = Proxy(LambdaFactory(lambda: proxies['b']))
    proxies['b'] = Proxy(LambdaFactory(lambda: proxies['a']))
    with pytest.raises(ProxyResolveError, match='cannot stand for itself'):
        len(proxies['a'])
    p = make([1])
    with pytest.raises(ProxyResolveError, match='cannot stand for itself'):
        p.__wrapped__ = p
    assert p == [1]
    inner = make([2])
    outer = Proxy(SimpleFactory(inner))  # a chain without a cycle is fine
    assert len(outer) == 1 and outer == [2]
