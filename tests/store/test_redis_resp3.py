"""RESP3 push frames never reach RedisStore's reply reader as replies.

The store asks redis-py for RESP2 (redis-py 8 defaults to RESP3), and a
RESP2 connection that is not subscribed receives no pushes. The reader still
skips ``>`` pushes and ``|`` attributes, so a RESP3 connection (``HELLO 3``)
with client tracking on reads the right reply after an invalidation.
"""

from __future__ import annotations

import os
import select
import socket
from typing import Any

import pytest

redis = pytest.importorskip('redis')

from proxystore.connectors import redis_replies  # noqa: E402
from proxystore.connectors import redis_wire  # noqa: E402
from proxystore.store.redis import RedisStore  # noqa: E402


def _raw(address: tuple[str, int]) -> tuple[socket.socket, Any]:
    sock = socket.create_connection(address, timeout=10)
    return sock, redis_replies.ReplyReader(sock)


def test_store_connections_speak_resp2(redis_address: tuple[str, int]) -> None:
    store = RedisStore('resp', hostname=redis_address[0], port=redis_address[1])
    store.set(b'x', serialize=False)  # opens a connection the fast path uses
    info = store.connector._client.execute_command('CLIENT', 'INFO')
    assert b'resp=2' in info.split()


def test_reader_skips_a_tracking_invalidation_push(redis_address: tuple[str, int]) -> None:
    """A real server's push (``HELLO 3``, ``CLIENT TRACKING on``, a write by another client)."""
    store = RedisStore('push', hostname=redis_address[0], port=redis_address[1])
    key = store.set(b'payload', serialize=False)
    tracked = f'tracked-{os.urandom(4).hex()}'
    sock, reader = _raw(redis_address)
    try:
        sock.sendall(redis_wire.command(b'HELLO', b'3'))
        assert reader.reply()[:1] == b'%'  # a RESP3 map, skipped whole
        sock.sendall(redis_wire.command(b'CLIENT', b'TRACKING', b'ON'))
        assert reader.reply() == b'OK'
        sock.sendall(redis_wire.command(b'GET', tracked.encode()))
        assert reader.reply() == b'_'  # RESP3 null: the key is now tracked
        redis.Redis(host=redis_address[0], port=redis_address[1]).set(tracked, b'new')
        assert select.select([sock], [], [], 10)[0], 'no invalidation was pushed'
        sock.sendall(redis_wire.command(b'GET', key.encode()))
        reply = reader.read_value(0)  # the push arrived first; before: "did not write"
        assert reply is not None and bytes(reply[0]) == b'payload'
        assert reply[1] == store.connector.version(key)
        sock.sendall(redis_wire.command(b'PING'))
        assert reader.reply() == b'PONG'  # in step: nothing of the push was left behind
    finally:
        reader.close()
        sock.close()


class _Bytes:
    """A socket stand-in for the reader's unit test: serves fixed bytes, a few at a time."""

    def __init__(self, data: bytes) -> None:
        import io

        self._data = io.BytesIO(data)

    def recv_into(self, view: memoryview) -> int:
        return self._data.readinto(view[:7])  # short reads: lines split across receives


@pytest.mark.parametrize(
    'before',
    [
        b'>2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n',
        b'>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-1\r\n',
        b'|1\r\n+ttl\r\n:3\r\n',  # an attribute, then its reply
        b'>4\r\n+MOVING\r\n:1\r\n%1\r\n+a\r\n~2\r\n#t\r\n,1.5\r\n=7\r\ntxt:abc\r\n',
    ],
)
def test_reader_skips_push_and_attribute_frames(before: bytes) -> None:
    head = redis_wire.HEAD.pack(b'PXSV', 3, b't' * 16)
    reply = b'*2\r\n$28\r\n' + head + b'\r\n$3\r\nabc\r\n'
    reader = redis_replies.ReplyReader(_Bytes(before + reply + before + b'+OK\r\n'))
    result = reader.read_list(0)
    assert result is not None and bytes(result[0]) == b'abc' and result[1] == b't' * 16
    assert reader.reply() == b'OK'
