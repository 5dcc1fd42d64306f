"""Parsl configurations that run on one machine and use only loopback addresses.

Shared by the tests, the examples and the benchmarks so all three exercise the
same executors: a ``ThreadPoolExecutor`` and a local ``HighThroughputExecutor``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.executors import ThreadPoolExecutor
from parsl.providers import LocalProvider

__all__ = ['htex_config', 'thread_config', 'ensure_worker_path']


def ensure_worker_path() -> None:
    """Put this interpreter's ``bin/`` on ``PATH``.

    The HighThroughputExecutor starts ``process_worker_pool.py`` and its
    interchange from ``PATH``; in an unactivated virtual environment they are
    not there and launching fails with ``FileNotFoundError``.
    """
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get('PATH', '')
    if bin_dir not in path.split(os.pathsep):
        os.environ['PATH'] = bin_dir + os.pathsep + path


def thread_config(run_dir: str, workers: int = 4, **options: Any) -> Config:
    """Threads in this process: tasks and their arguments are never pickled.

    Parsl's defaults otherwise, DEBUG logging to ``run_dir`` included.
    """
    return Config(
        executors=[ThreadPoolExecutor(label='threads', max_threads=workers)],
        run_dir=run_dir,
        usage_tracking=0,
        **options,
    )


def htex_config(
    run_dir: str, workers: int = 2, pythonpath: str | None = None, **options: Any
) -> Config:
    """A local HighThroughputExecutor: worker processes behind an interchange.

    Parsl's defaults otherwise, DEBUG logging to ``run_dir`` included (it
    calls ``repr`` on every task argument).

    Args:
        run_dir: Parsl's run directory (logs, keys).
        workers: Worker processes on this node.
        pythonpath: Prepended to the workers' ``PYTHONPATH`` so they can import
            modules that define apps by reference (tests, examples).
        options: Further ``Config`` settings (``retries``, ``dependency_resolver``, ...).

    """
    ensure_worker_path()
    worker_init = f'export PYTHONPATH={pythonpath}:$PYTHONPATH' if pythonpath else ''
    return Config(
        executors=[
            HighThroughputExecutor(
                label='htex',
                address='127.0.0.1',
                max_workers_per_node=workers,
                cores_per_worker=1,
                provider=LocalProvider(
                    init_blocks=1, min_blocks=1, max_blocks=1, worker_init=worker_init
                ),
                heartbeat_period=2,
                heartbeat_threshold=10,
            ),
        ],
        run_dir=run_dir,
        strategy='none',
        usage_tracking=0,
        **options,
    )
