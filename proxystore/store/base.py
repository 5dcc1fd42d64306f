"""The object-level store interface every backend shares: :class:`Store`.

A :class:`Store` turns objects into framed bytes (:mod:`proxystore.serialize`),
keeps a local LRU cache of deserialized objects, counts what it does
(:class:`~proxystore.store.metrics.Metrics`) and makes proxies. A backend is a
subclass that only moves bytes: it implements ``_put``, ``_get``, ``_exists``
and ``_evict`` (plus ``_config`` to rebuild itself in another process and,
optionally, batch and cleanup hooks). Backends translate their library's
errors into :mod:`proxystore.exceptions`, so nothing above them sees a foreign
exception type.
"""

from __future__ import annotations

import copy as _copy
import logging
import os
import time
import weakref
from abc import ABC
from abc import abstractmethod
from collections.abc import Hashable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import TypeVar

from proxystore.exceptions import BatchSizeMismatchError
from proxystore.exceptions import InvalidKeyError
from proxystore.exceptions import KeyNotFoundError
from proxystore.exceptions import NotBytesError
from proxystore.exceptions import SerializationError
from proxystore.exceptions import StoreConfigError
from proxystore.factory import StoreFactory
from proxystore.proxy import Proxy
from proxystore.proxy import _set_target
from proxystore.serialize import Buffer
from proxystore.serialize import deserialize
from proxystore.serialize import is_payload
from proxystore.serialize import payload_size
from proxystore.serialize import serialize_parts
from proxystore.store import registry
from proxystore.store.cache import LRUCache
from proxystore.store.metrics import Metrics
from proxystore.store.stats import KeyStats
from proxystore.store.stats import TimeStats
from proxystore.utils import class_path
from proxystore.utils import create_key

__all__ = ['Store', 'SECRET_ENV']

logger = logging.getLogger(__name__)

T = TypeVar('T')
S = TypeVar('S', bound='Store')

#: Environment variable holding the signing secret (see ``Store(secret=...)``).
SECRET_ENV = 'PROXYSTORE_SECRET'

_MISSING: Any = object()
_MAX_KEY_LENGTH = 1024
#: Default byte bound of a store's local object cache.
DEFAULT_CACHE_BYTES = 256 * 2**20


def check_key(key: Any) -> str:
    """Return ``key`` if it is a valid key, else raise :class:`InvalidKeyError`.

    Keys are non-empty strings of at most 1024 characters with no ``/``,
    ``\\``, NUL, and no leading ``.``: every backend can then use them as file
    names, and no key can point outside a file store's directory.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f'Keys must be str, got {type(key).__qualname__}.')
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise InvalidKeyError(f'Keys must have 1 to {_MAX_KEY_LENGTH} characters, got {len(key)}.')
    if key[0] == '.' or '/' in key or '\\' in key or '\x00' in key:
        raise InvalidKeyError(
            f'Invalid key {key!r}: keys may not start with "." or contain "/", "\\" or NUL.',
        )
    try:
        key.encode('utf-8')
    except UnicodeEncodeError:
        raise InvalidKeyError(
            f'Invalid key {key!r}: keys must be encodable as UTF-8 (no lone surrogates).',
        ) from None
    return key


def _raw_kind(obj: Any, stores_objects: bool) -> str:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return 'bytes'
    if stores_objects:
        return 'object'
    raise NotBytesError(
        f'serialize=False needs bytes, got {type(obj).__qualname__}. '
        'Pass serialize=True (the default) to store other objects, or encode str yourself.',
    )


def check_keys(keys: Any, what: str) -> list[str]:
    """Return ``keys`` as a list of valid keys; a single string is refused, not split."""
    if isinstance(keys, (str, bytes)):
        raise InvalidKeyError(
            f'{what} needs a sequence of keys, got a single {type(keys).__qualname__} '
            f'{keys!r}; wrap it in a list.',
        )
    return [check_key(k) for k in keys]


class Store(ABC):
    """A named key-value store for Python objects.

    Args:
        name: Name of the store; proxies find the store by this name in
            other processes (see :func:`proxystore.store.init_store`).
        cache_size: Number of deserialized objects kept in this process's
            LRU cache (0 disables the cache).
        cache_bytes: Bound on the stored size of the cached objects (``None``:
            no byte bound). An object larger than this is never cached.
        secret: Sign every payload with this secret (HMAC-SHA256) and refuse
            to deserialize payloads that are not signed with it. Defaults to
            the ``PROXYSTORE_SECRET`` environment variable. The secret never
            travels inside a proxy: workers read their own environment.
        signed: ``None`` signs when a secret is available; ``True`` requires
            one (set automatically when a store is rebuilt from a proxy of a
            signed store, so a worker without the secret fails loudly).
        stats: Keep per-key timings of every operation (see :meth:`stats`).

    Raises:
        StoreConfigError: an argument is invalid (empty name, negative
            ``cache_size``, empty secret, ``signed=True`` without a secret).

    """

    #: Whether ``serialize=False`` may store arbitrary objects (in-process stores only).
    stores_objects: ClassVar[bool] = False
    #: Configuration keys that only tune this process and are not part of the
    #: store's identity (see :func:`proxystore.store.registry.identity`).
    local_options: ClassVar[frozenset[str]] = frozenset({'cache_size', 'cache_bytes', 'stats'})

    def __init__(
        self,
        name: str,
        *,
        cache_size: int = 16,
        cache_bytes: int | None = DEFAULT_CACHE_BYTES,
        secret: str | bytes | None = None,
        signed: bool | None = None,
        stats: bool = False,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise StoreConfigError(
                f'{type(self).__name__}: unexpected argument(s) {", ".join(map(repr, unknown))}. '
                f'Store options are cache_size, cache_bytes, secret, signed and stats.',
            )
        if not isinstance(name, str) or not name:
            raise StoreConfigError(f'A store name must be a non-empty str, got {name!r}.')
        _check_int('cache_size', cache_size)
        if cache_bytes is not None:
            _check_int('cache_bytes', cache_bytes)
        if not isinstance(stats, bool):
            raise StoreConfigError(f'stats must be True or False, got {stats!r}.')
        if signed is not None and not isinstance(signed, bool):
            raise StoreConfigError(f'signed must be None, True or False, got {signed!r}.')
        if secret is None:
            secret = os.environ.get(SECRET_ENV) or None
        if isinstance(secret, str):
            secret = secret.encode('utf-8')
        if secret is not None and (not isinstance(secret, bytes) or not secret):
            raise StoreConfigError(
                f'secret must be a non-empty str or bytes, got {type(secret).__qualname__} '
                f'{"(empty)" if not secret else ""}: an empty secret would let anyone forge '
                'payloads. Pass a long random string, or leave it unset to not sign.',
            )
        if signed and secret is None:
            raise StoreConfigError(
                f'Store {name!r} signs its payloads but no secret is available here: '
                f'set the {SECRET_ENV} environment variable (or pass secret=...).',
            )
        self._name = name
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self._secret: bytes | None = secret if signed is not False else None
        self._cache = LRUCache(cache_size, cache_bytes)
        self._metrics = Metrics()
        self._key_stats: KeyStats | None = KeyStats() if stats else None
        _live_stores.add(self)

    # -- identity and configuration -------------------------------------

    @property
    def name(self) -> str:
        """The store's name."""
        return self._name

    @property
    def cache_size(self) -> int:
        """Capacity of the local object cache."""
        return self._cache_size

    @property
    def has_stats(self) -> bool:
        """Whether the store keeps per-key timings (``stats=True``)."""
        return self._key_stats is not None

    @property
    def kwargs(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this store (ProxyStore v0.3 name of :meth:`config`).

        ``init_store(STORES.get_str_by_type(type(store)), name=store.name, **store.kwargs)``
        makes an equal store in a worker.
        """
        return self.config()

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this store with ``type(self)(name, **config)``.

        Secrets are never included; ``signed=True`` is, so a rebuilt store
        insists on finding the secret in its own environment.
        """
        config: dict[str, Any] = {'cache_size': self._cache_size}
        if self._cache_bytes != DEFAULT_CACHE_BYTES:
            config['cache_bytes'] = self._cache_bytes
        if self._key_stats is not None:
            config['stats'] = True
        if self._secret is not None:
            config['signed'] = True
        config.update(self._config())
        return config

    @classmethod
    def from_config(cls: type[S], name: str, config: dict[str, Any]) -> S:
        """Rebuild a store from :meth:`config` output."""
        return cls(name, **config)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name={self._name!r})'

    def __reduce__(self) -> tuple[Any, ...]:
        # A store pickles as a reference: unpickled, it is the store of that
        # name and configuration in the receiving process (found or rebuilt).
        registry.track(self)
        return (registry.lookup_store, (class_path(type(self)), self._name, self.config()))

    # -- objects ---------------------------------------------------------

    def create_key(self, obj: Any) -> str:
        """Return a new unique key for ``obj``."""
        return create_key(obj)

    def serialize(self, obj: Any) -> list[Buffer]:
        """Serialize ``obj`` as this store would (signed if it signs).

        Measure the payload (``proxystore.serialize.payload_size``) and hand it
        to :meth:`set` or :meth:`proxy` as ``payload=`` to store it without
        serializing twice.
        """
        return serialize_parts(obj, secret=self._secret)

    def _encode(self, obj: Any, serialize: bool) -> list[Any]:
        if serialize:
            return self.serialize(obj)
        if _raw_kind(obj, self.stores_objects) == 'object':
            return [_Object(obj)]
        return [obj]

    def _decode(self, data: Any, deserialize_: bool, key: str) -> Any:
        if isinstance(data, _Object):
            return data.obj
        if deserialize_:
            try:
                return deserialize(data, secret=self._secret)
            except SerializationError as e:
                # Name the key and where it lives: the serializer knows neither.
                where = self._where()
                if e.args and isinstance(e.args[0], str) and where not in e.args[0]:
                    e.args = (f'{e.args[0]} (key {key!r} in {where})', *e.args[1:])
                raise
        if isinstance(data, (bytearray, memoryview)):
            return bytes(data)
        return data

    def _record(self, key: str, method: str, seconds: float) -> None:
        if self._key_stats is not None:
            self._key_stats.record(key, method, seconds)

    def set(
        self,
        obj: Any,
        *,
        key: str | None = None,
        serialize: bool = True,
        payload: Sequence[Buffer] | None = None,
    ) -> str:
        """Store ``obj`` and return its key (a new one unless ``key`` is given).

        Setting an existing key overwrites it. The object is not put in the
        local cache; a cached older value of ``key`` is dropped.

        Args:
            obj: The object.
            key: Key to store it under (default: a new unique key).
            serialize: ``False`` stores ``bytes`` as given.
            payload: ``obj`` already serialized by :meth:`serialize`.

        Raises:
            SerializationError: ``obj`` cannot be serialized, or ``payload``
                is not the output of :meth:`serialize`.
            NotBytesError: ``serialize=False`` and ``obj`` is not bytes.
            InvalidKeyError: ``key`` is not a valid key.

        """
        key = self.create_key(obj) if key is None else check_key(key)
        parts = _check_payload(payload) if payload is not None else self._encode(obj, serialize)
        with self._metrics.timer('set') as timing:
            self._put(key, parts)
            timing.nbytes = _size(parts)
        self._record(key, 'set', timing.seconds)
        self._cache.evict(key)
        return key

    def set_batch(
        self,
        objs: Iterable[Any],
        *,
        keys: Sequence[str] | None = None,
        serialize: bool = True,
    ) -> list[str]:
        """Store many objects at once (one round trip where the backend allows).

        Raises:
            BatchSizeMismatchError: ``keys`` and ``objs`` differ in length.
            InvalidKeyError: ``keys`` is a single string, or holds an invalid key.

        """
        objs = list(objs)
        if keys is None:
            keys = [self.create_key(obj) for obj in objs]
        else:
            keys = check_keys(keys, 'set_batch')
            if len(keys) != len(objs):
                raise BatchSizeMismatchError(
                    f'set_batch got {len(objs)} objects but {len(keys)} keys.',
                )
        items = [(key, self._encode(obj, serialize)) for key, obj in zip(keys, objs)]
        with self._metrics.timer('set', count=len(items)) as timing:
            self._put_batch(items)
            timing.nbytes = sum(_size(parts) for _, parts in items)
        for key in keys:
            self._record(key, 'set', timing.seconds / max(len(keys), 1))
            self._cache.evict(key)
        return keys

    def get(
        self,
        key: str,
        *,
        strict: bool = False,
        default: Any = None,
        deserialize: bool = True,
        copy: bool = False,
    ) -> Any:
        """Return the object stored under ``key``, or ``default`` if there is none.

        Every ``get`` and every proxy of a key in one process share one
        object (the cached one), so an in-place change made through one is
        seen by the others; other processes are not affected. Pass
        ``copy=True`` to get an object nobody else holds.

        Args:
            key: The key.
            strict: Skip the local cache and read the store, so a value that
                another client overwrote is never returned stale.
            default: Returned when the key does not exist.
            deserialize: ``False`` returns the stored bytes as they are.
            copy: Return a private object: a deep copy of the cached object,
                or a fresh read that is not cached.

        """
        check_key(key)
        if deserialize and not strict:
            cached = self._cache.get(key, _MISSING)
            if cached is not _MISSING:
                self._metrics.increment('cache_hits')
                return _copy.deepcopy(cached) if copy else cached
            self._metrics.increment('cache_misses')
        token = self._cache.begin_read(key)
        obj: Any = _MISSING
        nbytes = 0
        version: Hashable | None = None
        try:
            # Timed inline (not with Metrics.timer): this is every read's path.
            start = time.perf_counter()
            data, version = self._get_versioned(key)
            if data is not None and not isinstance(data, _Object):
                nbytes = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
            seconds = time.perf_counter() - start
            self._metrics.record('get', nbytes=nbytes, seconds=seconds)
            if self._key_stats is not None:
                self._key_stats.record(key, 'get', seconds)
            if data is None:
                return default
            obj = self._decode(data, deserialize, key)
            return obj
        finally:
            # Cached only if no set/evict of this key happened during the read.
            self._cache.end_read(
                key,
                token,
                obj,
                store=deserialize and not copy and obj is not _MISSING,
                nbytes=nbytes,
                version=version,
            )

    def get_batch(
        self,
        keys: Sequence[str],
        *,
        strict: bool = False,
        default: Any = None,
        deserialize: bool = True,
    ) -> list[Any]:
        """Return the objects of many keys (``default`` for missing ones).

        Raises:
            InvalidKeyError: ``keys`` is a single string, or holds an invalid key.

        """
        keys = check_keys(keys, 'get_batch')
        results: list[Any] = [_MISSING] * len(keys)
        todo = []
        for i, key in enumerate(keys):
            cached = _MISSING if strict or not deserialize else self._cache.get(key, _MISSING)
            if cached is _MISSING:
                todo.append(i)
            else:
                results[i] = cached
        if not todo:
            return results
        tokens = [self._cache.begin_read(keys[i]) for i in todo]
        decoded: list[Any] = [_MISSING] * len(todo)
        sizes = [0] * len(todo)
        versions: list[Hashable | None] = [None] * len(todo)
        try:
            with self._metrics.timer('get', count=len(todo)) as timing:
                datas = self._get_batch_versioned([keys[i] for i in todo])
                sizes = [0 if d is None else _size([d]) for d, _ in datas]
                timing.nbytes = sum(sizes)
            for n, (i, (data, version)) in enumerate(zip(todo, datas)):
                self._record(keys[i], 'get', timing.seconds / len(todo))
                versions[n] = version
                if data is None:
                    results[i] = default
                    continue
                decoded[n] = self._decode(data, deserialize, keys[i])
                results[i] = decoded[n]
        finally:
            for n, i in enumerate(todo):
                store = deserialize and decoded[n] is not _MISSING
                self._cache.end_read(
                    keys[i],
                    tokens[n],
                    decoded[n],
                    store=store,
                    nbytes=sizes[n],
                    version=versions[n],
                )
        return results

    def exists(self, key: str) -> bool:
        """Return whether ``key`` exists in the store (the cache is not consulted)."""
        check_key(key)
        with self._metrics.timer('exists') as timing:
            found = self._exists(key)
        self._record(key, 'exists', timing.seconds)
        return found

    def evict(self, key: str) -> None:
        """Delete ``key`` from the store and the local cache (a missing key is fine)."""
        check_key(key)
        with self._metrics.timer('evict') as timing:
            self._evict(key)
        self._record(key, 'evict', timing.seconds)
        # After the delete: a read racing it cannot re-cache the old value.
        self._cache.evict(key)

    def is_cached(self, key: str, *, strict: bool = False) -> bool:
        """Return whether ``key``'s object is in the local cache.

        With ``strict=True`` the cached object must also be the store's
        current value: False once another client (another process, another
        store object) has overwritten or deleted the key.
        """
        check_key(key)
        if not self._cache.exists(key):
            return False
        if not strict:
            return True
        current = self._version(key)
        return current is not None and current == self._cache.version(key)

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
        """Store ``obj`` (unless only ``key`` is given) and return a proxy of it.

        Args:
            obj: Object to store. Leave it ``None`` and give ``key`` to proxy an
                existing object (so ``None`` itself cannot be proxied).
            key: Key to store ``obj`` under, or the existing key to proxy.
            factory: :class:`StoreFactory` subclass that the proxy carries.
            evict: Delete the object from the store once the proxy resolves.
            serialize: ``False`` stores ``bytes`` as given (with only ``key``:
                the existing value was stored that way).
            strict: The proxy bypasses caches and reads the newest value.
            resolved: Return a proxy already resolved to ``obj`` in this
                process (no fetch here; other processes still resolve lazily).
            payload: ``obj`` already serialized by :meth:`serialize`.
            copy: The proxy resolves to an object that no other proxy or
                ``get`` in its process shares (see :meth:`get`).

        Raises:
            KeyNotFoundError: only ``key`` was given and it does not exist.
            NotBytesError: ``serialize=False`` and ``obj`` is not bytes.

        """
        start = time.perf_counter()
        if obj is None:
            if key is None:
                raise StoreConfigError('proxy() needs an object or the key of an existing object.')
            if not self.exists(key):
                raise KeyNotFoundError(self._name, key, 'proxy(key=...) needs an existing key.')
            options: dict[str, Any] = {'raw': None if serialize else 'bytes'}
        else:
            raw = None if serialize else _raw_kind(obj, self.stores_objects)
            key = self.set(obj, key=key, serialize=serialize, payload=payload)
            options = {'raw': raw, 'target_type': class_path(type(obj))}
        proxy = self._make_proxy(factory, key, evict=evict, strict=strict, copy=copy, **options)
        if resolved and obj is not None:
            _set_target(proxy, obj)
        self._metrics.record('proxy', seconds=time.perf_counter() - start)
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
        """Store many objects in one batch and return a proxy of each.

        With ``objs=None``, proxy the existing ``keys`` instead.

        Raises:
            KeyNotFoundError: ``objs`` is None and a key does not exist.

        """
        start = time.perf_counter()
        if objs is None:
            if keys is None:
                raise StoreConfigError('proxy_batch() needs objects or existing keys.')
            keys = check_keys(keys, 'proxy_batch')
            for key in keys:
                if not self.exists(key):
                    raise KeyNotFoundError(
                        self._name, key, 'proxy_batch(keys=...) needs existing keys.'
                    )
            options: list[dict[str, Any]] = [{'raw': None if serialize else 'bytes'}] * len(keys)
        else:
            objs = list(objs)
            raws = [None if serialize else _raw_kind(o, self.stores_objects) for o in objs]
            keys = self.set_batch(objs, keys=keys, serialize=serialize)
            options = [
                {'raw': raw, 'target_type': class_path(type(o))} for raw, o in zip(raws, objs)
            ]
        proxies = [
            self._make_proxy(factory, key, evict=evict, strict=strict, copy=copy, **opts)
            for key, opts in zip(keys, options)
        ]
        self._metrics.record('proxy', count=len(proxies), seconds=time.perf_counter() - start)
        return proxies

    def _make_proxy(self, factory: type[StoreFactory[Any]], key: str, **options: Any) -> Proxy[Any]:
        registry.track(self)
        return Proxy(factory.for_store(self, key, **options))

    def _resolve(
        self, key: str, *, raw: str | None, strict: bool, evict: bool, copy: bool = False
    ) -> Any:
        """Fetch ``key`` for a proxy: like :meth:`get`, but a missing key is an error."""
        start = time.perf_counter()
        obj = self.get(key, strict=strict, default=_MISSING, deserialize=raw is None, copy=copy)
        if obj is _MISSING:
            raise KeyNotFoundError(
                self._name,
                key,
                'It may have been evicted (a proxy made with evict=True resolves once), '
                'the store may have been cleaned up, or the proxy belongs to another store.',
            )
        if raw == 'str' and isinstance(obj, bytes):  # proxies made before 0.5
            obj = obj.decode('utf-8')
        if evict:
            self.evict(key)
        self._metrics.record('resolve', seconds=time.perf_counter() - start)
        return obj

    # -- lifetime and metrics ------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Counts, bytes and seconds of each operation, and cache hits/misses."""
        return self._metrics.as_dict()

    def reset_metrics(self) -> None:
        """Zero every metric."""
        self._metrics.reset()

    def stats(self, key_or_proxy: Any) -> dict[str, TimeStats]:
        """Per-key timings ``{method: TimeStats}`` of a key or of a proxy's key.

        For a proxy, the timings of its factory's ``resolve``/``resolve_async``
        are merged in. Only the most recently used keys are kept (see
        :mod:`proxystore.store.stats`); an unknown key gives ``{}``.

        Raises:
            ValueError: the store was made without ``stats=True``.

        """
        if self._key_stats is None:
            raise ValueError(
                f'Store {self._name!r} keeps no per-key stats: create it with stats=True.',
            )
        from proxystore.proxy import get_factory
        from proxystore.proxy import is_proxy

        if not is_proxy(key_or_proxy):
            return self._key_stats.get(key_or_proxy)
        factory = get_factory(key_or_proxy)
        if not isinstance(factory, StoreFactory):
            raise ValueError('stats() needs a key or a proxy made by a store.')
        stats = self._key_stats.get(factory.key)
        stats.update(factory.stats())
        return stats

    def close(self) -> None:
        """Release connections and handles; stored data is kept."""
        self._close()

    def cleanup(self) -> None:
        """Clear the local cache and release resources (see each backend for data)."""
        self._cache.clear()
        self._cleanup()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _after_fork(self) -> None:
        """Reset locks and per-process state in a forked child (extended by backends)."""
        self._cache.reset_after_fork()
        self._metrics.reset_after_fork()
        if self._key_stats is not None:
            self._key_stats.reset_after_fork()

    # -- byte-level interface implemented by backends -------------------------

    @abstractmethod
    def _put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Atomically write the concatenation of ``parts`` under ``key``."""

    @abstractmethod
    def _get(self, key: str) -> Buffer | None:
        """Return the bytes under ``key`` (writable where cheap), or ``None``."""

    @abstractmethod
    def _exists(self, key: str) -> bool:
        """Return whether ``key`` exists."""

    @abstractmethod
    def _evict(self, key: str) -> None:
        """Delete ``key``; a missing key is not an error."""

    def _get_versioned(self, key: str) -> tuple[Buffer | None, Hashable | None]:
        """Return the bytes under ``key`` and a token that changes whenever it is rewritten.

        Backends that cannot tell versions apart use ``True`` (then a strict
        ``is_cached`` only checks that the key still exists).
        """
        data = self._get(key)
        return data, (None if data is None else True)

    def _version(self, key: str) -> Hashable | None:
        """The version token of ``key``'s current value (no payload read), ``None`` if absent."""
        return True if self._exists(key) else None

    def _put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        """Write many keys; backends override this to use one round trip."""
        for key, parts in items:
            self._put(key, parts)

    def _get_batch(self, keys: Sequence[str]) -> list[Buffer | None]:
        """Read many keys; backends override this to use one round trip."""
        return [self._get(key) for key in keys]

    def _get_batch_versioned(
        self, keys: Sequence[str]
    ) -> list[tuple[Buffer | None, Hashable | None]]:
        """Read many keys with their versions (see :meth:`_get_versioned`)."""
        if type(self)._get_versioned is not Store._get_versioned:
            return [self._get_versioned(key) for key in keys]
        return [(d, None if d is None else True) for d in self._get_batch(keys)]

    def _config(self) -> dict[str, Any]:
        """Backend-specific constructor arguments (see :meth:`config`)."""
        return {}

    def _where(self) -> str:
        """Where the store keeps its data, for error messages (backends add their server)."""
        return f'store {self._name!r}'

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources (connections, handles)."""

    def _cleanup(self) -> None:
        """Release backend resources; backends document what happens to data."""
        self._close()


class _Object:
    """Marks a value that an in-process store holds as an object, not bytes."""

    __slots__ = ('obj',)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


def _size(parts: Sequence[Any]) -> int:
    if len(parts) == 1 and isinstance(parts[0], _Object):
        return 0
    try:
        return payload_size(parts)
    except TypeError:
        return 0


def _check_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreConfigError(f'{name} must be an int >= 0, got {value!r}.')


def _check_payload(payload: Sequence[Buffer]) -> list[Buffer]:
    """Refuse a ``payload=`` that is not :meth:`Store.serialize` output (it would fail on read)."""
    parts = list(payload)
    if not parts or not is_payload(parts[0]):
        raise SerializationError(
            'payload= must be the list that Store.serialize() returned; '
            'pass the object itself (or serialize=False with bytes) instead.',
        )
    return parts


# Live stores of this process: their locks are reset in a forked child.
_live_stores: weakref.WeakSet[Store] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_live_stores):
        store._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
