"""Whether the Redis connector's fast path can run on a redis-py connection.

The fast path frames commands itself and reads replies from the socket
(:mod:`~proxystore.connectors.redis_wire`,
:mod:`~proxystore.connectors.redis_replies`), which needs private redis-py
surface: a connection's ``_sock``. The first connection of each class and
redis-py version is probed (:func:`fast_path_supported`); if the probe fails,
or ``PROXYSTORE_REDIS_FAST_PATH=0`` is set (:func:`fast_path_wanted`), the
connector sends the same commands through redis-py's public calls. Internal to
the Redis connector.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any

import redis

from proxystore.connectors.redis_replies import ReplyReader
from proxystore.connectors.redis_wire import CONNECTION_ERRORS
from proxystore.connectors.redis_wire import command

__all__ = ['fast_path_supported', 'fast_path_wanted']

# The connector's logger: its fallback warning keeps the name users filter on.
logger = logging.getLogger('proxystore.connectors.redis')

#: Set to ``0`` to make the Redis connector use only redis-py's public connection calls.
_FAST_PATH_ENV = 'PROXYSTORE_REDIS_FAST_PATH'
#: Methods of a redis-py connection the fast path calls, besides the private ``_sock``.
_FAST_PATH_METHODS = ('connect', 'disconnect', 'send_packed_command', 'read_response')
#: Outcome of ``_probe_fast_path`` per connection class and redis-py version.
_FAST_PATH_SUPPORT: dict[tuple[type, str], bool] = {}


def fast_path_wanted() -> bool:
    """False if ``PROXYSTORE_REDIS_FAST_PATH`` turns the fast path off (``0``, ``false``...)."""
    value = os.environ.get(_FAST_PATH_ENV, '').strip().lower()
    return value not in ('0', 'false', 'no', 'off')


def _probe_fast_path(connection: Any) -> bool:
    """Check that ``connection`` has the private surface the fast path uses, and that it works.

    The fast path frames commands itself, sends them with
    ``send_packed_command`` (raw buffers, unchanged) and reads replies from
    the connection's private ``_sock``. A ``PING`` sent and read that way
    must come back as ``+PONG`` (or an error reply, e.g. an ACL refusal).
    Connection errors propagate (the caller retries); any other surprise
    means the surface differs: False.
    """
    if not all(callable(getattr(connection, m, None)) for m in _FAST_PATH_METHODS):
        return False
    if not hasattr(connection, '_sock'):
        return False
    connection.connect()
    sock = getattr(connection, '_sock', None)
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return False
    connection.send_packed_command([memoryview(command(b'PING'))])
    reader = ReplyReader(sock)
    try:
        reply = reader.reply()
    finally:
        reader.close()
    return reply == b'PONG' or isinstance(reply, redis.exceptions.ResponseError)


def fast_path_supported(connection: Any) -> bool:
    """``_probe_fast_path``, run once per connection class and redis-py version.

    A failed probe leaves the connection in an unknown state: it is closed
    (redis-py reconnects it on its next command).
    """
    key = (type(connection), redis.__version__)
    supported = _FAST_PATH_SUPPORT.get(key)
    if supported is None:
        try:
            supported = _probe_fast_path(connection)
        except CONNECTION_ERRORS:
            raise
        except (redis.exceptions.RedisError, AttributeError, TypeError, ValueError) as e:
            logger.debug('Redis fast path probe failed: %r', e)
            supported = False
        if not supported:
            logger.warning(
                'redis-py %s (%s) differs from what the Redis connector fast path expects: '
                'using plain redis-py calls (slower for large objects).',
                redis.__version__,
                key[0].__qualname__,
            )
            with contextlib.suppress(Exception):
                connection.disconnect()
        _FAST_PATH_SUPPORT[key] = supported
    return supported
