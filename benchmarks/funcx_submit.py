"""Bytes a FuncX submit request carries for a 100 MB argument: plain client vs proxy_client.

Runs the real ``funcx`` SDK client against the loopback FuncX service double
(``proxystore.integrations.testing.funcx_service``), which enforces the hosted
service's 10 MB limit per submit request and records the size of every request
body. Run ``.venv/bin/python benchmarks/funcx_submit.py`` (``--help`` for
options). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import common
import funcx_apps
import numpy as np

from proxystore.integrations.funcx import proxy_client
from proxystore.integrations.testing.funcx_service import MAX_REQUEST_SIZE
from proxystore.integrations.testing.funcx_service import FuncXServiceDouble
from proxystore.integrations.testing.funcx_service import wait_for_result
from proxystore.store.file import FileStore

# Before anything imports funcx (the double's make_client does; nothing above does):
# importing it warns that the SDK was renamed.
warnings.filterwarnings('ignore', r'\s*The funcX SDK has been renamed', UserWarning)

ENDPOINT = str(uuid.uuid4())
THRESHOLD = 100_000
TARGET_BYTES = 1000
POLL_INTERVAL = 0.005


def request_size(client: Any, function_id: str, args: tuple[Any, ...]) -> int:
    """Bytes of the submit body the SDK would send for one task, without sending it.

    ``client.run`` makes a batch, adds the task (the SDK serializes the
    arguments there) and POSTs ``batch.prepare()`` as JSON (requests'
    ``json.dumps`` with default separators; base64 text, so one byte a character).
    """
    batch = client.create_batch()
    batch.add(function_id, args)
    return len(json.dumps(batch.prepare()).encode())


def plain_rejection(
    service: FuncXServiceDouble, client: Any, function_id: str, size: int
) -> dict[str, Any]:
    """Submit a ``size``-byte array through the plain client; the double must refuse it."""
    from globus_sdk import GlobusAPIError

    x = np.random.default_rng(1).random(size // 8)
    estimate = request_size(client, function_id, (x,))
    before = len(service.submit_sizes)
    try:
        client.run(x, endpoint_id=ENDPOINT, function_id=function_id)
    except GlobusAPIError as e:
        outcome = f'rejected: HTTP {e.http_status} {e.code}'
    else:  # pragma: no cover - the double enforces the limit
        outcome = 'ACCEPTED (expected a rejection)'
    sent = service.submit_sizes[before] if len(service.submit_sizes) > before else None
    return {'estimate': estimate, 'sent': sent, 'outcome': outcome}


def round_trips(
    service: FuncXServiceDouble,
    client: Any,
    function_id: str,
    x: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Medians of submit (incl. any store put) and submit -> result, and the request sizes."""
    expected = funcx_apps.checksum(x)
    sizes: list[int] = []
    submits: list[float] = []
    totals: list[float] = []
    for i in range(args.warmup + args.repeat):
        before = len(service.submit_sizes)
        start = time.perf_counter()
        task_id = client.run(x, endpoint_id=ENDPOINT, function_id=function_id)
        submitted = time.perf_counter()
        result = wait_for_result(client, task_id, timeout=600, interval=POLL_INTERVAL)
        done = time.perf_counter()
        if result != expected:
            raise AssertionError(f'task returned {result!r}, expected {expected!r}')
        sizes.append(service.submit_sizes[before])
        if i >= args.warmup:
            submits.append(submitted - start)
            totals.append(done - start)
    return {
        'request': max(sizes),
        'submit': common.median(submits),
        'total': common.median(totals),
        'wait': common.median([t - s for s, t in zip(submits, totals)]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--size', default='100MB', help='argument size, float64 array, binary units (default 100MB)'
    )
    parser.add_argument(
        '--reject-size',
        default='12MB',
        help='argument the plain client submits to show the rejection (default 12MB)',
    )
    common.add_protocol_args(parser)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be >= 1 and --warmup >= 0')
    size = common.parse_size(args.size)
    reject_size = common.parse_size(args.reject_size)

    common.print_machine_report(
        {name: importlib.metadata.version(name) for name in ('funcx', 'globus-compute-sdk')}
    )
    print(
        f'Protocol: {args.warmup} warm-up + median of {args.repeat} round trips; '
        f'service double on 127.0.0.1 with 1 worker process (spawn), request limit '
        f'{MAX_REQUEST_SIZE} B; results polled every {POLL_INTERVAL * 1e3:.0f} ms; '
        f'1 KB = 1024 B'
    )
    started = time.perf_counter()
    x = np.random.default_rng(0).random(size // 8)
    small = np.random.default_rng(0).random(1024 // 8)

    with (
        FuncXServiceDouble(workers=1) as service,
        common.temp_dir('bench-funcx-') as tmp,
    ):
        client = service.make_client()
        store = FileStore(
            f'bench-funcx-{uuid.uuid4().hex[:8]}', store_dir=os.path.join(tmp, 'store')
        )
        try:
            wrapped = proxy_client(client, store=store, threshold=THRESHOLD, evict=True)
            plain_id = client.register_function(funcx_apps.checksum)
            wrapped_id = wrapped.register_function(funcx_apps.checksum)

            rejection = plain_rejection(service, client, plain_id, reject_size)
            plain_estimate = request_size(client, plain_id, (x,))
            wrapped_timing = round_trips(service, wrapped, wrapped_id, x, args)
            small_plain = round_trips(service, client, plain_id, small, args)
            small_wrapped = round_trips(service, wrapped, wrapped_id, small, args)
            leftover = len(os.listdir(store.store_dir))
            request_latency = common.measure(
                lambda: client.get_endpoint_status(ENDPOINT), repeat=10, warmup=1
            )
        finally:
            store.cleanup()

    wrapped_bytes = wrapped_timing['request']
    common.print_table(
        ['client', 'argument', 'submit request', 'how', 'outcome'],
        [
            [
                'plain',
                common.format_size(reject_size),
                f'{rejection["sent"]} B',
                f'sent (estimate {rejection["estimate"]} B)',
                rejection['outcome'],
            ],
            [
                'plain',
                common.format_size(size),
                f'{plain_estimate} B',
                'estimate, not sent',
                f'over the limit {plain_estimate / MAX_REQUEST_SIZE:.1f}x',
            ],
            [
                'proxy_client',
                common.format_size(size),
                f'{wrapped_bytes} B',
                'sent',
                f'accepted; {"under" if wrapped_bytes < TARGET_BYTES else "OVER"} '
                f'the {TARGET_BYTES} B target',
            ],
        ],
        title=f'Submit request body for one task with a float64 array argument '
        f'(limit {MAX_REQUEST_SIZE} B; proxy_client threshold {THRESHOLD} B, FileStore)',
    )
    print(
        f'The wrapped request is {plain_estimate / wrapped_bytes:,.0f}x smaller than the plain one.'
    )
    common.print_table(
        ['client', 'argument', 'request', 'submit', 'wait for result', 'round trip'],
        [
            [
                name,
                common.format_size(nbytes),
                f'{t["request"]} B',
                common.format_time(t['submit']),
                common.format_time(t['wait']),
                common.format_time(t['total']),
            ]
            for name, nbytes, t in [
                ('proxy_client', size, wrapped_timing),
                ('plain', small.nbytes, small_plain),
                ('proxy_client', small.nbytes, small_wrapped),
            ]
        ],
        title='Round trip of one checksum task (submit -> result; median): '
        'submit = run() incl. the store put; wait = until get_result returns',
    )
    print(
        'One request to the service double (GET endpoint status, keep-alive connection): '
        f'{common.format_time(request_latency)} (median of 10); a round trip takes one submit '
        'and at least one status poll.'
    )
    print(f'Objects left in the store (evict=True, should be 0): {leftover}')
    print(f'\nTotal time {time.perf_counter() - started:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
