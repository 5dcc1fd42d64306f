"""Checks of :class:`~proxystore.connectors.redis.RedisConnector`'s arguments and ``redis_kwargs``.

Kept apart from the connector because every rule here is about what a user
may pass, not how the store talks to Redis: a bad argument raises
:class:`~proxystore.exceptions.StoreConfigError` naming it and what is
accepted, before any connection is made. Internal to the Redis connector.
"""

from __future__ import annotations

import difflib
import inspect
import math
import ssl
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import redis

from proxystore.exceptions import StoreConfigError

__all__ = ['check_arguments', 'check_cluster_arguments', 'check_redis_kwargs', 'with_resp2']


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_keepalive_options(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        _is_int(k) and (_is_int(v) or isinstance(v, bytes)) for k, v in value.items()
    )


_STR = (_is_optional_str, 'a str or None')
_BOOL = (_is_bool, 'True or False')
#: ``redis_kwargs`` options accepted, with a check of the value and what it accepts.
#: Only options that change how a connection is secured or kept alive: they
#: travel inside proxies, so each must be a plain, picklable value.
_ACCEPTED_KWARGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    'ssl': _BOOL,
    'ssl_keyfile': _STR,
    'ssl_certfile': _STR,
    'ssl_cert_reqs': (
        lambda v: v in ('none', 'optional', 'required') or isinstance(v, ssl.VerifyMode),
        "'none', 'optional', 'required' or an ssl.VerifyMode",
    ),
    'ssl_ca_certs': _STR,
    'ssl_ca_path': _STR,
    'ssl_ca_data': _STR,
    'ssl_check_hostname': _BOOL,
    'ssl_password': _STR,
    'ssl_min_version': (
        lambda v: v is None or isinstance(v, ssl.TLSVersion),
        'an ssl.TLSVersion or None',
    ),
    'ssl_ciphers': _STR,
    'ssl_validate_ocsp': _BOOL,
    'ssl_validate_ocsp_stapled': _BOOL,
    'ssl_ocsp_expected_cert': _STR,
    'socket_keepalive': _BOOL,
    'socket_keepalive_options': (_is_keepalive_options, 'a dict of int options to int or bytes'),
    'socket_read_size': (lambda v: _is_int(v) and v > 0, 'an int > 0'),
    'health_check_interval': (
        lambda v: (_is_int(v) or (isinstance(v, float) and math.isfinite(v))) and v >= 0,
        'a number of seconds >= 0',
    ),
    'max_connections': (lambda v: v is None or (_is_int(v) and v > 0), 'an int > 0 or None'),
    'client_name': _STR,
    'lib_name': _STR,
    'lib_version': _STR,
}
#: Options whose other values would change the replies the connector parses
#: itself (bytes, RESP2) or how keys are encoded: only their defaults pass.
_FIXED_KWARGS: dict[str, tuple[Any, ...]] = {
    'decode_responses': (False,),
    'protocol': (None, 2, '2'),
    'encoding': ('utf-8', 'utf8', 'UTF-8'),
    'encoding_errors': ('strict',),
}
#: ``redis.Redis`` options that RedisStore sets from its own arguments.
_OWN_KWARGS = {
    'host': 'hostname',
    'port': 'port',
    'db': 'db',
    'username': 'username',
    'password': 'password',
    'socket_timeout': 'timeout',
    'socket_connect_timeout': 'timeout',
    'retry': 'retries',
    'retry_on_error': 'retries',
    'retry_on_timeout': 'retries',
}


def _redis_parameters() -> set[str]:
    return set(inspect.signature(redis.Redis.__init__).parameters) - {'self'}


def with_resp2(redis_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``redis_kwargs`` with ``protocol=2`` where redis-py has the option (5.0+).

    redis-py 8 defaults to RESP3; asking for RESP2 keeps the replies this
    module reads itself in one protocol, and the server then sends no push
    frames (RESP3 maintenance notices, tracking invalidations). The accepted
    ``protocol`` values (None, 2) all mean RESP2 here.
    """
    kwargs = {k: v for k, v in redis_kwargs.items() if k != 'protocol'}
    if 'protocol' in _redis_parameters():
        kwargs['protocol'] = 2
    return kwargs


def check_redis_kwargs(redis_kwargs: Any) -> dict[str, Any]:
    """Return a copy of ``redis_kwargs`` if RedisStore can work with every option in it.

    Raises:
        StoreConfigError: naming the first option that is refused and why.

    """
    if redis_kwargs is None:
        return {}
    if not isinstance(redis_kwargs, Mapping) or not all(isinstance(k, str) for k in redis_kwargs):
        raise StoreConfigError(
            f'RedisStore redis_kwargs must be a dict of redis.Redis keyword arguments '
            f'(str keys) or None, got {redis_kwargs!r}.',
        )
    accepted = ', '.join(sorted(_ACCEPTED_KWARGS))
    parameters = _redis_parameters()
    for option, value in redis_kwargs.items():
        if option in _OWN_KWARGS:
            raise StoreConfigError(
                f'RedisStore redis_kwargs may not set {option!r}: pass '
                f'{_OWN_KWARGS[option]}= to RedisStore instead.',
            )
        if option in _FIXED_KWARGS:
            if value not in _FIXED_KWARGS[option] or isinstance(value, bool) != isinstance(
                _FIXED_KWARGS[option][0], bool
            ):
                raise StoreConfigError(
                    f'RedisStore redis_kwargs {option}={value!r} is not supported: RedisStore '
                    'reads replies itself as raw bytes over the RESP2 protocol, with UTF-8 '
                    f'keys. Remove {option!r} (its default, '
                    f'{_FIXED_KWARGS[option][0]!r}, is the only value accepted).',
                )
            continue
        if option not in _ACCEPTED_KWARGS:
            if option in parameters:
                reason = (
                    'it changes how RedisStore connects or what the server replies, or holds '
                    'a live object that cannot travel inside proxies'
                )
            else:
                close = difflib.get_close_matches(
                    option, [*_ACCEPTED_KWARGS, *_OWN_KWARGS, *_FIXED_KWARGS], n=1
                )
                reason = 'redis.Redis has no such option' + (
                    f' (did you mean {close[0]!r}?)' if close else ''
                )
            raise StoreConfigError(
                f'RedisStore redis_kwargs option {option!r} is not supported: {reason}. '
                f'Accepted options: {accepted}.',
            )
        check, expected = _ACCEPTED_KWARGS[option]
        if not check(value):
            raise StoreConfigError(
                f'RedisStore redis_kwargs {option} must be {expected}, got {value!r}.',
            )
        if option not in parameters:
            raise StoreConfigError(
                f'RedisStore redis_kwargs option {option!r} needs a newer redis-py than '
                f'{redis.__version__}: upgrade it (pip install -U redis) or remove the option.',
            )
    return dict(redis_kwargs)


def check_arguments(
    hostname: Any,
    port: Any,
    db: Any,
    username: Any,
    password: Any,
    share_credentials: Any,
    timeout: Any,
    retries: Any,
) -> None:
    """Raise :class:`StoreConfigError` naming the first argument of a wrong type or range."""

    def fail(argument: str, accepted: str, value: Any) -> StoreConfigError:
        return StoreConfigError(
            f'RedisStore {argument} must be {accepted}, got {value!r} ({type(value).__name__}).',
        )

    if (
        not isinstance(hostname, str)
        or not hostname
        or any(c.isspace() or not c.isprintable() for c in hostname)
    ):
        raise fail('hostname', 'a non-empty host name or address (str, no spaces)', hostname)
    if not _is_int(port) or not 0 < port < 65536:
        raise fail('port', 'an int from 1 to 65535', port)
    if not _is_int(db) or db < 0:
        raise fail('db', 'an int >= 0 (a Redis database number)', db)
    if not _is_optional_str(username):
        raise fail('username', 'a str or None', username)
    if not _is_optional_str(password):
        raise fail('password', 'a str or None', password)
    if not _is_bool(share_credentials):
        raise fail('share_credentials', 'True or False', share_credentials)
    if (
        not (_is_int(timeout) or isinstance(timeout, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise fail('timeout', 'a finite number of seconds > 0', timeout)
    if not _is_int(retries) or retries < 0:
        raise fail('retries', 'an int >= 0', retries)


def check_cluster_arguments(cluster: Any, replicas_ack: Any, db: Any) -> None:
    """Raise :class:`StoreConfigError` for a bad ``cluster`` or ``replicas_ack``."""
    if not _is_bool(cluster):
        raise StoreConfigError(
            f'RedisStore cluster must be True or False, got {cluster!r} '
            f'({type(cluster).__name__}).',
        )
    if not _is_int(replicas_ack) or replicas_ack < 0:
        raise StoreConfigError(
            f'RedisStore replicas_ack must be an int >= 0 (replicas that must hold each write '
            f'before set returns), got {replicas_ack!r} ({type(replicas_ack).__name__}).',
        )
    if cluster and db != 0:
        raise StoreConfigError(
            f'RedisStore db must be 0 with cluster=True (a Redis Cluster has only database 0), '
            f'got {db!r}.',
        )
