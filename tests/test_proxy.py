"""The proxy contract: transparent forwarding, laziness and pickling."""

from __future__ import annotations

import copy
import math
import operator
import pickle
import threading
import weakref
from typing import Any

import cloudpickle
import numpy as np
import pytest

import proxystore as ps
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

dill = pytest.importorskip('dill')


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
    assert type(p) is Proxy
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
    assert callable(q)  # the type defines __call__; no resolve either
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
