"""Helpers shared by the reliability tests and the processes they spawn.

Nothing here imports pytest or numpy at module level, so spawned workers that
import this module start quickly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

LOCALHOST = '127.0.0.1'


def in_ci() -> bool:
    """Whether the suite runs in CI (where missing resources fail instead of skip)."""
    return bool(os.environ.get('CI'))


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail in CI (``CI`` set), where every resource must be present."""
    import pytest

    if in_ci():
        pytest.fail(f'{reason} (CI must provide it)')
    pytest.skip(reason)


def _ephemeral_low() -> int:
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port below the ephemeral range.

    Servers here are killed and restarted on the same port; a port outside the
    ephemeral range cannot be taken meanwhile by an outgoing connection.
    """
    high = max(_ephemeral_low() - 1, 12000)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(11000, high)
        with socket.socket() as s:
            try:
                s.bind((LOCALHOST, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # pragma: no cover - fallback
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def sha256(data: Any) -> str:
    """Hex SHA-256 of any contiguous buffer (numpy arrays included), without copying."""
    return hashlib.sha256(memoryview(data).cast('B')).hexdigest()


class RedisServer:
    """A private ``redis-server`` that tests can kill, stop and restart on one port and dir."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        aof: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.extra = extra
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = f'{LOCALHOST}:{self.port}'
        self._started_once = False

    def _args(self, extra: tuple[str, ...]) -> list[str]:
        args = [
            self.binary,
            '--port',
            str(self.port),
            '--bind',
            LOCALHOST,
            '--dir',
            str(self.directory),
            '--save',
            '',
            '--daemonize',
            'no',
            '--protected-mode',
            'no',
            '--logfile',
            str(self.directory / 'redis.log'),
        ]
        if self.aof:
            args += ['--appendonly', 'yes', '--appendfsync', 'always']
        return args + list(self.extra) + list(extra)

    def start(self, *, extra: tuple[str, ...] = (), wait: bool = True, timeout: float = 20) -> None:
        """Start (or restart) the server on the same port and directory."""
        assert self.proc is None or self.proc.poll() is not None, 'server already running'
        for attempt in range(3):
            self.proc = subprocess.Popen(
                self._args(extra),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if not wait:
                return
            try:
                self.wait_ready(timeout)
                return
            except RuntimeError:
                # A first start may lose a race for its port: pick another one.
                if self.proc.poll() is None or attempt == 2 or self._started_once:
                    raise
                self.port = free_port()
                self.address = f'{LOCALHOST}:{self.port}'
        raise AssertionError('unreachable')  # pragma: no cover

    def ping(self, timeout: float = 0.5) -> bytes | None:
        """The first reply line to PING (``b'+PONG'``, ``b'-LOADING ...'``) or None."""
        try:
            with socket.create_connection((LOCALHOST, self.port), timeout=timeout) as s:
                s.sendall(b'*1\r\n$4\r\nPING\r\n')
                reply = b''
                while not reply.endswith(b'\r\n'):
                    chunk = s.recv(256)
                    if not chunk:
                        return None
                    reply += chunk
                return reply.strip()
        except OSError:
            return None

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f'redis-server on port {self.port} exited with {self.proc.returncode}: '
                    f'{self.log_tail()}',
                )
            if self.ping() == b'+PONG':
                self._started_once = True
                return
            time.sleep(0.01)
        raise RuntimeError(f'redis-server on port {self.port} not ready in {timeout}s')

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return '\n'.join((self.directory / 'redis.log').read_text().splitlines()[-lines:])
        return ''

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone (its port is closed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server however it is (stopped processes are continued first)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
        self.kill()


def content_hash(obj: Any) -> str:
    """A hash of an object's content and structure (arrays, bytes, str, containers)."""
    h = hashlib.sha256()

    def feed(o: Any) -> None:
        h.update(type(o).__name__.encode())
        if isinstance(o, (bytes, bytearray, memoryview)):
            view = memoryview(o).cast('B')
            h.update(b'%d:' % view.nbytes)
            h.update(view)
        elif isinstance(o, str):
            feed(o.encode('utf-8', 'surrogatepass'))
        elif isinstance(o, (int, float, bool)) or o is None:
            h.update(repr(o).encode())
        elif isinstance(o, (list, tuple)):
            h.update(b'%d[' % len(o))
            for item in o:
                feed(item)
        elif isinstance(o, dict):
            h.update(b'%d{' % len(o))
            for k in sorted(o, key=repr):
                feed(k)
                feed(o[k])
        elif hasattr(o, '__array_interface__'):  # numpy array, without importing numpy
            h.update(f'{o.dtype.str}{o.shape}'.encode())
            feed(memoryview(o.tobytes() if not o.flags.c_contiguous else o).cast('B'))
        else:
            raise TypeError(f'content_hash: unsupported {type(o).__name__}')

    feed(obj)
    return h.hexdigest()


def patterned_array(nbytes: int, seed: int = 0) -> Any:
    """A uint8 array of ``nbytes`` built fast: random 1 MiB rows, each stamped with its index.

    The stamp makes every MiB distinct, so swapped, duplicated or dropped
    chunks change the content hash.
    """
    import numpy as np

    row = 1 << 20
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, row, dtype=np.uint8)
    out = np.empty(nbytes, dtype=np.uint8)
    full = nbytes // row
    if full:
        rows = out[: full * row].reshape(full, row)
        rows[:] = base
        rows[:, :8] = np.arange(full, dtype='<u8').view(np.uint8).reshape(full, 8)
    tail = nbytes - full * row
    if tail:
        out[full * row :] = base[:tail][::-1]
    return out
