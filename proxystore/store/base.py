"""The store every backend shares: :class:`Store`.

A :class:`Store` is an :class:`~proxystore.store.objects.ObjectStore` (objects
by key over a byte-level :class:`~proxystore.connectors.protocol.Connector`:
serialization, signing, cache, metrics) with a name and an identity, so that a
proxy can find or rebuild it in another process, and it makes those proxies.
The backends' stores (``FileStore``, ``RedisStore``, ...) are thin
conveniences that build their connector from the seed's constructor arguments.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

from proxystore.exceptions import KeyNotFoundError
from proxystore.exceptions import StoreConfigError
from proxystore.proxy import Proxy
from proxystore.proxy import get_factory
from proxystore.proxy import is_proxy
from proxystore.serialize import Buffer
from proxystore.store import registry
from proxystore.store.factory import StoreFactory
from proxystore.store.keys import check_key
from proxystore.store.keys import check_keys
from proxystore.store.objects import ObjectStore
from proxystore.store.options import SECRET_ENV
from proxystore.store.stats import TimeStats
from proxystore.utils import class_path
from proxystore.utils import import_class

__all__ = ['SECRET_ENV', 'Store', 'check_key', 'check_keys']

S = TypeVar('S', bound='Store')

_MISSING: Any = object()


def _raw_kind(value: Any) -> str:
    return 'bytes' if isinstance(value, (bytes, bytearray, memoryview)) else 'object'


class Store(ObjectStore):
    """A named key-value store for Python objects that makes proxies of them.

    ``init_store(Store, name='s', connector=FileConnector('/scratch/s'))``
    composes a store from any connector; the backends' stores
    (:class:`~proxystore.store.file.FileStore`, ...) do it for you.

    Args:
        name: Name of the store; proxies find the store by this name in
            other processes (see :func:`proxystore.store.init_store`).
        connector: Where the bytes go (see :mod:`proxystore.connectors`): a
            connector, or its class path, with its constructor arguments among
            ``options`` (as :meth:`config` records a composed store).
        options: With a class path, the connector's arguments; and the
            options of every store: ``cache_size`` (objects kept in this
            process's LRU cache, 0 disables it; default 16), ``cache_bytes``
            (bound on their stored size, default 256 MiB, ``None`` for none),
            ``secret`` (sign every payload with HMAC-SHA256 and refuse unsigned
            ones; default: the ``PROXYSTORE_SECRET`` environment variable; it
            never travels inside a proxy), ``signed`` (``None`` signs when a
            secret is available, ``True`` requires one: set automatically when
            a store is rebuilt from a proxy of a signed store), ``stats``
            (keep per-key timings, see :meth:`stats`), and ``node_cache`` /
            ``node_cache_bytes`` (remote stores: read through one shared-memory
            copy per node, :class:`~proxystore.connectors.node.NodeConnector`).

    Raises:
        StoreConfigError: an unknown option, or an invalid one (empty name,
            negative ``cache_size``, empty secret, ``signed=True`` without a secret).

    """

    # -- identity and configuration -------------------------------------

    @property
    def kwargs(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this store (ProxyStore v0.3 name of :meth:`config`).

        ``init_store(STORES.get_str_by_type(type(store)), name=store.name, **store.kwargs)``
        makes an equal store in a worker.
        """
        return self.config()

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this store with :meth:`from_config`.

        Secrets are never included; ``signed=True`` is, so a rebuilt store
        insists on finding the secret in its own environment.
        """
        config = self._options.config()
        config.update(self._connector_config())
        return config

    def _connector_config(self) -> dict[str, Any]:
        """The connector's part of :meth:`config`: its class path and its (flat) config."""
        connector = self.connector
        return {'connector': class_path(type(connector)), **connector.config()}

    @classmethod
    def from_config(cls: type[S], name: str, config: dict[str, Any]) -> S:
        """Rebuild a store from :meth:`config` output (``cls(name, **config)``)."""
        return cls(name, **config)

    @classmethod
    def identity_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The part of ``config`` that makes a store this store (process-local options removed)."""
        local = cls.local_options
        if isinstance(config.get('connector'), str):  # a composed store: add its connector's
            try:
                kind = import_class(config['connector'])
            except (ImportError, AttributeError, ValueError):  # a class defined in __main__
                kind = None
            local = local | getattr(kind, 'local_options', frozenset())
        return {k: v for k, v in config.items() if k not in local}

    def __reduce__(self) -> tuple[Any, ...]:
        # A store pickles as a reference: unpickled, it is the store of that
        # name and configuration in the receiving process (found or rebuilt).
        registry.track(self)
        return (registry.lookup_store, (class_path(type(self)), self._name, self.config()))

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
            raw = None if serialize else _raw_kind(self._raw(obj))
            key = self.set(obj, key=key, serialize=serialize, payload=payload)
            options = {'raw': raw, 'target_type': class_path(type(obj))}
        proxy = self._make_proxy(factory, key, evict=evict, strict=strict, copy=copy, **options)
        if resolved and obj is not None:
            # lazy-object-proxy's public way to resolve a proxy: no fetch in this process.
            setattr(proxy, '__wrapped__', obj)  # noqa: B010 - a read-only property to mypy
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
            raws = [None if serialize else _raw_kind(self._raw(o)) for o in objs]
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

    def resolve(
        self,
        key: str,
        *,
        raw: str | None = None,
        strict: bool = False,
        evict: bool = False,
        copy: bool = False,
    ) -> Any:
        """What a proxy does when it resolves: :meth:`get` ``key``, a missing key being an error.

        Args:
            key: The key.
            raw: ``None`` deserializes; ``'bytes'`` (or ``'object'``) returns
                the value as stored with ``serialize=False``.
            strict: Skip the local cache (see :meth:`get`).
            evict: Delete the key once it is read (a proxy made with ``evict=True``).
            copy: Return a private object (see :meth:`get`).

        Raises:
            KeyNotFoundError: the key does not exist.

        """
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
        if not is_proxy(key_or_proxy):
            return self._key_stats.get(key_or_proxy)
        factory = get_factory(key_or_proxy)
        if not isinstance(factory, StoreFactory):
            raise ValueError('stats() needs a key or a proxy made by a store.')
        stats = self._key_stats.get(factory.key)
        stats.update(factory.stats())
        return stats
