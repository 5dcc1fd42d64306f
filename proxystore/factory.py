"""Factories: picklable callables that produce a proxy's target.

:class:`Factory` is the small interface a :class:`~proxystore.proxy.Proxy`
needs: call it to get the target. :class:`SimpleFactory` and
:class:`LambdaFactory` cover objects and functions; :class:`StoreFactory` is
the one factory behind every store's proxies: it carries what a worker needs
to find or rebuild the store (its class, name and configuration) and the key,
so a process that never heard of the store can resolve the proxy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import TypeVar

from proxystore.exceptions import StoreMismatchError
from proxystore.utils import class_path
from proxystore.utils import import_class

if TYPE_CHECKING:
    from proxystore.store.base import Store

__all__ = ['Factory', 'SimpleFactory', 'LambdaFactory', 'StoreFactory']

logger = logging.getLogger(__name__)

T = TypeVar('T')

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix='proxystore-resolve')
        return _pool


class Factory(Generic[T]):
    """A callable that returns a proxy's target.

    Subclasses implement :meth:`resolve`. Calling the factory returns the
    result of a pending :meth:`resolve_async` if there is one, so background
    work is never done twice.
    """

    _future: Future[T] | None = None

    def resolve(self) -> T:
        """Produce the target. Subclasses must override this."""
        raise NotImplementedError(f'{type(self).__qualname__} does not implement resolve().')

    def resolve_async(self) -> None:
        """Start :meth:`resolve` in a background thread; the next call collects it."""
        if self._future is None:
            self._future = _executor().submit(self.resolve)

    def target_type(self) -> type | None:
        """The target's class if known without resolving, else ``None``.

        Lets ``isinstance`` checks on an unresolved proxy answer without
        fetching the target.
        """
        return None

    def __call__(self) -> T:
        """Return the target: a pending background resolve's result, else :meth:`resolve`."""
        future = self._future
        if future is not None:
            self._future = None
            return future.result()
        return self.resolve()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop('_future', None)
        return state


class SimpleFactory(Factory[T]):
    """Return an object that the factory holds (and pickles with itself)."""

    def __init__(self, obj: T) -> None:
        self.obj = obj

    def resolve(self) -> T:
        """Return the held object."""
        return self.obj

    def target_type(self) -> type | None:
        """The held object's class."""
        return type(self.obj)

    def __repr__(self) -> str:
        return f'SimpleFactory({type(self.obj).__qualname__} object)'


class LambdaFactory(Factory[T]):
    """Return ``target(*args, **kwargs)``, called at resolve time.

    ``target`` travels with the factory when it is pickled, so lambdas and
    closures need ``cloudpickle`` or ``dill`` (which ProxyStore and most
    workflow engines use).
    """

    def __init__(self, target: Callable[..., T], *args: Any, **kwargs: Any) -> None:
        if not callable(target):
            raise TypeError(f'LambdaFactory needs a callable, got {type(target).__qualname__}.')
        self.target = target
        self.args = args
        self.kwargs = kwargs

    def resolve(self) -> T:
        """Call the target function."""
        return self.target(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        name = getattr(self.target, '__qualname__', repr(self.target))
        return f'LambdaFactory({name})'


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
    ) -> None:
        self.key = key
        self.store_name = store_name
        self.store_type = store_type
        self.store_config = store_config
        self.evict = evict
        self.raw = raw
        self.strict = strict
        self.type_path = target_type
        self._store: Store | None = None

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
            ),
        )

    def get_store(self) -> Store:
        """Return the store this factory reads from, rebuilding it if needed.

        Raises:
            StoreMismatchError: this process has a store of the same name but
                of a different type.
            MissingDependencyError: the store's backend is not installed here.

        """
        store = self._store
        if store is None:
            from proxystore.store.registry import lookup_store

            try:
                store = lookup_store(self.store_type, self.store_name, self.store_config)
            except StoreMismatchError as e:
                raise StoreMismatchError(f'Cannot resolve key {self.key!r}: {e}') from e
            self._store = store
        return store

    def resolve(self) -> T:
        """Fetch (and deserialize) the target from the store."""
        return self.get_store()._resolve(  # type: ignore[no-any-return]
            self.key,
            raw=self.raw,
            strict=self.strict,
            evict=self.evict,
        )

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
