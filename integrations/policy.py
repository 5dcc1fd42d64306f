"""The one rule every integration uses to decide what travels as a proxy, and for how long.

A :class:`ProxyPolicy` holds a store and a size threshold. Objects larger than
the threshold (in bytes) are put in the store and replaced by proxies;
everything else, and every proxy or future, passes through untouched. Parsl,
FuncX and the executor wrapper all call the same methods:
:meth:`ProxyPolicy.proxy_arguments` before a task is sent, and
:meth:`ProxyPolicy.wrap` around the task's function, which runs where the task
runs. The wrapper gives the function what the engine alone would have given
it (the real objects, each task its own copy) and proxies large results where
they are computed.

Sizes cost no extra serialization: ``bytes``, ``str`` (UTF-8 bytes),
``memoryview`` and numpy arrays are sized directly; anything else is
serialized once, and those very bytes go into the store when the object is
proxied.

Lifetimes (``evict``): ``False`` keeps every object (the user cleans up),
``True`` deletes an object on its first read (one consumer, no retries), and
``'auto'`` (:class:`_Lifetimes`) deletes an argument when the task that
received it reaches its final state and a result when nothing in the
submitting process references its proxy any more.
"""

from __future__ import annotations

import base64
import functools
import gc
import hashlib
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any
from typing import Literal
from typing import Union

from proxystore.exceptions import IntegrationConfigError
from proxystore.exceptions import SerializationError
from proxystore.factory import Factory
from proxystore.proxy import Proxy
from proxystore.proxy import extract
from proxystore.proxy import get_factory
from proxystore.proxy import get_key
from proxystore.proxy import is_proxy
from proxystore.proxy import is_resolved
from proxystore.serialize import payload_size
from proxystore.store.base import Store
from proxystore.store.registry import get_store
from proxystore.store.registry import lookup_store
from proxystore.utils import class_path

from . import _Auto

__all__ = ['DEFAULT_THRESHOLD', 'Evict', 'ProxyPolicy', 'ProxyResults']

logger = logging.getLogger(__name__)

#: Default threshold in bytes: smaller objects are cheaper to send inline.
DEFAULT_THRESHOLD = 100_000

#: Accepted values of ``evict``: ``False``, ``True`` or ``'auto'``.
Evict = Union[bool, Literal['auto']]

# Identifies this process; a wrapped function compares it with the token of
# the process that wrapped it to know whether its result will be pickled.
_PROCESS_TOKEN = uuid.uuid4().hex

_NEVER_PROXIED = (type(None), bool, int, float, complex)
_CONTAINERS = (list, tuple, set, frozenset)

# Content keys: 'm' (never a hex digit, so never a UUID key), 22 characters of
# content digest, 12 random characters (two tasks never share a key).
_CONTENT_PREFIX = 'm'
_DIGEST_CHARS = 22


def _direct_size(obj: Any) -> int | None:
    """Size in bytes when it is known without serializing, else ``None``."""
    kind = type(obj)
    if kind is bytes or kind is bytearray:
        return len(obj)
    if kind is str:
        # UTF-8 bytes, as stored; ASCII (the common case) needs no encoding.
        return len(obj) if obj.isascii() else len(obj.encode('utf-8', 'surrogatepass'))
    if kind is memoryview:
        return int(obj.nbytes)
    if kind.__module__ == 'numpy' and kind.__name__ == 'ndarray' and obj.dtype != object:
        return int(obj.nbytes)
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode('ascii').rstrip('=')


def _content_key(payload: Sequence[Any]) -> str:
    """A key that starts with a digest of ``payload`` and ends with random characters."""
    digest = hashlib.blake2b(digest_size=16)
    for part in payload:
        digest.update(part)
    return _CONTENT_PREFIX + _b64(digest.digest()) + _b64(os.urandom(9))


def _content_digest(proxy: Proxy[Any]) -> str | None:
    """The content digest an integration's proxy carries in its key, else ``None``.

    Lets engines memoize tasks by argument content without reading the object.
    """
    factory = get_factory(proxy)
    key = getattr(factory, 'key', None)
    if type(factory) is _Auto and isinstance(key, str) and key.startswith(_CONTENT_PREFIX):
        return key[1 : 1 + _DIGEST_CHARS]
    return None


def _is_auto(obj: Any) -> bool:
    """Whether ``obj`` is a proxy an integration made (never resolves it)."""
    return is_proxy(obj) and type(get_factory(obj)) is _Auto


class _ProxyCarrier:
    """A returned proxy on its way back from a worker: plain data, unpickled as the proxy.

    Workflow engines pick a *code* serializer for anything ``callable``, and
    Parsl's caches callables by hash, which would resolve the proxy (and fail
    for unhashable targets such as arrays). The carrier is neither callable
    nor resolvable, and pickles to exactly the proxy.
    """

    __slots__ = ('factory', 'lifetimes')

    def __init__(self, factory: Factory[Any], lifetimes: str | None = None) -> None:
        self.factory = factory
        self.lifetimes = lifetimes

    def __reduce__(self) -> tuple[Any, ...]:
        if self.lifetimes is None:
            return (Proxy, (self.factory,))
        return (_arrived, (self.factory, self.lifetimes))


# Lifetimes of evict='auto' policies in this process, by token (see _arrived).
_LIFETIMES: weakref.WeakValueDictionary[str, _Lifetimes] = weakref.WeakValueDictionary()


def _arrived(factory: Factory[Any], token: str) -> Proxy[Any]:
    """Unpickle a returned proxy, and in the submitting process start its lifetime.

    This runs where the result is unpickled, before the engine hands it to
    anyone: the lifetime starts before the user can drop the proxy. In any
    other process (the token is unknown there) it is just the proxy.
    """
    proxy: Proxy[Any] = Proxy(factory)
    lifetimes = _LIFETIMES.get(token)
    if lifetimes is not None:
        lifetimes.result(proxy)
    return proxy


def _evict_quietly(store: Store, key: str) -> None:
    try:
        store.evict(key)
    except Exception as e:  # a closed store at exit, an unreachable server
        logger.debug('Could not evict %s from %s: %s', key, store.name, e)


class _Lifetimes:
    """``evict='auto'``: free what a workflow no longer needs, never what it may still read.

    Arguments are tied to the task that received them (:meth:`task`, then
    :meth:`task_done` once the task reached its final state, retries
    included). Results are tied to their proxy in the submitting process
    (:meth:`result`): the object goes when that proxy is garbage-collected,
    which happens only once the user, the engine and every task that
    consumed it have let it go.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._results: set[str] = set()
        self.token = uuid.uuid4().hex
        _LIFETIMES[self.token] = self

    def task_done(self, proxies: Iterable[Any]) -> None:
        """Evict the argument proxies of a task that reached its final state."""
        keys = [k for k in map(get_key, proxies) if k]
        for key in keys:
            _evict_quietly(self.store, key)
        if keys:
            logger.debug('Evicted %d argument objects of a finished task', len(keys))

    def result(self, proxy: Any) -> None:
        """Evict the object of result ``proxy`` once nothing references the proxy."""
        if not _is_auto(proxy):
            return
        key = get_key(proxy)
        if key is None:
            return
        with self._lock:
            if key in self._results:
                return
            self._results.add(key)
        weakref.finalize(proxy, self._release, key)

    def _release(self, key: str) -> None:
        with self._lock:
            self._results.discard(key)
        _evict_quietly(self.store, key)

    def close(self) -> None:
        """Collect garbage so unreferenced results are evicted now (engine shutdown)."""
        gc.collect()


def _check_evict(evict: Any) -> Evict:
    if evict is True or evict is False or evict == 'auto':
        return evict  # type: ignore[no-any-return]
    raise IntegrationConfigError(
        f"evict must be False, True or 'auto', got {evict!r}. 'auto' frees each object "
        'once the workflow no longer needs it.',
    )


class ProxyPolicy:
    """Replace objects larger than ``threshold`` bytes by proxies from ``store``.

    Args:
        store: A store, or the name of a registered store.
        threshold: Objects strictly larger than this many bytes are proxied.
        proxy_results: Also proxy large return values, where they are computed.
        evict: ``False`` keeps objects; ``True`` deletes each on its first
            read (exactly one consumer, no retries); ``'auto'`` deletes them
            once the workflow no longer needs them.
        lazy: Give tasks the proxies themselves instead of the objects (they
            resolve on first use, but fail C-level exact-type checks).
        content_keys: Start keys with a digest of the object, so engines can
            memoize tasks by argument content without reading the objects.

    Raises:
        IntegrationConfigError: bad ``threshold`` or ``evict``, or ``store``
            names no registered store.

    """

    def __init__(
        self,
        store: Store | str,
        threshold: int = DEFAULT_THRESHOLD,
        *,
        proxy_results: bool = True,
        evict: Evict = False,
        lazy: bool = False,
        content_keys: bool = False,
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
        self._store: Store | None = store
        self._store_ref: tuple[str, str, dict[str, Any]] | None = None
        self.threshold = threshold
        self.proxy_results = proxy_results
        self.evict: Evict = _check_evict(evict)
        self.lazy = lazy
        self.content_keys = content_keys
        self.lifetimes = _Lifetimes(store) if self.evict == 'auto' else None
        # Travels to workers so returned proxies find these lifetimes back here.
        self._lifetimes_token = self.lifetimes.token if self.lifetimes is not None else None

    @property
    def store(self) -> Store:
        """The store; in a worker, found or rebuilt on first use (errors become the task's)."""
        store = self._store
        if store is None:
            assert self._store_ref is not None
            store = self._store = lookup_store(*self._store_ref)
        return store

    def with_content_keys(self) -> ProxyPolicy:
        """Return a copy with content keys (for apps whose results are memoized)."""
        if self.content_keys:
            return self
        other = object.__new__(ProxyPolicy)
        other.__dict__.update(self.__dict__)
        other.content_keys = True
        return other

    def __repr__(self) -> str:
        name = (
            self._store.name if self._store is not None else self._store_ref and self._store_ref[1]
        )
        return (
            f'ProxyPolicy(store={name!r}, threshold={self.threshold}, '
            f'proxy_results={self.proxy_results}, evict={self.evict!r}, lazy={self.lazy})'
        )

    def maybe_proxy(self, obj: Any) -> Any:
        """Return a proxy of ``obj`` if it is larger than the threshold, else ``obj``.

        Proxies and futures are returned untouched (never resolved), and so is
        anything the store cannot serialize (a list holding futures, say):
        the engine then handles it as it would without ProxyStore.
        """
        # The proxy test comes first: isinstance() with other classes may resolve a proxy.
        if is_proxy(obj) or isinstance(obj, (*_NEVER_PROXIED, Future)):
            return obj
        size = _direct_size(obj)
        if size is not None and size <= self.threshold:
            return obj
        store = self.store
        payload = None
        if size is None or self.content_keys:
            try:
                payload = store.serialize(obj)
            except SerializationError as e:
                logger.debug('Not proxying a %s the store cannot serialize: %s', type(obj), e)
                return obj
            size = payload_size(payload)
        if size <= self.threshold:
            return obj
        key = _content_key(payload) if self.content_keys and payload is not None else None
        proxy = store.proxy(
            obj,
            key=key,
            factory=_Auto,
            evict=self.evict is True,
            copy=True,  # each resolve gives a private object: every task gets its own
            payload=payload,
            resolved=True,  # here the proxy stands for obj itself: nothing to read
        )
        logger.debug('Proxied a %s of %d bytes as key %s', type(obj).__name__, size, get_key(proxy))
        return proxy

    def proxy_arguments(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        skip: frozenset[str] = frozenset(),
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Proxy large positional and keyword arguments, and items of ``inputs=``.

        Keyword arguments named in ``skip`` (engine-reserved ones) are left alone.
        """
        new_args, new_kwargs, _ = self.prepare_call(args, kwargs, skip=skip)
        return new_args, new_kwargs

    def prepare_call(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        skip: frozenset[str] = frozenset(),
        convert: Callable[[Any], Any] | None = None,
    ) -> tuple[tuple[Any, ...], dict[str, Any], list[Any]]:
        """Like :meth:`proxy_arguments`, and also return the proxies made here.

        What the integrations call before submitting a task: the proxies made
        for it are the ones freed when it ends (``evict='auto'``). ``skip``
        names keyword arguments left as they are (an engine's own), and
        ``convert`` (default :meth:`maybe_proxy`) is applied to each argument.
        """
        made: list[Any] = []

        def one(obj: Any) -> Any:
            new = (convert or self.maybe_proxy)(obj)
            if new is not obj and _is_auto(new):
                made.append(new)
            return new

        new_args = tuple(one(a) for a in args)
        new_kwargs: dict[str, Any] = {}
        for name, value in kwargs.items():
            if name in skip:
                new_kwargs[name] = value
            elif name == 'inputs' and type(value) in (list, tuple):
                new_kwargs[name] = type(value)(one(i) for i in value)
            else:
                new_kwargs[name] = one(value)
        return new_args, new_kwargs, made

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``function`` wrapped to run as the engine alone would run it.

        The wrapper resolves the integration's proxies among the arguments
        before the call (unless ``lazy``) and proxies large results. Returns
        ``function`` itself when there is nothing to do.
        """
        if isinstance(function, ProxyResults):
            return function
        if self.lazy and not self.proxy_results:
            return function
        return ProxyResults(function, self)

    def local_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
        """Replace the integration's proxies among the arguments by their objects.

        Each task gets its own object (a proxy resolved in another process
        reads afresh), as when the engine pickles arguments itself. Looks
        into the plain containers Parsl's deep dependency resolver rebuilds.
        """
        return tuple(self._local(a) for a in args), {k: self._local(v) for k, v in kwargs.items()}

    def _local(self, obj: Any) -> Any:
        if is_proxy(obj):
            factory = get_factory(obj)
            if type(factory) is not _Auto:
                return obj  # the user's own proxy: the task gets it as the user sent it
            resolved = is_resolved(obj)
            value = extract(obj)
            if resolved and factory.evict:  # never read through the factory: evict here
                _evict_quietly(self.store, factory.key)
            return value
        kind = type(obj)
        if kind in _CONTAINERS:
            items = [self._local(o) for o in obj]
            if all(a is b for a, b in zip(items, obj)):
                return obj
            return kind(items)
        if kind is dict:
            new = {k: self._local(v) for k, v in obj.items()}
            if all(new[k] is v for k, v in obj.items()):
                return obj
            return new
        return obj

    def proxy_result(self, result: Any) -> Any:
        """Proxy a large result; in a worker process, as a carrier that pickles to the proxy.

        A returned proxy the integration made (a lazy argument passed back)
        is stored anew from its current value: the task may have changed it
        in place, and the argument's object has its own lifetime.
        """
        if self.proxy_results and _is_auto(result):
            result = extract(result)
        if not self.proxy_results:
            return result
        proxied = self.maybe_proxy(result)
        if not _is_auto(proxied) or proxied is result:
            return proxied
        if self._origin != _PROCESS_TOKEN:
            return _ProxyCarrier(get_factory(proxied), self._lifetimes_token)
        if self.lifetimes is not None:  # in the submitting process: starts now
            self.lifetimes.result(proxied)
        return proxied

    # The policy travels to workers inside ProxyResults. The store travels as
    # a reference looked up on first use (so a worker that cannot rebuild it
    # fails that task, not the unpickling of the task), and the origin token
    # tells the worker it is not the process that made the policy.
    _origin = _PROCESS_TOKEN

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, '_origin': self._origin, 'lifetimes': None}
        store = state.pop('_store')
        if store is not None:
            state['_store_ref'] = (class_path(type(store)), store.name, store.config())
        state['_store'] = None
        return state


class ProxyResults:
    """A task function that runs as the engine alone would run it, with large results proxied.

    Before the call, the integration's proxies among the arguments are
    replaced by their objects (unless the policy is ``lazy``), so the
    function sees exact types (``type(x) is np.ndarray``, ``re.findall`` on
    a ``str``) and its own copy of each. Picklable (by reference to this
    class, with the wrapped function and the policy), hashable, and named like
    the function it wraps, so engines that serialize, cache or log functions
    by name treat it like the original.
    """

    def __init__(self, function: Callable[..., Any], policy: ProxyPolicy) -> None:
        self.function = function
        self.policy = policy
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function on the arguments' objects and proxy its result if large."""
        policy = self.policy
        if not policy.lazy:
            args, kwargs = policy.local_arguments(args, kwargs)
        return policy.proxy_result(self.function(*args, **kwargs))

    def __repr__(self) -> str:
        return f'ProxyResults({self.function!r}, {self.policy!r})'
