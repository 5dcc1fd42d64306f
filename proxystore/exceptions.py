"""Every exception ProxyStore raises, in one hierarchy.

Catch :class:`ProxyStoreError` to handle anything from this library, or a
subclass to handle one kind of failure. Several classes also derive from a
built-in type (``ValueError``, ``ConnectionError``, ``OSError``,
``ImportError``) so code written against the v0.3 API, which raised those
built-ins, keeps working.

Hierarchy::

    ProxyStoreError
    ├── SerializationError (ValueError)
    │   ├── SignatureError
    │   └── NotBytesError (TypeError)
    ├── ProxyResolveError
    ├── IntegrationConfigError (ValueError)
    └── StoreError
        ├── UnknownStoreTypeError (ValueError)
        ├── StoreConfigError (ValueError)
        ├── MissingDependencyError (ImportError)
        ├── StoreMismatchError
        ├── InvalidKeyError (ValueError)
        ├── BatchSizeMismatchError (ValueError)
        ├── KeyNotFoundError (ValueError)
        ├── StoreConnectionError (ConnectionError)
        │   └── StoreAuthenticationError
        └── StoreIOError (OSError)
            └── StoreFullError
"""

from __future__ import annotations


class ProxyStoreError(Exception):
    """Base class of every error raised by ProxyStore."""


class SerializationError(ProxyStoreError, ValueError):
    """An object could not be serialized, or bytes could not be deserialized.

    Raised for unpicklable objects (locks, sockets, ...), and for truncated,
    empty, corrupt or foreign data handed to :func:`proxystore.serialize.deserialize`.
    """


class SignatureError(SerializationError):
    """A signed payload's tag is missing or wrong.

    The data was not written by a holder of the store's secret (it was
    tampered with, or written with another secret). Nothing is unpickled when
    this is raised.
    """


class NotBytesError(SerializationError, TypeError):
    """``serialize=False`` was given something other than bytes.

    Without serialization a store can only hold bytes (as in ProxyStore v0.3,
    which raised ``TypeError``): pass ``serialize=True`` (the default) or
    encode the object yourself, for example ``text.encode()``.
    """


class ProxyResolveError(ProxyStoreError):
    """A proxy could not resolve: its factory raised ``AttributeError``, or it resolves to itself.

    An ``AttributeError`` is wrapped so it cannot be mistaken for a missing
    attribute of the target (which would make ``hasattr(proxy, ...)`` silently
    return False). A proxy whose target is itself (directly or through another
    proxy) is refused instead of recursing forever.
    """


class IntegrationConfigError(ProxyStoreError, ValueError):
    """An integration (Parsl, FuncX, executor wrapper) got a bad setting.

    For example a threshold that is not a positive number of bytes, or a
    store name that no store is registered under.
    """


class StoreError(ProxyStoreError):
    """Base class of errors raised by a store or the store registry."""


class UnknownStoreTypeError(StoreError, ValueError):
    """``init_store`` was given a store type that is not registered."""


class StoreConfigError(StoreError, ValueError):
    """A store was constructed with wrong, missing or invalid arguments."""


class MissingDependencyError(StoreError, ImportError):
    """A backend needs an optional dependency that is not installed.

    The message names the ``pip install 'proxystore[extra]'`` that fixes it.
    """


class StoreMismatchError(StoreError):
    """A proxy names a store that, in this process, is a different backend."""


class InvalidKeyError(StoreError, ValueError):
    """A key is not a non-empty string free of path separators and ``..``."""


class BatchSizeMismatchError(StoreError, ValueError):
    """A batch operation got a different number of keys than objects."""


class KeyNotFoundError(StoreError, ValueError):
    """A key that must exist (a proxy's target, ``proxy(key=...)``) is absent.

    Typical causes: the object was evicted (for example by a proxy created
    with ``evict=True`` that was already resolved), the store was cleaned up,
    or the key belongs to another store.
    """

    def __init__(self, store: str, key: str, hint: str = '') -> None:
        self.store = store
        self.key = key
        self.hint = hint
        message = f'Key {key!r} does not exist in store {store!r}.'
        if hint:
            message = f'{message} {hint}'
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the error picklable so it crosses process boundaries intact,
        # hint included (it is what tells users why the key is gone).
        return (type(self), (self.store, self.key, self.hint))


class StoreConnectionError(StoreError, ConnectionError):
    """A store's server cannot be reached (or stopped answering in time)."""


class StoreAuthenticationError(StoreConnectionError):
    """A store's server refused the credentials (or needs some and got none)."""


class StoreIOError(StoreError, OSError):
    """A store's storage failed (permission denied, I/O error, ...)."""


class StoreFullError(StoreIOError):
    """The storage ran out of space; nothing partial was left behind."""
