"""Cost of per-key stats (``stats=True``): set + get with and without, side by side.

For each store and size, the same operations run on a store made with
``stats=False`` and one made with ``stats=True`` (caches off, so every get
reads the store), interleaved so machine load hits both alike; the ratio is
stats / no stats. Run ``.venv/bin/python benchmarks/stats_cost.py``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

import common
import numpy as np

from proxystore.store.base import Store
from proxystore.store.file import FileStore


def _round_trip(store: Store, x: np.ndarray) -> None:
    key = store.set(x)
    store.get(key)
    store.evict(key)


def _pair(make: type[Store] | object, **kwargs: object) -> tuple[Store, Store]:
    plain = make('stats-off', cache_size=0, **kwargs)  # type: ignore[operator]
    timed = make('stats-on', cache_size=0, stats=True, **kwargs)  # type: ignore[operator]
    return plain, timed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='1KB,100MB', help='array sizes (default 1KB,100MB)')
    common.add_protocol_args(parser, repeat=21, warmup=3)
    args = parser.parse_args(argv)
    sizes = [common.parse_size(s) for s in args.sizes.split(',')]
    common.print_machine_report()
    print(f'Protocol: set + get + evict, caches off; median of {args.repeat} after {args.warmup}')
    rows = []
    with common.redis_server() as (host, port), common.temp_dir('stats-bench-') as tmp:
        from proxystore.store.redis import RedisStore

        pairs = {
            'file': _pair(FileStore, store_dir=tmp),
            'redis': _pair(RedisStore, hostname=host, port=port),
        }
        for name, (plain, timed) in pairs.items():
            for size in sizes:
                x = np.random.default_rng(0).random(size // 8)
                repeat = args.repeat if size < 10 * 2**20 else max(3, args.repeat // 4)
                run_off = functools.partial(_round_trip, plain, x)
                run_on = functools.partial(_round_trip, timed, x)
                common.measure(run_off, 1, args.warmup)
                common.measure(run_on, 1, args.warmup)
                off, on = [], []
                for _ in range(repeat):  # interleaved: load affects both alike
                    off.append(common.measure(run_off, 1, 0))
                    on.append(common.measure(run_on, 1, 0))
                t_off, t_on = common.median(off), common.median(on)
                rows.append(
                    [
                        f'{name} {common.format_size(size)}',
                        common.format_time(t_off),
                        common.format_time(t_on),
                        common.format_ratio(t_on / t_off),
                    ]
                )
    common.print_table(
        ['store, size', 'stats=False', 'stats=True', 'ratio'], rows, 'Per-key stats cost'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
