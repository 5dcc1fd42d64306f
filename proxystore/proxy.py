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
``C`` (``p.__class__`` is forwarded) and also for ``C = Proxy``.

``type(p)`` is a subclass of :class:`Proxy`, named ``Proxy``, made for the
target's type: it defines only the special methods that type defines, because
``callable()``, ``iter()``, ``next()`` and the structural ``collections.abc``
checks (``Iterable``, ``Sized``, ``Hashable``, ...) look at ``type(p)``, not at
the target. A proxy of ``5`` is therefore not callable and not iterable. The
class is chosen from :meth:`Factory.target_type() <proxystore.factory.Factory.target_type>`
when the proxy is made (so these checks never resolve it); a proxy whose
factory does not know the type starts with every special method and gets the
exact class when it resolves.

``copy.copy(p)`` and ``copy.deepcopy(p)`` return copies of the target (plain
objects), never a proxy that would fetch the object again. C code that checks
exact types (``json``, ``re``, ``str.join``) or needs a buffer
(``memoryview``, ``hashlib``) cannot accept any proxy: pass it
:func:`extract` ``(p)``. The Concepts page lists these cases.

Attribute access goes through ``__getattribute__`` rather than the
``__getattr__`` fallback: the fallback only runs after Python's own lookup has
raised and caught ``AttributeError``, which costs more than the forwarding.

This module is the reference implementation. When the optional compiled
accelerator ``proxystore._cproxy`` is built (``pip install`` compiles it if a
C compiler is available), :class:`Proxy` derives from its ``ProxyBase``,
whose C slots replace the Python special methods that forward the common
operations (attributes, operators, ``len``, ``[]``, ``iter``, ``hash``,
``bool``, calls): each of those then runs without a Python frame. Everything
else, and all behaviour, stays here. ``PROXYSTORE_PURE_PYTHON=1`` in the
environment (read at import) forces the pure-Python slots.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import logging
import math
import operator
import os
import threading
import weakref
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import TypeVar

from proxystore._compiled import load_compiled
from proxystore.exceptions import ProxyResolveError
from proxystore.factory import Factory

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

logger = logging.getLogger(__name__)

# The accelerator's interface version this module expects (CPROXY_API in _cproxy.c).
_C_API = 1


_c: Any = load_compiled('proxystore._cproxy', _C_API, __name__)
# Which implementation serves the proxy's special methods: 'c' or 'python'.
_IMPLEMENTATION = 'python' if _c is None else 'c'


class _PureBase:
    """The base of :class:`Proxy` without the accelerator: it adds nothing."""

    __slots__ = ()


if TYPE_CHECKING:
    _Base = _PureBase
else:
    _Base = _PureBase if _c is None else _c.ProxyBase

_oga = object.__getattribute__
_osa = object.__setattr__
_oda = object.__delattr__

# The target slot holds this until the factory has been called.
_UNSET: Any = type('_Unset', (), {'__repr__': lambda self: '<unresolved>', '__slots__': ()})()

# Attributes of the proxy itself; every other name is forwarded to the target.
_SLOTS = frozenset({'__proxy_factory__', '__proxy_target__', '__proxy_lock__'})
_OWN = _SLOTS | {
    '__factory__',
    '__wrapped__',
    '__reduce__',
    '__reduce_ex__',
    '__copy__',
    '__deepcopy__',
}


# Proxies whose lock a thread holds while their factory runs. A forked child
# inherits such a lock held by a thread it does not have: it gets a new one.
_resolving: dict[int, weakref.ref[Proxy[Any]]] = {}


def _resolve(proxy: Proxy[Any]) -> Any:
    """Call the factory once (thread-safe) and remember its result."""
    with _oga(proxy, '__proxy_lock__'):
        target = _oga(proxy, '__proxy_target__')
        if target is not _UNSET:
            return target
        factory = _oga(proxy, '__proxy_factory__')
        _resolving[id(proxy)] = weakref.ref(proxy)
        try:
            target = factory()
        except AttributeError as e:
            raise ProxyResolveError(
                f'The factory {factory!r} raised AttributeError while resolving a proxy: {e}',
            ) from e
        finally:
            _resolving.pop(id(proxy), None)
        _check_acyclic(proxy, target)
        _osa(proxy, '__proxy_target__', target)
        _retype(proxy, type(target), target)
        return target


def _check_acyclic(proxy: Proxy[Any], target: Any) -> None:
    """Refuse a target that is, through resolved proxies, ``proxy`` itself.

    Such a proxy would forward every operation to itself forever (the C slots
    do not pass through Python's recursion limit).
    """
    while issubclass(type(target), Proxy):
        if target is proxy:
            factory = _oga(proxy, '__proxy_factory__')
            raise ProxyResolveError(
                f'A proxy cannot stand for itself: its factory {factory!r} returned a proxy '
                'that resolves back to it. Return the object itself.',
            )
        target = _oga(target, '__proxy_target__')


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


class Proxy(_Base, Generic[T]):
    """Lazy, transparent proxy of the object returned by ``factory``.

    Args:
        factory: Called with no arguments, once, on first use of the proxy.

    Raises:
        TypeError: ``factory`` is not a :class:`~proxystore.factory.Factory`.

    """

    # The compiled base holds these itself.
    __slots__ = (
        ('__proxy_factory__', '__proxy_lock__', '__proxy_target__', '__weakref__')
        if _c is None
        else ()
    )

    def __new__(cls, factory: Factory[T]) -> Proxy[T]:
        """Make the proxy an instance of the class for the factory's target type."""
        if not isinstance(factory, Factory):
            raise TypeError(
                f'Proxy() needs a proxystore.factory.Factory, got {type(factory).__qualname__}. '
                'Wrap a callable with LambdaFactory(fn) or an object with SimpleFactory(obj).',
            )
        kind = factory.target_type()
        if not isinstance(kind, type):
            kind = None
        return object.__new__(_class_for(_BASES.get(cls, cls), kind))

    def __init__(self, factory: Factory[T]) -> None:
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
            _set_target(self, value)
        else:
            setattr(_target(self), name, value)

    def __delattr__(self, name: str) -> None:
        if name in _SLOTS:
            _oda(self, name)
        elif name == '__wrapped__':
            _osa(self, '__proxy_target__', _UNSET)
            _retype(self, _oga(self, '__proxy_factory__').target_type())
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
        # The base class, not the per-type one (which pickle cannot find by name).
        return (_BASES[type(self)], (_oga(self, '__proxy_factory__'),))

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_BASES[type(self)], (_oga(self, '__proxy_factory__'),))

    # Conversions and introspection (every type supports these, or their
    # builtins raise the target's own TypeError).
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

    def __copy__(self) -> Any:
        """Return a shallow copy of the target (a plain object, not a proxy)."""
        return _copy.copy(_target(self))

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """Return a deep copy of the target (a plain object, not a proxy).

        Never a new proxy that would fetch the object again: the store may no
        longer have it (``evict=True``), and a copy is expected to be independent.
        """
        return _copy.deepcopy(_target(self), memo)


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
        target = _target(self)
        result = op(target, other)
        if result is not target:
            _set_target(self, result)
        return self

    return method


_UNARY: dict[str, Callable[[Any], Any]] = {
    'str': str,
    'bytes': bytes,
    'dir': dir,
    'hash': hash,
    'bool': bool,
    'neg': operator.neg,
    'pos': operator.pos,
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

# Special methods the compiled base implements as C slots: defining them here
# too would shadow the slots with these Python versions.
_IN_C = frozenset({'__getattribute__', '__str__', '__hash__', '__bool__', '__neg__', '__pos__'})
_IN_C |= {'__invert__', '__pow__', '__rpow__'} | {f'__{name}__' for name in _COMPARISONS}
_IN_C |= {f'__{name}__' for name in _BINARY} | {f'__r{name}__' for name in _BINARY}

for _name, _fn in _UNARY.items():
    setattr(Proxy, f'__{_name}__', _unary(_fn))
for _name, _cmp in _COMPARISONS.items():
    setattr(Proxy, f'__{_name}__', _forward(_cmp))
for _name, (_op, _iop) in _BINARY.items():
    setattr(Proxy, f'__{_name}__', _forward(_op))
    setattr(Proxy, f'__r{_name}__', _reflect(_op))
    if _iop is not None:
        setattr(Proxy, f'__i{_name}__', _inplace(_iop))
setattr(Proxy, '__pow__', _pow3)  # noqa: B010 - three-argument pow()
setattr(Proxy, '__rpow__', _rpow3)  # noqa: B010
if _c is not None:
    for _name in _IN_C:
        delattr(Proxy, _name)  # the C base's slot serves it now
del _name, _fn, _cmp, _op, _iop


# -- Special methods a proxy has only when the target's type has them ----------------------
#
# ``callable()``, ``iter()``, ``next()``, ``len()`` and the structural checks of
# ``collections.abc``, ``os.PathLike``, ``contextlib`` and ``typing.Supports*``
# look for these on ``type(p)``, so a proxy class that always defined them would
# claim every protocol. Each target type gets a class with just its own.


def _special(target: Any, name: str, what: str) -> Any:
    """Bind ``type(target).name`` to ``target``, or raise the TypeError Python would."""
    for klass in type(target).__mro__:
        if name in klass.__dict__:
            method = klass.__dict__[name]
            if method is not None:
                return method.__get__(target, type(target))
            break
    raise TypeError(f'{type(target).__qualname__!r} object does not support {what}')


def _call(self: Proxy[Any], *args: Any, **kwargs: Any) -> Any:
    target = _oga(self, '__proxy_target__')
    return (_resolve(self) if target is _UNSET else target)(*args, **kwargs)


def _setitem(self: Proxy[Any], key: Any, value: Any) -> None:
    _target(self)[key] = value


def _delitem(self: Proxy[Any], key: Any) -> None:
    del _target(self)[key]


def _enter(self: Proxy[Any]) -> Any:
    return _special(_target(self), '__enter__', 'the context manager protocol')()


def _exit(self: Proxy[Any], *args: Any) -> Any:
    return _special(_target(self), '__exit__', 'the context manager protocol')(*args)


async def _aenter(self: Proxy[Any]) -> Any:
    return await _special(
        _target(self), '__aenter__', 'the asynchronous context manager protocol'
    )()


async def _aexit(self: Proxy[Any], *args: Any) -> Any:
    method = _special(_target(self), '__aexit__', 'the asynchronous context manager protocol')
    return await method(*args)


def _aiter(self: Proxy[Any]) -> Any:
    return _special(_target(self), '__aiter__', 'asynchronous iteration')()


def _anext(self: Proxy[Any]) -> Any:
    return _special(_target(self), '__anext__', 'asynchronous iteration')()


def _round(self: Proxy[Any], *args: Any) -> Any:
    return round(_target(self), *args)


def _await(self: Proxy[Any]) -> Any:
    return _special(_target(self), '__await__', "use in an 'await' expression")()


def _fspath(self: Proxy[Any]) -> Any:
    return os.fspath(_target(self))


def _instancecheck(self: Proxy[Any], instance: Any) -> bool:
    return isinstance(instance, _target(self))


def _subclasscheck(self: Proxy[Any], subclass: Any) -> bool:
    return issubclass(subclass, _target(self))


_OPTIONAL: dict[str, Callable[..., Any]] = {
    '__call__': _call,
    '__len__': _unary(len),
    '__length_hint__': _unary(operator.length_hint),
    '__iter__': _unary(iter),
    '__next__': _unary(next),
    '__reversed__': _unary(reversed),
    '__aiter__': _aiter,
    '__anext__': _anext,
    '__await__': _await,
    '__getitem__': _forward(operator.getitem),
    '__setitem__': _setitem,
    '__delitem__': _delitem,
    '__contains__': _forward(operator.contains),
    '__enter__': _enter,
    '__exit__': _exit,
    '__aenter__': _aenter,
    '__aexit__': _aexit,
    '__fspath__': _fspath,
    '__int__': _unary(int),
    '__float__': _unary(float),
    '__complex__': _unary(complex),
    '__index__': _unary(operator.index),
    '__abs__': _unary(abs),
    '__round__': _round,
    '__trunc__': _unary(math.trunc),
    '__floor__': _unary(math.floor),
    '__ceil__': _unary(math.ceil),
    '__instancecheck__': _instancecheck,
    '__subclasscheck__': _subclasscheck,
}

if _c is not None:
    # C descriptors (call, len, iter, next, [], in, int, float, index, abs): a
    # generated class holding one gets the C function in its slot.
    _OPTIONAL.update(_c.SLOTS)
    _c._setup(_UNSET, _resolve, frozenset(_OWN))

# Conversions the builtins do without a special method: ``int('5')``,
# ``float(b'1.5')``, ``complex('1j')``, ``open('path')``; a proxy needs the
# method to offer them (``complex``, ``floor`` and ``ceil`` too, or they would
# fall back to ``float`` where the target raises TypeError).
_NUMERIC_TEXT = frozenset({'__int__', '__float__', '__complex__', '__floor__', '__ceil__'})
_EXTRA: tuple[tuple[type, frozenset[str]], ...] = (
    (str, _NUMERIC_TEXT | {'__fspath__'}),
    (bytes, _NUMERIC_TEXT | {'__fspath__'}),
    (bytearray, _NUMERIC_TEXT),
)

# Generated class -> the class it specialises (``Proxy`` or a user subclass).
_BASES: dict[type, type] = {}
# (base, method names, hashable) -> generated class; few distinct ones exist.
_BY_SIGNATURE: dict[tuple[type, frozenset[str], bool], type] = {}
# Target type -> {base: generated class}: built-in and C types (which live as
# long as the interpreter) in a plain dict, the fastest lookup; classes written
# in Python in a weak one, so that classes made at run time can be freed.
_BY_STATIC_TYPE: dict[type, dict[type, type]] = {}
_BY_TYPE: weakref.WeakKeyDictionary[type, dict[type, type]] = weakref.WeakKeyDictionary()
_classes_lock = threading.Lock()

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class written in Python
# Py_TPFLAGS_SEQUENCE and Py_TPFLAGS_MAPPING: what `match` statements test
# (`case [a, b]:`, `case {'k': v}:`). Registering a class with the ABC sets them.
_MATCH_FLAGS = ((1 << 5, '+sequence', Sequence), (1 << 6, '+mapping', Mapping))


def _owner(kind: type, name: str) -> type | None:
    """The class in ``kind``'s MRO that defines ``name`` (the metaclass does not count)."""
    for klass in kind.__mro__:
        if name in klass.__dict__:
            return klass if klass.__dict__[name] is not None else None
    return None


def _iterable_by_getitem(kind: type, target: Any) -> bool | None:
    """Whether ``iter()`` works through ``__getitem__`` alone; ``None`` if unknown.

    A Python class's ``__getitem__`` makes its instances iterable; a C type's
    may not (numpy scalars and dtypes are not, ctypes arrays are), and Python
    offers no way to tell from the type: only an instance answers.
    """
    owner = _owner(kind, '__getitem__')
    if owner is None or owner.__flags__ & _HEAPTYPE:
        return True
    if target is _UNSET:
        return None
    try:
        iter(target)  # makes an iterator object; calls no __getitem__
    except TypeError:
        return False
    return True


def _signature(kind: type | None, target: Any) -> tuple[frozenset[str], bool, bool]:
    """(method names, hashable, final): ``final`` is False if it depends on the instance."""
    if kind is None:  # unknown until resolved: offer everything
        return frozenset(_OPTIONAL), True, True
    names = {name for name in _OPTIONAL if _owner(kind, name) is not None}
    for base, extra in _EXTRA:
        if issubclass(kind, base):
            names |= extra
    final = True
    if '__getitem__' in names and '__iter__' not in names:
        iterable = _iterable_by_getitem(kind, target)
        owner = _owner(kind, '__getitem__')
        final = owner is None or bool(owner.__flags__ & _HEAPTYPE)  # else per instance
        if not iterable:  # unknown: refuse until resolved rather than iterate wrongly
            names.add('-iter')  # block the fallback: iter() and `in` fail as on the target
    for flag, marker, _ in _MATCH_FLAGS:
        if kind.__flags__ & flag:
            names.add(marker)
    return frozenset(names), _owner(kind, '__hash__') is not None, final


def _class_for(base: type, kind: type | None, target: Any = _UNSET) -> type:
    """The subclass of ``base`` whose special methods are those of ``kind``."""
    if kind is not None:
        by_base = _BY_STATIC_TYPE.get(kind)
        if by_base is not None and base in by_base:
            return by_base[base]
        with contextlib.suppress(KeyError, TypeError):
            return _BY_TYPE[kind][base]
    names, hashable, final = _signature(kind, target)
    with _classes_lock:
        cls = _BY_SIGNATURE.get((base, names, hashable))
        if cls is None:
            namespace: dict[str, Any] = {
                name: _OPTIONAL[name] for name in names if name in _OPTIONAL
            }
            if '-iter' in names:
                namespace['__iter__'] = None
                namespace.setdefault('__reversed__', None)
            if not hashable:
                namespace['__hash__'] = None
            namespace.update(
                __slots__=(),
                __module__=base.__module__,
                __qualname__=base.__qualname__,
                __doc__=base.__doc__,
            )
            cls = type(base)(base.__name__, (base,), namespace)
            _BASES[cls] = base
            for _, marker, collection in _MATCH_FLAGS:
                if marker in names:
                    collection.register(cls)
            _BY_SIGNATURE[(base, names, hashable)] = cls
        if kind is not None and final:
            if not kind.__flags__ & _HEAPTYPE:
                _BY_STATIC_TYPE.setdefault(kind, {})[base] = cls
            else:
                with contextlib.suppress(TypeError):  # a type that cannot be weakly referenced
                    _BY_TYPE.setdefault(kind, {})[base] = cls
    return cls


def _retype(proxy: Proxy[Any], kind: type | None, target: Any = _UNSET) -> None:
    """Give ``proxy`` the class for targets of type ``kind`` (if it has another)."""
    cls = _class_for(_BASES[type(proxy)], kind, target)
    if type(proxy) is not cls:
        _osa(proxy, '__class__', cls)


def _reset_locks_after_fork() -> None:
    # Locks that another thread of the parent held are held forever in the child.
    global _classes_lock
    _classes_lock = threading.Lock()
    for ref in list(_resolving.values()):
        proxy = ref()
        if proxy is not None:
            _osa(proxy, '__proxy_lock__', threading.RLock())
    _resolving.clear()


if hasattr(os, 'register_at_fork'):  # not on Windows
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _set_target(proxy: Proxy[T], target: T) -> None:
    """Mark ``proxy`` resolved to ``target`` (for stores that already hold the object)."""
    _check_acyclic(proxy, target)
    _osa(proxy, '__proxy_target__', target)
    _retype(proxy, type(target), target)


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
    key = getattr(factory, 'key', None)  # a store's factory (duck-typed: no store import)
    return key if isinstance(key, str) else None


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
