"""Map-reduce over large arrays with Parsl, auto-proxied through ProxyStore.

Doubles N random arrays in parallel apps, then sums all doubled arrays in one
app. With auto-proxying, arrays and intermediate results larger than the
threshold travel through the store (an embedded file store by default, or
Redis) and Parsl moves only proxies of a few hundred bytes.

    .venv/bin/python examples/parsl_mapreduce.py                 # local HTEX, file store
    .venv/bin/python examples/parsl_mapreduce.py --no-proxy      # baseline
    .venv/bin/python examples/parsl_mapreduce.py --store redis --redis-port 6379
    .venv/bin/python examples/parsl_mapreduce.py --store redis --node-cache  # one copy per node
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import _common
import numpy as np
import parsl
from parsl import python_app

from proxystore.integrations.parsl import auto_proxy
from proxystore.integrations.testing.parsl_configs import htex_config
from proxystore.integrations.testing.parsl_configs import thread_config


def double(x: Any) -> Any:
    return 2 * x


def noop() -> None:
    return None


def total(inputs: Any = ()) -> float:
    import numpy as np

    return float(sum(np.sum(x) for x in inputs))


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument(
        '--executor',
        choices=['htex', 'threads'],
        default='htex',
        help='htex: local HighThroughputExecutor with worker processes (default)',
    )
    p.add_argument('--workers', type=int, default=2)
    args = p.parse_args()

    run_dir = tempfile.mkdtemp(prefix='parsl-runinfo-')
    make_config = htex_config if args.executor == 'htex' else thread_config
    arrays = _common.make_arrays(args.arrays, args.size_mb)
    expected = float(sum(2 * np.sum(a) for a in arrays))

    with _common.ExampleStore(args) as store:
        dfk = parsl.load(make_config(run_dir, workers=args.workers))
        try:
            python_app(noop)().result()  # wait for the workers to start
            counter = _common.EngineCounter(dfk.executors[args.executor], skip=1)
            double_app = python_app(double)
            total_app = python_app(total)
            if not args.no_proxy:
                proxying = auto_proxy(store=store, threshold=args.threshold, evict='auto')
                double_app, total_app = proxying(double_app), proxying(total_app)
            start = time.perf_counter()
            doubled = [double_app(a) for a in arrays]
            _common.wait_with_progress(doubled, 'double')
            result = total_app(inputs=doubled).result()
            results = [d.result() for d in doubled]
            engine = counter.nbytes + sum(_common.wire_size(r) for r in results)
            _common.report(
                args,
                f'parsl-{args.executor}',
                result,
                expected,
                start,
                engine,
                _common.store_bytes(args, arrays, results),
            )
            # evict='auto': once nothing references them, the results go too.
            del doubled, results
        finally:
            dfk.cleanup()
            parsl.clear()


if __name__ == '__main__':
    main()
