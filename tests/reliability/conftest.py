"""Fixtures of the fault-injection and stress suite: private servers to kill, small disks."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability._helpers import RedisServer
from tests.reliability._helpers import skip_or_fail

REDIS_SERVER = shutil.which('redis-server') or (
    '/usr/bin/redis-server' if os.path.exists('/usr/bin/redis-server') else None
)


@pytest.fixture
def redis_binary() -> str:
    if REDIS_SERVER is None:
        skip_or_fail('redis-server is not installed')
    assert REDIS_SERVER is not None
    return REDIS_SERVER


@pytest.fixture
def redis_factory(redis_binary: str, tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private redis-servers (free port, own dir) the test may kill; stopped after."""
    servers: list[RedisServer] = []

    def make(*, aof: bool = True, extra: tuple[str, ...] = ()) -> RedisServer:
        server = RedisServer(redis_binary, tmp_path / f'redis-{len(servers)}', aof=aof, extra=extra)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def private_redis(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A private redis-server with an fsync-always append-only file (durable across SIGKILL)."""
    return redis_factory()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs mounted under tmp_path (skipped only if mounting is not permitted)."""
    mount_point = tmp_path / 'tmpfs'
    mount_point.mkdir()
    mount = shutil.which('mount')
    if mount is None:
        pytest.skip('no mount command')
    result = subprocess.run(
        [mount, '-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', str(mount_point)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f'mounting a tmpfs is not permitted here: {result.stderr.strip()}')
    try:
        yield mount_point
    finally:
        umount = shutil.which('umount') or 'umount'
        done = subprocess.run(
            [umount, str(mount_point)], capture_output=True, timeout=30, check=False
        )
        if done.returncode != 0:
            with contextlib.suppress(Exception):
                subprocess.run(
                    [umount, '-l', str(mount_point)], capture_output=True, timeout=30, check=False
                )
