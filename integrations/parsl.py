"""Auto-proxy large arguments and results of Parsl apps.

Three ways to turn it on::

    @auto_proxy(store=store, threshold=100_000)    # one app, stacked on @python_app
    @python_app
    def double(x): ...

    @proxy_app(store=store, threshold=100_000)     # the same, replacing @python_app
    def double(x): ...

    dfk = enable_auto_proxy(parsl.load(config), store=store)   # every app of a DFK

Arguments larger than the threshold are put in the store before Parsl
serializes the task; ``AppFuture`` and ``DataFuture`` arguments stay futures
(so dependency tracking is unchanged) and their values are checked when Parsl
unwraps them, just before launch. Results larger than the threshold are put
in the store by the worker and come back as proxies, so chained apps move
only proxies. Workers need no set-up: the store's name and configuration
travel with the task.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from typing import TypeVar

from parsl.app.app import AppBase
from parsl.app.python import PythonApp
from parsl.config import Config
from parsl.dataflow.dflow import DataFlowKernel
from parsl.dataflow.dflow import DataFlowKernelLoader

try:
    from parsl.dataflow.dependency_resolvers import DependencyResolver
except ImportError:  # pragma: no cover - Parsl releases before 2024
    DependencyResolver = None  # type: ignore[assignment,misc]
from proxystore.proxy import is_proxy
from proxystore.store.base import Store

from .policy import DEFAULT_THRESHOLD
from .policy import ProxyPolicy

__all__ = ['AutoProxyApp', 'auto_proxy', 'disable_auto_proxy', 'enable_auto_proxy', 'proxy_app']

logger = logging.getLogger(__name__)

F = TypeVar('F', bound=Callable[..., Any])

# Futures given to auto-proxied apps, with the policy that checks their value
# when the DataFlowKernel unwraps them (weak: futures are not kept alive).
_future_policies: weakref.WeakKeyDictionary[Future[Any], ProxyPolicy] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class _CheckingUnwrap:
    """Wraps a DFK's ``traverse_to_unwrap`` to proxy large values of marked futures.

    Parsl calls it on every argument just before launching a task, in the
    submitting process: the moment a future's value is known.
    """

    def __init__(self, inner: Callable[[Any], Any], policy: ProxyPolicy | None = None) -> None:
        self.inner = inner
        self.policy = policy  # set by enable_auto_proxy: applies to every future

    def __call__(self, obj: Any) -> Any:
        value = self.inner(obj)
        if not is_proxy(obj) and isinstance(obj, Future):
            policy = _future_policies.get(obj) or self.policy
            if policy is not None:
                return policy.maybe_proxy(value)
        return value


def _install_resolver(dfk: DataFlowKernel, policy: ProxyPolicy | None = None) -> None:
    with _lock:
        resolver = getattr(dfk, 'dependency_resolver', None)
        if resolver is None or DependencyResolver is None:  # pragma: no cover - old Parsl
            logger.debug('This Parsl has no dependency resolver: future values are not checked')
            return
        unwrap = resolver.traverse_to_unwrap
        if isinstance(unwrap, _CheckingUnwrap):
            if policy is not None:
                unwrap.policy = policy
            return
        dfk.dependency_resolver = DependencyResolver(
            traverse_to_gather=resolver.traverse_to_gather,
            traverse_to_unwrap=_CheckingUnwrap(unwrap, policy),
        )


def _futures(args: Any, kwargs: dict[str, Any]) -> list[Future[Any]]:
    """Futures among the arguments (proxies are skipped without being resolved)."""
    candidates = [*args, *kwargs.values(), *kwargs.get('inputs', ())]
    return [obj for obj in candidates if not is_proxy(obj) and isinstance(obj, Future)]


class AutoProxyApp:
    """A Parsl app whose large arguments and results travel as proxies.

    Calling it returns the app's ``AppFuture`` as usual.
    """

    def __init__(self, app: AppBase, policy: ProxyPolicy) -> None:
        self.app = copy.copy(app)
        self.app.func = policy.wrap(app.func)
        self.policy = policy
        functools.update_wrapper(self, app.func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the app with large arguments proxied; returns its ``AppFuture``."""
        args, kwargs = self.policy.proxy_arguments(args, kwargs)
        futures = _futures(args, kwargs)
        if futures:
            _install_resolver(self.app.data_flow_kernel or DataFlowKernelLoader.dfk())
            for future in futures:
                _future_policies[future] = self.policy
        return self.app(*args, **kwargs)

    def __repr__(self) -> str:
        return f'AutoProxyApp({self.app.__name__!r}, {self.policy!r})'


def auto_proxy(
    app: AppBase | None = None,
    *,
    store: Store | str,
    threshold: int = DEFAULT_THRESHOLD,
    proxy_results: bool = True,
    evict: bool = False,
) -> Any:
    """Turn on auto-proxying for a Parsl app (use as a decorator above ``@python_app``).

    Args:
        app: The app (when called directly rather than as a decorator).
        store: A store, or the name of a registered store.
        threshold: Arguments and results larger than this many bytes are proxied.
        proxy_results: Also proxy large results, in the worker.
        evict: Delete each proxied object after its first resolve, so a long
            workflow does not fill the store with intermediates. Only for
            objects exactly one task consumes (a retried task cannot re-read).

    Raises:
        IntegrationConfigError: bad ``threshold`` or unknown store name.
        TypeError: the decorated object is not a Parsl app.

    """
    policy = ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict)

    def decorate(app: AppBase) -> AutoProxyApp:
        if not isinstance(app, AppBase):
            raise TypeError(
                f'auto_proxy decorates Parsl apps; got {type(app).__qualname__}. Put it above '
                '@python_app, or use @proxy_app to replace @python_app.',
            )
        return AutoProxyApp(app, policy)

    return decorate if app is None else decorate(app)


def proxy_app(
    function: Callable[..., Any] | None = None,
    *,
    store: Store | str,
    threshold: int = DEFAULT_THRESHOLD,
    proxy_results: bool = True,
    evict: bool = False,
    **python_app_kwargs: Any,
) -> Any:
    """``@python_app`` and :func:`auto_proxy` in one decorator.

    ``python_app_kwargs`` (``executors``, ``cache``, ``data_flow_kernel``, ...)
    go to Parsl's ``PythonApp``.
    """
    policy = ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict)

    def decorate(function: Callable[..., Any]) -> AutoProxyApp:
        return AutoProxyApp(PythonApp(function, **python_app_kwargs), policy)

    return decorate if function is None else decorate(function)


def enable_auto_proxy(
    dfk: DataFlowKernel | Config,
    *,
    store: Store | str,
    threshold: int = DEFAULT_THRESHOLD,
    proxy_results: bool = True,
    evict: bool = False,
) -> DataFlowKernel:
    """Auto-proxy the arguments and results of every app run by ``dfk``.

    ``dfk = enable_auto_proxy(parsl.load(config), store=store)``. A ``Config``
    is loaded first. Returns the DataFlowKernel.
    """
    if isinstance(dfk, Config):
        import parsl

        dfk = parsl.load(dfk)
    if not isinstance(dfk, DataFlowKernel):
        raise TypeError(f'Expected a DataFlowKernel or Config, got {type(dfk).__qualname__}.')
    policy = ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict)
    disable_auto_proxy(dfk)
    original = dfk.submit
    wrapped: dict[Callable[..., Any], Callable[..., Any]] = {}

    def submit(
        func: Callable[..., Any],
        app_args: Any,
        executors: Any,
        cache: bool,
        ignore_for_cache: Any,
        app_kwargs: dict[str, Any],
        join: bool = False,
    ) -> Any:
        if not join:  # join apps run in the DFK process and return futures
            if func not in wrapped:  # wrap once, so Parsl's function cache keeps hitting
                wrapped[func] = policy.wrap(func)
            func = wrapped[func]
        app_args, app_kwargs = policy.proxy_arguments(app_args, app_kwargs)
        return original(func, app_args, executors, cache, ignore_for_cache, app_kwargs, join)

    submit._proxystore_original = original  # type: ignore[attr-defined]
    dfk.submit = submit  # type: ignore[method-assign]
    _install_resolver(dfk, policy)
    return dfk


def disable_auto_proxy(dfk: DataFlowKernel) -> None:
    """Undo :func:`enable_auto_proxy` (apps decorated with ``auto_proxy`` are unaffected)."""
    original = getattr(dfk.submit, '_proxystore_original', None)
    if original is not None:
        dfk.submit = original  # type: ignore[method-assign]
    resolver = getattr(dfk, 'dependency_resolver', None)
    unwrap = getattr(resolver, 'traverse_to_unwrap', None)
    if isinstance(unwrap, _CheckingUnwrap):
        unwrap.policy = None
