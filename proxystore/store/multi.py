"""Route objects to different stores by size: :class:`MultiStore`.

Small objects are cheapest in a low-latency store (Redis, a local dictionary),
large ones in a high-bandwidth one (a file system, shared memory). A
:class:`MultiStore` serializes each object once, measures the payload, and
hands it to the first route whose ``max_bytes`` is at least that size::

    init_store('multi', name='tiered', routes=[('redis', 100_000), ('files', None)])

It holds no data of its own. Every object lives in exactly one route store,
and a proxy made by a multi store *is* that route store's proxy: a worker
that resolves it rebuilds only that route store, never the multi store or
its other routes.

Finding a key: ``get``/``exists``/``is_cached``/``stats`` first ask the route
this process last wrote or read the key through (a small in-process index),
then the other routes in order, so keys written by another process are found
at the cost of one miss per route tried. ``evict`` deletes the key from every
route. ``set`` with an explicit ``key`` also deletes that key from the other
routes, so an overwrite that changes size class leaves no stale copy.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from proxystore.connectors.protocol import Entry
from proxystore.exceptions import KeyNotFoundError
from proxystore.exceptions import NotBytesError
from proxystore.exceptions import StoreConfigError
from proxystore.proxy import Proxy
from proxystore.serialize import Buffer
from proxystore.serialize import payload_size
from proxystore.store import registry
from proxystore.store.base import Store
from proxystore.store.factory import StoreFactory
from proxystore.store.keys import check_key
from proxystore.store.keys import check_keys
from proxystore.store.stats import TimeStats
from proxystore.utils import class_path

__all__ = ['MultiStore']

logger = logging.getLogger(__name__)

_MISSING: Any = object()
#: A fixed bytes object: its payload is deterministic, so equal payloads from
#: two stores mean that they sign (or not) with the same secret.
_PROBE = b'proxystore-multistore-signing-probe'
#: Keys remembered by the in-process key -> route index (oldest dropped first).
_INDEX_SIZE = 65_536

Route = tuple[Store, 'int | None']


def _is_bytes(obj: Any) -> bool:
    return isinstance(obj, (bytes, bytearray, memoryview))


def _nbytes(obj: Any) -> int:
    return len(obj) if isinstance(obj, bytes) else memoryview(obj).nbytes


class MultiStore(Store):
    """A store that puts each object in one of several stores, chosen by its size.

    Args:
        name: Name of the multi store (it must differ from every route's name).
        routes: ``[(store_or_name, max_bytes), ..., (store_or_name, None)]``:
            an object goes to the first route whose ``max_bytes`` is at least
            its serialized size. ``store_or_name`` is a :class:`Store` or the
            name of a registered store. ``max_bytes`` must strictly increase,
            and the last route must be ``None`` (it takes everything larger),
            so no object is ever refused at ``set`` time.
        owns_routes: :meth:`close` and :meth:`cleanup` also close and clean
            up the route stores. Off by default: route stores are usually
            shared (registered, used directly, routes of other multi stores).

    Caching, signing, per-key stats and metrics belong to the route stores:
    a multi store keeps no cache of its own, so its proxies, its ``get`` and
    the route store's ``get`` share one cached object per key and process.
    All routes must sign the same way (same secret, or none), since a payload
    is serialized once before its route is known.

    Raises:
        StoreConfigError: ``routes`` is empty, not sorted, has a
            non-positive ``max_bytes``, a ``None`` that is not last, no
            catch-all ``None`` route last, an unknown store name, the same
            store twice, a route named like the multi store itself, or routes
            that sign differently.

    """

    local_options = Store.local_options | {'owns_routes'}

    def __init__(
        self,
        name: str,
        routes: Sequence[tuple[Store | str, int | None]],
        *,
        owns_routes: bool = False,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise StoreConfigError(
                f'MultiStore: unexpected argument(s) {", ".join(map(repr, unknown))}. Its options '
                'are routes and owns_routes; cache, signing and stats options belong to the '
                'route stores.',
            )
        if not isinstance(owns_routes, bool):
            raise StoreConfigError(f'owns_routes must be True or False, got {owns_routes!r}.')
        self._routes: list[Route] = _check_routes(name, routes)
        # No cache of our own (the routes cache) and no signing (route 0's serializer is used).
        super().__init__(name, _RoutedBytes(self), cache_size=0, cache_bytes=0, signed=False)
        self._owns_routes = owns_routes
        self._index: dict[str, Store] = {}
        self._lock = threading.Lock()
        for store, _ in self._routes:
            registry.track(store)

    # -- configuration ---------------------------------------------------

    @property
    def routes(self) -> list[tuple[Store, int | None]]:
        """The ``(store, max_bytes)`` routes, smallest first."""
        return list(self._routes)

    @property
    def has_stats(self) -> bool:
        """Whether every route keeps per-key timings (``stats=True``)."""
        return all(store.has_stats for store, _ in self._routes)

    def config(self) -> dict[str, Any]:
        """Each route as its class path, name, configuration and ``max_bytes``.

        A worker rebuilds the multi store from this with :meth:`from_config`,
        finding or rebuilding each route store as a proxy would.
        """
        routes = [
            {
                'type': class_path(type(store)),
                'name': store.name,
                'config': store.config(),
                'max_bytes': max_bytes,
            }
            for store, max_bytes in self._routes
        ]
        return {'routes': routes, 'owns_routes': self._owns_routes}

    @classmethod
    def from_config(cls, name: str, config: dict[str, Any]) -> MultiStore:
        """Rebuild a multi store from :meth:`config` output (route stores found or rebuilt)."""
        config = dict(config)
        routes = config.pop('routes', None)
        if not isinstance(routes, (list, tuple)) or not all(
            isinstance(r, dict) and {'type', 'name', 'config', 'max_bytes'} <= set(r)
            for r in routes
        ):
            raise StoreConfigError(
                f'MultiStore config needs routes as MultiStore.config() returns them, '
                f'got {routes!r}.',
            )
        built = [
            (registry.lookup_store(r['type'], r['name'], r['config']), r['max_bytes'])
            for r in routes
        ]
        return cls(name, built, **config)

    def __repr__(self) -> str:
        routes = ', '.join(
            f'{store.name!r}' + ('' if limit is None else f' <= {limit}')
            for store, limit in self._routes
        )
        return f'MultiStore(name={self.name!r}, routes=[{routes}])'

    # -- routing ---------------------------------------------------------

    def _route_for(self, size: int) -> Store:
        for store, max_bytes in self._routes:
            if max_bytes is None or size <= max_bytes:
                return store
        raise AssertionError('unreachable: the last route takes any size')  # pragma: no cover

    def _remember(self, key: str, store: Store) -> None:
        with self._lock:
            self._index.pop(key, None)
            self._index[key] = store
            if len(self._index) > _INDEX_SIZE:
                del self._index[next(iter(self._index))]

    def _candidates(self, key: str) -> list[Store]:
        """Routes in the order to look for ``key``: the remembered one first."""
        with self._lock:
            known = self._index.get(key)
        stores = [store for store, _ in self._routes]
        if known is None or known not in stores:
            return stores
        return [known, *(s for s in stores if s is not known)]

    def _find(self, key: str) -> Store | None:
        """The route holding ``key`` (one ``exists`` per route tried), or ``None``."""
        for store in self._candidates(key):
            if store.exists(key):
                self._remember(key, store)
                return store
        return None

    def _place(
        self, obj: Any, serialize: bool, payload: Sequence[Buffer] | None
    ) -> tuple[Store, Any]:
        """Pick the route of ``obj``: returns it and the payload (``None`` when not serialized)."""
        if serialize or payload is not None:
            parts = list(payload) if payload is not None else self.serialize(obj)
            return self._route_for(payload_size(parts)), parts
        if not _is_bytes(obj):
            raise NotBytesError(
                f'serialize=False needs bytes, got {type(obj).__qualname__}: a multi store '
                'routes by size, so it stores only bytes as given. Pass serialize=True '
                '(the default) to store other objects.',
            )
        return self._route_for(_nbytes(obj)), None

    def _stored(self, key: str | None, store: Store) -> None:
        """After writing an explicit ``key`` to ``store``: delete it from the other routes."""
        if key is None:
            return
        for other, _ in self._routes:
            if other is not store:
                other.evict(key)

    # -- objects ---------------------------------------------------------

    def serialize(self, obj: Any) -> list[Buffer]:
        """Serialize ``obj`` as the routes do (they all sign alike, see the class docs)."""
        return self._routes[0][0].serialize(obj)

    def set(
        self,
        obj: Any,
        *,
        key: str | None = None,
        serialize: bool = True,
        payload: Sequence[Buffer] | None = None,
    ) -> str:
        """Store ``obj`` in the route its serialized size selects and return its key.

        See :meth:`Store.set`. With an explicit ``key``, the key is also
        deleted from the other routes.
        """
        if key is not None:
            check_key(key)
        store, parts = self._place(obj, serialize, payload)
        if parts is None:
            new_key = store.set(obj, key=key, serialize=False)
        else:
            new_key = store.set(obj, key=key, payload=parts)
        self._stored(key, store)
        self._remember(new_key, store)
        return new_key

    def set_batch(
        self,
        objs: Iterable[Any],
        *,
        keys: Sequence[str] | None = None,
        serialize: bool = True,
    ) -> list[str]:
        """Store many objects: one batch per route (see :meth:`Store.set_batch`).

        Each object is serialized once; a payload of several segments is
        copied once into one buffer, which the route stores as given.
        """
        objs = list(objs)
        explicit = keys is not None
        keys = self._batch_keys(objs, keys, 'set_batch')
        return [key for key, _ in self._set_batch(objs, keys, serialize, explicit)]

    def _set_batch(
        self, objs: list[Any], keys: list[str], serialize: bool, explicit: bool
    ) -> list[tuple[str, Store]]:
        """Write checked keys, one ``set_batch`` per route; return each key with its route."""
        placed: list[tuple[str, Store]] = []
        groups: dict[int, tuple[Store, list[str], list[Any]]] = {}
        for key, obj in zip(keys, objs):
            store, parts = self._place(obj, serialize, None)
            value = obj if parts is None else (parts[0] if len(parts) == 1 else b''.join(parts))
            group = groups.setdefault(id(store), (store, [], []))
            group[1].append(key)
            group[2].append(value)
            placed.append((key, store))
        for store, group_keys, values in groups.values():
            store.set_batch(values, keys=group_keys, serialize=False)
            for key in group_keys:
                self._stored(key if explicit else None, store)
                self._remember(key, store)
        return placed

    def get(
        self,
        key: str,
        *,
        strict: bool = False,
        default: Any = None,
        deserialize: bool = True,
        copy: bool = False,
    ) -> Any:
        """Return the object under ``key`` from the route that holds it (see :meth:`Store.get`)."""
        check_key(key)
        for store in self._candidates(key):
            obj = store.get(
                key, strict=strict, default=_MISSING, deserialize=deserialize, copy=copy
            )
            if obj is not _MISSING:
                self._remember(key, store)
                return obj
        return default

    def get_batch(
        self,
        keys: Sequence[str],
        *,
        strict: bool = False,
        default: Any = None,
        deserialize: bool = True,
    ) -> list[Any]:
        """Return the objects of many keys, one batch per route tried."""
        keys = check_keys(keys, 'get_batch')
        results: list[Any] = [_MISSING] * len(keys)
        orders = [self._candidates(key) for key in keys]
        for attempt in range(len(self._routes)):
            groups: dict[int, tuple[Store, list[int]]] = {}
            for i, order in enumerate(orders):
                if results[i] is _MISSING:
                    groups.setdefault(id(order[attempt]), (order[attempt], []))[1].append(i)
            for store, indexes in groups.values():
                found = store.get_batch(
                    [keys[i] for i in indexes],
                    strict=strict,
                    default=_MISSING,
                    deserialize=deserialize,
                )
                for i, obj in zip(indexes, found):
                    if obj is not _MISSING:
                        results[i] = obj
                        self._remember(keys[i], store)
        return [default if r is _MISSING else r for r in results]

    def exists(self, key: str) -> bool:
        """Return whether any route holds ``key``."""
        check_key(key)
        return self._find(key) is not None

    def evict(self, key: str) -> None:
        """Delete ``key`` from every route (a missing key is fine)."""
        check_key(key)
        for store, _ in self._routes:
            store.evict(key)
        with self._lock:
            self._index.pop(key, None)

    def is_cached(self, key: str, *, strict: bool = False) -> bool:
        """Return whether a route caches ``key``'s object (see :meth:`Store.is_cached`)."""
        check_key(key)
        return any(store.is_cached(key, strict=strict) for store in self._candidates(key))

    # -- proxies ---------------------------------------------------------

    def proxy(
        self,
        obj: Any = None,
        *,
        key: str | None = None,
        factory: type[StoreFactory[Any]] = StoreFactory,
        evict: bool = False,
        serialize: bool = True,
        strict: bool = False,
        resolved: bool = False,
        payload: Sequence[Buffer] | None = None,
        copy: bool = False,
    ) -> Proxy[Any]:
        """Store ``obj`` in its route; return that route store's proxy (see :meth:`Store.proxy`)."""
        options: dict[str, Any] = {
            'factory': factory,
            'evict': evict,
            'strict': strict,
            'copy': copy,
        }
        if obj is None:
            if key is None:
                raise StoreConfigError('proxy() needs an object or the key of an existing object.')
            check_key(key)
            store = self._find(key)
            if store is None:
                raise KeyNotFoundError(self.name, key, 'proxy(key=...) needs an existing key.')
            return store.proxy(key=key, serialize=serialize, **options)
        if key is not None:
            check_key(key)
        store, parts = self._place(obj, serialize, payload)
        if parts is None:
            proxy = store.proxy(obj, key=key, serialize=False, resolved=resolved, **options)
        else:
            proxy = store.proxy(obj, key=key, payload=parts, resolved=resolved, **options)
        self._stored(key, store)
        self._remember(_factory(proxy).key, store)
        return proxy

    def proxy_batch(
        self,
        objs: Iterable[Any] | None = None,
        *,
        keys: Sequence[str] | None = None,
        factory: type[StoreFactory[Any]] = StoreFactory,
        evict: bool = False,
        serialize: bool = True,
        strict: bool = False,
        copy: bool = False,
    ) -> list[Proxy[Any]]:
        """Store many objects (one batch per route) and return each route store's proxy."""
        options: dict[str, Any] = {'evict': evict, 'strict': strict, 'copy': copy}
        if objs is None:
            if keys is None:
                raise StoreConfigError('proxy_batch() needs objects or existing keys.')
            keys = check_keys(keys, 'proxy_batch')
            proxies = []
            for key in keys:
                store = self._find(key)
                if store is None:
                    raise KeyNotFoundError(
                        self.name, key, 'proxy_batch(keys=...) needs existing keys.'
                    )
                proxies.append(
                    store.proxy(key=key, serialize=serialize, factory=factory, **options)
                )
            return proxies
        objs = list(objs)
        explicit = keys is not None
        keys = self._batch_keys(objs, keys, 'proxy_batch')
        proxies = []
        for (key, store), obj in zip(self._set_batch(objs, keys, serialize, explicit), objs):
            # What Store.proxy builds after its own set: the route's factory.
            made = factory.for_store(
                store,
                key,
                raw=None if serialize else 'bytes',
                target_type=class_path(type(obj)),
                **options,
            )
            proxies.append(Proxy(made))
        return proxies

    # -- metrics, stats, lifetime ---------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """The routes' metrics summed (a route also used directly counts that use too)."""
        total: dict[str, Any] = {}
        for store, _ in self._routes:
            for name, value in store.metrics().items():
                if isinstance(value, dict):
                    into = total.setdefault(name, {'count': 0, 'bytes': 0, 'seconds': 0.0})
                    for field, amount in value.items():
                        into[field] = into.get(field, 0) + amount
                else:
                    total[name] = total.get(name, 0) + value
        return total

    def reset_metrics(self) -> None:
        """Zero every route's metrics."""
        for store, _ in self._routes:
            store.reset_metrics()

    def stats(self, key_or_proxy: Any) -> dict[str, TimeStats]:
        """Per-key timings from the route holding the key (routes need ``stats=True``).

        Raises:
            ValueError: a route keeps no per-key stats.

        """
        if not self.has_stats:
            raise ValueError(
                f'Multi store {self.name!r} keeps no per-key stats: create its route '
                'stores with stats=True.',
            )
        from proxystore.proxy import is_proxy

        if is_proxy(key_or_proxy):
            store = _factory(key_or_proxy).get_store()
            return store.stats(key_or_proxy)
        for store in self._candidates(key_or_proxy):
            found = store.stats(key_or_proxy)
            if found:
                return found
        return {}

    def close(self) -> None:
        """With ``owns_routes``, close every route; else nothing (the routes are shared)."""
        if self._owns_routes:
            for store, _ in self._routes:
                store.close()

    def cleanup(self) -> None:
        """Forget the key index; with ``owns_routes``, clean up every route (see each backend)."""
        with self._lock:
            self._index.clear()
        if self._owns_routes:
            for store, _ in self._routes:
                store.cleanup()

    def _after_fork(self) -> None:
        super()._after_fork()
        self._lock = threading.Lock()


class _RoutedBytes:
    """The multi store's connector: bytes by key go through the route stores.

    A multi store moves no bytes itself; this only serves the few generic
    :class:`Store` paths that read or write bytes by key.
    """

    def __init__(self, store: MultiStore) -> None:
        self._store = weakref.proxy(store)

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        data = parts[0] if len(parts) == 1 else b''.join(parts)
        self._store.set(data, key=key, serialize=False)

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        for key, parts in items:
            self.put(key, parts)

    def get(self, key: str) -> Entry | None:
        data: Buffer | None = self._store.get(key, deserialize=False)
        return None if data is None else (data, True)

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self.get(key) for key in keys]

    def exists(self, key: str) -> bool:
        return bool(self._store.exists(key))

    def evict(self, key: str) -> None:
        self._store.evict(key)

    def close(self) -> None:
        """Closing is the multi store's (see :meth:`MultiStore.close`)."""

    def config(self) -> dict[str, Any]:
        return {}


def _factory(proxy: Proxy[Any]) -> StoreFactory[Any]:
    from proxystore.proxy import get_factory

    factory = get_factory(proxy)
    if not isinstance(factory, StoreFactory):
        raise ValueError('Expected a proxy made by a store.')
    return factory


def _check_routes(name: str, routes: Any) -> list[Route]:
    """Validate ``routes`` and resolve store names; raise StoreConfigError naming the problem."""
    example = "routes=[('redis-store', 100_000), ('file-store', None)]"
    if isinstance(routes, (str, bytes)) or not isinstance(routes, (list, tuple)) or not routes:
        raise StoreConfigError(
            f'MultiStore {name!r} needs a non-empty list of (store, max_bytes) routes, '
            f'got {routes!r}. For example {example}.',
        )
    checked: list[Route] = []
    previous = 0
    for position, route in enumerate(routes):
        if not isinstance(route, (list, tuple)) or len(route) != 2:
            raise StoreConfigError(
                f'Route {position} of MultiStore {name!r} must be a (store, max_bytes) pair, '
                f'got {route!r}. For example {example}.',
            )
        target, max_bytes = route
        last = position == len(routes) - 1
        if max_bytes is None:
            if not last:
                raise StoreConfigError(
                    f'Route {position} of MultiStore {name!r} has max_bytes=None but is not '
                    'the last route: only the last route takes objects of any size.',
                )
        elif isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise StoreConfigError(
                f'Route {position} of MultiStore {name!r} has max_bytes={max_bytes!r}: '
                'it must be a positive int (or None for the last route).',
            )
        elif max_bytes <= previous:
            raise StoreConfigError(
                f'Routes of MultiStore {name!r} must have strictly increasing max_bytes, '
                f'but route {position} has {max_bytes} after {previous}.',
            )
        elif last:
            raise StoreConfigError(
                f'The last route of MultiStore {name!r} has max_bytes={max_bytes}: end the '
                'routes with (store, None) so objects larger than every bound have a place.',
            )
        else:
            previous = max_bytes
        store = _route_store(name, position, target)
        if any(store is other for other, _ in checked):
            raise StoreConfigError(
                f'Store {store.name!r} appears twice in the routes of MultiStore {name!r}; '
                'each route must be a different store.',
            )
        checked.append((store, max_bytes))
    _check_signing(name, checked)
    return checked


def _route_store(name: str, position: int, target: Any) -> Store:
    if target == name or (isinstance(target, Store) and target.name == name):
        raise StoreConfigError(
            f'Route {position} of MultiStore {name!r} is the multi store itself (or a store '
            'of the same name): give the route stores names of their own.',
        )
    if isinstance(target, str):
        found = registry.get_store(target)
        if found is None:
            raise StoreConfigError(
                f'Route {position} of MultiStore {name!r} names store {target!r}, but no store '
                f'is registered under that name: create it first with '
                f'init_store(..., name={target!r}) or pass the store object.',
            )
        target = found
    if not isinstance(target, Store):
        raise StoreConfigError(
            f'Route {position} of MultiStore {name!r} must be a Store or a registered store '
            f'name, got {type(target).__qualname__}.',
        )
    return target


def _check_signing(name: str, routes: list[Route]) -> None:
    """Refuse routes that sign differently: one payload must be readable by every route."""
    first = b''.join(bytes(p) for p in routes[0][0].serialize(_PROBE))
    for store, _ in routes[1:]:
        if b''.join(bytes(p) for p in store.serialize(_PROBE)) != first:
            raise StoreConfigError(
                f'Route stores {routes[0][0].name!r} and {store.name!r} of MultiStore {name!r} '
                'sign payloads differently (another secret, or one signs and the other does '
                'not): give every route the same secret, or none.',
            )
