"""Store types: the built-in ones by name (:class:`STORES`), imported only when used.

Like ``fsspec``'s ``known_implementations``: a name maps to a class path, so
``import proxystore`` never imports redis-py, and a missing backend dependency
is reported with the ``pip install`` that fixes it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING
from typing import Any
from typing import Union

from proxystore.exceptions import MissingDependencyError
from proxystore.exceptions import StoreConfigError
from proxystore.exceptions import UnknownStoreTypeError
from proxystore.store.options import OPTION_NAMES
from proxystore.utils import class_path
from proxystore.utils import import_class

if TYPE_CHECKING:
    from proxystore.store.base import Store

__all__ = ['STORES', 'StoreType', 'check_arguments', 'load_store_class', 'store_class']

_classes: dict[str, type[Store]] = {}


class STORES(enum.Enum):
    """Built-in store types; each value is the class path imported on use."""

    LOCAL = 'proxystore.store.local.LocalStore'
    FILE = 'proxystore.store.file.FileStore'
    REDIS = 'proxystore.store.redis.RedisStore'
    SHM = 'proxystore.store.shm.SharedMemoryStore'
    MULTI = 'proxystore.store.multi.MultiStore'

    @classmethod
    def get_str_by_type(cls, store_type: type[Store]) -> str:
        """Return the member name (``'REDIS'``, ...) of a store class, as ProxyStore v0.3 did.

        Raises:
            UnknownStoreTypeError: ``store_type`` is not a built-in store class.

        """
        for member in cls:
            if member.value == class_path(store_type):
                return member.name
        raise UnknownStoreTypeError(
            f'{store_type!r} is not a built-in store type; pass the class itself to init_store.',
        )

    @classmethod
    def from_name(cls, name: str) -> STORES:
        """Return the member named ``name`` (case-insensitive).

        Raises:
            UnknownStoreTypeError: no member has that name.

        """
        try:
            return cls[name.upper()]
        except KeyError:
            raise UnknownStoreTypeError(
                f'Unknown store type {name!r}. Valid types: '
                f'{", ".join(repr(m.name.lower()) for m in cls)}, or a Store subclass.',
            ) from None

    def load(self) -> type[Store]:
        """Import and return the store class of this member."""
        return load_store_class(self.value)


# Extras that provide a backend's third-party dependencies.
_EXTRAS = {'redis': 'redis'}

StoreType = Union[str, STORES, 'type[Store]']


def load_store_class(path: str) -> type[Store]:
    """Import the store class at ``path``, explaining a missing dependency.

    Raises:
        MissingDependencyError: the backend's optional dependency is missing.
        UnknownStoreTypeError: ``path`` does not name a :class:`Store` subclass.

    """
    known = _classes.get(path)
    if known is not None:
        return known
    try:
        cls = import_class(path)
    except ModuleNotFoundError as e:
        missing = (e.name or '').split('.')[0]
        if missing in _EXTRAS:
            raise MissingDependencyError(
                f'Store {path} needs the {missing!r} package. Install it with: '
                f"pip install 'proxystore[{_EXTRAS[missing]}]'",
            ) from e
        raise UnknownStoreTypeError(f'Cannot import store class {path!r}: {e}') from e
    except (AttributeError, ValueError, ImportError) as e:
        raise UnknownStoreTypeError(f'Cannot import store class {path!r}: {e}') from e
    if not _is_store_class(cls):
        raise UnknownStoreTypeError(f'{path!r} is not a proxystore.store.base.Store subclass.')
    _classes[path] = cls
    found: type[Store] = cls
    return found


def _is_store_class(cls: Any) -> bool:
    # Duck-typed, so the registry never imports the store layer above it.
    return isinstance(cls, type) and all(
        callable(getattr(cls, attr, None)) for attr in ('from_config', 'identity_config', 'config')
    )


def store_class(store_type: Any) -> type[Store]:
    """The store class named by ``store_type`` (a name, a :class:`STORES` member or a class)."""
    if isinstance(store_type, STORES):
        return store_type.load()
    if isinstance(store_type, str):
        return STORES.from_name(store_type).load()
    if _is_store_class(store_type):
        checked: type[Store] = store_type
        return checked
    raise UnknownStoreTypeError(
        f'Store type must be a name, a STORES member or a Store subclass, got {store_type!r}. '
        f'Valid names: {", ".join(repr(m.name.lower()) for m in STORES)}.',
    )


def check_arguments(cls: type[Store], name: str, kwargs: dict[str, Any]) -> None:
    """Raise a StoreConfigError that names unknown or missing constructor arguments.

    A store constructor that takes ``**options`` passes them to
    :class:`~proxystore.store.base.Store`, so those are checked against the
    store options (:data:`~proxystore.store.options.OPTION_NAMES`).
    """
    import difflib
    import inspect

    signature = inspect.signature(cls)
    params = dict(signature.parameters)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        params.update(
            (n, inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None))
            for n in OPTION_NAMES
        )
    problems = []
    if isinstance(kwargs.get('connector'), str):  # a class path: the rest are its arguments
        return
    for arg in kwargs:
        if arg not in params or params[arg].kind is inspect.Parameter.VAR_KEYWORD:
            close = difflib.get_close_matches(arg, list(params), n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            problems.append(f'unexpected argument {arg!r}{hint}')
    missing = [
        p.name
        for p in list(signature.parameters.values())[1:]
        if p.default is p.empty
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in kwargs
    ]
    problems.extend(f'missing argument {m!r}' for m in missing)
    if problems:
        raise StoreConfigError(
            f'Invalid arguments for {cls.__name__}: {"; ".join(problems)}. '
            f'Signature: {cls.__name__}{signature}',
        )
