"""The map-reduce examples run on a Redis Cluster (``--store redis-cluster``)."""

from __future__ import annotations

import pytest

from tests.cluster import Cluster
from tests.test_examples import SMALL
from tests.test_examples import run_example


def _keys_left(cluster: Cluster) -> int:
    return sum(int(master('DBSIZE')) for master in cluster.masters())


@pytest.mark.parametrize(
    ('name', 'extra'),
    [('parsl_mapreduce.py', ('--executor', 'htex')), ('funcx_mapreduce.py', ())],
)
def test_example_on_a_redis_cluster(
    private_cluster: Cluster, name: str, extra: tuple[str, ...]
) -> None:
    out = run_example(
        name,
        *SMALL,
        '--store',
        'redis-cluster',
        '--redis-host',
        private_cluster.host,
        '--redis-port',
        str(private_cluster.nodes[-1].port),  # any node is an entry point
        *extra,
    )
    assert '(correct)' in out and 'auto-proxy' in out
    assert 'engine channel 0.0' in out  # only proxies crossed the engine
    assert _keys_left(private_cluster) == 0  # every intermediate was evicted
