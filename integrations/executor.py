"""Auto-proxying for any ``concurrent.futures.Executor``.

``ProxyExecutor(ProcessPoolExecutor(), store=store)`` behaves like the executor
it wraps: ``submit``, ``map`` and ``shutdown`` keep their meaning, and every
other attribute is the wrapped executor's, but arguments larger than the
threshold travel as proxies and large results come back as proxies, put in
the store where they were computed. Each task still receives its own objects
(exact types), so it computes what it computes without the wrapper. It works
with the standard library's pools, the FuncX/Globus Compute ``Executor`` and
anything else implementing the interface.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from concurrent.futures import Executor
from concurrent.futures import Future
from typing import Any
from typing import TypeVar

from proxystore.proxy import get_key
from proxystore.store.base import Store

from .policy import DEFAULT_THRESHOLD
from .policy import Evict
from .policy import ProxyPolicy
from .policy import _is_auto

__all__ = ['ProxyExecutor']

logger = logging.getLogger(__name__)

T = TypeVar('T')


class ProxyExecutor(Executor):
    """Wrap ``executor`` so large arguments and results travel through ``store``.

    Args:
        executor: The executor that runs the tasks.
        store: A store, or the name of a registered store.
        threshold: Arguments and results larger than this many bytes are proxied.
        proxy_results: Also proxy large results, where they are computed.
        evict: ``'auto'`` frees arguments when their task is done and results
            when their proxy is garbage-collected; ``True`` deletes each
            object on its first read; ``False`` keeps everything.
        lazy: Tasks receive the proxies (resolved on first use) rather than
            the objects.
        evict_on_shutdown: On :meth:`shutdown`, delete every object this
            wrapper put in the store (arguments, ``inputs=`` items and
            results) that is still there. Leave it off if you keep result
            proxies after shutdown.

    Raises:
        IntegrationConfigError: bad ``threshold`` or ``evict``, or unknown store name.

    """

    def __init__(
        self,
        executor: Executor,
        *,
        store: Store | str,
        threshold: int = DEFAULT_THRESHOLD,
        proxy_results: bool = True,
        evict: Evict = False,
        lazy: bool = False,
        evict_on_shutdown: bool = False,
    ) -> None:
        self.executor = executor
        self.policy = ProxyPolicy(
            store, threshold, proxy_results=proxy_results, evict=evict, lazy=lazy
        )
        self.evict_on_shutdown = evict_on_shutdown
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    @property
    def store(self) -> Store:
        """The store objects travel through."""
        return self.policy.store

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this wrapper lacks: the wrapped executor's
        # own attributes (Globus Compute's endpoint_id, task_group_id, ...).
        if name == 'executor':
            raise AttributeError(name)
        return getattr(self.executor, name)

    def _track(self, objs: Iterable[Any]) -> None:
        if not self.evict_on_shutdown:
            return
        keys = [k for k in map(get_key, objs) if k]
        if keys:
            with self._lock:
                self._keys.update(keys)

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        try:
            with self._lock:
                wrapped = self._functions.get(fn)
                if wrapped is None:
                    wrapped = self._functions[fn] = self.policy.wrap(fn)
        except TypeError:  # an unhashable callable: wrap it each time
            wrapped = self.policy.wrap(fn)
        return wrapped

    def _done(self, arguments: list[Any], held: Any, future: Future[Any]) -> None:
        """A task is done: free the argument objects made for it and watch its result.

        ``held`` (all its arguments) was kept alive until now, so nothing the
        task reads can be freed earlier.
        """
        lifetimes = self.policy.lifetimes
        if future.cancelled() or future.exception() is not None:
            result = None
        else:
            result = future.result()
            if _is_auto(result):
                self._track([result])
        if lifetimes is not None:
            lifetimes.task_done(arguments)
            if result is not None:
                lifetimes.result(result)
        arguments.clear()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``, proxying large arguments and results."""
        new_args, new_kwargs, made = self.policy.prepare_call(args, kwargs)
        self._track(made)
        future = self.executor.submit(self._wrap(fn), *new_args, **new_kwargs)
        held = (new_args, new_kwargs)
        future.add_done_callback(functools.partial(self._done, made, held))
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """Like ``Executor.map``; ``chunksize`` goes to the wrapped executor's ``map``."""
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        arguments: list[Any] = []

        def one(obj: Any) -> Any:
            new = self.policy.maybe_proxy(obj)
            if new is not obj and _is_auto(new):
                arguments.append(new)
            return new

        columns = [[one(x) for x in it] for it in iterables]
        self._track(arguments)
        results = self.executor.map(self._wrap(fn), *columns, timeout=timeout, chunksize=chunksize)
        return self._map_results(results, arguments)

    def _map_results(self, results: Iterator[T], arguments: list[Any]) -> Iterator[T]:
        try:
            for result in results:
                if _is_auto(result):
                    self._track([result])
                    if self.policy.lifetimes is not None:
                        self.policy.lifetimes.result(result)
                yield result
        finally:
            if self.policy.lifetimes is not None:
                self.policy.lifetimes.task_done(arguments)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down (and evict tracked objects if asked to)."""
        self.executor.shutdown(wait=wait, cancel_futures=cancel_futures)
        if self.policy.lifetimes is not None:
            self.policy.lifetimes.close()
        if self.evict_on_shutdown:
            with self._lock:
                keys, self._keys = self._keys, set()
            for key in keys:
                self.store.evict(key)
            logger.debug('Evicted %d objects on shutdown', len(keys))

    def __repr__(self) -> str:
        return f'ProxyExecutor({self.executor!r}, {self.policy!r})'
