"""The byte-level interface under every store: :class:`Connector`.

A connector moves bytes and nothing else: no pickling, no cache, no proxies,
no signing (that is :class:`~proxystore.store.base.Store`'s job). It is
small enough to be written, tested and composed alone: the node tier
(:mod:`proxystore.connectors.node`) is a connector that wraps another one.

Contract, checked for every built-in connector by
``tests/connectors/test_contract.py``:

- ``put`` is atomic: a reader sees the old value, nothing, or the whole new
  value, never a part. An interrupted ``put`` leaves the key absent or whole.
- ``get`` returns ``(data, version)`` or ``None`` for a missing key. ``data``
  may be any :data:`~proxystore.serialize.Buffer` (writable where that is
  cheap, so arrays rebuilt over it can be changed). ``version`` is a hashable
  token that changes whenever the key is rewritten, by anyone; a connector
  that cannot tell versions apart returns ``True``.
- ``evict`` of a missing key is not an error.
- Every failure is an exception from :mod:`proxystore.exceptions`
  (``StoreConnectionError``, ``StoreIOError``, ``StoreFullError``, ...); a
  connector translates its library's errors at this boundary.
- ``config()`` returns the keyword arguments that rebuild an equal connector
  with ``type(connector)(**config)`` in another process; it holds plain,
  picklable values only and never a secret.

Optional hooks, looked up with ``getattr`` (a connector may omit them):

- ``version(key) -> Hashable | None``: the current version token without
  reading the payload (default: ``True`` if the key exists, else ``None``).
- ``cleanup()``: remove what this connector wrote (default: ``close()``).
- ``where(key=None) -> str``: where the data lives, for error messages.
- ``after_fork()``: reset locks and connections in a forked child.
- ``local_options``: class attribute, the ``config()`` keys that only tune
  this process (timeouts, ...) and are not part of the store's identity.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Sequence
from typing import Any
from typing import Protocol
from typing import runtime_checkable

from proxystore.exceptions import StoreConfigError
from proxystore.serialize import Buffer
from proxystore.utils import import_class

__all__ = ['Connector', 'Entry', 'connector_version', 'load_connector']

#: What ``get`` returns for an existing key: its bytes and its version token.
Entry = tuple[Buffer, Hashable]


@runtime_checkable
class Connector(Protocol):
    """Moves bytes to and from one backend; see the module docstring for the contract."""

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Atomically store the concatenation of ``parts`` under ``key``."""
        ...

    def get(self, key: str) -> Entry | None:
        """Return ``(data, version)`` of ``key``, or ``None`` if it does not exist."""
        ...

    def exists(self, key: str) -> bool:
        """Return whether ``key`` exists."""
        ...

    def evict(self, key: str) -> None:
        """Delete ``key``; a missing key is not an error."""
        ...

    def put_batch(self, items: Sequence[tuple[str, Sequence[Buffer]]]) -> None:
        """Store many keys, in one round trip where the backend allows."""
        ...

    def get_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        """Read many keys (``None`` for missing ones), in one round trip where possible."""
        ...

    def close(self) -> None:
        """Release connections and handles; stored data is kept."""
        ...

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild an equal connector in another process."""
        ...


def connector_version(connector: Connector, key: str) -> Hashable | None:
    """The version token of ``key`` without reading its payload where the connector can."""
    version = getattr(connector, 'version', None)
    if version is not None:
        token: Hashable | None = version(key)
        return token
    return True if connector.exists(key) else None


def load_connector(path: str, arguments: dict[str, Any], where: str) -> Connector:
    """Build the connector at class ``path`` with ``arguments``, as a worker rebuilding one does.

    Raises:
        StoreConfigError: the class cannot be imported here, or the arguments
            do not fit it; the message starts with ``where``.

    """
    try:
        cls = import_class(path)
    except (ImportError, AttributeError, ValueError) as e:
        raise StoreConfigError(
            f'{where}: cannot import connector class {path!r} ({e}); install the package '
            'that provides it in this process, or check the class path.',
        ) from e
    try:
        connector: Connector = cls(**arguments)
    except TypeError as e:
        raise StoreConfigError(
            f"{where}: the arguments do not fit connector {path}: {e}. Pass the connector's "
            'own config().',
        ) from e
    return connector
