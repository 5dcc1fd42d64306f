"""The options every store takes, checked once: :class:`StoreOptions`.

Backends pass ``**options`` through to :class:`~proxystore.store.base.Store`,
which parses them here, so each option is spelled, checked and documented in
one place, whatever the backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from proxystore.exceptions import StoreConfigError

__all__ = ['DEFAULT_CACHE_BYTES', 'LOCAL_OPTIONS', 'OPTION_NAMES', 'SECRET_ENV', 'StoreOptions']

#: Environment variable holding the signing secret (see ``Store(secret=...)``).
SECRET_ENV = 'PROXYSTORE_SECRET'
#: Default byte bound of a store's local object cache.
DEFAULT_CACHE_BYTES = 256 * 2**20
#: Options that only tune one process: not part of a store's identity.
LOCAL_OPTIONS = frozenset({'cache_size', 'cache_bytes', 'stats'})

#: Every option a store takes through ``**options``.
OPTION_NAMES = frozenset({'cache_size', 'cache_bytes', 'secret', 'signed', 'stats'})
_NAMES = 'cache_size, cache_bytes, secret, signed and stats'


@dataclass(frozen=True)
class StoreOptions:
    """Checked store options (see :class:`~proxystore.store.base.Store` for each)."""

    cache_size: int = 16
    cache_bytes: int | None = DEFAULT_CACHE_BYTES
    secret: bytes | None = None
    stats: bool = False

    @classmethod
    def parse(cls, owner: str, name: Any, options: dict[str, Any]) -> StoreOptions:
        """Check ``options`` of the store ``name`` (a ``owner`` instance).

        Raises:
            StoreConfigError: an unknown option, or a value of the wrong type
                or range; the message names the option and what is accepted.

        """
        options = dict(options)
        cache_size = options.pop('cache_size', 16)
        cache_bytes = options.pop('cache_bytes', DEFAULT_CACHE_BYTES)
        secret = options.pop('secret', None)
        signed = options.pop('signed', None)
        stats = options.pop('stats', False)
        if options:
            raise StoreConfigError(
                f'{owner}: unexpected argument(s) {", ".join(map(repr, options))}. '
                f'Store options are {_NAMES}.',
            )
        if not isinstance(name, str) or not name:
            raise StoreConfigError(f'A store name must be a non-empty str, got {name!r}.')
        _check_int('cache_size', cache_size)
        if cache_bytes is not None:
            _check_int('cache_bytes', cache_bytes)
        if not isinstance(stats, bool):
            raise StoreConfigError(f'stats must be True or False, got {stats!r}.')
        if signed is not None and not isinstance(signed, bool):
            raise StoreConfigError(f'signed must be None, True or False, got {signed!r}.')
        return cls(cache_size, cache_bytes, _secret(name, secret, signed), stats)

    def config(self) -> dict[str, Any]:
        """The options that differ from the defaults (``signed=True``, never the secret)."""
        config: dict[str, Any] = {}
        if self.cache_size != 16:
            config['cache_size'] = self.cache_size
        if self.cache_bytes != DEFAULT_CACHE_BYTES:
            config['cache_bytes'] = self.cache_bytes
        if self.stats:
            config['stats'] = True
        if self.secret is not None:
            config['signed'] = True
        return config


def _secret(name: str, secret: Any, signed: bool | None) -> bytes | None:
    if secret is None:
        secret = os.environ.get(SECRET_ENV) or None
    if isinstance(secret, str):
        secret = secret.encode('utf-8')
    if secret is not None and (not isinstance(secret, bytes) or not secret):
        raise StoreConfigError(
            f'secret must be a non-empty str or bytes, got {type(secret).__qualname__} '
            f'{"(empty)" if not secret else ""}: an empty secret would let anyone forge '
            'payloads. Pass a long random string, or leave it unset to not sign.',
        )
    if signed and secret is None:
        raise StoreConfigError(
            f'Store {name!r} signs its payloads but no secret is available here: '
            f'set the {SECRET_ENV} environment variable (or pass secret=...).',
        )
    return secret if signed is not False else None


def _check_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreConfigError(f'{name} must be an int >= 0, got {value!r}.')
