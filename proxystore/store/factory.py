"""The factory behind every store's proxies: :class:`StoreFactory`.

It carries what a worker needs to find or rebuild the store (its class, name
and configuration) and the key, so a process that never heard of the store
can resolve the proxy. It pickles as a flat tuple of plain values, which keeps
a pickled proxy to a few hundred bytes.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from proxystore.factory import Factory
from proxystore.store.registry import lookup_store
from proxystore.store.stats import TimeStats
from proxystore.utils import class_path
from proxystore.utils import import_class

if TYPE_CHECKING:
    from proxystore.store.base import Store

__all__ = ['StoreFactory']

T = TypeVar('T')


class StoreFactory(Factory[T]):
    """Fetch ``key`` from a store, finding or rebuilding the store by name.

    In the process that created it, the factory uses the very store object
    that made the proxy. Elsewhere it looks the name up in the registry
    (:func:`proxystore.store.get_store`), and if absent rebuilds the store
    from its class path and configuration and registers it, so later proxies
    reuse one store object (and its cache).

    Args:
        key: Key of the target in the store.
        store_name: Name of the store.
        store_type: Class path of the store (``'proxystore.store.redis.RedisStore'``).
        store_config: Keyword arguments that rebuild the store.
        evict: Delete the key from the store after the first resolve.
        raw: ``None`` when the target was serialized; ``'bytes'``, ``'str'``
            or ``'object'`` when it was stored as given (``serialize=False``).
        strict: Bypass the store's local cache (always fetch the newest value).
        target_type: Class path of the target, to answer ``isinstance``
            without resolving.
        copy: Resolve to an object no other proxy or ``get`` in the process
            shares (see :meth:`proxystore.store.base.Store.get`).

    """

    def __init__(
        self,
        key: str,
        store_name: str,
        store_type: str,
        store_config: dict[str, Any],
        evict: bool = False,
        raw: str | None = None,
        strict: bool = False,
        target_type: str | None = None,
        copy: bool = False,
    ) -> None:
        self.key = key
        self.store_name = store_name
        self.store_type = store_type
        self.store_config = store_config
        self.evict = evict
        self.raw = raw
        self.strict = strict
        self.type_path = target_type
        self.copy = copy
        self._store: Store | None = None
        self._stats: dict[str, TimeStats] | None = None

    @classmethod
    def for_store(cls, store: Store, key: str, **options: Any) -> StoreFactory[Any]:
        """Build a factory for ``key`` in ``store`` (bound to that store object)."""
        factory = cls(key, store.name, class_path(type(store)), store.config(), **options)
        factory._store = store
        return factory

    def __reduce__(self) -> tuple[Any, ...]:
        # A flat tuple of plain values keeps a pickled proxy to a few hundred
        # bytes; the bound store object stays behind.
        return (
            type(self),
            (
                self.key,
                self.store_name,
                self.store_type,
                self.store_config,
                self.evict,
                self.raw,
                self.strict,
                self.type_path,
                *((self.copy,) if self.copy else ()),
            ),
        )

    def get_store(self) -> Store:
        """Return the store this factory reads from, rebuilding it if needed.

        The store found is the one with this factory's name *and*
        configuration (see :func:`proxystore.store.registry.lookup_store`).

        Raises:
            MissingDependencyError: the store's backend is not installed here.
            StoreConfigError: the store cannot be rebuilt here (for example a
                signed store and no secret in this process's environment).

        """
        store = self._store
        if store is None:
            store = lookup_store(self.store_type, self.store_name, self.store_config)
            self._store = store
        return store

    def resolve(self) -> T:
        """Fetch (and deserialize) the target from the store."""
        store = self.get_store()
        start = time.perf_counter()
        target = store.resolve(
            self.key, raw=self.raw, strict=self.strict, evict=self.evict, copy=self.copy
        )
        if store.has_stats:
            self._time('resolve', start)
        return target  # type: ignore[no-any-return]

    def resolve_async(self) -> None:
        """Start resolving in a background thread (timed when the store keeps stats)."""
        start = time.perf_counter()
        super().resolve_async()
        if self.get_store().has_stats:
            self._time('resolve_async', start)

    def _time(self, method: str, start: float) -> None:
        if self._stats is None:
            self._stats = {}
        self._stats.setdefault(method, TimeStats()).add_time((time.perf_counter() - start) * 1000)

    def stats(self) -> dict[str, TimeStats]:
        """Timings of this factory's ``resolve``/``resolve_async`` (stores with ``stats=True``)."""
        return {m: replace(t) for m, t in (self._stats or {}).items()}

    def target_type(self) -> type | None:
        """The target's class if it was recorded and imports here, else ``None``."""
        if self.type_path is None:
            return None
        try:
            cls = import_class(self.type_path)
        except Exception:
            return None
        return cls if isinstance(cls, type) else None

    def __repr__(self) -> str:
        return f'StoreFactory(key={self.key!r}, store={self.store_name!r})'
