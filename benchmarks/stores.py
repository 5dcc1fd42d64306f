"""Store put/resolve times next to raw lower bounds, proxy overheads, batch speed-ups.

Run ``.venv/bin/python benchmarks/stores.py`` (``--quick`` for a fast small
run, ``--help`` for options). See ``benchmarks/README.md`` for the protocol.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import common
import numpy as np

from proxystore.proxy import extract
from proxystore.proxy import get_factory
from proxystore.proxy import resolve
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore

DEFAULT_SIZES = '1KB,1MB,10MB,100MB'
QUICK_SIZES = '1KB,1MB'
PROXY_SIZE_BYTES = 100 << 20
BATCH_COUNT = 100
BATCH_OBJECT_BYTES = 1 << 10
SMALL_BYTES = 1 << 20


@dataclass
class Row:
    """One (size, store) measurement: medians in seconds."""

    size: int
    store: str
    put: float | None = None
    put_bound: float | None = None
    resolve: float | None = None
    resolve_bound: float | None = None
    bound: str = ''
    notes: list[str] = field(default_factory=list)


# -- worker-side functions (run in the spawned process; each times itself) ------------


def _resolve_proxy(data: bytes) -> tuple[float, int]:
    """Unpickle a proxy and resolve it; evict the object afterwards (untimed)."""
    start = time.perf_counter()
    proxy = pickle.loads(data)
    resolve(proxy)
    elapsed = time.perf_counter() - start
    nbytes = int(extract(proxy).nbytes)
    factory: Any = get_factory(proxy)
    factory.get_store().evict(factory.key)  # also drops the worker's cached copy
    return elapsed, nbytes


_redis_clients: dict[tuple[str, int], Any] = {}


def _redis_client(host: str, port: int) -> Any:
    import redis

    client = _redis_clients.get((host, port))
    if client is None:
        client = _redis_clients[(host, port)] = redis.Redis(host=host, port=port)
    return client


def _resolve_redis_raw(host: str, port: int, key: str) -> tuple[float, int]:
    """Lower bound: redis-py GET + pickle.loads."""
    client = _redis_client(host, port)
    start = time.perf_counter()
    obj = pickle.loads(client.get(key))
    elapsed = time.perf_counter() - start
    client.delete(key)
    return elapsed, int(obj.nbytes)


def _resolve_file_raw(path: str) -> tuple[float, int]:
    """Lower bound: read the file + pickle.loads."""
    start = time.perf_counter()
    with open(path, 'rb') as f:
        obj = pickle.loads(f.read())
    elapsed = time.perf_counter() - start
    os.unlink(path)
    return elapsed, int(obj.nbytes)


def _in_worker(
    worker: ProcessPoolExecutor, fn: Callable[..., Any], *args: Any
) -> tuple[float, int]:
    """Run ``fn`` in the worker; it returns (seconds it measured, bytes it resolved)."""
    elapsed, nbytes = worker.submit(fn, *args).result(timeout=600)
    return float(elapsed), int(nbytes)


# -- put/resolve per store ------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def runs_for(size: int, args: argparse.Namespace) -> tuple[int, int]:
    """(repeat, warmup) for one cell: objects up to 1 MB take under a few ms a run,
    and single sub-millisecond runs are noisy, so they get 5x the repetitions and
    10x the warm-up runs."""
    if size <= SMALL_BYTES:
        return 5 * args.repeat, 10 * args.warmup
    return args.repeat, args.warmup


def _median_pairs(
    run: Callable[[], tuple[float, float]], size: int, args: argparse.Namespace
) -> tuple[float, float]:
    """Medians of the two times ``run()`` returns (put, resolve)."""
    repeat, warmup = runs_for(size, args)
    for _ in range(warmup):
        run()
    pairs = [run() for _ in range(repeat)]
    return common.median([p[0] for p in pairs]), common.median([p[1] for p in pairs])


def _check(nbytes: int, x: np.ndarray, what: str) -> None:
    if nbytes != x.nbytes:
        raise AssertionError(f'{what}: the worker resolved {nbytes} bytes, expected {x.nbytes}')


def _store_put_resolve(
    store: Store, worker: ProcessPoolExecutor, x: np.ndarray, args: argparse.Namespace
) -> tuple[float, float]:
    def run() -> tuple[float, float]:
        put, proxy = _timed(lambda: store.proxy(x))
        got, nbytes = _in_worker(worker, _resolve_proxy, pickle.dumps(proxy))
        _check(nbytes, x, store.name)
        return put, got

    return _median_pairs(run, x.nbytes, args)


def bench_file(
    arrays: dict[int, np.ndarray], args: argparse.Namespace
) -> tuple[list[Row], dict[str, Any]]:
    rows = []
    with (
        common.temp_dir('bench-file-') as tmp,
        common.spawn_worker(('numpy', 'proxystore', 'proxystore.store.file')) as worker,
    ):
        store = FileStore(
            f'bench-file-{uuid.uuid4().hex[:8]}', store_dir=os.path.join(tmp, 'store')
        )
        raw_dir = os.path.join(tmp, 'raw')
        os.makedirs(raw_dir)
        try:
            for size, x in arrays.items():
                put, got = _store_put_resolve(store, worker, x, args)

                def raw(x: np.ndarray = x) -> tuple[float, float]:
                    path = os.path.join(raw_dir, uuid.uuid4().hex)
                    start = time.perf_counter()
                    data = pickle.dumps(x, protocol=5)
                    with open(path, 'wb') as f:
                        f.write(data)
                    put = time.perf_counter() - start
                    got, nbytes = _in_worker(worker, _resolve_file_raw, path)
                    _check(nbytes, x, 'file raw')
                    return put, got

                put_bound, got_bound = _median_pairs(raw, x.nbytes, args)
                rows.append(
                    Row(
                        size, 'file', put, put_bound, got, got_bound, 'pickle+write / read+unpickle'
                    )
                )
                print(f'  file   {common.format_size(size):>7}: done', flush=True)
            extra = {
                'proxy_sizes': proxy_sizes(store),
                'batch': bench_batch(store, args),
                'leftover': len(os.listdir(store.store_dir)),
            }
        finally:
            store.cleanup()
    return rows, extra


def bench_redis(
    arrays: dict[int, np.ndarray], args: argparse.Namespace
) -> tuple[list[Row], dict[str, Any]]:
    import redis

    from proxystore.store.redis import RedisStore

    rows = []
    with (
        common.redis_server() as (host, port),
        common.spawn_worker(('numpy', 'redis', 'proxystore', 'proxystore.store.redis')) as worker,
    ):
        store = RedisStore(f'bench-redis-{uuid.uuid4().hex[:8]}', hostname=host, port=port)
        client = redis.Redis(host=host, port=port)
        try:
            for size, x in arrays.items():
                put, got = _store_put_resolve(store, worker, x, args)

                def raw(x: np.ndarray = x) -> tuple[float, float]:
                    key = uuid.uuid4().hex
                    start = time.perf_counter()
                    client.set(key, pickle.dumps(x, protocol=5))
                    put = time.perf_counter() - start
                    got, nbytes = _in_worker(worker, _resolve_redis_raw, host, port, key)
                    _check(nbytes, x, 'redis raw')
                    return put, got

                put_bound, got_bound = _median_pairs(raw, x.nbytes, args)
                rows.append(
                    Row(size, 'redis', put, put_bound, got, got_bound, 'pickle+SET / GET+unpickle')
                )
                print(f'  redis  {common.format_size(size):>7}: done', flush=True)
            extra = {
                'proxy_sizes': proxy_sizes(store),
                'batch': bench_batch(store, args),
                'leftover': int(client.dbsize()),
            }
        finally:
            store.cleanup()
            client.close()
    return rows, extra


def bench_local(arrays: dict[int, np.ndarray], args: argparse.Namespace) -> list[Row]:
    """LocalStore (in-process resolve: its proxies cannot cross processes) and np.copy."""
    rows = []
    store = LocalStore(f'bench-local-{uuid.uuid4().hex[:8]}')
    try:
        for size, x in arrays.items():

            def run(x: np.ndarray = x) -> tuple[float, float]:
                put, proxy = _timed(lambda: store.proxy(x))
                got, _ = _timed(lambda: resolve(proxy))
                store.evict(get_factory(proxy).key)  # type: ignore[attr-defined]
                return put, got

            put, got = _median_pairs(run, x.nbytes, args)
            copy = common.measure(lambda x=x: np.copy(x), *runs_for(x.nbytes, args))
            rows.append(Row(size, 'local (in-process)', put, copy, got, copy, 'np.copy / np.copy'))
            rows.append(Row(size, 'np.copy', copy, None, copy, None, 'reference: one memory copy'))
            print(f'  local  {common.format_size(size):>7}: done', flush=True)
    finally:
        store.cleanup()
    return rows


# -- proxy overheads -----------------------------------------------------------------------


def proxy_sizes(store: Store) -> dict[str, int]:
    """Pickled size of a proxy of a 100 MB array with pickle, cloudpickle and dill."""
    import cloudpickle

    x = np.zeros(PROXY_SIZE_BYTES // 8)
    proxy = store.proxy(x)
    sizes = {'pickle': len(pickle.dumps(proxy)), 'cloudpickle': len(cloudpickle.dumps(proxy))}
    try:
        import dill

        sizes['dill'] = len(dill.dumps(proxy))
    except ImportError:
        pass
    store.evict(get_factory(proxy).key)  # type: ignore[attr-defined]
    return sizes


class Thing:
    """A user class with a plain instance attribute."""

    def __init__(self) -> None:
        self.value = 1


def bench_attribute(args: argparse.Namespace) -> tuple[list[list[str]], str]:
    """Per-access time of ``o.attr`` on a plain object, a resolved proxy, a lazy-object-proxy."""
    try:
        import lazy_object_proxy
    except ImportError:
        lazy_object_proxy = None

    store = LocalStore(f'bench-attr-{uuid.uuid4().hex[:8]}')
    number = 20_000 if args.quick else 200_000
    rows = []
    try:
        targets = {'ndarray.shape': (np.zeros(10), 'shape'), 'Thing.value': (Thing(), 'value')}
        for label, (obj, attr) in targets.items():
            proxy = store.proxy(obj)
            resolve(proxy)
            kinds: dict[str, Any] = {'plain': obj, 'proxystore': proxy}
            if lazy_object_proxy is not None:
                lop = lazy_object_proxy.Proxy(lambda obj=obj: obj)
                getattr(lop, attr)  # resolve it
                kinds['lazy-object-proxy'] = lop
            per_access = {}
            for kind, o in kinds.items():
                timer = timeit.Timer(f'o.{attr}', globals={'o': o})
                timer.timeit(number // 10)  # warm-up
                runs = timer.repeat(repeat=args.repeat, number=number)
                per_access[kind] = common.median(runs) / number
            lop_time = per_access.get('lazy-object-proxy')
            rows.append(
                [
                    label,
                    common.format_time(per_access['plain']),
                    common.format_time(per_access['proxystore']),
                    common.format_time(lop_time),
                    common.format_ratio(per_access['proxystore'] / per_access['plain']),
                    common.format_ratio(per_access['proxystore'] / lop_time if lop_time else None),
                ]
            )
    finally:
        store.cleanup()
    if lazy_object_proxy is None:
        impl = 'not installed'
    else:
        cls = lazy_object_proxy.Proxy
        impl = f'{lazy_object_proxy.__version__}: lazy_object_proxy.Proxy is '
        impl += f'{cls.__module__}.{cls.__qualname__}'
        try:
            from lazy_object_proxy import cext

            if cls is cext.Proxy:
                impl += ' = lazy_object_proxy.cext.Proxy (C extension)'
        except ImportError:
            impl += ' (pure Python / simple implementation; C extension not available)'
    return rows, impl


# -- batches --------------------------------------------------------------------------------


def bench_batch(store: Store, args: argparse.Namespace) -> dict[str, float]:
    """100 small objects: a loop of set/proxy vs set_batch/proxy_batch (medians, seconds)."""
    objs = [np.full(BATCH_OBJECT_BYTES // 8, i, dtype=np.float64) for i in range(BATCH_COUNT)]

    def clean(keys: Sequence[str]) -> None:
        for key in keys:
            store.evict(key)

    def timed(fn: Callable[[], list[Any]], keys_of: Callable[[list[Any]], list[str]]) -> float:
        def run() -> float:
            elapsed, result = _timed(fn)
            clean(keys_of(result))
            return elapsed

        return common.measure_self_timed(run, *runs_for(BATCH_COUNT * BATCH_OBJECT_BYTES, args))

    def proxy_keys(proxies: list[Any]) -> list[str]:
        return [get_factory(p).key for p in proxies]  # type: ignore[attr-defined]

    return {
        'set loop': timed(lambda: [store.set(o) for o in objs], list),
        'set_batch': timed(lambda: store.set_batch(objs), list),
        'proxy loop': timed(lambda: [store.proxy(o) for o in objs], proxy_keys),
        'proxy_batch': timed(lambda: store.proxy_batch(objs), proxy_keys),
    }


# -- output ------------------------------------------------------------------------------------


def print_results(rows: list[Row]) -> None:
    table = []
    for row in rows:
        table.append(
            [
                common.format_size(row.size),
                row.store,
                common.format_time(row.put),
                common.format_time(row.put_bound),
                common.format_ratio(row.put / row.put_bound if row.put and row.put_bound else None),
                common.format_time(row.resolve),
                common.format_time(row.resolve_bound),
                common.format_ratio(
                    row.resolve / row.resolve_bound if row.resolve and row.resolve_bound else None
                ),
                row.bound,
            ]
        )
    common.print_table(
        [
            'size',
            'store',
            'put',
            'bound',
            'ratio',
            'resolve',
            'bound',
            'ratio',
            'lower bound (put / resolve)',
        ],
        table,
        title='Put (store.proxy(x), incl. serialization) and cross-process resolve '
        '(timed inside a spawned worker: unpickle proxy + resolve); median; ratio = store / bound',
    )


def plot(rows: list[Row], path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f'\nmatplotlib is not installed: skipping the plot ({path}).')
        return
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    styles = {'file': 'C0', 'redis': 'C3', 'local (in-process)': 'C2', 'np.copy': 'C7'}
    for ax, (what, bound) in zip(axes, [('put', 'put_bound'), ('resolve', 'resolve_bound')]):
        for store, color in styles.items():
            points = sorted(
                (r.size, getattr(r, what), getattr(r, bound)) for r in rows if r.store == store
            )
            if not points:
                continue
            sizes = [p[0] / (1 << 20) for p in points]
            ax.plot(sizes, [p[1] * 1e3 for p in points], 'o-', color=color, label=store)
            if store in ('file', 'redis') and all(p[2] for p in points):
                ax.plot(
                    sizes,
                    [p[2] * 1e3 for p in points],
                    'x--',
                    color=color,
                    label=f'{store} lower bound',
                )
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('array size (MB)')
        ax.set_title('put (store.proxy)' if what == 'put' else 'cross-process resolve')
        ax.grid(True, which='both', alpha=0.3)
    axes[0].set_ylabel('median time (ms)')
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f'\nPlot written to {path}')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--sizes',
        default=None,
        help=f'comma-separated float64 array sizes, binary units (default {DEFAULT_SIZES})',
    )
    parser.add_argument(
        '--stores',
        default='file,redis,local',
        help='comma-separated stores to measure (default file,redis,local)',
    )
    parser.add_argument(
        '--quick', action='store_true', help=f'fast small run (sizes {QUICK_SIZES})'
    )
    parser.add_argument(
        '--plot',
        default=os.path.join(common.RESULTS_DIR, 'stores.png'),
        help='where to write the plot (default benchmarks/results/stores.png); "" to skip',
    )
    common.add_protocol_args(parser)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be >= 1 and --warmup >= 0')
    sizes = [
        common.parse_size(s)
        for s in (args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)).split(',')
    ]
    stores = [s.strip() for s in args.stores.split(',') if s.strip()]
    unknown = set(stores) - {'file', 'redis', 'local'}
    if unknown:
        parser.error(f'unknown stores: {", ".join(sorted(unknown))}')

    try:
        import lazy_object_proxy

        lop_version = lazy_object_proxy.__version__
    except ImportError:
        lop_version = 'not installed'
    common.print_machine_report({'lazy-object-proxy': lop_version})
    print(
        f'Protocol: {args.warmup} warm-up + median of {args.repeat} runs per cell '
        f'({10 * args.warmup} + {5 * args.repeat} for objects up to 1 MB); '
        f'sizes {", ".join(common.format_size(s) for s in sizes)} of float64; 1 KB = 1024 B'
    )

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    arrays = {size: rng.random(max(size // 8, 1)) for size in sizes}
    rows: list[Row] = []
    extras: dict[str, dict[str, Any]] = {}
    print('\nMeasuring put/resolve ...', flush=True)
    if 'file' in stores:
        file_rows, extras['file'] = bench_file(arrays, args)
        rows += file_rows
    if 'redis' in stores:
        redis_rows, extras['redis'] = bench_redis(arrays, args)
        rows += redis_rows
    if 'local' in stores:
        rows += bench_local(arrays, args)
    order = {'file': 0, 'redis': 1, 'local (in-process)': 2, 'np.copy': 3}
    rows.sort(key=lambda r: (r.size, order[r.store]))
    print_results(rows)

    attr_rows, impl = bench_attribute(args)
    common.print_table(
        ['attribute', 'plain', 'proxystore', 'lazy-object-proxy', 'ours/plain', 'ours/lop'],
        attr_rows,
        title='Attribute access on a resolved proxy '
        f'(timeit, median per access of {args.repeat} runs)',
    )
    print(f'lazy-object-proxy {impl}')

    if extras:
        common.print_table(
            ['store', 'pickle', 'cloudpickle', 'dill'],
            [
                [
                    name,
                    *(
                        f'{e["proxy_sizes"].get(k, "-")} B'
                        for k in ('pickle', 'cloudpickle', 'dill')
                    ),
                ]
                for name, e in extras.items()
            ],
            title='Pickled size of a store proxy of a '
            f'{common.format_size(PROXY_SIZE_BYTES)} array',
        )
        batch_rows = []
        for name, e in extras.items():
            b = e['batch']
            batch_rows.append(
                [
                    name,
                    common.format_time(b['set loop']),
                    common.format_time(b['set_batch']),
                    common.format_ratio(b['set loop'] / b['set_batch']),
                    common.format_time(b['proxy loop']),
                    common.format_time(b['proxy_batch']),
                    common.format_ratio(b['proxy loop'] / b['proxy_batch']),
                ]
            )
        common.print_table(
            ['store', 'set loop', 'set_batch', 'speed-up', 'proxy loop', 'proxy_batch', 'speed-up'],
            batch_rows,
            title=f'{BATCH_COUNT} objects of {common.format_size(BATCH_OBJECT_BYTES)}: '
            'loop of single calls vs one batch call (median; speed-up = loop / batch)',
        )
        left = {name: e['leftover'] for name, e in extras.items()}
        print(f'Objects left in each store before cleanup (should be 0): {left}')

    if args.plot:
        plot(rows, args.plot)
    print(f'\nTotal time {time.perf_counter() - started:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
