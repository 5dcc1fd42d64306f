"""What a key may be: one rule for every store and connector.

Keys are non-empty strings of at most 1024 characters with no ``/``, ``\\``,
NUL, and no leading ``.``: every backend can then use them as file names, and
no key can point outside a file store's directory.
"""

from __future__ import annotations

from typing import Any

from proxystore.exceptions import InvalidKeyError

__all__ = ['check_key', 'check_keys']

_MAX_KEY_LENGTH = 1024


def check_key(key: Any) -> str:
    """Return ``key`` if it is a valid key, else raise :class:`InvalidKeyError`.

    Keys are non-empty strings of at most 1024 characters with no ``/``,
    ``\\``, NUL, and no leading ``.``: every backend can then use them as file
    names, and no key can point outside a file store's directory.
    """
    if type(key) is str and len(key) <= _MAX_KEY_LENGTH and key.isascii() and key.isalnum():
        return key  # the common case (generated keys are hex): valid by construction
    if not isinstance(key, str):
        raise InvalidKeyError(f'Keys must be str, got {type(key).__qualname__}.')
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise InvalidKeyError(f'Keys must have 1 to {_MAX_KEY_LENGTH} characters, got {len(key)}.')
    if key[0] == '.' or '/' in key or '\\' in key or '\x00' in key:
        raise InvalidKeyError(
            f'Invalid key {key!r}: keys may not start with "." or contain "/", "\\" or NUL.',
        )
    try:
        key.encode('utf-8')
    except UnicodeEncodeError:
        raise InvalidKeyError(
            f'Invalid key {key!r}: keys must be encodable as UTF-8 (no lone surrogates).',
        ) from None
    return key


def check_keys(keys: Any, what: str) -> list[str]:
    """Return ``keys`` as a list of valid keys; a single string is refused, not split."""
    if isinstance(keys, (str, bytes)):
        raise InvalidKeyError(
            f'{what} needs a sequence of keys, got a single {type(keys).__qualname__} '
            f'{keys!r}; wrap it in a list.',
        )
    return [check_key(k) for k in keys]
