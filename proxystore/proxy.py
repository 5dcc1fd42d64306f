"""A transparent, lazy stand-in for an object: :class:`Proxy`.

A proxy holds a :class:`~proxystore.factory.Factory` and calls it the first
time the proxy is really used; from then on it forwards every operation to
the object the factory returned (its *target*). Pickling a proxy pickles only
its factory, so a proxy of a large array crosses a process boundary as a few
hundred bytes and is resolved where it is used.

Semantics follow ``lazy-object-proxy``: attribute access, every operator
(arithmetic, reflected, in-place, comparisons), ``hash``, ``bool``, ``len``,
iteration, indexing, calling, context managers, ``str``/``repr``/``format``
and ``dir`` are forwarded. ``isinstance(p, C)`` is true when the target is a
``C`` (``p.__class__`` is forwarded) and also for ``C = Proxy``; ``type(p)``
is ``Proxy``.

Attribute access goes through ``__getattribute__`` rather than the
``__getattr__`` fallback: the fallback only runs after Python's own lookup has
raised and caught ``AttributeError``, which costs more than the forwarding.
"""

from __future__ import annotations

import copy as _copy
import operator
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import TypeVar

from proxystore.exceptions import ProxyResolveError
from proxystore.factory import Factory
from proxystore.factory import StoreFactory

__all__ = [
    'Proxy',
    'extract',
    'get_factory',
    'get_key',
    'is_proxy',
    'is_resolved',
    'resolve',
    'resolve_async',
]

T = TypeVar('T')

_oga = object.__getattribute__
_osa = object.__setattr__
_oda = object.__delattr__

# The target slot holds this until the factory has been called.
_UNSET: Any = type('_Unset', (), {'__repr__': lambda self: '<unresolved>', '__slots__': ()})()

# Attributes of the proxy itself; every other name is forwarded to the target.
_SLOTS = frozenset({'__proxy_factory__', '__proxy_target__', '__proxy_lock__'})
_OWN = _SLOTS | {'__factory__', '__wrapped__', '__reduce__', '__reduce_ex__'}


def _resolve(proxy: Proxy[Any]) -> Any:
    """Call the factory once (thread-safe) and remember its result."""
    with _oga(proxy, '__proxy_lock__'):
        target = _oga(proxy, '__proxy_target__')
        if target is not _UNSET:
            return target
        factory = _oga(proxy, '__proxy_factory__')
        try:
            target = factory()
        except AttributeError as e:
            raise ProxyResolveError(
                f'The factory {factory!r} raised AttributeError while resolving a proxy: {e}',
            ) from e
        _osa(proxy, '__proxy_target__', target)
        return target


def _type_name(factory: Any) -> str:
    """The target's class name as the factory knows it (``'?'`` if it does not)."""
    path = getattr(factory, 'type_path', None)
    if isinstance(path, str):
        return path
    try:
        cls = factory.target_type()
    except Exception:
        cls = None
    return cls.__qualname__ if isinstance(cls, type) else '?'


def _target(proxy: Proxy[Any]) -> Any:
    target = _oga(proxy, '__proxy_target__')
    return _resolve(proxy) if target is _UNSET else target


class Proxy(Generic[T]):
    """Lazy, transparent proxy of the object returned by ``factory``.

    Args:
        factory: Called with no arguments, once, on first use of the proxy.

    Raises:
        TypeError: ``factory`` is not a :class:`~proxystore.factory.Factory`.

    """

    __slots__ = ('__proxy_factory__', '__proxy_lock__', '__proxy_target__', '__weakref__')

    def __init__(self, factory: Factory[T]) -> None:
        if not isinstance(factory, Factory):
            raise TypeError(
                f'Proxy() needs a proxystore.factory.Factory, got {type(factory).__qualname__}. '
                'Wrap a callable with LambdaFactory(fn) or an object with SimpleFactory(obj).',
            )
        _osa(self, '__proxy_factory__', factory)
        _osa(self, '__proxy_target__', _UNSET)
        _osa(self, '__proxy_lock__', threading.RLock())

    if TYPE_CHECKING:  # pragma: no cover - tells type checkers any attribute may exist

        def __getattr__(self, name: str) -> Any: ...

    def __getattribute__(self, name: str) -> Any:
        if name in _OWN:
            return _oga(self, name)
        target = _oga(self, '__proxy_target__')
        if target is _UNSET:
            if name == '__class__':
                # Answer isinstance() checks without fetching the target when
                # the factory knows its type (engines call isinstance a lot).
                cls = _oga(self, '__proxy_factory__').target_type()
                if cls is not None:
                    return cls
            target = _resolve(self)
        return getattr(target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SLOTS:
            _osa(self, name, value)
        elif name == '__wrapped__':
            _osa(self, '__proxy_target__', value)
        else:
            setattr(_target(self), name, value)

    def __delattr__(self, name: str) -> None:
        if name in _SLOTS:
            _oda(self, name)
        elif name == '__wrapped__':
            _osa(self, '__proxy_target__', _UNSET)
        else:
            delattr(_target(self), name)

    @property
    def __wrapped__(self) -> T:
        """The target (resolving the proxy if needed)."""
        return _target(self)  # type: ignore[no-any-return]

    @property
    def __factory__(self) -> Factory[T]:
        """The factory this proxy resolves with."""
        return _oga(self, '__proxy_factory__')  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (_oga(self, '__proxy_factory__'),))

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (type(self), (_oga(self, '__proxy_factory__'),))

    # Conversions and introspection.
    def __repr__(self) -> str:
        # Loggers, debuggers, tracebacks and engines (Parsl logs every task
        # argument at DEBUG) call repr() on their own: an unresolved proxy
        # answers without fetching its target, as lazy-object-proxy and wrapt
        # do. Once resolved, repr is the target's.
        target = _oga(self, '__proxy_target__')
        if target is _UNSET:
            factory = _oga(self, '__proxy_factory__')
            return f'<Proxy at {id(self):#x} of {_type_name(factory)}, unresolved: {factory!r}>'
        return repr(target)

    def __format__(self, format_spec: str) -> str:
        return format(_target(self), format_spec)

    def __round__(self, *args: Any) -> Any:
        return round(_target(self), *args)

    def __trunc__(self) -> Any:
        return _target(self).__trunc__()

    def __floor__(self) -> Any:
        return _target(self).__floor__()

    def __ceil__(self) -> Any:
        return _target(self).__ceil__()

    def __fspath__(self) -> Any:
        return _target(self).__fspath__()

    def __copy__(self) -> Any:
        return _copy.copy(_target(self))

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return _copy.deepcopy(_target(self), memo)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, _target(self))

    def __subclasscheck__(self, subclass: Any) -> bool:
        return issubclass(subclass, _target(self))

    # Containers, iteration, calling.
    def __setitem__(self, key: Any, value: Any) -> None:
        _target(self)[key] = value

    def __delitem__(self, key: Any) -> None:
        del _target(self)[key]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the target."""
        target = _oga(self, '__proxy_target__')
        return (_resolve(self) if target is _UNSET else target)(*args, **kwargs)

    def __enter__(self) -> Any:
        return _target(self).__enter__()

    def __exit__(self, *args: Any) -> Any:
        return _target(self).__exit__(*args)

    # Asynchronous context manager. ``__await__``, ``__aiter__`` and ``__next__``
    # are deliberately absent: defining them would make every proxy look
    # awaitable or an iterator to ``inspect``/``collections.abc`` checks.
    async def __aenter__(self) -> Any:
        return await _target(self).__aenter__()

    async def __aexit__(self, *args: Any) -> Any:
        return await _target(self).__aexit__(*args)

    # Unary operators.


# The methods below look the target up inline (no helper call): this is the
# per-operation cost of a proxy, so it is kept to one slot read and one test.


def _unary(op: Callable[[Any], Any]) -> Callable[[Proxy[Any]], Any]:
    def method(self: Proxy[Any]) -> Any:
        target = _oga(self, '__proxy_target__')
        return op(_resolve(self) if target is _UNSET else target)

    return method


def _forward(op: Callable[[Any, Any], Any]) -> Callable[[Proxy[Any], Any], Any]:
    def method(self: Proxy[Any], other: Any) -> Any:
        target = _oga(self, '__proxy_target__')
        return op(_resolve(self) if target is _UNSET else target, other)

    return method


def _reflect(op: Callable[[Any, Any], Any]) -> Callable[[Proxy[Any], Any], Any]:
    def method(self: Proxy[Any], other: Any) -> Any:
        target = _oga(self, '__proxy_target__')
        return op(other, _resolve(self) if target is _UNSET else target)

    return method


def _inplace(op: Callable[[Any, Any], Any]) -> Callable[[Proxy[Any], Any], Any]:
    def method(self: Proxy[Any], other: Any) -> Any:
        # Immutable targets return a new object: the proxy now stands for it.
        _osa(self, '__proxy_target__', op(_target(self), other))
        return self

    return method


_UNARY: dict[str, Callable[[Any], Any]] = {
    'str': str,
    'bytes': bytes,
    'dir': dir,
    'hash': hash,
    'bool': bool,
    'int': int,
    'float': float,
    'complex': complex,
    'index': operator.index,
    'len': len,
    'length_hint': operator.length_hint,
    'iter': iter,
    'reversed': reversed,
    'neg': operator.neg,
    'pos': operator.pos,
    'abs': abs,
    'invert': operator.invert,
}

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    'eq': operator.eq,
    'ne': operator.ne,
    'lt': operator.lt,
    'le': operator.le,
    'gt': operator.gt,
    'ge': operator.ge,
}


def _pow3(self: Proxy[Any], other: Any, modulo: Any = None) -> Any:
    return pow(_target(self), other, modulo)


def _rpow3(self: Proxy[Any], other: Any, modulo: Any = None) -> Any:
    return pow(other, _target(self), modulo)


_BINARY = {
    'add': (operator.add, operator.iadd),
    'sub': (operator.sub, operator.isub),
    'mul': (operator.mul, operator.imul),
    'matmul': (operator.matmul, operator.imatmul),
    'truediv': (operator.truediv, operator.itruediv),
    'floordiv': (operator.floordiv, operator.ifloordiv),
    'mod': (operator.mod, operator.imod),
    'divmod': (divmod, None),
    'pow': (operator.pow, operator.ipow),
    'lshift': (operator.lshift, operator.ilshift),
    'rshift': (operator.rshift, operator.irshift),
    'and': (operator.and_, operator.iand),
    'xor': (operator.xor, operator.ixor),
    'or': (operator.or_, operator.ior),
}

for _name, _fn in _UNARY.items():
    setattr(Proxy, f'__{_name}__', _unary(_fn))
for _name, _cmp in _COMPARISONS.items():
    setattr(Proxy, f'__{_name}__', _forward(_cmp))
setattr(Proxy, '__getitem__', _forward(operator.getitem))  # noqa: B010
setattr(Proxy, '__contains__', _forward(operator.contains))  # noqa: B010
for _name, (_op, _iop) in _BINARY.items():
    setattr(Proxy, f'__{_name}__', _forward(_op))
    setattr(Proxy, f'__r{_name}__', _reflect(_op))
    if _iop is not None:
        setattr(Proxy, f'__i{_name}__', _inplace(_iop))
setattr(Proxy, '__pow__', _pow3)  # noqa: B010 - three-argument pow()
setattr(Proxy, '__rpow__', _rpow3)  # noqa: B010
del _name, _fn, _cmp, _op, _iop


def _set_target(proxy: Proxy[T], target: T) -> None:
    """Mark ``proxy`` resolved to ``target`` (for stores that already hold the object)."""
    _osa(proxy, '__proxy_target__', target)


def is_proxy(obj: Any) -> bool:
    """Return whether ``obj`` is a proxy (never resolves it)."""
    return isinstance(obj, Proxy)


def _check(proxy: Any) -> Proxy[Any]:
    if not isinstance(proxy, Proxy):
        raise TypeError(f'Expected a Proxy, got {type(proxy).__qualname__}.')
    return proxy


def extract(proxy: Proxy[T]) -> T:
    """Return the proxy's target, resolving it first if needed."""
    return _target(_check(proxy))  # type: ignore[no-any-return]


def get_factory(proxy: Proxy[T]) -> Factory[T]:
    """Return the factory of ``proxy`` without resolving it."""
    return _oga(_check(proxy), '__proxy_factory__')  # type: ignore[no-any-return]


def get_key(proxy: Proxy[Any]) -> str | None:
    """Return the store key of a store-backed proxy, else ``None``; never resolves."""
    factory = get_factory(proxy)
    return factory.key if isinstance(factory, StoreFactory) else None


def is_resolved(proxy: Proxy[Any]) -> bool:
    """Return whether the proxy's factory has been called (never resolves)."""
    return _oga(_check(proxy), '__proxy_target__') is not _UNSET


def resolve(proxy: Proxy[Any]) -> None:
    """Resolve ``proxy`` now, if it is not resolved yet (errors surface here)."""
    _target(_check(proxy))


def resolve_async(proxy: Proxy[Any]) -> None:
    """Start resolving ``proxy`` in the background so its first use does not wait.

    The factory's work runs in a thread pool; the first use of the proxy then
    waits only for what is left of it.
    """
    if not is_resolved(proxy):
        get_factory(proxy).resolve_async()
