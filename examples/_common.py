"""What the map-reduce examples share: options, the store, progress and the report."""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import as_completed
from typing import Any

import numpy as np

import proxystore as ps
from proxystore.proxy import is_proxy
from proxystore.store.base import Store

MB = 1024 * 1024


def parser(description: str) -> argparse.ArgumentParser:
    """Options every example takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument('-n', '--arrays', type=int, default=8, help='number of arrays (default 8)')
    p.add_argument(
        '-s', '--size-mb', type=float, default=10, help='size of each array in MB (default 10)'
    )
    p.add_argument(
        '--store',
        choices=['file', 'redis', 'redis-cluster'],
        default='file',
        help='file: an embedded store in a temporary directory (default); redis: a server; '
        'redis-cluster: a Redis Cluster (--redis-host/--redis-port name any node)',
    )
    p.add_argument(
        '--node-cache',
        action='store_true',
        help='read through one shared-memory copy per node (node_cache=True; see docs/scaling.md)',
    )
    p.add_argument('--redis-host', default='127.0.0.1')
    p.add_argument('--redis-port', type=int, default=6379)
    p.add_argument(
        '--threshold',
        type=int,
        default=100_000,
        help='proxy objects larger than this many bytes (default 100000)',
    )
    p.add_argument(
        '--no-proxy', action='store_true', help='baseline: send every object through the engine'
    )
    return p


class ExampleStore:
    """The example's store, removed again at exit (the file store's directory)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.tmp: str | None = None
        self.node_cache = bool(args.node_cache)
        options = {'node_cache': True} if self.node_cache else {}
        if args.store in ('redis', 'redis-cluster'):
            self.store: Store = ps.store.init_store(
                'redis',
                name='example',
                hostname=args.redis_host,
                port=args.redis_port,
                cluster=args.store == 'redis-cluster',
                **options,
            )
        else:
            self.tmp = tempfile.mkdtemp(prefix='proxystore-example-')
            self.store = ps.store.init_store('file', name='example', store_dir=self.tmp, **options)

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *exc: Any) -> None:
        # Intermediates are evicted once no longer needed: a finished run leaves nothing.
        left = None if self.tmp is None else [f for f in os.listdir(self.tmp) if f[0] != '.']
        if self.node_cache:
            self.store.cleanup()  # also drops this node's shared-memory copies
        else:
            self.store.close()
        if self.tmp is not None:
            if exc[0] is None:
                print(f'objects left in the store: {len(left or [])}')
            shutil.rmtree(self.tmp, ignore_errors=True)


def make_arrays(n: int, size_mb: float, seed: int = 0) -> list[np.ndarray]:
    """``n`` random float64 arrays of ``size_mb`` MB each."""
    rng = np.random.default_rng(seed)
    return [rng.random(int(size_mb * MB) // 8) for _ in range(n)]


def wire_size(obj: Any) -> int:
    """Bytes an object costs in the engine's own channel (its pickled size)."""
    if isinstance(obj, np.ndarray) and type(obj) is np.ndarray:
        return int(obj.nbytes)
    return len(pickle.dumps(obj, protocol=5))


class EngineCounter:
    """Count the bytes of task arguments an executor is given (its channel's load).

    Wraps the executor's ``submit`` so it sees exactly what the engine sends:
    proxies where ProxyStore replaced objects, whole objects elsewhere.

    Args:
        executor: A Parsl executor or a ``concurrent.futures.Executor``.
        skip: Leading positional arguments of ``submit`` after the function
            that are not task data (1 for Parsl's resource specification).
    """

    def __init__(self, executor: Any, skip: int = 0) -> None:
        self.nbytes = 0
        self._skip = skip
        self._submit = executor.submit
        executor.submit = self._counting_submit

    def _counting_submit(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        objects = [
            *args[self._skip :],
            *(v for k, v in kwargs.items() if k != 'inputs'),
            *kwargs.get('inputs', ()),
        ]
        self.nbytes += sum(wire_size(o) for o in objects)
        return self._submit(func, *args, **kwargs)


def wait_with_progress(futures: Iterable[Future[Any]], label: str) -> None:
    """Wait for ``futures``, showing ``label k/N`` as they finish."""
    futures = list(futures)
    tty = sys.stderr.isatty()
    for done, _ in enumerate(as_completed(futures), start=1):
        if tty:
            print(f'\r{label}: {done}/{len(futures)}', end='', file=sys.stderr, flush=True)
        elif done == len(futures) or done % max(1, len(futures) // 4) == 0:
            print(f'{label}: {done}/{len(futures)}', file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)


def store_bytes(args: argparse.Namespace, arrays: list[np.ndarray], results: list[Any]) -> int:
    """Bytes that traveled through the store: large arguments, and every result
    that came back as a proxy (as large as its input)."""
    if args.no_proxy:
        return 0
    proxied_args = sum(a.nbytes for a in arrays if a.nbytes > args.threshold)
    return proxied_args + sum(a.nbytes for a, r in zip(arrays, results) if is_proxy(r))


def report(
    args: argparse.Namespace,
    name: str,
    total: float,
    expected: float,
    start: float,
    engine_bytes: int,
    store_bytes: int,
) -> None:
    """Print the result and the closing line: wall time and bytes per channel."""
    name = f'{name} ({"no proxies" if args.no_proxy else "auto-proxy"})'
    if not np.isclose(total, expected):
        raise SystemExit(f'{name}: wrong sum {total} (expected {expected})')
    print(f'sum = {total:.6f} (correct)')
    print(
        f'{name}: wall time {time.perf_counter() - start:.2f} s; '
        f'engine channel {engine_bytes / MB:.3f} MB; store {store_bytes / MB:.3f} MB',
    )
