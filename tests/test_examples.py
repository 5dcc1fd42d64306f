"""Each example runs end to end, small, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples')
SMALL = ['--arrays', '3', '--size-mb', '0.5', '--threshold', '10000']


def run_example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize(
    'name',
    ['parsl_mapreduce.py', 'executor_mapreduce.py', 'funcx_mapreduce.py'],
)
def test_example_proxied_and_baseline(name: str) -> None:
    proxied = run_example(name, *SMALL)
    assert '(correct)' in proxied and 'auto-proxy' in proxied
    assert 'engine channel 0.0' in proxied  # only proxies crossed the engine
    assert 'objects left in the store: 0' in proxied  # every intermediate was evicted
    baseline = run_example(name, *SMALL, '--no-proxy')
    assert '(correct)' in baseline and 'store 0.000 MB' in baseline


def test_parsl_example_on_redis(redis_address: tuple[str, int]) -> None:
    host, port = redis_address
    out = run_example(
        'parsl_mapreduce.py',
        *SMALL,
        '--store',
        'redis',
        '--redis-host',
        host,
        '--redis-port',
        str(port),
        '--executor',
        'threads',
    )
    assert '(correct)' in out


def test_parsl_example_on_redis_with_the_node_tier(redis_address: tuple[str, int]) -> None:
    """HTEX worker processes read through the node tier (node_cache=True travels in proxies)."""
    host, port = redis_address
    out = run_example(
        'parsl_mapreduce.py',
        *SMALL,
        '--store',
        'redis',
        '--node-cache',
        '--redis-host',
        host,
        '--redis-port',
        str(port),
    )
    assert '(correct)' in out and 'engine channel 0.0' in out


def test_funcx_example_shows_the_size_limit() -> None:
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(EXAMPLES, 'funcx_mapreduce.py'),
            '--arrays',
            '1',
            '--size-mb',
            '12',
            '--no-proxy',
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert 'TASK_PAYLOAD_TOO_LARGE' in result.stderr
