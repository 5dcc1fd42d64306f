"""Store put/resolve times next to raw lower bounds, proxy overheads, batch speed-ups.

Run ``.venv/bin/python benchmarks/stores.py`` (``--quick`` for a fast small
run, ``--help`` for options). See ``benchmarks/README.md`` for the protocol.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
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
STORES = ('file', 'shm', 'redis', 'local', 'redis-cluster')
CLUSTER_RESOLVE_BYTES = 100 << 20
CLUSTER_BATCH_COUNT = 10_000
PROXY_SIZE_BYTES = 100 << 20
BATCH_COUNT = 100
BATCH_OBJECT_BYTES = 1 << 10
SMALL_BYTES = 1 << 20
MAPPED_NOTE = '(mapped)'


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
    use: float | None = None
    use_bound: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Sample:
    """One run of a cell (seconds): put, resolve, and resolve + one full read pass."""

    put: float
    resolve: float
    use: float
    mapped: bool = False


# -- worker-side functions (run in the spawned process; each times itself) ------------
#
# Each returns (resolve seconds, use seconds, bytes resolved, mapped): "use" is
# resolve + one full read pass over the array (float(np.sum(x))), taken from the
# same start, so a resolve that only maps a file pays for its page faults there.
# "mapped" says whether the array's memory is a mapping of a file (zero-copy).

WorkerResult = tuple[float, float, int, bool]


def _touch(x: Any) -> float:
    """One full read pass over the array."""
    return float(np.sum(x))


def _is_file_mapping(x: np.ndarray) -> bool:
    """True if the array's memory lies in a file-backed mapping (``/proc/self/maps``).

    Anonymous mappings (e.g. pre-faulted receive buffers) and the heap are not
    file-backed: their bytes were copied in.
    """
    if x.nbytes == 0:
        return False
    address = x.__array_interface__['data'][0]
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                fields = line.split()
                start, end = (int(a, 16) for a in fields[0].split('-'))
                if start <= address < end:
                    return fields[4] != '0'  # inode of the mapped file, 0 if anonymous
    except OSError:  # pragma: no cover - not Linux
        pass
    return False


def _resolve_proxy(data: bytes) -> WorkerResult:
    """Unpickle a proxy, resolve it, read it once; evict the object afterwards (untimed)."""
    start = time.perf_counter()
    proxy = pickle.loads(data)
    resolve(proxy)
    resolved = time.perf_counter()
    x = extract(proxy)
    _touch(x)
    used = time.perf_counter()
    mapped = _is_file_mapping(x)
    nbytes = int(x.nbytes)
    factory: Any = get_factory(proxy)
    factory.get_store().evict(factory.key)  # also drops the worker's cached copy
    return resolved - start, used - start, nbytes, mapped


_redis_clients: dict[tuple[str, int], Any] = {}


def _redis_client(host: str, port: int) -> Any:
    import redis

    client = _redis_clients.get((host, port))
    if client is None:
        client = _redis_clients[(host, port)] = redis.Redis(host=host, port=port)
    return client


def _resolve_redis_raw(host: str, port: int, key: str) -> WorkerResult:
    """Lower bound: redis-py GET + pickle.loads (then the same read pass)."""
    client = _redis_client(host, port)
    start = time.perf_counter()
    obj = pickle.loads(client.get(key))
    resolved = time.perf_counter()
    _touch(obj)
    used = time.perf_counter()
    client.delete(key)
    return resolved - start, used - start, int(obj.nbytes), _is_file_mapping(obj)


def _resolve_file_raw(path: str) -> WorkerResult:
    """Lower bound: read the file + pickle.loads (then the same read pass)."""
    start = time.perf_counter()
    with open(path, 'rb') as f:
        obj = pickle.loads(f.read())
    resolved = time.perf_counter()
    _touch(obj)
    used = time.perf_counter()
    os.unlink(path)
    return resolved - start, used - start, int(obj.nbytes), _is_file_mapping(obj)


def _in_worker(
    worker: ProcessPoolExecutor, fn: Callable[..., Any], *args: Any
) -> tuple[float, float, int, bool]:
    """Run ``fn`` in the worker; see ``WorkerResult``."""
    resolved, used, nbytes, mapped = worker.submit(fn, *args).result(timeout=600)
    return float(resolved), float(used), int(nbytes), bool(mapped)


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


def _median_samples(run: Callable[[], Sample], size: int, args: argparse.Namespace) -> Sample:
    """Medians of the times ``run()`` returns; mapped only if every timed run mapped."""
    repeat, warmup = runs_for(size, args)
    for _ in range(warmup):
        run()
    samples = [run() for _ in range(repeat)]
    return Sample(
        common.median([s.put for s in samples]),
        common.median([s.resolve for s in samples]),
        common.median([s.use for s in samples]),
        all(s.mapped for s in samples),
    )


def _check(nbytes: int, x: np.ndarray, what: str) -> None:
    if nbytes != x.nbytes:
        raise AssertionError(f'{what}: the worker resolved {nbytes} bytes, expected {x.nbytes}')


def _store_sample(
    store: Store, worker: ProcessPoolExecutor, x: np.ndarray, args: argparse.Namespace
) -> Sample:
    def run() -> Sample:
        put, proxy = _timed(lambda: store.proxy(x))
        got, used, nbytes, mapped = _in_worker(worker, _resolve_proxy, pickle.dumps(proxy))
        _check(nbytes, x, store.name)
        return Sample(put, got, used, mapped)

    return _median_samples(run, x.nbytes, args)


def _copy_bounds(x: np.ndarray, args: argparse.Namespace) -> tuple[float, float]:
    """In-process medians of ``np.copy(x)`` and of ``np.copy(x)`` + one read pass."""
    copy = common.measure(lambda: np.copy(x), *runs_for(x.nbytes, args))
    copy_use = common.measure(lambda: _touch(np.copy(x)), *runs_for(x.nbytes, args))
    return copy, copy_use


def _store_row(
    size: int,
    name: str,
    got: Sample,
    bound: Sample | tuple[float, float],
    label: str,
) -> Row:
    """A row from the store's medians and its bound's (a Sample, or np.copy times)."""
    if isinstance(bound, Sample):
        put_bound, resolve_bound, use_bound = bound.put, bound.resolve, bound.use
    else:
        put_bound = resolve_bound = bound[0]
        use_bound = bound[1]
    return Row(
        size,
        name,
        got.put,
        put_bound,
        got.resolve,
        resolve_bound,
        label,
        use=got.use,
        use_bound=use_bound,
        notes=[MAPPED_NOTE] if got.mapped else [],
    )


def _report_mapped_bound(name: str, size: int, bound: Sample) -> None:
    if bound.mapped:  # raw reads copy; say so if that ever changes
        print(f'  note: the {name} lower bound at {common.format_size(size)} resolved a mapping')


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
                got = _store_sample(store, worker, x, args)

                def raw(x: np.ndarray = x) -> Sample:
                    path = os.path.join(raw_dir, uuid.uuid4().hex)
                    start = time.perf_counter()
                    data = pickle.dumps(x, protocol=5)
                    with open(path, 'wb') as f:
                        f.write(data)
                    put = time.perf_counter() - start
                    resolved, used, nbytes, mapped = _in_worker(worker, _resolve_file_raw, path)
                    _check(nbytes, x, 'file raw')
                    return Sample(put, resolved, used, mapped)

                bound = _median_samples(raw, x.nbytes, args)
                _report_mapped_bound('file', size, bound)
                rows.append(
                    _store_row(size, 'file', got, bound, 'pickle+write / read+unpickle (+sum)')
                )
                print(f'  file   {common.format_size(size):>7}: done', flush=True)
            extra = _extras(store, args, lambda: len(os.listdir(store.store_dir)))
        finally:
            store.cleanup()
    return rows, extra


def _extras(
    store: Store, args: argparse.Namespace, count_left: Callable[[], int]
) -> dict[str, Any]:
    """Per-store extras: pickled proxy sizes, batch speed-ups, then objects left behind."""
    sizes = proxy_sizes(store)
    batch = bench_batch(store, args)
    return {'proxy_sizes': sizes, 'batch': batch, 'leftover': count_left()}


def bench_shm(
    arrays: dict[int, np.ndarray], args: argparse.Namespace
) -> tuple[list[Row], dict[str, Any]]:
    """SharedMemoryStore (files in /dev/shm); its lower bound is one np.copy of the array."""
    from proxystore.store.shm import SharedMemoryStore

    rows = []
    with common.spawn_worker(('numpy', 'proxystore', 'proxystore.store.shm')) as worker:
        store = SharedMemoryStore(f'bench-shm-{uuid.uuid4().hex[:8]}')
        try:
            for size, x in arrays.items():
                got = _store_sample(store, worker, x, args)
                bound = _copy_bounds(x, args)
                rows.append(_store_row(size, 'shm', got, bound, 'np.copy / np.copy (+sum)'))
                print(f'  shm    {common.format_size(size):>7}: done', flush=True)
            extra = _extras(store, args, lambda: len(os.listdir(store.store_dir)))
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
                got = _store_sample(store, worker, x, args)

                def raw(x: np.ndarray = x) -> Sample:
                    key = uuid.uuid4().hex
                    start = time.perf_counter()
                    client.set(key, pickle.dumps(x, protocol=5))
                    put = time.perf_counter() - start
                    resolved, used, nbytes, mapped = _in_worker(
                        worker, _resolve_redis_raw, host, port, key
                    )
                    _check(nbytes, x, 'redis raw')
                    return Sample(put, resolved, used, mapped)

                bound = _median_samples(raw, x.nbytes, args)
                _report_mapped_bound('redis', size, bound)
                rows.append(
                    _store_row(size, 'redis', got, bound, 'pickle+SET / GET+unpickle (+sum)')
                )
                print(f'  redis  {common.format_size(size):>7}: done', flush=True)
            extra = _extras(store, args, lambda: int(client.dbsize()))
        finally:
            store.cleanup()
            client.close()
    return rows, extra


def bench_cluster(args: argparse.Namespace) -> list[list[str]]:
    """Redis Cluster (3 masters) vs one redis-server, same run: a 100 MB cross-process
    resolve and a 10,000 x 1 KB set_batch (medians), with the ratio and its target."""
    from proxystore.store.redis import RedisStore

    x = np.random.default_rng(1).random(CLUSTER_RESOLVE_BYTES // 8)
    objs = [
        np.full(BATCH_OBJECT_BYTES // 8, i, dtype=np.float64) for i in range(CLUSTER_BATCH_COUNT)
    ]
    results: dict[str, dict[str, float]] = {}
    with (
        common.redis_server() as (host, port),
        common.redis_cluster() as (chost, cport),
        common.spawn_worker(('numpy', 'redis', 'proxystore', 'proxystore.store.redis')) as worker,
    ):
        stores = {
            'redis': RedisStore(f'bench-single-{uuid.uuid4().hex[:8]}', hostname=host, port=port),
            'redis-cluster': RedisStore(
                f'bench-cluster-{uuid.uuid4().hex[:8]}', hostname=chost, port=cport, cluster=True
            ),
        }

        def resolve_once(store: Store) -> float:
            proxy = store.proxy(x)
            got, _, nbytes, _ = _in_worker(worker, _resolve_proxy, pickle.dumps(proxy))
            _check(nbytes, x, store.name)
            return got

        def batch_once(store: Store) -> float:
            elapsed, keys = _timed(lambda: store.set_batch(objs))
            for key in keys:
                store.evict(key)
            return elapsed

        # Interleaved (single, cluster, single, ...) so a change in the machine's
        # load during the run affects both sides alike.
        samples: dict[str, dict[str, list[float]]] = {
            name: {'resolve': [], 'set_batch': []} for name in stores
        }
        try:
            for run in range(args.warmup + args.repeat):
                for name, store in stores.items():
                    resolve_time, batch_time = resolve_once(store), batch_once(store)
                    if run >= args.warmup:
                        samples[name]['resolve'].append(resolve_time)
                        samples[name]['set_batch'].append(batch_time)
            for name, values in samples.items():
                results[name] = {what: common.median(v) for what, v in values.items()}
            print('  redis vs redis-cluster: done', flush=True)
        finally:
            for store in stores.values():
                store.cleanup()
    single, cluster = results['redis'], results['redis-cluster']
    rows = []
    for what, label, target in (
        ('resolve', f'resolve {common.format_size(CLUSTER_RESOLVE_BYTES)}', 1.3),
        ('set_batch', f'set_batch {CLUSTER_BATCH_COUNT} x 1 KB', 1.5),
    ):
        ratio = cluster[what] / single[what]
        rows.append(
            [
                label,
                common.format_time(single[what]),
                common.format_time(cluster[what]),
                common.format_ratio(ratio),
                f'<= {target}x',
                'yes' if ratio <= target else 'NO',
            ]
        )
    return rows


def bench_local(arrays: dict[int, np.ndarray], args: argparse.Namespace) -> list[Row]:
    """LocalStore (in-process resolve: its proxies cannot cross processes) and np.copy."""
    rows = []
    store = LocalStore(f'bench-local-{uuid.uuid4().hex[:8]}')
    try:
        for size, x in arrays.items():

            def run(x: np.ndarray = x) -> Sample:
                put, proxy = _timed(lambda: store.proxy(x))
                start = time.perf_counter()
                resolve(proxy)
                resolved = time.perf_counter()
                _touch(extract(proxy))
                used = time.perf_counter()
                store.evict(get_factory(proxy).key)  # type: ignore[attr-defined]
                return Sample(put, resolved - start, used - start)

            got = _median_samples(run, x.nbytes, args)
            copy, copy_use = _copy_bounds(x, args)
            rows.append(
                _store_row(
                    size, 'local (in-process)', got, (copy, copy_use), 'np.copy / np.copy (+sum)'
                )
            )
            rows.append(
                Row(
                    size,
                    'np.copy',
                    copy,
                    None,
                    copy,
                    None,
                    'reference: one memory copy (+sum)',
                    use=copy_use,
                )
            )
            print(f'  local  {common.format_size(size):>7}: done', flush=True)
    finally:
        store.cleanup()
    return rows


# -- small objects: store vs the raw client, same run -------------------------------------

SMALL_SIZES = (1 << 10, 10 << 10)
SMALL_TARGET = 1.15
SMALL_CALLS = 2000
SMALL_QUICK_CALLS = 400
SMALL_BLOCKS = 5


def _interleaved(
    fns: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]], calls: int
) -> dict[str, float]:
    """Median seconds per call of each ``(timed, untimed cleanup)`` pair, calls interleaved.

    The functions take turns call by call, in a new random order each round
    (so each follows every other equally often: a write slows whatever runs
    next), and a burst of load from other processes hits all of them alike;
    the median per call ignores the bursts themselves.
    """
    items = list(fns.items())
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = random.Random(0)
    for i in range(calls + calls // 10):  # the first tenth is warm-up
        order.shuffle(items)
        for name, (fn, after) in items:
            start = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - start
            after(result)
            if i >= calls // 10:
                times[name].append(elapsed)
    return {name: common.median(values) for name, values in times.items()}


def _small_rows(
    store_name: str,
    measure: Callable[[np.ndarray, int], dict[str, float]],
    args: argparse.Namespace,
) -> list[list[str]]:
    """Rows of the small-object table for one store: SMALL_BLOCKS interleaved blocks per size.

    Each block measures raw set/get and ours in alternation; the reported
    ratio is the median of the block ratios, and its spread (min-max) shows
    how noisy the machine was.
    """
    rows = []
    calls = SMALL_QUICK_CALLS if args.quick else SMALL_CALLS
    rng = np.random.default_rng(1)
    for size in SMALL_SIZES:
        x = rng.random(size // 8)
        blocks = [measure(x, calls) for _ in range(SMALL_BLOCKS)]
        for op in ('set', 'get'):
            raw = common.median([b[f'raw {op}'] for b in blocks])
            ours = common.median([b[f'ours {op}'] for b in blocks])
            ratios = sorted(b[f'ours {op}'] / b[f'raw {op}'] for b in blocks)
            ratio = common.median(ratios)
            rows.append(
                [
                    f'{store_name} {op}',
                    common.format_size(size),
                    common.format_time(raw),
                    common.format_time(ours),
                    common.format_ratio(ratio),
                    f'{ratios[0]:.2f}-{ratios[-1]:.2f}',
                    f'<= {SMALL_TARGET:.2f}x',
                    'yes' if ratio <= SMALL_TARGET else 'NO',
                ]
            )
    return rows


def bench_small(stores: Sequence[str], args: argparse.Namespace) -> list[list[str]]:
    """1 KB and 10 KB float64 arrays: ``store.set``/``store.get`` (cache_size=0) vs the raw
    client in the same process and run. Redis raw: ``pickle.dumps(x, protocol=5)`` + redis-py
    ``SET`` / redis-py ``GET`` + ``pickle.loads``. File raw: ``pickle.dumps`` + open/write/close
    of a new file / open/read/close + ``pickle.loads``."""
    rows: list[list[str]] = []
    if 'file' in stores:
        with common.temp_dir('bench-small-file-') as tmp:
            store = FileStore(
                f'bench-small-{uuid.uuid4().hex[:8]}',
                store_dir=os.path.join(tmp, 'store'),
                cache_size=0,
            )
            raw_dir = os.path.join(tmp, 'raw')
            os.makedirs(raw_dir)

            def file_block(x: np.ndarray, calls: int) -> dict[str, float]:
                key = store.set(x)
                path = os.path.join(raw_dir, 'read')
                with open(path, 'wb') as f:
                    f.write(pickle.dumps(x, protocol=5))

                def raw_set() -> str:
                    new = os.path.join(raw_dir, uuid.uuid4().hex)
                    data = pickle.dumps(x, protocol=5)
                    with open(new, 'wb') as f:
                        f.write(data)
                    return new

                def raw_get() -> Any:
                    with open(path, 'rb') as f:
                        return pickle.loads(f.read())

                try:
                    return _interleaved(
                        {
                            'raw set': (raw_set, os.unlink),
                            'ours set': (lambda: store.set(x), store.evict),
                            'raw get': (raw_get, lambda _: None),
                            'ours get': (lambda: store.get(key), lambda _: None),
                        },
                        calls,
                    )
                finally:
                    store.evict(key)

            try:
                rows += _small_rows('file', file_block, args)
            finally:
                store.cleanup()
    if 'redis' in stores:
        import redis

        from proxystore.store.redis import RedisStore

        with common.redis_server() as (host, port):
            store = RedisStore(
                f'bench-small-{uuid.uuid4().hex[:8]}', hostname=host, port=port, cache_size=0
            )
            client = redis.Redis(host=host, port=port)

            def redis_block(x: np.ndarray, calls: int) -> dict[str, float]:
                key = store.set(x)
                raw_key = uuid.uuid4().hex
                client.set(raw_key, pickle.dumps(x, protocol=5))

                def raw_set() -> str:
                    new = uuid.uuid4().hex
                    client.set(new, pickle.dumps(x, protocol=5))
                    return new

                try:
                    return _interleaved(
                        {
                            'raw set': (raw_set, client.delete),
                            'ours set': (lambda: store.set(x), store.evict),
                            'raw get': (
                                lambda: pickle.loads(client.get(raw_key)),
                                lambda _: None,
                            ),
                            'ours get': (lambda: store.get(key), lambda _: None),
                        },
                        calls,
                    )
                finally:
                    client.delete(key, raw_key)

            try:
                rows += _small_rows('redis', redis_block, args)
            finally:
                store.close()
                client.close()
    return rows


def print_small(rows: list[list[str]], args: argparse.Namespace) -> None:
    calls = SMALL_QUICK_CALLS if args.quick else SMALL_CALLS
    common.print_table(
        ['store op', 'size', 'raw client', 'store', 'ratio', 'spread', 'target', 'met'],
        rows,
        title=f'Small objects: store (cache_size=0) vs the raw client, same run (median per call '
        f'of {calls} interleaved calls per block, ratio = median of {SMALL_BLOCKS} blocks, '
        'spread = min-max of the block ratios)',
    )


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
    def ratio(value: float | None, bound: float | None) -> str:
        return common.format_ratio(value / bound if value and bound else None)

    table = []
    for row in rows:
        table.append(
            [
                common.format_size(row.size),
                row.store,
                common.format_time(row.put),
                common.format_time(row.put_bound),
                ratio(row.put, row.put_bound),
                common.format_time(row.resolve),
                common.format_time(row.resolve_bound),
                ratio(row.resolve, row.resolve_bound),
                common.format_time(row.use),
                common.format_time(row.use_bound),
                ratio(row.use, row.use_bound),
                ' '.join(row.notes),
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
            'use',
            'bound',
            'ratio',
            'note',
            'lower bound (put / resolve (+sum))',
        ],
        table,
        title='Put (store.proxy(x), incl. serialization) and cross-process resolve '
        '(timed inside a spawned worker: unpickle proxy + resolve); use = resolve + one full '
        'read pass (float(np.sum(x))), timed from the same start; median; ratio = store / bound',
    )
    if any(MAPPED_NOTE in row.notes for row in rows):
        print(
            f'{MAPPED_NOTE}: the resolved array is a private mapping of the stored file (zero '
            'copies); its pages are faulted in on first use, so compare "use", not "resolve".'
        )


PLOT_STYLES = {
    'file': 'C0',
    'shm': 'C1',
    'redis': 'C3',
    'local (in-process)': 'C2',
    'np.copy': 'C7',
}
BOUND_LABELS = {
    'file': 'file lower bound',
    'shm': 'shm lower bound (np.copy)',
    'redis': 'redis lower bound',
}


def plot(rows: list[Row], path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f'\nmatplotlib is not installed: skipping the plot ({path}).')
        return
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [
        ('put', 'put_bound', 'put (store.proxy)'),
        ('resolve', 'resolve_bound', 'cross-process resolve'),
        ('use', 'use_bound', 'first use: resolve + np.sum'),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(17, 4.5), sharey=True)
    for ax, (what, bound, title) in zip(axes, panels):
        for store, color in PLOT_STYLES.items():
            points = sorted(
                (r.size, getattr(r, what), getattr(r, bound), MAPPED_NOTE in r.notes)
                for r in rows
                if r.store == store and getattr(r, what) is not None
            )
            if not points:
                continue
            sizes = [p[0] / (1 << 20) for p in points]
            ax.plot(sizes, [p[1] * 1e3 for p in points], 'o-', color=color, label=store)
            mapped = [(s, p[1] * 1e3) for s, p in zip(sizes, points) if p[3]]
            if what == 'resolve' and mapped:
                ax.plot(
                    [m[0] for m in mapped],
                    [m[1] for m in mapped],
                    's',
                    markersize=10,
                    markerfacecolor='none',
                    color=color,
                    label=f'{store} {MAPPED_NOTE}',
                )
            if store in BOUND_LABELS and all(p[2] for p in points):
                ax.plot(
                    sizes,
                    [p[2] * 1e3 for p in points],
                    'x--',
                    color=color,
                    label=BOUND_LABELS[store],
                )
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('array size (MB)')
        ax.set_title(title)
        ax.grid(True, which='both', alpha=0.3)
    axes[0].set_ylabel('median time (ms)')
    labels: dict[str, Any] = {}
    for ax in axes:  # one legend for all panels, right of them
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    fig.legend(list(labels.values()), list(labels), loc='center right', fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
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
        default=','.join(STORES),
        help=f'comma-separated stores to measure (default {",".join(STORES)})',
    )
    parser.add_argument(
        '--quick', action='store_true', help=f'fast small run (sizes {QUICK_SIZES})'
    )
    parser.add_argument(
        '--plot',
        default=os.path.join(common.RESULTS_DIR, 'stores.png'),
        help='where to write the plot (default benchmarks/results/stores.png); "" to skip',
    )
    parser.add_argument(
        '--small-only',
        action='store_true',
        help='only the small-object table (1 KB and 10 KB, store vs raw client)',
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
    unknown = set(stores) - set(STORES)
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
    if args.small_only:
        print('\nMeasuring small objects against the raw clients ...', flush=True)
        print_small(bench_small(stores, args), args)
        print(f'\nTotal time {time.perf_counter() - started:.1f} s')
        return 0
    rng = np.random.default_rng(0)
    arrays = {size: rng.random(max(size // 8, 1)) for size in sizes}
    rows: list[Row] = []
    extras: dict[str, dict[str, Any]] = {}
    print('\nMeasuring put/resolve ...', flush=True)
    if 'file' in stores:
        file_rows, extras['file'] = bench_file(arrays, args)
        rows += file_rows
    if 'shm' in stores:
        shm_rows, extras['shm'] = bench_shm(arrays, args)
        rows += shm_rows
    if 'redis' in stores:
        redis_rows, extras['redis'] = bench_redis(arrays, args)
        rows += redis_rows
    if 'local' in stores:
        rows += bench_local(arrays, args)
    print('\nMeasuring small objects against the raw clients ...', flush=True)
    small_rows = bench_small(stores, args)
    cluster_rows = bench_cluster(args) if 'redis-cluster' in stores else []
    order = {name: i for i, name in enumerate(PLOT_STYLES)}
    rows.sort(key=lambda r: (r.size, order[r.store]))
    print_results(rows)

    if small_rows:
        print_small(small_rows, args)

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

    if cluster_rows:
        common.print_table(
            [
                'operation',
                'redis (1 server)',
                'redis-cluster (3 masters)',
                'ratio',
                'target',
                'met',
            ],
            cluster_rows,
            title='Redis Cluster vs one redis-server, same run (median; resolve in a spawned '
            'worker; ratio = cluster / single)',
        )

    if args.plot:
        plot(rows, args.plot)
    print(f'\nTotal time {time.perf_counter() - started:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
