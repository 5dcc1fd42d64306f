"""Real Redis Clusters on free loopback ports, for the cluster tests.

Each cluster is ``redis-server --cluster-enabled yes`` x N on 127.0.0.1 in its
own temporary directory, joined with ``redis-cli --cluster create``; nothing
is persisted and every process is killed at teardown. Ports are chosen by the
OS (the cluster bus port, ``port + 10000``, must be free too) and a node that
fails to bind is restarted on another port, so xdist workers never collide.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = shutil.which('redis-server') or (
    '/usr/bin/redis-server' if os.path.exists('/usr/bin/redis-server') else None
)
REDIS_CLI = shutil.which('redis-cli') or (
    '/usr/bin/redis-cli' if os.path.exists('/usr/bin/redis-cli') else None
)
#: Milliseconds without a reply before a node is marked failed (and a replica
#: promoted). Short, so the failover tests are quick; the production default is 15000.
NODE_TIMEOUT_MS = 1000


def _free_port() -> int:
    """A port whose cluster bus port (``+10000``) was free a moment ago as well."""
    while True:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = int(s.getsockname()[1])
        if port + 10000 >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port + 10000))
            except OSError:
                continue
        return port


def _command(port: int, *args: str, timeout: float = 5.0) -> str:
    """Run one command with redis-cli against a node; its reply as text."""
    assert REDIS_CLI is not None
    done = subprocess.run(
        [REDIS_CLI, '-h', '127.0.0.1', '-p', str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout


class Node:
    """One ``redis-server`` of a cluster, in its own directory."""

    def __init__(self, directory: Path, extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.extra = extra
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f'127.0.0.1:{self.port}'

    def start(self, attempts: int = 10) -> None:
        assert REDIS_SERVER is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            self.port = _free_port()
            # Reuse the node's identity (nodes.conf) when restarted.
            self.proc = subprocess.Popen(
                [
                    REDIS_SERVER,
                    '--bind',
                    '127.0.0.1',
                    '--port',
                    str(self.port),
                    '--cluster-enabled',
                    'yes',
                    '--cluster-config-file',
                    str(self.directory / 'nodes.conf'),
                    '--cluster-node-timeout',
                    str(NODE_TIMEOUT_MS),
                    # Slots of a dead master without replicas fail; the others keep serving.
                    '--cluster-require-full-coverage',
                    'no',
                    '--dir',
                    str(self.directory),
                    '--save',
                    '',
                    '--appendonly',
                    'no',
                    '--loglevel',
                    'warning',
                    '--logfile',
                    str(self.directory / 'redis.log'),
                    *self.extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _command(self.port, 'PING').strip() == 'PONG':
                    return
                time.sleep(0.05)
            self.kill()  # port taken between choosing and binding: retry elsewhere
        raise RuntimeError(f'redis-server did not start after {attempts} attempts')

    def kill(self) -> None:
        """SIGKILL: the node dies at once, as on a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def info(self, section: str) -> dict[str, str]:
        text = _command(self.port, 'INFO', section)
        return dict(
            line.split(':', 1) for line in text.splitlines() if ':' in line and line[0] != '#'
        )

    def cluster_info(self) -> dict[str, str]:
        text = _command(self.port, 'CLUSTER', 'INFO')
        return dict(line.split(':', 1) for line in text.splitlines() if ':' in line)

    def node_id(self) -> str:
        return _command(self.port, 'CLUSTER', 'MYID').strip()

    def slots(self) -> set[int]:
        """Slots this node serves, from its own ``CLUSTER NODES`` line."""
        for line in self('CLUSTER', 'NODES').splitlines():
            fields = line.split()
            if 'myself' in fields[2]:
                slots: set[int] = set()
                for part in fields[8:]:
                    if part.startswith('['):
                        continue  # a migrating/importing marker
                    start, _, end = part.partition('-')
                    slots.update(range(int(start), int(end or start) + 1))
                return slots
        return set()

    def __call__(self, *args: str) -> str:
        return _command(self.port, *args)


class Cluster:
    """A running cluster: ``masters`` x (1 + ``replicas``) nodes."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 0) -> None:
        self.directory = directory
        self.nodes = [Node(directory / f'node-{i}') for i in range(masters * (1 + replicas))]
        self.replicas = replicas

    @property
    def host(self) -> str:
        return '127.0.0.1'

    @property
    def port(self) -> int:
        """Entry point: any live node."""
        return next(n.port for n in self.nodes if n.alive)

    def start(self) -> None:
        assert REDIS_CLI is not None
        for node in self.nodes:
            node.start()
        done = subprocess.run(
            [
                REDIS_CLI,
                '--cluster',
                'create',
                *(n.address for n in self.nodes),
                '--cluster-replicas',
                str(self.replicas),
                '--cluster-yes',
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f'redis-cli --cluster create failed: {done.stdout}{done.stderr}')
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and replicas are in sync."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.alive]
            if all(n.cluster_info().get('cluster_state') == 'ok' for n in live) and all(
                n.info('replication').get('master_link_status', 'up') == 'up' for n in live
            ):
                return
            time.sleep(0.1)
        raise RuntimeError('the cluster did not reach cluster_state:ok')

    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.alive and n.info('replication').get('role') == 'master']

    def node_of(self, key: str) -> Node:
        """The live master serving ``key``'s slot now."""
        slot = self.keyslot(key)
        for node in self.masters():
            if slot in node.slots():
                return node
        raise LookupError(f'no live master serves slot {slot}')

    def keyslot(self, key: str) -> int:
        return int(next(n for n in self.nodes if n.alive)('CLUSTER', 'KEYSLOT', key))

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def skip_without_redis() -> None:
    if REDIS_SERVER is None or REDIS_CLI is None:
        if os.environ.get('CI'):
            pytest.fail('redis-server/redis-cli are not installed; .ci/run must install them.')
        pytest.skip('redis-server/redis-cli are not installed')


@contextlib.contextmanager
def running_cluster(directory: Path, masters: int = 3, replicas: int = 0) -> Iterator[Cluster]:
    """Start a cluster, yield it, and kill every node afterwards."""
    skip_without_redis()
    cluster = Cluster(directory, masters, replicas)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope='session')
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three masters, no replicas, private to this xdist worker (shared by its tests)."""
    with running_cluster(tmp_path_factory.mktemp('cluster')) as cluster:
        yield cluster


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three masters, no replicas, for one test (which may kill nodes)."""
    with running_cluster(tmp_path / 'cluster') as cluster:
        yield cluster


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three masters with one replica each, for one test (which may kill nodes)."""
    with running_cluster(tmp_path / 'cluster', replicas=1) as cluster:
        yield cluster


def entry(cluster: Cluster) -> dict[str, Any]:
    """``hostname``/``port`` keyword arguments naming any live node."""
    return {'hostname': cluster.host, 'port': cluster.port}
