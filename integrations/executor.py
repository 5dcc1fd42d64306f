"""Auto-proxying for any ``concurrent.futures.Executor``.

``ProxyExecutor(ProcessPoolExecutor(), store=store)`` behaves like the executor
it wraps: ``submit``, ``map`` and ``shutdown`` keep their meaning, but arguments
larger than the threshold travel as proxies and large results come back as
proxies, put in the store where they were computed. It works with the
standard library's pools, the FuncX/Globus Compute ``Executor`` and anything
else implementing the interface.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import Future
from typing import Any
from typing import TypeVar

from proxystore.proxy import get_key
from proxystore.proxy import is_proxy
from proxystore.store.base import Store

from .policy import DEFAULT_THRESHOLD
from .policy import ProxyPolicy

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
        evict: Delete each proxied object after its first resolve.
        evict_on_shutdown: On :meth:`shutdown`, delete every object this
            wrapper put in the store (arguments and results) that is still
            there. Leave it off if you keep result proxies after shutdown.

    Raises:
        IntegrationConfigError: bad ``threshold`` or unknown store name.

    """

    def __init__(
        self,
        executor: Executor,
        *,
        store: Store | str,
        threshold: int = DEFAULT_THRESHOLD,
        proxy_results: bool = True,
        evict: bool = False,
        evict_on_shutdown: bool = False,
    ) -> None:
        self.executor = executor
        self.policy = ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict)
        self.evict_on_shutdown = evict_on_shutdown
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    @property
    def store(self) -> Store:
        """The store objects travel through."""
        return self.policy.store

    def _track(self, obj: Any) -> None:
        if is_proxy(obj):
            key = get_key(obj)
            if key is not None:
                with self._lock:
                    self._keys.add(key)

    def _track_result(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._track(future.result())

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``, proxying large arguments and results."""
        new_args, new_kwargs = self.policy.proxy_arguments(args, kwargs)
        for obj in (*new_args, *new_kwargs.values()):
            self._track(obj)
        with self._lock:
            wrapped = self._functions.get(fn)
            if wrapped is None:
                wrapped = self._functions[fn] = self.policy.wrap(fn)
        future = self.executor.submit(wrapped, *new_args, **new_kwargs)
        future.add_done_callback(self._track_result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down (and evict tracked objects if asked to)."""
        self.executor.shutdown(wait=wait, cancel_futures=cancel_futures)
        if self.evict_on_shutdown:
            with self._lock:
                keys, self._keys = self._keys, set()
            for key in keys:
                self.store.evict(key)
            logger.debug('Evicted %d objects on shutdown', len(keys))

    def __repr__(self) -> str:
        return f'ProxyExecutor({self.executor!r}, {self.policy!r})'
