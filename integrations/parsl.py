"""Auto-proxy large arguments and results of Parsl apps.

Three ways to turn it on::

    @auto_proxy(store=store, threshold=100_000)    # one app, stacked on @python_app
    @python_app
    def double(x): ...

    @proxy_app(store=store, threshold=100_000)     # the same, replacing @python_app
    def double(x): ...

    dfk = enable_auto_proxy(parsl.load(config), store=store)   # every app of a DFK

Turning it on changes where the bytes travel and nothing else. Arguments
larger than the threshold are put in the store before Parsl serializes the
task; a future among the arguments is replaced, for that task only, by a
future of the same task whose value is proxied when it is known. The worker
gets the objects back before the call (each task its own copy, exact types),
so the function computes what it computes under plain Parsl. Large results
are put in the store by the worker and come back as proxies, so chained apps
move only proxies and the submitting process reads nothing. Workers need no
set-up: the store's name and configuration travel with the task.

The DataFlowKernel is adjusted once, on first use: its dependency resolver
passes proxies through untouched (the deep resolver would otherwise iterate
a proxied list in the submitting process and rebuild it), and its memoizer
hashes the integration's proxies by the digest of their content, so
``cache=True`` and checkpointing hit as they would on the objects.
"""

from __future__ import annotations

import copy
import functools
import logging
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from typing import TypeVar

from parsl.app.app import AppBase
from parsl.app.futures import DataFuture
from parsl.app.python import PythonApp
from parsl.config import Config
from parsl.dataflow.dflow import DataFlowKernel
from parsl.dataflow.dflow import DataFlowKernelLoader
from parsl.dataflow.futures import AppFuture
from parsl.dataflow.memoization import id_for_memo

try:
    from parsl.dataflow.dependency_resolvers import DependencyResolver
    from parsl.dataflow.dependency_resolvers import deep_traverse_to_gather
    from parsl.dataflow.dependency_resolvers import deep_traverse_to_unwrap
except ImportError:  # pragma: no cover - Parsl releases before 2024
    DependencyResolver = None  # type: ignore[assignment,misc]
    deep_traverse_to_gather = deep_traverse_to_unwrap = None  # type: ignore[assignment]
from proxystore.proxy import get_key
from proxystore.proxy import is_proxy
from proxystore.store.base import Store

from .policy import DEFAULT_THRESHOLD
from .policy import Evict
from .policy import ProxyPolicy
from .policy import ProxyResults
from .policy import _content_digest
from .policy import _is_auto

__all__ = ['AutoProxyApp', 'auto_proxy', 'disable_auto_proxy', 'enable_auto_proxy', 'proxy_app']

logger = logging.getLogger(__name__)

F = TypeVar('F', bound=Callable[..., Any])

# Keyword arguments Parsl itself reads (in the submitting process): never proxied.
_RESERVED = frozenset({'outputs', 'stdout', 'stderr', 'walltime', 'parsl_resource_specification'})

_lock = threading.Lock()


# -- memoization ---------------------------------------------------------------


class _MemoId:
    """Stands for a proxy in Parsl's memo hash: its content digest (or its key)."""

    __slots__ = ('ident',)

    def __init__(self, ident: str) -> None:
        self.ident = ident


@id_for_memo.register(_MemoId)
def _id_for_memo_proxy(obj: _MemoId, output_ref: bool = False) -> bytes:
    return pickle.dumps(('proxystore.proxy', obj.ident))


@id_for_memo.register(ProxyResults)
def _id_for_memo_wrapped(obj: ProxyResults, output_ref: bool = False) -> bytes:
    return id_for_memo(obj.function, output_ref=output_ref)


def _memo_view(obj: Any) -> Any:
    """``obj`` with the integration's proxies replaced by their memo identity (no reads).

    Returns ``obj`` itself when it holds none.
    """
    if is_proxy(obj):
        if not _is_auto(obj):
            return obj  # the user's proxy: Parsl treats it as it would without us
        return _MemoId(_content_digest(obj) or f'key:{get_key(obj)}')
    kind = type(obj)
    if kind is list or kind is tuple:
        items = [_memo_view(o) for o in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else kind(items)
    if kind is dict:
        new = {k: _memo_view(v) for k, v in obj.items()}
        return obj if all(new[k] is v for k, v in obj.items()) else new
    return obj


class _MemoizerHook:
    """Wraps a memoizer's ``check_memo`` so it hashes a view of the task without proxies."""

    def __init__(self, inner: Callable[[Any], Any]) -> None:
        self.inner = inner

    def __call__(self, task: Any) -> Any:
        args, kwargs = task['args'], task['kwargs']
        view_args, view_kwargs = _memo_view(args), _memo_view(kwargs)
        if view_args is args and view_kwargs is kwargs:
            return self.inner(task)
        view = dict(task)
        view['args'], view['kwargs'] = view_args, view_kwargs
        try:
            return self.inner(view)
        finally:
            if 'hashsum' in view:
                task['hashsum'] = view['hashsum']


# -- dependency resolution -----------------------------------------------------


class _ProxySafe:
    """A dependency-resolver function that never looks inside a proxy.

    Parsl dispatches on ``obj.__class__``, which a proxy forwards: the deep
    resolver would iterate a proxied list in the submitting process (reading
    it) and rebuild it as ``Proxy(map)``. Proxies hold no futures, so they are
    returned as they are; containers are walked here so nested proxies are
    safe too.
    """

    def __init__(self, inner: Callable[[Any], Any], unwrap: bool) -> None:
        self.inner = inner
        self.unwrap = unwrap
        self.deep = inner is deep_traverse_to_gather or inner is deep_traverse_to_unwrap

    def __call__(self, obj: Any) -> Any:
        if is_proxy(obj):
            return obj if self.unwrap else []
        if self.deep:
            if isinstance(obj, (list, tuple, set)):
                if self.unwrap:
                    return type(obj)(map(self, obj))  # as Parsl's deep resolver does
                return [f for item in obj for f in self(item)]
            if isinstance(obj, dict):
                if self.unwrap:
                    return {self(k): self(v) for k, v in obj.items()}
                return [f for k, v in obj.items() for f in (*self(k), *self(v))]
        return self.inner(obj)


def _derive(source: Future[Any], policy: ProxyPolicy, made: list[Any]) -> Future[Any]:
    """A per-task stand-in for a dependency: the same task, its value proxied if large.

    Only the task that received it sees the proxy (a plain app given the same
    future gets the object), and the proxy belongs to that task's lifetime.
    For an ``AppFuture`` it is an ``AppFuture`` of the same task record, so
    Parsl names the original task in dependency errors.
    """
    derived: Future[Any] = (
        AppFuture(source.task_record) if isinstance(source, AppFuture) else Future()
    )
    source.add_done_callback(functools.partial(_copy_value, derived, policy, made))
    return derived


def _copy_value(
    derived: Future[Any], policy: ProxyPolicy, made: list[Any], source: Future[Any]
) -> None:
    error = source.exception()
    if error is not None:
        derived.set_exception(error)
        return
    value = source.result()
    try:
        new = policy.maybe_proxy(value)
    except Exception as e:  # the store failed: the task fails with that error
        derived.set_exception(e)
        return
    if new is not value and _is_auto(new):
        made.append(new)
    derived.set_result(new)


def _install(dfk: DataFlowKernel) -> None:
    """Adjust ``dfk`` once: proxy-safe dependency resolver, content-hashing memoizer."""
    with _lock:
        if getattr(dfk, '_proxystore_installed', False):
            return
        resolver = getattr(dfk, 'dependency_resolver', None)
        if resolver is not None and DependencyResolver is not None:
            dfk.dependency_resolver = DependencyResolver(
                traverse_to_gather=_ProxySafe(resolver.traverse_to_gather, unwrap=False),
                traverse_to_unwrap=_ProxySafe(resolver.traverse_to_unwrap, unwrap=True),
            )
        memoizer = getattr(dfk, 'memoizer', None)
        if memoizer is not None:
            memoizer.check_memo = _MemoizerHook(memoizer.check_memo)
        original_cleanup = dfk.cleanup

        @functools.wraps(original_cleanup)
        def cleanup() -> None:
            original_cleanup()
            # Results nothing references any more are evicted now (evict='auto').
            import gc

            gc.collect()

        dfk.cleanup = cleanup  # type: ignore[method-assign]
        dfk._proxystore_installed = True  # type: ignore[attr-defined]


# -- submission ----------------------------------------------------------------


def _finished(policy: ProxyPolicy, made: list[Any], future: Future[Any]) -> None:
    """A task reached its final state: free its arguments, watch its result (``'auto'``)."""
    lifetimes = policy.lifetimes
    if lifetimes is None:
        return
    lifetimes.task_done(made)
    made.clear()
    if future.exception() is None:
        lifetimes.result(future.result())
    _release_record(future)


def _release_record(future: Future[Any]) -> None:
    """Let go of a final task's record from its executor future.

    The executor future's completion callback holds the task record (hence
    its arguments), and an executor's result thread keeps the last future it
    completed until it completes the next one: without this, the arguments
    of the latest task would outlive it. The callbacks have run; a new list
    is assigned (not cleared) so a loop still running over the old one ends
    normally.
    """
    record = getattr(future, 'task_record', None)
    exec_future = record.get('exec_fu') if isinstance(record, dict) else None
    callbacks = getattr(exec_future, '_done_callbacks', None)
    if isinstance(exec_future, Future) and exec_future.done() and isinstance(callbacks, list):
        exec_future._done_callbacks = []  # type: ignore[attr-defined]


def _submit(
    policy: ProxyPolicy,
    dfk: DataFlowKernel,
    args: Any,
    kwargs: dict[str, Any],
    call: Callable[[Any, dict[str, Any]], Future[Any]],
) -> Future[Any]:
    _install(dfk)
    made: list[Any] = []

    def convert(obj: Any) -> Any:
        if not is_proxy(obj) and isinstance(obj, Future) and not isinstance(obj, DataFuture):
            return _derive(obj, policy, made)
        return policy.maybe_proxy(obj)

    args, kwargs, new = policy.prepare_call(args, kwargs, skip=_RESERVED, convert=convert)
    made.extend(new)
    future = call(args, kwargs)
    if policy.lifetimes is not None:
        future.add_done_callback(functools.partial(_finished, policy, made))
    return future


def _is_join(app: AppBase) -> bool:
    return bool(getattr(app, 'join', False))


class AutoProxyApp:
    """A Parsl app whose large arguments and results travel as proxies.

    Calling it returns the app's ``AppFuture`` as usual. A join app is
    returned unchanged in behaviour: its body runs in the submitting process
    and returns futures (the apps it launches proxy their own data).
    """

    def __init__(self, app: AppBase, policy: ProxyPolicy) -> None:
        if getattr(app, 'cache', False):
            policy = policy.with_content_keys()
        self.app = copy.copy(app)
        self.join = _is_join(app)
        if not self.join:
            self.app.func = policy.wrap(app.func)
        self.policy = policy
        functools.update_wrapper(self, app.func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the app with large arguments proxied; returns its ``AppFuture``."""
        if self.join:
            return self.app(*args, **kwargs)
        dfk = self.app.data_flow_kernel or DataFlowKernelLoader.dfk()
        return _submit(self.policy, dfk, args, kwargs, lambda a, k: self.app(*a, **k))

    def __repr__(self) -> str:
        return f'AutoProxyApp({self.app.__name__!r}, {self.policy!r})'


def auto_proxy(
    app: AppBase | None = None,
    *,
    store: Store | str,
    threshold: int = DEFAULT_THRESHOLD,
    proxy_results: bool = True,
    evict: Evict = False,
    lazy: bool = False,
) -> Any:
    """Turn on auto-proxying for a Parsl app (use as a decorator above ``@python_app``).

    Args:
        app: The app (when called directly rather than as a decorator).
        store: A store, or the name of a registered store.
        threshold: Arguments and results larger than this many bytes are proxied.
        proxy_results: Also proxy large results, in the worker.
        evict: ``'auto'`` frees each object once the workflow no longer needs
            it (arguments when their task is final, results when their proxy
            is garbage-collected); ``True`` deletes each object on its first
            read (one consumer, no retries); ``False`` keeps everything.
        lazy: Pass the proxies themselves to the function (resolved on first
            use) instead of the objects.

    Raises:
        IntegrationConfigError: bad ``threshold`` or ``evict``, or unknown store name.
        TypeError: the decorated object is not a Parsl app.

    """
    policy = ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict, lazy=lazy)

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
    evict: Evict = False,
    lazy: bool = False,
    **python_app_kwargs: Any,
) -> Any:
    """``@python_app`` and :func:`auto_proxy` in one decorator.

    ``python_app_kwargs`` (``executors``, ``cache``, ``data_flow_kernel``, ...)
    go to Parsl's ``PythonApp``.
    """
    policy = ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict, lazy=lazy)

    def decorate(function: Callable[..., Any]) -> AutoProxyApp:
        return AutoProxyApp(PythonApp(function, **python_app_kwargs), policy)

    return decorate if function is None else decorate(function)


def enable_auto_proxy(
    dfk: DataFlowKernel | Config,
    *,
    store: Store | str,
    threshold: int = DEFAULT_THRESHOLD,
    proxy_results: bool = True,
    evict: Evict = False,
    lazy: bool = False,
) -> DataFlowKernel:
    """Auto-proxy the arguments and results of every app run by ``dfk``.

    ``dfk = enable_auto_proxy(parsl.load(config), store=store)``. A ``Config``
    is loaded first. Returns the DataFlowKernel. Join apps run unchanged
    (their bodies run in this process; the apps they launch are proxied).
    """
    if isinstance(dfk, Config):
        import parsl

        dfk = parsl.load(dfk)
    if not isinstance(dfk, DataFlowKernel):
        raise TypeError(f'Expected a DataFlowKernel or Config, got {type(dfk).__qualname__}.')
    policy = ProxyPolicy(store, threshold, proxy_results=proxy_results, evict=evict, lazy=lazy)
    cached_policy = policy.with_content_keys()
    disable_auto_proxy(dfk)
    original = dfk.submit
    wrapped: dict[tuple[Any, bool], Callable[..., Any]] = {}

    def submit(
        func: Callable[..., Any],
        app_args: Any,
        executors: Any,
        cache: bool,
        ignore_for_cache: Any,
        app_kwargs: dict[str, Any],
        join: bool = False,
    ) -> Any:
        if join:
            return original(func, app_args, executors, cache, ignore_for_cache, app_kwargs, join)
        chosen = cached_policy if cache else policy
        try:  # wrap once per function, so Parsl's function cache keeps hitting
            task_func = wrapped.get((func, cache))
            if task_func is None:
                task_func = wrapped[(func, cache)] = chosen.wrap(func)
        except TypeError:  # an unhashable callable
            task_func = chosen.wrap(func)

        def call(args: Any, kwargs: dict[str, Any]) -> Future[Any]:
            return original(task_func, args, executors, cache, ignore_for_cache, kwargs, join)

        return _submit(chosen, dfk, app_args, app_kwargs, call)

    submit._proxystore_original = original  # type: ignore[attr-defined]
    dfk.submit = submit  # type: ignore[method-assign]
    _install(dfk)
    return dfk


def disable_auto_proxy(dfk: DataFlowKernel) -> None:
    """Undo :func:`enable_auto_proxy` (apps decorated with ``auto_proxy`` are unaffected)."""
    original = getattr(dfk.submit, '_proxystore_original', None)
    if original is not None:
        dfk.submit = original  # type: ignore[method-assign]
