"""Map-reduce over large arrays with FuncX, auto-proxied through ProxyStore.

By default this runs against a loopback double of the FuncX web service (the
real ``funcx`` client, tasks run by local worker processes), which enforces
the hosted service's 10 MB limit per submission: without proxies, 10 MB
arrays are rejected. Pass ``--endpoint UUID`` (and log in with the funcx SDK)
to use a real endpoint; that endpoint must reach the store too.

    .venv/bin/python examples/funcx_mapreduce.py
    .venv/bin/python examples/funcx_mapreduce.py --no-proxy      # rejected: too large
"""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings
from typing import Any

import _common
import numpy as np

from proxystore.integrations.funcx import proxy_client

# funcx 2.4 is a shim over globus-compute-sdk and says so on import.
warnings.filterwarnings('ignore', r'\s*The funcX SDK has been renamed', UserWarning)


def double(x: Any) -> Any:
    return 2 * x


def total(xs: Any) -> float:
    import numpy as np

    return float(sum(np.sum(x) for x in xs))


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument(
        '--endpoint', help='UUID of a real FuncX endpoint (default: the loopback double)'
    )
    args = p.parse_args()
    arrays = _common.make_arrays(args.arrays, args.size_mb)
    expected = float(sum(2 * np.sum(a) for a in arrays))

    with contextlib.ExitStack() as stack:
        store = stack.enter_context(_common.ExampleStore(args))
        if args.endpoint:
            from funcx import FuncXClient

            client: Any = FuncXClient()
            endpoint = args.endpoint
            service = None
        else:
            from proxystore.integrations.testing.funcx_service import FuncXServiceDouble

            service = stack.enter_context(FuncXServiceDouble(workers=2))
            client = service.make_client()
            endpoint = str(uuid.uuid4())
        if not args.no_proxy:
            client = proxy_client(client, store=store, threshold=args.threshold, evict=True)
        from proxystore.integrations.testing.funcx_service import wait_for_batch
        from proxystore.integrations.testing.funcx_service import wait_for_result

        double_id = client.register_function(double)
        total_id = client.register_function(total)
        start = time.perf_counter()
        batch = client.create_batch()
        for array in arrays:
            batch.add(double_id, args=(array,))
        try:
            task_ids = client.batch_run(endpoint, batch)['tasks'][double_id]
        except Exception as e:  # the web service's answer to an oversized request
            code = getattr(e, 'code', type(e).__name__)
            raise SystemExit(f'The FuncX service rejected the submission: {code}.') from None
        finished = wait_for_batch(client, task_ids, timeout=600)
        results = [finished[t]['result'] for t in task_ids]
        result = wait_for_result(
            client,
            client.run(results, endpoint_id=endpoint, function_id=total_id),
            timeout=600,
        )
        engine = (
            sum(service.submit_sizes) + sum(service.result_sizes.values())
            if service is not None
            else sum(_common.wire_size(r) for r in results)
        )
        _common.report(
            args,
            'funcx',
            result,
            expected,
            start,
            engine,
            _common.store_bytes(args, arrays, results),
        )


if __name__ == '__main__':
    main()
