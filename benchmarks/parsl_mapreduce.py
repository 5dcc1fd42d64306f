"""Parsl map-reduce on a local HTEX: no proxies vs manual proxies vs auto_proxy.

Run ``.venv/bin/python benchmarks/parsl_mapreduce.py`` (``--help`` for options).
Each of ``--arrays`` float64 arrays of ``--size-mb`` MB is doubled by one task,
and one task sums all doubled arrays (``inputs=[...]``). Four ways:

(a) no proxies: arrays and results travel through Parsl;
(b) manual: ``store.proxy(x)`` on the inputs only (results still travel);
(c) auto: ``auto_proxy(store=..., evict='auto')`` on both apps: tasks receive
    the objects (exact types, resolved before the call);
(d) auto lazy: the same with ``lazy=True`` (tasks receive the proxies).

Parsl runs with its defaults: DEBUG logging to ``parsl.log``, under which HTEX
calls ``repr`` on every task argument. The script reports the bytes the
submitting process read from the store (0 expected) and, with ``--store
redis``, the server's own byte counters for the auto-proxy runs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator

import common
import mapreduce_apps
import numpy as np

from proxystore.proxy import get_key
from proxystore.store.base import Store
from proxystore.store.file import FileStore

TIMEOUT = 600
WAYS = ('no proxies', 'manual store.proxy', 'auto_proxy', 'auto_proxy lazy')


def _no_counters() -> dict[str, int]:
    return {}


@contextlib.contextmanager
def make_store(
    kind: str, tmp: str
) -> Iterator[tuple[Store, Callable[[], int], Callable[[], dict[str, int]]]]:
    """The store, a function counting its objects and one reading server byte counters."""
    name = f'bench-parsl-{kind}-{uuid.uuid4().hex[:8]}'
    if kind == 'file':
        store = FileStore(name, store_dir=os.path.join(tmp, 'store'))
        try:
            yield store, lambda: len(os.listdir(store.store_dir)), _no_counters
        finally:
            store.cleanup()
        return
    import redis

    from proxystore.store.redis import RedisStore

    with common.redis_server() as (host, port):
        rstore = RedisStore(name, hostname=host, port=port)
        client = redis.Redis(host=host, port=port)

        def counters() -> dict[str, int]:
            stats = client.info('stats')
            return {
                'read': int(stats['total_net_output_bytes']),
                'written': int(stats['total_net_input_bytes']),
            }

        try:
            yield rstore, lambda: int(client.dbsize()), counters
        finally:
            rstore.cleanup()
            client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arrays', type=int, default=8, help='number of arrays (default 8)')
    parser.add_argument('--size-mb', type=float, default=10, help='MB per array (default 10)')
    parser.add_argument('--store', choices=('file', 'redis'), default='file', help='default file')
    parser.add_argument('--workers', type=int, default=2, help='HTEX workers (default 2)')
    parser.add_argument(
        '--threshold',
        type=int,
        default=100_000,
        help='auto_proxy threshold in bytes (default 100000)',
    )
    common.add_protocol_args(parser, repeat=3, warmup=1)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0 or args.arrays < 1 or args.size_mb <= 0:
        parser.error('--repeat, --arrays and --size-mb must be positive, --warmup >= 0')

    import parsl
    from parsl import python_app

    from proxystore.integrations.parsl import auto_proxy
    from proxystore.integrations.testing.parsl_configs import htex_config

    common.print_machine_report({'parsl': parsl.__version__})
    n = int(args.size_mb * (1 << 20)) // 8
    print(
        f'Workload: {args.arrays} float64 arrays of {common.format_size(n * 8)}, '
        f'{args.workers} HTEX workers, {args.store} store, auto_proxy threshold '
        f'{args.threshold} B; {args.warmup} warm-up round(s) + median of {args.repeat}, '
        'ways interleaved',
        flush=True,
    )
    rng = np.random.default_rng(0)
    arrays = [rng.random(n) for _ in range(args.arrays)]
    expected = float(sum(np.sum(2 * a) for a in arrays))

    started = time.perf_counter()
    server: dict[str, list[int]] = {'read': [], 'written': []}
    with (
        common.temp_dir('bench-parsl-') as tmp,
        make_store(args.store, tmp) as (
            store,
            count,
            counters,
        ),
    ):
        t0 = time.perf_counter()
        run_dir = os.path.join(tmp, 'runinfo')
        config = htex_config(run_dir, workers=args.workers, pythonpath=common.BENCH_DIR)
        dfk = parsl.load(config)
        try:
            double = python_app(mapreduce_apps.double, executors=['htex'])
            total = python_app(mapreduce_apps.total, executors=['htex'])
            proxied = auto_proxy(store=store, threshold=args.threshold, evict='auto')
            double_auto = proxied(python_app(mapreduce_apps.double, executors=['htex']))
            total_auto = proxied(python_app(mapreduce_apps.total, executors=['htex']))
            lazy = auto_proxy(store=store, threshold=args.threshold, evict='auto', lazy=True)
            double_lazy = lazy(python_app(mapreduce_apps.double, executors=['htex']))
            total_lazy = lazy(python_app(mapreduce_apps.total, executors=['htex']))

            def plain(xs: list[np.ndarray]) -> tuple[float, list[str]]:
                return total(inputs=[double(x) for x in xs]).result(timeout=TIMEOUT), []

            def manual(xs: list[np.ndarray]) -> tuple[float, list[str]]:
                inputs = [store.proxy(x) for x in xs]
                result = total(inputs=[double(p) for p in inputs]).result(timeout=TIMEOUT)
                return result, [k for k in map(get_key, inputs) if k]

            def auto(xs: list[np.ndarray]) -> tuple[float, list[str]]:
                return total_auto(inputs=[double_auto(x) for x in xs]).result(timeout=TIMEOUT), []

            def auto_lazy(xs: list[np.ndarray]) -> tuple[float, list[str]]:
                return total_lazy(inputs=[double_lazy(x) for x in xs]).result(timeout=TIMEOUT), []

            ways: dict[str, Callable[[list[np.ndarray]], tuple[float, list[str]]]] = dict(
                zip(WAYS, (plain, manual, auto, auto_lazy))
            )

            # Executor warm-up: both workers import numpy/proxystore, rebuild
            # the store and connect, with small arrays that are still proxied.
            small_n = max(args.threshold, 1 << 20) // 8 + 1
            small = [np.ones(small_n) for _ in range(2 * args.workers)]
            for run in ways.values():
                _, keys = run(small)
                for key in keys:
                    store.evict(key)
            print(f'HTEX started and warmed up in {time.perf_counter() - t0:.1f} s', flush=True)

            times: dict[str, list[float]] = {w: [] for w in WAYS}
            sums: dict[str, set[float]] = {w: set() for w in WAYS}
            left: dict[str, int] = {}
            store.reset_metrics()  # from here on: what the submitting process reads
            for rep in range(args.warmup + args.repeat):
                order = list(ways.items())
                if rep % 2:  # the way right after the plain ones runs slower: alternate
                    order[-2:] = order[:-3:-1]
                for way, run in order:
                    before = counters()
                    start = time.perf_counter()
                    result, keys = run(arrays)
                    elapsed = time.perf_counter() - start
                    after = counters()
                    if way == 'auto_proxy' and after:
                        for name, values in server.items():
                            values.append(after[name] - before[name])
                    for key in keys:  # manual proxies are never evicted by Parsl
                        store.evict(key)
                    # evict='auto' frees what nothing references; Parsl's completion
                    # callbacks may run a moment after result() returned.
                    for _ in range(40):
                        gc.collect()
                        if count() == 0:
                            break
                        time.sleep(0.05)
                    left[way] = count()
                    sums[way].add(result)
                    if rep >= args.warmup:
                        times[way].append(elapsed)
                label = f'  round {rep + 1}/{args.warmup + args.repeat}'
                if rep < args.warmup:
                    print(f'{label} (warm-up) done', flush=True)
                else:
                    done = ', '.join(f'{w} {common.format_time(times[w][-1])}' for w in WAYS)
                    print(f'{label}: {done}', flush=True)
            read_here = store.metrics()['get']
            gets_here, bytes_here = read_here['count'], read_here['bytes']
        finally:
            dfk.cleanup()
            parsl.clear()

    medians = {w: common.median(times[w]) for w in WAYS}
    base = medians['no proxies']
    rows = []
    for way in WAYS:
        value = next(iter(sums[way])) if len(sums[way]) == 1 else None
        rows.append(
            [
                way,
                common.format_time(medians[way]),
                ' '.join(f'{t:.2f}' for t in times[way]),
                common.format_ratio(base / medians[way]),
                'varies' if value is None else repr(value),
                left[way],
            ]
        )
    common.print_table(
        ['way', 'median wall', 'runs (s)', 'speed-up vs no proxies', 'sum', 'objects left*'],
        rows,
        title='Map-reduce wall time, submit to reduced result (speed-up = no-proxy / way)',
    )
    all_sums = set().union(*sums.values())
    agree = len(all_sums) == 1
    worst = max(abs(s - expected) / abs(expected) for s in all_sums) if expected else 0.0
    print(
        f'Sums agree across ways and runs: {"yes" if agree else "NO"} '
        f'(expected {expected!r}, worst relative difference {worst:.1e})'
    )
    print(
        "* after each run and up to 2 s of garbage collection (evict='auto' frees what "
        'nothing references)'
    )
    print(
        f'Read by the submitting process (manual and auto ways, Parsl DEBUG logging on): '
        f'{gets_here} objects, {bytes_here} bytes (proxies resolve in workers)'
    )
    if server['read']:
        objects = 2 * args.arrays * n * 8  # each input and each doubled array, once
        read, written = common.median(server['read']), common.median(server['written'])
        print(
            f'Redis server, auto_proxy run (median): sent {common.format_size(read)} '
            f'({read / objects:.3f}x the {common.format_size(objects)} of objects), '
            f'received {common.format_size(written)} ({written / objects:.3f}x)'
        )
    speedup = base / medians['auto_proxy']
    verdict = 'met' if speedup >= 5 else 'NOT met'
    print(f'Target auto_proxy >= 5x faster than no proxies: {verdict} ({speedup:.2f}x)')
    lazy_cost = medians['auto_proxy'] / medians['auto_proxy lazy']
    print(
        f'Exact-type arguments (objects resolved before the call) vs lazy=True: '
        f'{lazy_cost:.3f}x the wall time'
    )
    print(f'Total time {time.perf_counter() - started:.1f} s')
    return 0 if agree and gets_here == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
