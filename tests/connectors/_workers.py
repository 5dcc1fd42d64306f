"""Functions the node-tier tests run in other processes (``fork`` and ``spawn``).

A worker gets either the parent's connector (``fork``: inherited, then
``after_fork()``) or its ``config()`` (``spawn``: rebuilt, as a remote worker
would), and reports through a queue.
"""

from __future__ import annotations

import hashlib
import os
import resource
import traceback
from typing import Any

from proxystore.connectors.node import NodeConnector


def connector(node: NodeConnector | dict[str, Any]) -> NodeConnector:
    if isinstance(node, dict):
        return NodeConnector(**node)
    node.after_fork()
    return node


def read(node: Any, key: str, barrier: Any, queue: Any) -> None:
    """Wait at ``barrier`` (so first reads are concurrent), read ``key``, report its digest."""
    try:
        c = connector(node)
        if barrier is not None:
            barrier.wait(60)
        entry = c.get(key)
        digest = None if entry is None else hashlib.sha256(entry[0]).hexdigest()
        queue.put((os.getpid(), digest))
    except BaseException:
        queue.put((os.getpid(), traceback.format_exc()))


def read_many_under_fd_limit(config: dict[str, Any], keys: list[str], limit: int) -> dict[str, Any]:
    """Read every key, keeping all of them, with ``RLIMIT_NOFILE`` lowered to ``limit``."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    c = NodeConnector(**config)
    before = len(os.listdir('/proc/self/fd'))
    kept = []
    for key in keys:
        entry = c.get(key)
        assert entry is not None
        kept.append(entry[0])
    after = len(os.listdir('/proc/self/fd'))
    digests = [hashlib.sha256(data).hexdigest() for data in kept]
    return {'before': before, 'after': after, 'digests': digests}


def read_under_file_size_limit(config: dict[str, Any], key: str, limit: int) -> str | None:
    """Read ``key`` under ``RLIMIT_FSIZE`` = ``limit`` (SIGXFSZ ignored): publishing fails."""
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    entry = NodeConnector(**config).get(key)
    return None if entry is None else hashlib.sha256(entry[0]).hexdigest()


def read_keys(node: Any, keys: list[str], seed: int) -> dict[str, Any]:
    """Read the keys in a random order, 3 times; report digests and the copies' total size."""
    import random

    c = connector(node)
    rng = random.Random(seed)
    digests: dict[str, str] = {}
    totals = []
    for _ in range(3):
        for key in rng.sample(keys, len(keys)):
            entry = c.get(key)
            assert entry is not None
            digests[key] = hashlib.sha256(entry[0]).hexdigest()
            names = os.listdir(c.directory)
            totals.append(
                sum(
                    _size(os.path.join(c.directory, n))
                    for n in names
                    if len(n) == 40 and not n.startswith('.')
                )
            )
    return {'digests': digests, 'totals': totals}


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def report(queue: Any, fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` and put its result (or the traceback) on ``queue``."""
    try:
        queue.put(fn(*args))
    except BaseException:
        queue.put(traceback.format_exc())


def read_after_fork(node: NodeConnector, key: str, go: Any, queue: Any) -> None:
    """In a forked child: ``after_fork()``, report, wait for ``go``, then read ``key``."""
    try:
        node.after_fork()
        queue.put('forked')
        go.wait(60)
        entry = node.get(key)
        queue.put(None if entry is None else hashlib.sha256(entry[0]).hexdigest())
    except BaseException:
        queue.put(traceback.format_exc())


def resolve_and_sum(pickled: bytes) -> float:
    """Unpickle a proxy in this process and sum the array it resolves to."""
    import pickle

    import numpy as np

    return float(np.sum(pickle.loads(pickled)))
