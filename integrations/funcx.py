"""Auto-proxying for the FuncX (Globus Compute) client.

``client = proxy_client(FuncXClient(...), store=store, threshold=100_000)``
returns an object with the client's interface whose large task arguments
travel as proxies: the web service, whose submissions are limited to 10 MB,
then carries only a few hundred bytes per object. Functions registered
through the wrapper put large results in the store on the endpoint and return
proxies. Every other client method is passed through unchanged.

For the FuncX ``Executor``, use :class:`proxystore.integrations.executor.ProxyExecutor`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from proxystore.store.base import Store

from .policy import DEFAULT_THRESHOLD
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

    def add(self, function_id: Any, args: Any = None, kwargs: Any = None) -> None:
        """Add a task, with large arguments replaced by proxies."""
        new_args, new_kwargs = self.policy.proxy_arguments(args or (), kwargs or {})
        self.batch.add(function_id, new_args, new_kwargs)

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

    def run(self, *args: Any, endpoint_id: Any, function_id: Any, **kwargs: Any) -> str:
        """Run one task; large arguments travel as proxies."""
        new_args, new_kwargs = self.policy.proxy_arguments(args, kwargs)
        task_id: str = self.client.run(
            *new_args,
            endpoint_id=endpoint_id,
            function_id=function_id,
            **new_kwargs,
        )
        return task_id

    def create_batch(self, *args: Any, **kwargs: Any) -> ProxyBatch:
        """Create a batch whose ``add`` proxies large arguments."""
        return ProxyBatch(self.client.create_batch(*args, **kwargs), self.policy)

    def batch_run(self, endpoint_id: Any, batch: Any) -> Any:
        """Submit a batch (made by this wrapper or by the plain client)."""
        if isinstance(batch, ProxyBatch):
            batch = batch.batch
        return self.client.batch_run(endpoint_id, batch)

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
    evict: bool = False,
) -> ProxyClient:
    """Wrap a ``FuncXClient`` so large task arguments and results travel through ``store``.

    Args:
        client: A ``funcx.FuncXClient`` (or Globus Compute ``Client``).
        store: A store, or the name of a registered store.
        threshold: Objects larger than this many bytes are proxied.
        proxy_results: Functions registered through the wrapper proxy large results.
        evict: Delete each proxied object after its first resolve.

    Raises:
        IntegrationConfigError: bad ``threshold`` or unknown store name.

    """
    return ProxyClient(
        client, ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict)
    )
