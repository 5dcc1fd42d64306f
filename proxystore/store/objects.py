"""A key-value store of Python objects over a byte-level connector: :class:`ObjectStore`.

It adds what is the same for every backend: serialization and signing
(:mod:`proxystore.serialize`), a local LRU cache of deserialized objects,
metrics and per-key stats. :class:`~proxystore.store.base.Store` builds on it
with names, identity and proxies.
"""

from __future__ import annotations

import copy as _copy
import logging
import os
import time
import weakref
from collections.abc import Hashable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import TypeVar

from proxystore.connectors.protocol import Connector
from proxystore.connectors.protocol import connector_version
from proxystore.connectors.protocol import load_connector
from proxystore.exceptions import BatchSizeMismatchError
from proxystore.exceptions import NotBytesError
from proxystore.exceptions import SerializationError
from proxystore.exceptions import StoreConfigError
from proxystore.serialize import Buffer
from proxystore.serialize import deserialize as _deserialize  # get() has a ``deserialize`` argument
from proxystore.serialize import is_payload
from proxystore.serialize import payload_size
from proxystore.serialize import serialize_parts
from proxystore.store.cache import LRUCache
from proxystore.store.keys import check_key
from proxystore.store.keys import check_keys
from proxystore.store.metrics import Metrics
from proxystore.store.options import LOCAL_OPTIONS
from proxystore.store.options import OPTION_NAMES
from proxystore.store.options import StoreOptions
from proxystore.store.stats import KeyStats
from proxystore.utils import create_key as _create_key

__all__ = ['ObjectStore']

logger = logging.getLogger(__name__)

T = TypeVar('T')
S = TypeVar('S', bound='ObjectStore')

_MISSING: Any = object()
_perf_counter = time.perf_counter


def _not_bytes(obj: Any) -> NotBytesError:
    return NotBytesError(
        f'serialize=False needs bytes, got {type(obj).__qualname__}. '
        'Pass serialize=True (the default) to store other objects, or encode str yourself.',
    )


class ObjectStore:
    """Python objects by key, over a byte-level connector (the key-value half of a Store).

    Arguments and options are :class:`~proxystore.store.base.Store`'s, which
    is what users build (this class has no name lookup and makes no proxies).
    """

    #: Whether ``serialize=False`` keeps any object as it is (in-process stores only).
    stores_objects: ClassVar[bool] = False
    #: Configuration keys that only tune this process and are not part of the
    #: store's identity (see :func:`proxystore.store.registry.identity`).
    local_options: ClassVar[frozenset[str]] = LOCAL_OPTIONS
    #: Whether every reader of this store is on one node (then ``node_cache`` is refused).
    node_local: ClassVar[bool] = False

    def __init__(self, name: str, connector: Connector | str, **options: Any) -> None:
        where = f'{type(self).__name__} {name!r}'
        if isinstance(connector, str):  # a class path: the other options are its arguments
            arguments = {k: options.pop(k) for k in list(options) if k not in OPTION_NAMES}
            parsed = self.check_options(name, options)
            connector = load_connector(connector, arguments, where)
        else:
            parsed = self.check_options(name, options)
        if not isinstance(connector, Connector):
            raise StoreConfigError(
                f'{type(self).__name__} {name!r}: connector must implement the Connector '
                f'protocol (proxystore.connectors.protocol), got {type(connector).__qualname__}.',
            )
        self._name = name
        self._options = parsed
        #: The connector given; reads and writes go through ``_connector``,
        #: which wraps it in the node tier with ``node_cache=True``.
        self._backend: Connector = connector
        self._connector = self._node_tier(connector) if parsed.node_cache else connector
        self._secret = parsed.secret
        self._cache = LRUCache(parsed.cache_size, parsed.cache_bytes)
        self._metrics = Metrics()
        self._key_stats: KeyStats | None = KeyStats() if parsed.stats else None
        #: Whether a deserializing ``get`` is one connector read and a decode:
        #: nothing cached, no per-key stats, bytes (not held objects) stored.
        self._plain_reads = parsed.cache_size <= 0 and not parsed.stats and not self.stores_objects
        _live_stores.add(self)

    # -- identity and configuration -------------------------------------

    @property
    def name(self) -> str:
        """The store's name."""
        return self._name

    @property
    def connector(self) -> Connector:
        """The byte-level connector under this store (without the node tier)."""
        return self._backend

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> StoreOptions:
        """The store options in ``options``, checked for this class (nothing is created).

        A subclass that builds its connector itself (and so may create a
        directory) calls this first, so a refused option leaves nothing behind.

        Raises:
            StoreConfigError: an option is invalid, or ``node_cache`` is asked
                of a store that is already local to the node.

        """
        parsed = StoreOptions.parse(cls.__name__, name, options)
        if parsed.node_cache and cls.node_local:
            raise StoreConfigError(
                f'{cls.__name__} {name!r}: node_cache is for stores that other nodes read '
                '(Redis, file); this one is already local to the node.',
            )
        return parsed

    def _node_tier(self, connector: Connector) -> Connector:
        """``connector`` behind a node-local shared-memory copy (``node_cache=True``)."""
        from proxystore.connectors.node import NodeConnector

        return NodeConnector(connector, max_bytes=self._options.node_cache_bytes)

    @property
    def cache_size(self) -> int:
        """Capacity of the local object cache."""
        return self._options.cache_size

    @property
    def has_stats(self) -> bool:
        """Whether the store keeps per-key timings (``stats=True``)."""
        return self._key_stats is not None

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name={self._name!r})'

    def _where(self, key: str | None = None) -> str:
        where = getattr(self._connector, 'where', None)
        place = f' ({where(key)})' if where is not None else ''
        return f'store {self._name!r}{place}'

    # -- objects ---------------------------------------------------------

    def create_key(self, obj: Any) -> str:
        """Return a new unique key for ``obj``: a random UUID4 in hex, as ``uuid.uuid4().hex``.

        See :func:`proxystore.utils.create_key`; a subclass may derive keys from ``obj``.
        """
        return _create_key()

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
        return [self._raw(obj)]

    def _raw(self, obj: Any) -> Any:
        """What ``serialize=False`` stores: bytes only (in-process stores widen this)."""
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return obj
        raise _not_bytes(obj)

    def _decode(self, data: Any, deserialize_: bool, key: str) -> Any:
        if deserialize_:
            try:
                return _deserialize(data, secret=self._secret)
            except SerializationError as e:
                # Name the key and where it lives: the serializer knows neither.
                _name_in(e, f'key {key!r} in {self._where(key)}')
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
        if payload is not None:
            parts = _check_payload(payload)
        else:
            parts = self.serialize(obj) if serialize else [self._raw(obj)]
        # Timed inline (not with Metrics.timer): this is every write's path.
        start = time.perf_counter()
        self._connector.put(key, parts)
        seconds = time.perf_counter() - start
        self._metrics.record_write(_size(parts), seconds)
        if self._key_stats is not None:
            self._key_stats.record(key, 'set', seconds)
        if self._cache.maxsize > 0:  # nothing is cached otherwise (and reads cache nothing)
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
        keys = self._batch_keys(objs, keys, 'set_batch')
        items = [(key, self._encode(obj, serialize)) for key, obj in zip(keys, objs)]
        with self._metrics.timer('set', count=len(items)) as timing:
            self._connector.put_batch(items)
            timing.nbytes = sum(_size(parts) for _, parts in items)
        for key in keys:
            self._record(key, 'set', timing.seconds / max(len(keys), 1))
            self._cache.evict(key)
        return keys

    def _batch_keys(self, objs: list[Any], keys: Sequence[str] | None, what: str) -> list[str]:
        """New keys for ``objs``, or ``keys`` checked (valid, one per object)."""
        if keys is None:
            return [self.create_key(obj) for obj in objs]
        checked = check_keys(keys, what)
        if len(checked) != len(objs):
            raise BatchSizeMismatchError(f'{what} got {len(objs)} objects but {len(checked)} keys.')
        return checked

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
        if self._plain_reads and deserialize:
            # The common read of a store without a cache or per-key stats, inline:
            # a small object's get is a few microseconds, and each call counts.
            start = _perf_counter()
            try:
                entry = self._connector.get(key)
            except SerializationError as e:  # foreign or corrupt data: name the store
                _name_in(e, f'store {self._name!r}')
                raise
            seconds = _perf_counter() - start
            if entry is None:
                self._metrics.record_read(0, seconds, miss=not strict)
                return default
            data = entry[0]
            self._metrics.record_read(
                data.nbytes if type(data) is memoryview else len(data), seconds, miss=not strict
            )
            try:
                return _deserialize(data, secret=self._secret)
            except SerializationError as e:  # name the key and where it lives
                _name_in(e, f'key {key!r} in {self._where(key)}')
                raise
        if self._cache.maxsize <= 0:  # no cache: nothing to look up or to keep
            return self._get_uncached(key, default, deserialize, count_miss=not strict)
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
            data, version, nbytes, seconds = self._read(key)
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

    def _get_uncached(self, key: str, default: Any, deserialize_: bool, *, count_miss: bool) -> Any:
        """:meth:`get` of a store whose cache is disabled (``cache_size=0``): every read's path."""
        data, _, nbytes, seconds = self._read(key)
        self._metrics.record_read(nbytes, seconds, miss=deserialize_ and count_miss)
        if self._key_stats is not None:
            self._key_stats.record(key, 'get', seconds)
        if data is None:
            return default
        return self._decode(data, deserialize_, key)

    def _read(self, key: str) -> tuple[Any, Hashable | None, int, float]:
        """One timed connector read: the data (``None`` if missing), its version, bytes, seconds."""
        start = _perf_counter()
        try:
            entry = self._connector.get(key)
        except SerializationError as e:  # foreign or corrupt data: name the store
            _name_in(e, f'store {self._name!r}')
            raise
        seconds = _perf_counter() - start
        if entry is None:
            return None, None, 0, seconds
        data, version = entry
        if isinstance(data, memoryview):
            nbytes = data.nbytes
        else:
            nbytes = len(data) if isinstance(data, (bytes, bytearray)) else 0  # 0: a held object
        return data, version, nbytes, seconds

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
                entries = self._connector.get_batch([keys[i] for i in todo])
                datas = [(None, None) if e is None else e for e in entries]
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
            found = self._connector.exists(key)
        self._record(key, 'exists', timing.seconds)
        return found

    def evict(self, key: str) -> None:
        """Delete ``key`` from the store and the local cache (a missing key is fine)."""
        check_key(key)
        with self._metrics.timer('evict') as timing:
            self._connector.evict(key)
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
        current = connector_version(self._connector, key)
        return current is not None and current == self._cache.version(key)

    # -- lifetime and metrics ------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Counts, bytes and seconds of each operation, and cache hits/misses."""
        return self._metrics.as_dict()

    def reset_metrics(self) -> None:
        """Zero every metric."""
        self._metrics.reset()

    def close(self) -> None:
        """Release connections and handles; stored data is kept."""
        self._connector.close()

    def cleanup(self) -> None:
        """Clear the local cache and the connector's data (see each connector's ``cleanup``)."""
        self._cache.clear()
        cleanup = getattr(self._connector, 'cleanup', None)
        (cleanup or self._connector.close)()

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
        after_fork = getattr(self._connector, 'after_fork', None)
        if after_fork is not None:
            after_fork()


def _name_in(error: Exception, where: str) -> None:
    """Add ``where`` (store, key, server) to ``error``'s message: the raiser knew only part."""
    if error.args and isinstance(error.args[0], str) and where not in error.args[0]:
        error.args = (f'{error.args[0]} ({where})', *error.args[1:])


def _size(parts: Sequence[Any]) -> int:
    try:
        return payload_size(parts)
    except TypeError:
        return 0


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
_live_stores: weakref.WeakSet[ObjectStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_live_stores):
        store._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
