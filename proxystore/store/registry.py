"""The store registry: store objects by name, and by identity.

Store objects are registered under their name by :func:`init_store` (or
:func:`register_store`); a proxy resolved in a worker finds its store here,
or rebuilds and registers it (:func:`lookup_store`). Store *types* by name
are :mod:`proxystore.store.types`'s job.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING
from typing import Any

from proxystore.exceptions import StoreConfigError
from proxystore.proxy import get_factory
from proxystore.proxy import is_proxy
from proxystore.store.types import STORES
from proxystore.store.types import StoreType
from proxystore.store.types import check_arguments
from proxystore.store.types import load_store_class
from proxystore.store.types import store_class
from proxystore.utils import class_path

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


_Identity = tuple[str, str, Hashable]

# One re-entrant lock guards the registry and every first build of a store, so
# concurrent first lookups of one name build one store (and a store is only
# published once its constructor has returned).
_lock = threading.RLock()
_stores: dict[str, Store] = {}
# Live stores by identity (class, name, configuration): stores that made a
# proxy but were never registered, and stores rebuilt for a proxy whose name
# is taken here by a differently configured store.
_instances: weakref.WeakValueDictionary[_Identity, Store] = weakref.WeakValueDictionary()
_rebuilt: dict[_Identity, Store] = {}
_identities: weakref.WeakKeyDictionary[Store, _Identity] = weakref.WeakKeyDictionary()
_configs: weakref.WeakKeyDictionary[Store, dict[str, Any]] = weakref.WeakKeyDictionary()
_tracked: weakref.WeakSet[Store] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def init_store(store_type: StoreType, name: str, **kwargs: Any) -> Store:
    """Create a store and register it under ``name``.

    A store already registered under ``name`` is replaced and closed (its
    stored data is kept).

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
    cls = store_class(store_type)
    check_arguments(cls, name, kwargs)
    store = cls(name, **kwargs)
    with _lock:
        replaced = _stores.get(name)
        register_store(store, exist_ok=True)
    if replaced is not None and replaced is not store:
        logger.debug('init_store replaced store %r; closing the old one', name)
        replaced.close()
    return store


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
        _instances[identity(store)] = store
    logger.debug('Registered store %r (%s)', store.name, type(store).__name__)
    return store


def unregister_store(name: str) -> None:
    """Remove the store registered as ``name``, if any (the store is not closed)."""
    with _lock:
        _stores.pop(name, None)


def get_store(name_or_proxy: Any) -> Store | None:
    """Return the store registered as ``name``, or the store behind a proxy.

    Given a proxy made by a store, return that store (found or rebuilt as
    when the proxy resolves) without resolving the proxy. Returns ``None``
    for an unknown name or a proxy that no store made.
    """
    if is_proxy(name_or_proxy):
        get = getattr(get_factory(name_or_proxy), 'get_store', None)
        return get() if callable(get) else None
    return _stores.get(name_or_proxy)


def identity(store: Store) -> _Identity:
    """What makes two store objects the same store: class, name and configuration.

    Options that only tune this process (cache sizes, stats, timeouts) are
    left out, so a worker's store with another cache size still matches.
    """
    cached = _identities.get(store)
    if cached is None:  # a store's configuration is fixed once it is built
        config = _configs[store] = store.config()
        cached = _identities[store] = _identity(type(store), store.name, config)
    return cached


def _identity(cls: type[Store], name: str, config: dict[str, Any]) -> _Identity:
    return (class_path(cls), name, _freeze(cls.identity_config(config)))


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    frozen: Hashable = value if isinstance(value, Hashable) else repr(value)
    return frozen


def lookup_store(type_path: str, name: str, config: dict[str, Any]) -> Store:
    """Find or build the store a proxy (or a pickled store) refers to.

    A store's identity is its class, name *and* configuration. Order: the
    store registered under ``name`` if it has that identity, then a live
    store object with that identity, then a new store built from ``config``.
    The new store is registered under ``name`` when the name is free; when
    this process already has a differently configured store of that name,
    the new one is kept aside, so a proxy always reads from the store that
    made it (its server, its directory, its signing), never from a
    namesake. Lookups are serialized: concurrent first lookups build one store.

    Raises:
        MissingDependencyError: the store's backend is not installed here.
        StoreConfigError: the store cannot be rebuilt here (for example it
            signs its payloads and this process has no secret).

    """
    registered = _stores.get(name)
    # Fast path (one dict comparison): the very configuration, so the same identity.
    if (
        registered is not None
        and _configs.get(registered) == config
        and class_path(type(registered)) == type_path
    ):
        return registered
    cls = load_store_class(type_path)
    wanted = _identity(cls, name, config)
    with _lock:
        registered = _stores.get(name)
        if registered is not None and identity(registered) == wanted:
            return registered
        store = _instances.get(wanted) or _rebuilt.get(wanted)
        if store is not None:
            return store
        store = cls.from_config(name, config)
        if registered is None:
            register_store(store)
            logger.debug('Rebuilt store %r from its configuration', name)
        else:
            _rebuilt[wanted] = store
            _instances[wanted] = store
            logger.warning(
                'Store %r in this process is configured differently (%s %s) from the store '
                "that made a proxy (%s %s); using a separate store with the proxy's configuration.",
                name,
                class_path(type(registered)),
                _describe(registered.config()),
                type_path,
                _describe(config),
            )
        return store


def _describe(config: dict[str, Any]) -> str:
    return ', '.join(f'{k}={v!r}' for k, v in sorted(config.items()))


def track(store: Store) -> None:
    """Remember a live, fully built store so same-process proxies find it unregistered."""
    if store in _tracked:
        return
    key = identity(store)
    with _lock:
        if _instances.get(key) is None:
            _instances[key] = store
        _tracked.add(store)
