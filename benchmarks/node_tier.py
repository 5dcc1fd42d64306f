"""N processes on a node resolving the same large array from Redis, with and without the node tier.

Run ``.venv/bin/python benchmarks/node_tier.py`` (``--help`` for options). For
N = 1, 2, 4, 8 reader processes, each one fetches the same 100 MB float64
array and sums it, all started together: each gets a pickled proxy, and
resolving it rebuilds the store (a ``RedisStore``, or a store over
``NodeConnector(RedisConnector(...))``). Measured are the wall time until
every reader has summed (first start to last finish, on the system-wide
monotonic clock) and how many bytes Redis sent (``total_net_output_bytes``
of ``INFO stats``). Every round stores the array under a new key, so no
cache or node copy of an earlier round is used. See ``benchmarks/README.md``
for the protocol.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import time
import uuid
from multiprocessing import get_context
from typing import Any

import common
import numpy as np
import redis

import proxystore as ps
from proxystore.connectors.node import NodeConnector
from proxystore.connectors.redis import RedisConnector
from proxystore.store.base import Store

TARGET_BYTES_8 = 1.2  # 8 readers: Redis bytes <= 1.2 x the object
TARGET_TIME_8 = 0.5  # 8 readers: wall time <= 0.5 x without the tier
TARGET_TIME_1 = 1.1  # 1 reader: wall time <= 1.1 x without the tier


# -- reader processes --------------------------------------------------------------------


def _reader(commands: Any, barrier: Any, results: Any) -> None:
    """For each pickled proxy: wait for all readers, resolve it and sum the array, report."""
    results.put('ready')
    while True:
        pickled = commands.get()
        if pickled is None:
            break
        proxy = pickle.loads(pickled)
        barrier.wait()
        start = time.monotonic()
        total = float(np.sum(proxy))  # resolves: fetch (or map the node copy), deserialize
        end = time.monotonic()
        del proxy
        results.put((start, end, total))


def _net_output(client: redis.Redis) -> int:
    return int(client.info('stats')['total_net_output_bytes'])


def _clear(directory: str) -> None:
    """Remove every node copy, so the next round starts cold (the directory stays)."""
    for name in os.listdir(directory):
        if name != '.lock':
            os.unlink(os.path.join(directory, name))


class _Readers:
    """``n`` spawned reader processes, started before any timing; both columns use them."""

    def __init__(self, n: int) -> None:
        ctx = get_context('spawn')
        self.results = ctx.Queue()
        barrier = ctx.Barrier(n)
        self.queues = [ctx.Queue() for _ in range(n)]
        self.procs = [
            ctx.Process(target=_reader, args=(q, barrier, self.results)) for q in self.queues
        ]
        for p in self.procs:
            p.start()
        for _ in self.procs:
            assert self.results.get(timeout=300) == 'ready'

    def round(
        self, store: Store, array: np.ndarray, expected: float, client: redis.Redis
    ) -> tuple[float, int]:
        """(wall seconds from the first start to the last sum, bytes Redis sent) of one round."""
        key = store.set(array)
        pickled = pickle.dumps(store.proxy(key=key))
        try:
            before = _net_output(client)
            for q in self.queues:
                q.put(pickled)
            reports = [self.results.get(timeout=600) for _ in self.procs]
            after = _net_output(client)
        finally:
            store.evict(key)  # through the tier: also removes this node's copy
        assert all(abs(r[2] - expected) < 1e-6 * abs(expected) for r in reports), reports
        return max(r[1] for r in reports) - min(r[0] for r in reports), after - before

    def stop(self) -> None:
        for q in self.queues:
            q.put(None)
        for p in self.procs:
            p.join(60)


def run_readers(
    stores: dict[str, Store],
    n: int,
    array: np.ndarray,
    expected: float,
    client: redis.Redis,
    repeat: int,
    warmup: int,
) -> dict[str, float]:
    """Medians for ``n`` readers without and with the tier, their rounds interleaved.

    The same reader processes resolve both; alternating the two (and which
    goes first) spreads the machine's other load over both columns alike.
    """
    readers = _Readers(n)
    results: dict[str, list[float]] = {k: [] for k in ('plain', 'node')}
    sent: dict[str, list[float]] = {k: [] for k in ('plain', 'node')}
    try:
        for round_ in range(warmup + repeat):
            order = ('plain', 'node') if round_ % 2 == 0 else ('node', 'plain')
            for kind in order:
                wall, nbytes = readers.round(stores[kind], array, expected, client)
                if round_ >= warmup:
                    results[kind].append(wall)
                    sent[kind].append(nbytes)
    finally:
        readers.stop()
    return {
        'readers': n,
        'plain_time': common.median(results['plain']),
        'node_time': common.median(results['node']),
        'plain_bytes': common.median(sent['plain']),
        'node_bytes': common.median(sent['node']),
    }


def read_costs(
    inner: RedisConnector, node: NodeConnector, key: str, parts: Any, repeat: int
) -> dict[str, float]:
    """Per-read costs in this process (connector level, no deserialization).

    The lone first read (a new version, read by this process only: no copy is
    written) and the plain Redis read of the same version take turns (and turns
    at going first), so both see the same load.
    """

    def timed(fn: Any) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    lone: list[float] = []
    remote: list[float] = []
    for i in range(repeat):
        node.put(key, parts)  # a new version: the next read through the tier is a first read
        pairs = [(lone, node.get), (remote, inner.get)]
        for times, get in pairs if i % 2 == 0 else pairs[::-1]:  # alternate which goes first
            times.append(timed(lambda get=get: get(key)))
    node.get(key)  # the second read of this version publishes it (min_readers=2)
    return {
        'version check (one round trip)': common.median(
            [timed(lambda: node.version(key)) for _ in range(repeat)]
        ),
        'get, node copy (check + map)': common.median(
            [timed(lambda: node.get(key)) for _ in range(repeat)]
        ),
        'get, straight from Redis': common.median(remote),
        'get, lone first read through the tier': common.median(lone),
    }


def plot(rows: list[dict[str, float]], size: int, path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f'\nmatplotlib is not installed: skipping the plot ({path}).')
        return
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    readers = [int(r['readers']) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for column, label, style in (('plain', 'without node tier', 'o-'), ('node', 'node tier', 's-')):
        left.plot(readers, [r[f'{column}_time'] for r in rows], style, label=label)
        right.plot(readers, [r[f'{column}_bytes'] / size for r in rows], style, label=label)
    right.plot(readers, [TARGET_BYTES_8] * len(readers), 'k:', label='target at 8 readers (1.2x)')
    left.set_title(f'wall time until all readers summed a {common.format_size(size)} array')
    left.set_ylabel('seconds (median)')
    right.set_title('bytes Redis sent, in objects')
    right.set_ylabel('bytes sent / object size')
    for ax in (left, right):
        ax.set_xlabel('reader processes on the node')
        ax.set_xticks(readers)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', default='100MB', help='array size (default 100MB)')
    parser.add_argument('--readers', default='1,2,4,8', help='reader counts (default 1,2,4,8)')
    parser.add_argument(
        '--plot',
        default=os.path.join(common.RESULTS_DIR, 'node_tier.png'),
        help="where to write the plot ('' for none)",
    )
    common.add_protocol_args(parser, repeat=3, warmup=1)
    args = parser.parse_args()
    size = common.parse_size(args.size)
    counts = [int(n) for n in args.readers.split(',')]

    common.print_machine_report({'object': f'{common.format_size(size)} float64 array'})
    array = np.random.default_rng(0).random(size // 8)
    expected = float(np.sum(array))
    node_root = f'/dev/shm/proxystore-bench-{uuid.uuid4().hex}'
    rows: list[dict[str, float]] = []
    tag = uuid.uuid4().hex[:8]
    with common.redis_server() as (host, port):
        # No cache in the readers: every round is a fresh read (a new key anyway).
        stores: dict[str, Store] = {
            'plain': ps.store.init_store(
                'redis', name=f'plain-{tag}', hostname=host, port=port, cache_size=0
            ),
            'node': ps.store.init_store(
                Store,
                name=f'node-{tag}',
                connector=NodeConnector(RedisConnector(host, port), directory=node_root),
                cache_size=0,
            ),
        }
        client = redis.Redis(host=host, port=port)
        inner = RedisConnector(host, port)
        node = NodeConnector(RedisConnector(host, port), directory=node_root)
        key = f'array-{tag}'
        try:
            for n in counts:
                repeat = args.repeat * max(1, 8 // n)  # short rounds: more of them
                rows.append(run_readers(stores, n, array, expected, client, repeat, args.warmup))
                print(f'  {n} readers done', file=sys.stderr)
            costs = read_costs(
                inner, node, key, stores['plain'].serialize(array), max(args.repeat, 5) * 4
            )
        finally:
            client.close()
            inner.evict(key)
            for store in stores.values():
                store.cleanup()
            shutil.rmtree(node_root, ignore_errors=True)

    table = []
    for r in rows:
        n = int(r['readers'])
        time_ratio = r['node_time'] / r['plain_time']
        target = {1: f'<= {TARGET_TIME_1}x', 8: f'<= {TARGET_TIME_8}x'}.get(n, '')
        bytes_target = f'<= {TARGET_BYTES_8}x' if n == 8 else ''
        table.append(
            [
                n,
                common.format_time(r['plain_time']),
                common.format_time(r['node_time']),
                f'{time_ratio:.2f}x',
                target,
                f'{r["plain_bytes"] / size:.2f}x',
                f'{r["node_bytes"] / size:.2f}x',
                bytes_target,
            ]
        )
    common.print_table(
        [
            'readers',
            'time, plain',
            'time, node tier',
            'ratio',
            'target',
            'Redis bytes, plain',
            'Redis bytes, node tier',
            'target',
        ],
        table,
        title=(
            f'{common.format_size(size)} array, N processes resolve and sum it; wall time and '
            'Redis bytes sent (in objects) are medians'
        ),
    )
    lone = costs['get, lone first read through the tier'] / costs['get, straight from Redis']
    common.print_table(
        ['per read, one process', 'median'],
        [[name, common.format_time(value)] for name, value in costs.items()]
        + [['lone first read / straight from Redis', f'{lone:.2f}x']],
        title='What the tier costs one reader (connector level, no deserialization)',
    )
    if args.plot:
        plot(rows, size, args.plot)
        print(f'\nplot: {args.plot}')


if __name__ == '__main__':
    main()
