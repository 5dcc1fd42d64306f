"""N processes on a node resolving the same large array from Redis, with and without the node tier.

Run ``.venv/bin/python benchmarks/node_tier.py`` (``--help`` for options). For
N = 1, 2, 4, 8 reader processes, each one fetches the same 100 MB float64
array and sums it, all started together; measured are the wall time until
every reader has summed (first start to last finish, on the system-wide
monotonic clock) and how many bytes Redis sent (``total_net_output_bytes``
of ``INFO stats``). Each round starts with no node copy. See
``benchmarks/README.md`` for the protocol.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from multiprocessing import get_context
from typing import Any

import common
import numpy as np
import redis
from _redis_bridge import RedisStoreConnector

from proxystore.connectors.node import NodeConnector
from proxystore.serialize import deserialize
from proxystore.serialize import serialize_parts

TARGET_BYTES_8 = 1.2  # 8 readers: Redis bytes <= 1.2 x the object
TARGET_TIME_8 = 0.5  # 8 readers: wall time <= 0.5 x without the tier
TARGET_TIME_1 = 1.1  # 1 reader: wall time <= 1.1 x without the tier


# -- reader processes --------------------------------------------------------------------


def _reader(kind: str, config: dict[str, Any], commands: Any, barrier: Any, results: Any) -> None:
    """Build the connector once, then for each key: wait for all readers, get, sum, report."""
    sys.path.insert(0, common.BENCH_DIR)
    connector: Any = NodeConnector(**config) if kind == 'node' else RedisStoreConnector(**config)
    connector.exists('warm-up')  # connect before timing
    results.put('ready')
    while True:
        key = commands.get()
        if key is None:
            break
        barrier.wait()
        start = time.monotonic()
        entry = connector.get(key)
        array = deserialize(entry[0])
        total = float(np.sum(array))
        end = time.monotonic()
        del array, entry
        results.put((start, end, total))
    connector.close()


def _net_output(client: redis.Redis) -> int:
    return int(client.info('stats')['total_net_output_bytes'])


def _clear(directory: str) -> None:
    """Remove every node copy, so the next round starts cold (the directory stays)."""
    for name in os.listdir(directory):
        if name != '.lock':
            os.unlink(os.path.join(directory, name))


class _Readers:
    """``n`` spawned reader processes of one kind, started (and connected) before any timing."""

    def __init__(self, kind: str, config: dict[str, Any], n: int) -> None:
        ctx = get_context('spawn')
        self.results = ctx.Queue()
        barrier = ctx.Barrier(n)
        self.queues = [ctx.Queue() for _ in range(n)]
        self.procs = [
            ctx.Process(target=_reader, args=(kind, config, q, barrier, self.results))
            for q in self.queues
        ]
        for p in self.procs:
            p.start()
        for _ in self.procs:
            assert self.results.get(timeout=300) == 'ready'

    def round(self, key: str, expected: float, client: redis.Redis) -> tuple[float, int]:
        """(wall seconds from the first start to the last sum, bytes Redis sent) of one round."""
        before = _net_output(client)
        for q in self.queues:
            q.put(key)
        reports = [self.results.get(timeout=600) for _ in self.procs]
        after = _net_output(client)
        assert all(abs(r[2] - expected) < 1e-6 * abs(expected) for r in reports), reports
        return max(r[1] for r in reports) - min(r[0] for r in reports), after - before

    def stop(self) -> None:
        for q in self.queues:
            q.put(None)
        for p in self.procs:
            p.join(60)


def run_readers(
    inner: RedisStoreConnector,
    node: NodeConnector,
    n: int,
    key: str,
    expected: float,
    client: redis.Redis,
    repeat: int,
    warmup: int,
) -> dict[str, float]:
    """Medians for ``n`` readers without and with the tier, their rounds interleaved.

    Alternating the two (and which goes first) spreads the machine's other
    load over both columns alike. Each tier round starts with no node copy.
    """
    plain = _Readers('plain', inner.config(), n)
    tiered = _Readers('node', node.config(), n)
    results: dict[str, list[float]] = {k: [] for k in ('pt', 'pb', 'nt', 'nb')}
    try:
        for round_ in range(warmup + repeat):
            order = ('plain', 'node') if round_ % 2 == 0 else ('node', 'plain')
            for kind in order:
                if kind == 'plain':
                    wall, sent = plain.round(key, expected, client)
                else:
                    _clear(node.directory)
                    wall, sent = tiered.round(key, expected, client)
                if round_ >= warmup:
                    results[kind[0] + 't'].append(wall)
                    results[kind[0] + 'b'].append(sent)
    finally:
        plain.stop()
        tiered.stop()
    return {
        'readers': n,
        'plain_time': common.median(results['pt']),
        'node_time': common.median(results['nt']),
        'plain_bytes': common.median(results['pb']),
        'node_bytes': common.median(results['nb']),
    }


def version_cost(inner: Any, node: NodeConnector, key: str, repeat: int) -> dict[str, float]:
    """Per-read costs in this process with a warm node copy: the version check is the tier's tax."""

    def timed(fn: Any) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return common.median(times)

    node.get(key)
    node.get(key)  # the second read publishes (min_readers=2)
    return {
        'version check (one round trip)': timed(lambda: node.version(key)),
        'get, node copy (check + map)': timed(lambda: node.get(key)),
        'get, straight from Redis': timed(lambda: inner.get(key)),
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
    with common.redis_server() as (host, port):
        inner = RedisStoreConnector(host, port)
        node = NodeConnector(inner, directory=node_root)
        key = f'array-{uuid.uuid4().hex}'
        inner.put(key, serialize_parts(array))
        del array
        client = redis.Redis(host=host, port=port)
        try:
            for n in counts:
                rows.append(
                    run_readers(inner, node, n, key, expected, client, args.repeat, args.warmup)
                )
                print(f'  {n} readers done', file=sys.stderr)
            costs = version_cost(inner, node, key, max(args.repeat, 5) * 4)
        finally:
            client.close()
            inner.evict(key)
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
    common.print_table(
        ['per read, one process, warm node copy', 'median'],
        [[name, common.format_time(value)] for name, value in costs.items()],
        title='What the tier costs a reader that finds a copy',
    )
    if args.plot:
        plot(rows, size, args.plot)
        print(f'\nplot: {args.plot}')


if __name__ == '__main__':
    main()
