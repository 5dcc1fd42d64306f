"""Factories: picklable callables that produce a proxy's target.

:class:`Factory` is the small interface a :class:`~proxystore.proxy.Proxy`
needs: call it to get the target. :class:`SimpleFactory` and
:class:`LambdaFactory` cover objects and functions; :class:`StoreFactory` is
the one factory behind every store's proxies (defined in
:mod:`proxystore.store.factory`, importable from here too).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import TypeVar

if TYPE_CHECKING:
    from proxystore.store.factory import StoreFactory

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


def _after_fork_in_child() -> None:
    # A forked child inherits the pool object but none of its threads: work
    # submitted to it would wait forever. Start afresh.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


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


def __getattr__(name: str) -> Any:
    # StoreFactory lives with the stores (it needs the registry); importing it
    # lazily keeps this module free of store imports.
    if name == 'StoreFactory':
        from proxystore.store.factory import StoreFactory

        return StoreFactory
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
