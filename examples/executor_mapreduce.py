"""Map-reduce over large arrays with any concurrent.futures executor, auto-proxied.

``ProxyExecutor`` wraps an executor (here a process pool): arguments and
results larger than the threshold travel through the store, and the pool's
pipes carry only proxies.

    .venv/bin/python examples/executor_mapreduce.py
    .venv/bin/python examples/executor_mapreduce.py --no-proxy
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import _common
import numpy as np

from proxystore.integrations.executor import ProxyExecutor


def double(x: Any) -> Any:
    return 2 * x


def total(xs: Any) -> float:
    return float(sum(np.sum(x) for x in xs))


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument('--workers', type=int, default=2)
    args = p.parse_args()
    arrays = _common.make_arrays(args.arrays, args.size_mb)
    expected = float(sum(2 * np.sum(a) for a in arrays))

    with _common.ExampleStore(args) as store:
        pool = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context('spawn'))
        pool.submit(int).result()  # start the workers before timing
        counter = _common.EngineCounter(pool)
        executor: Any = pool
        if not args.no_proxy:
            executor = ProxyExecutor(
                pool,
                store=store,
                threshold=args.threshold,
                evict_on_shutdown=True,
            )
        with executor:
            start = time.perf_counter()
            doubled = [executor.submit(double, a) for a in arrays]
            _common.wait_with_progress(doubled, 'double')
            results = [d.result() for d in doubled]
            result = executor.submit(total, results).result()
            engine = counter.nbytes + sum(_common.wire_size(r) for r in results)
            _common.report(
                args,
                'process pool',
                result,
                expected,
                start,
                engine,
                _common.store_bytes(args, arrays, results),
            )


if __name__ == '__main__':
    main()
