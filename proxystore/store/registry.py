"""The store registry: store types by name, and store objects by name.

Store *types* are listed in :class:`STORES` by class path and imported only
when used (like ``fsspec``'s ``known_implementations``), so ``import
proxystore`` never imports redis-py, and a missing backend dependency is
reported with the ``pip install`` that fixes it.

Store *objects* are registered under their name by :func:`init_store` (or
:func:`register_store`); a proxy resolved in a worker finds its store here,
or rebuilds and registers it.
"""

from __future__ import annotations

import enum
import logging
import threading
import weakref
from typing import TYPE_CHECKING
from typing import Any
from typing import Union

from proxystore.exceptions import MissingDependencyError
from proxystore.exceptions import StoreConfigError
from proxystore.exceptions import UnknownStoreTypeError
from proxystore.utils import class_path
from proxystore.utils import import_class

if TYPE_CHECKING:
    from proxystore.store.base import Store

__all__ = [
    'STORES',
    'get_store',
    'init_store',
    'load_store_class',
    'lookup_store',
    'register_store',
    'unregister_store',
]

logger = logging.getLogger(__name__)


class STORES(enum.Enum):
    """Built-in store types; each value is the class path imported on use."""

    LOCAL = 'proxystore.store.local.LocalStore'
    FILE = 'proxystore.store.file.FileStore'
    REDIS = 'proxystore.store.redis.RedisStore'
    SHM = 'proxystore.store.shm.SharedMemoryStore'

    @classmethod
    def from_name(cls, name: str) -> STORES:
        """Return the member named ``name`` (case-insensitive).

        Raises:
            UnknownStoreTypeError: no member has that name.

        """
        try:
            return cls[name.upper()]
        except KeyError:
            raise UnknownStoreTypeError(
                f'Unknown store type {name!r}. Valid types: '
                f'{", ".join(repr(m.name.lower()) for m in cls)}, or a Store subclass.',
            ) from None

    def load(self) -> type[Store]:
        """Import and return the store class of this member."""
        return load_store_class(self.value)


# Extras that provide a backend's third-party dependencies.
_EXTRAS = {'redis': 'redis'}

StoreType = Union[str, STORES, 'type[Store]']

_stores: dict[str, Store] = {}
_instances: weakref.WeakValueDictionary[tuple[str, str], Store] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def load_store_class(path: str) -> type[Store]:
    """Import the store class at ``path``, explaining a missing dependency.

    Raises:
        MissingDependencyError: the backend's optional dependency is missing.
        UnknownStoreTypeError: ``path`` does not name a :class:`Store` subclass.

    """
    from proxystore.store.base import Store

    try:
        cls = import_class(path)
    except ModuleNotFoundError as e:
        missing = (e.name or '').split('.')[0]
        if missing in _EXTRAS:
            raise MissingDependencyError(
                f'Store {path} needs the {missing!r} package. Install it with: '
                f"pip install 'proxystore[{_EXTRAS[missing]}]'",
            ) from e
        raise UnknownStoreTypeError(f'Cannot import store class {path!r}: {e}') from e
    except (AttributeError, ValueError) as e:
        raise UnknownStoreTypeError(f'Cannot import store class {path!r}: {e}') from e
    if not (isinstance(cls, type) and issubclass(cls, Store)):
        raise UnknownStoreTypeError(f'{path!r} is not a proxystore.store.base.Store subclass.')
    return cls


def _store_class(store_type: Any) -> type[Store]:
    from proxystore.store.base import Store

    if isinstance(store_type, STORES):
        return store_type.load()
    if isinstance(store_type, str):
        return STORES.from_name(store_type).load()
    if isinstance(store_type, type) and issubclass(store_type, Store):
        if store_type is Store:
            raise UnknownStoreTypeError('Store is abstract; pass a backend such as RedisStore.')
        return store_type
    raise UnknownStoreTypeError(
        f'Store type must be a name, a STORES member or a Store subclass, got {store_type!r}. '
        f'Valid names: {", ".join(repr(m.name.lower()) for m in STORES)}.',
    )


def init_store(store_type: StoreType, name: str, **kwargs: Any) -> Store:
    """Create a store and register it under ``name`` (replacing any store of that name).

    Args:
        store_type: ``'local'``, ``'file'``, ``'redis'`` (any case), a
            :class:`STORES` member, or a :class:`Store` subclass.
        name: Name the store is registered and found under.
        kwargs: The store's constructor arguments.

    Raises:
        UnknownStoreTypeError: ``store_type`` is not a known store type.
        StoreConfigError: the arguments do not fit the store's constructor.
        MissingDependencyError: the backend's optional dependency is missing.

    """
    cls = _store_class(store_type)
    _check_arguments(cls, name, kwargs)
    store = cls(name, **kwargs)
    register_store(store, exist_ok=True)
    return store


def _check_arguments(cls: type[Store], name: str, kwargs: dict[str, Any]) -> None:
    """Raise a StoreConfigError that names unknown or missing constructor arguments."""
    import difflib
    import inspect

    signature = inspect.signature(cls)
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    problems = []
    if not takes_any:
        for arg in kwargs:
            if arg not in params:
                close = difflib.get_close_matches(arg, list(params), n=1)
                hint = f' (did you mean {close[0]!r}?)' if close else ''
                problems.append(f'unexpected argument {arg!r}{hint}')
    missing = [
        p.name
        for p in list(params.values())[1:]
        if p.default is p.empty
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in kwargs
    ]
    problems.extend(f'missing argument {m!r}' for m in missing)
    if problems:
        raise StoreConfigError(
            f'Invalid arguments for {cls.__name__}: {"; ".join(problems)}. '
            f'Signature: {cls.__name__}{signature}',
        )


def register_store(store: Store, *, exist_ok: bool = False) -> Store:
    """Register ``store`` under its name and return it.

    Raises:
        StoreConfigError: a store of that name exists and ``exist_ok`` is false.

    """
    with _lock:
        if not exist_ok and store.name in _stores and _stores[store.name] is not store:
            raise StoreConfigError(
                f'A store named {store.name!r} is already registered; '
                'unregister it first or pass exist_ok=True to replace it.',
            )
        _stores[store.name] = store
    logger.debug('Registered store %r (%s)', store.name, type(store).__name__)
    return store


def unregister_store(name: str) -> None:
    """Remove the store registered as ``name``, if any (the store is not closed)."""
    with _lock:
        _stores.pop(name, None)


def get_store(name: str) -> Store | None:
    """Return the store registered as ``name``, or ``None``."""
    return _stores.get(name)


def lookup_store(type_path: str, name: str, config: dict[str, Any]) -> Store:
    """Find the store ``name`` in this process, or rebuild it from its configuration.

    Order: the registry, then a live unregistered store object of the same
    class and name, then a new store built from ``config`` (and registered,
    so later lookups reuse it and its cache). This is how a proxy or a task
    wrapper reaches its store in a worker that never called ``init_store``.

    Raises:
        StoreMismatchError: this process has a store of that name but of
            another class.
        MissingDependencyError: the store's backend is not installed here.

    """
    from proxystore.exceptions import StoreMismatchError

    store = get_store(name) or _instances.get((type_path, name))
    if store is None:
        cls = load_store_class(type_path)
        store = register_store(cls.from_config(name, config), exist_ok=True)
        logger.debug('Rebuilt store %r from its configuration', name)
    if class_path(type(store)) != type_path:
        raise StoreMismatchError(
            f'Store {name!r} in this process is a {class_path(type(store))}, but the '
            f'object refers to a {type_path}. Give the two stores different names.',
        )
    return store


def _track_instance(store: Store) -> None:
    """Remember a live store object so same-process proxies find it unregistered."""
    _instances[(class_path(type(store)), store.name)] = store
