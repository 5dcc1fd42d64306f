"""The one rule every integration uses to decide what travels as a proxy.

A :class:`ProxyPolicy` holds a store and a size threshold. Objects larger than
the threshold (in bytes) are put in the store and replaced by proxies;
everything else, and every proxy or future, passes through untouched. Parsl,
FuncX and the executor wrapper all call the same two methods:
:meth:`ProxyPolicy.proxy_arguments` before a task is sent, and
:meth:`ProxyPolicy.wrap` around the task's function so its result is proxied
where it is computed.

Sizes cost no extra serialization: ``bytes``, ``str``, ``memoryview`` and
numpy arrays are sized directly; anything else is serialized once, and those
very bytes go into the store when the object is proxied.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from proxystore.exceptions import IntegrationConfigError
from proxystore.factory import Factory
from proxystore.proxy import Proxy
from proxystore.proxy import get_factory
from proxystore.proxy import get_key
from proxystore.proxy import is_proxy
from proxystore.serialize import payload_size
from proxystore.store.base import Store
from proxystore.store.registry import get_store

__all__ = ['ProxyPolicy', 'ProxyResults', 'DEFAULT_THRESHOLD']

logger = logging.getLogger(__name__)

#: Default threshold in bytes: smaller objects are cheaper to send inline.
DEFAULT_THRESHOLD = 100_000

# Identifies this process; a wrapped function compares it with the token of
# the process that wrapped it to know whether its result will be pickled.
_PROCESS_TOKEN = uuid.uuid4().hex

_NEVER_PROXIED = (type(None), bool, int, float, complex)


def _direct_size(obj: Any) -> int | None:
    """Size in bytes when it is known without serializing, else ``None``."""
    kind = type(obj)
    if kind is bytes or kind is bytearray or kind is str:
        return len(obj)
    if kind is memoryview:
        return int(obj.nbytes)
    if kind.__module__ == 'numpy' and kind.__name__ == 'ndarray' and obj.dtype != object:
        return int(obj.nbytes)
    return None


class _ProxyCarrier:
    """A returned proxy on its way back from a worker: plain data, unpickled as the proxy.

    Workflow engines pick a *code* serializer for anything ``callable``, and
    Parsl's caches callables by hash, which would resolve the proxy (and fail
    for unhashable targets such as arrays). The carrier is neither callable
    nor resolvable, and pickles to exactly the proxy.
    """

    __slots__ = ('factory',)

    def __init__(self, factory: Factory[Any]) -> None:
        self.factory = factory

    def __reduce__(self) -> tuple[Any, ...]:
        return (Proxy, (self.factory,))


class ProxyPolicy:
    """Replace objects larger than ``threshold`` bytes by proxies from ``store``.

    Args:
        store: A store, or the name of a registered store.
        threshold: Objects strictly larger than this many bytes are proxied.
        proxy_results: Also proxy large return values, where they are computed.
        evict: Proxies made by this policy delete their object after their
            first resolve (for intermediates that exactly one task consumes).

    Raises:
        IntegrationConfigError: ``threshold`` is not a positive integer, or
            ``store`` names no registered store.

    """

    def __init__(
        self,
        store: Store | str,
        threshold: int = DEFAULT_THRESHOLD,
        *,
        proxy_results: bool = True,
        evict: bool = False,
    ) -> None:
        if isinstance(store, str):
            found = get_store(store)
            if found is None:
                raise IntegrationConfigError(
                    f'No store named {store!r} is registered. Create it first with '
                    f'proxystore.store.init_store(..., name={store!r}) or pass the store.',
                )
            store = found
        if not isinstance(store, Store):
            raise IntegrationConfigError(
                f'store must be a Store or a store name, got {type(store).__qualname__}.',
            )
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
            raise IntegrationConfigError(
                f'threshold must be a positive number of bytes, got {threshold!r}.',
            )
        self.store = store
        self.threshold = threshold
        self.proxy_results = proxy_results
        self.evict = evict

    def __repr__(self) -> str:
        return (
            f'ProxyPolicy(store={self.store.name!r}, threshold={self.threshold}, '
            f'proxy_results={self.proxy_results}, evict={self.evict})'
        )

    def maybe_proxy(self, obj: Any) -> Any:
        """Return a proxy of ``obj`` if it is larger than the threshold, else ``obj``.

        Proxies and futures are returned untouched (never resolved).
        """
        # The proxy test comes first: isinstance() with other classes may resolve a proxy.
        if is_proxy(obj) or isinstance(obj, (*_NEVER_PROXIED, Future)):
            return obj
        size = _direct_size(obj)
        payload = None
        if size is None:
            payload = self.store.serialize(obj)
            size = payload_size(payload)
        if size <= self.threshold:
            return obj
        proxy = self.store.proxy(obj, evict=self.evict, payload=payload)
        logger.debug('Proxied a %s of %d bytes as key %s', type(obj).__name__, size, get_key(proxy))
        return proxy

    def proxy_arguments(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Proxy large positional and keyword arguments, and items of ``inputs=``."""
        new_args = tuple(self.maybe_proxy(a) for a in args)
        new_kwargs = {k: self.maybe_proxy(v) for k, v in kwargs.items() if k != 'inputs'}
        if 'inputs' in kwargs:
            inputs = kwargs['inputs']
            new_kwargs['inputs'] = (
                type(inputs)(self.maybe_proxy(i) for i in inputs)
                if isinstance(inputs, (list, tuple))
                else self.maybe_proxy(inputs)
            )
        return new_args, new_kwargs

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``function`` wrapped to proxy its large results where it runs.

        Returns ``function`` itself when ``proxy_results`` is off.
        """
        if not self.proxy_results or isinstance(function, ProxyResults):
            return function
        return ProxyResults(function, self)

    def proxy_result(self, result: Any) -> Any:
        """Proxy a large result; in a worker process, as a carrier that pickles to the proxy."""
        proxied = self.maybe_proxy(result)
        if is_proxy(proxied) and self._origin != _PROCESS_TOKEN:
            return _ProxyCarrier(get_factory(proxied))
        return proxied

    # The policy travels to workers inside ProxyResults: the store pickles as
    # a reference (found or rebuilt there by name), and the origin token
    # tells the worker it is not the process that made the policy.
    _origin = _PROCESS_TOKEN

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, '_origin': self._origin}


class ProxyResults:
    """A task function whose large return values come back as proxies.

    Picklable (by reference to this class, with the wrapped function and the
    policy), hashable, and named like the function it wraps, so engines that
    serialize, cache or log functions by name treat it like the original.
    """

    def __init__(self, function: Callable[..., Any], policy: ProxyPolicy) -> None:
        self.function = function
        self.policy = policy
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function and proxy its result if large."""
        return self.policy.proxy_result(self.function(*args, **kwargs))

    def __repr__(self) -> str:
        return f'ProxyResults({self.function!r}, {self.policy!r})'
