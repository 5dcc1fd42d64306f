"""Parsl checkpointing under auto-proxy: a later run reuses results for equal arguments."""

from __future__ import annotations

import os
from typing import Any

import pytest

parsl = pytest.importorskip('parsl')
from parsl import python_app  # noqa: E402
from parsl.dataflow.memoization import BasicMemoizer  # noqa: E402
from parsl.utils import get_all_checkpoints  # noqa: E402

from proxystore.integrations.parsl import auto_proxy  # noqa: E402
from proxystore.integrations.testing.parsl_configs import thread_config  # noqa: E402
from proxystore.store.base import Store  # noqa: E402
from tests.integrations import parsl_apps  # noqa: E402

THRESHOLD = 10_000


def _run(run_dir: str, store: Store, text: str, **options: Any) -> Any:
    memoizer = BasicMemoizer(checkpoint_mode='task_exit', **options)
    dfk = parsl.load(thread_config(run_dir, memoizer=memoizer))
    try:
        app = auto_proxy(store=store, threshold=THRESHOLD)(
            python_app(parsl_apps.list_of_lists, cache=True)
        )
        size = auto_proxy(store=store, threshold=THRESHOLD)(python_app(parsl_apps.size, cache=True))
        future = size(text)
        lists = app(THRESHOLD)
        return future.result(), future.task_record['from_memo'], len(lists.result()[0])
    finally:
        dfk.cleanup()
        parsl.clear()


def test_checkpoint_hits_in_a_later_run(shared_store: Store, tmp_path: Any) -> None:
    run_dir = str(tmp_path / 'runinfo')
    text = os.urandom(4).hex() * THRESHOLD
    assert _run(run_dir, shared_store, text) == (8 * THRESHOLD, False, THRESHOLD)
    checkpoints = get_all_checkpoints(run_dir)
    assert checkpoints
    # A new DataFlowKernel, equal (not identical) arguments: reused from the checkpoint,
    # and the checkpointed result proxy still reads (evict=False keeps its object).
    again = _run(run_dir, shared_store, str(text), checkpoint_files=checkpoints)
    assert again == (8 * THRESHOLD, True, THRESHOLD)
