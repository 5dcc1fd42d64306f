"""Auto-proxying for the FuncX (Globus Compute) client.

``client = proxy_client(FuncXClient(...), store=store, threshold=100_000)``
returns an object with the client's interface whose large task arguments
travel as proxies: the web service, whose submissions are limited to 10 MB,
then carries only a few hundred bytes per object. Functions registered
through the wrapper get the objects back before the call (exact types, their
own copy), put large results in the store on the endpoint and return proxies.
With ``evict='auto'`` a task's argument objects are deleted once its result
(or error) has been fetched, and result objects once their proxy is
garbage-collected. Every other client method is passed through unchanged.

For the FuncX ``Executor``, use :class:`proxystore.integrations.executor.ProxyExecutor`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from proxystore.store.base import Store

from .policy import DEFAULT_THRESHOLD
from .policy import Evict
from .policy import ProxyPolicy

__all__ = ['ProxyBatch', 'ProxyClient', 'proxy_client']

logger = logging.getLogger(__name__)


class ProxyBatch:
    """A client batch whose ``add`` proxies large arguments before the SDK serializes them.

    The SDK serializes arguments inside ``Batch.add``, so that is where
    proxying must happen.
    """

    def __init__(self, batch: Any, policy: ProxyPolicy) -> None:
        self.batch = batch
        self.policy = policy
        # Proxies made for each added task, per function, in the order added
        # (the order of the task ids batch_run returns).
        self.made: dict[Any, list[list[Any]]] = {}

    def add(self, function_id: Any, args: Any = None, kwargs: Any = None) -> None:
        """Add a task, with large arguments replaced by proxies."""
        new_args, new_kwargs, made = self.policy.prepare_call(args or (), kwargs or {})
        self.batch.add(function_id, new_args, new_kwargs)
        self.made.setdefault(function_id, []).append(made)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batch, name)

    def __len__(self) -> int:
        return len(self.batch)

    def __bool__(self) -> bool:
        return bool(self.batch)


class ProxyClient:
    """A FuncX client wrapper; see :func:`proxy_client`."""

    def __init__(self, client: Any, policy: ProxyPolicy) -> None:
        self.client = client
        self.policy = policy
        self._lock = threading.Lock()
        self._arguments: dict[str, list[Any]] = {}  # task id -> its argument proxies

    def _remember(self, task_id: str, made: list[Any]) -> None:
        if made and self.policy.lifetimes is not None:
            with self._lock:
                self._arguments[task_id] = made

    def _finished(self, task_id: str) -> None:
        """The task's outcome was fetched: its arguments are no longer needed."""
        lifetimes = self.policy.lifetimes
        if lifetimes is None:
            return
        with self._lock:
            made = self._arguments.pop(task_id, None)
        if made:
            lifetimes.task_done(made)

    def run(self, *args: Any, endpoint_id: Any, function_id: Any, **kwargs: Any) -> str:
        """Run one task; large arguments travel as proxies."""
        new_args, new_kwargs, made = self.policy.prepare_call(args, kwargs)
        task_id: str = self.client.run(
            *new_args,
            endpoint_id=endpoint_id,
            function_id=function_id,
            **new_kwargs,
        )
        self._remember(task_id, made)
        return task_id

    def get_result(self, task_id: str) -> Any:
        """The task's result (a proxy if large); frees its arguments under ``evict='auto'``."""
        try:
            result = self.client.get_result(task_id)
        except Exception as e:
            if type(e).__name__ != 'TaskPending':  # failed: final too
                self._finished(task_id)
            raise
        self._finished(task_id)
        return result

    def get_batch_result(self, task_id_list: Any) -> Any:
        """Statuses of many tasks; those no longer pending free their arguments."""
        statuses = self.client.get_batch_result(task_id_list)
        for task_id, status in statuses.items():
            if not status.get('pending', True):
                self._finished(task_id)
        return statuses

    def create_batch(self, *args: Any, **kwargs: Any) -> ProxyBatch:
        """Create a batch whose ``add`` proxies large arguments."""
        return ProxyBatch(self.client.create_batch(*args, **kwargs), self.policy)

    def batch_run(self, endpoint_id: Any, batch: Any) -> Any:
        """Submit a batch (made by this wrapper or by the plain client)."""
        if not isinstance(batch, ProxyBatch):
            return self.client.batch_run(endpoint_id, batch)
        response = self.client.batch_run(endpoint_id, batch.batch)
        tasks = response.get('tasks', {}) if hasattr(response, 'get') else {}
        for function_id, made_lists in batch.made.items():
            for task_id, made in zip(tasks.get(function_id, ()), made_lists):
                self._remember(task_id, made)
        return response

    def register_function(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        """Register ``function`` so its large results return as proxies.

        The registered callable wraps ``function`` and keeps its name; the
        endpoint needs ProxyStore (and the store's backend) installed.
        """
        function_id: str = self.client.register_function(
            self.policy.wrap(function), *args, **kwargs
        )
        return function_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def __repr__(self) -> str:
        return f'ProxyClient({self.client!r}, {self.policy!r})'


def proxy_client(
    client: Any,
    *,
    store: Store | str,
    threshold: int = DEFAULT_THRESHOLD,
    proxy_results: bool = True,
    evict: Evict = False,
    lazy: bool = False,
) -> ProxyClient:
    """Wrap a ``FuncXClient`` so large task arguments and results travel through ``store``.

    Args:
        client: A ``funcx.FuncXClient`` (or Globus Compute ``Client``).
        store: A store, or the name of a registered store.
        threshold: Objects larger than this many bytes are proxied.
        proxy_results: Functions registered through the wrapper proxy large results.
        evict: ``'auto'`` deletes a task's argument objects once its outcome
            has been fetched and result objects once their proxy is
            garbage-collected; ``True`` deletes each object on its first
            read; ``False`` keeps everything.
        lazy: Registered functions receive the proxies (resolved on first
            use) rather than the objects.

    Raises:
        IntegrationConfigError: bad ``threshold`` or ``evict``, or unknown store name.

    """
    policy = ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict, lazy=lazy)
    return ProxyClient(client, policy)
