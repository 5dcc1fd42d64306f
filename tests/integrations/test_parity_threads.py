"""Auto-proxy on Parsl's ThreadPoolExecutor behaves like plain Parsl with threads.

Threads share the submitting process: plain Parsl hands each task the very
object it was given (no copy), and so does auto-proxy.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

parsl = pytest.importorskip('parsl')
from parsl import join_app  # noqa: E402
from parsl import python_app  # noqa: E402

from proxystore.integrations.parsl import auto_proxy  # noqa: E402
from proxystore.integrations.parsl import proxy_app  # noqa: E402
from proxystore.store.base import Store  # noqa: E402
from tests.integrations import parsl_apps  # noqa: E402

pytestmark = pytest.mark.usefixtures('thread_dfk')

THRESHOLD = 10_000


def _auto(store: Store, fn: Any, **options: Any) -> Any:
    return auto_proxy(store=store, threshold=THRESHOLD, **options)(python_app(fn))


def test_in_place_like_plain_threads(shared_store: Store) -> None:
    plain_input = np.ones(200_000)
    plain = python_app(parsl_apps.double_in_place)(plain_input).result()
    auto_input = np.ones(200_000)
    auto = _auto(shared_store, parsl_apps.double_in_place)(auto_input).result()
    assert float(np.sum(auto)) == float(np.sum(plain)) == 400_000
    # With threads the caller's array itself was doubled, with or without auto-proxy.
    assert float(np.sum(auto_input)) == float(np.sum(plain_input)) == 400_000
    assert shared_store.metrics()['get']['count'] == 0


def test_exact_types_and_cache(shared_store: Store) -> None:
    text = 'ab' * THRESHOLD
    plain = python_app(parsl_apps.text_checks)(text).result()
    assert _auto(shared_store, parsl_apps.text_checks)(text).result() == plain
    size = proxy_app(parsl_apps.size, store=shared_store, threshold=THRESHOLD, cache=True)
    word = os.urandom(4).hex()
    assert size(word * THRESHOLD).result() == 8 * THRESHOLD
    hit = size(word * THRESHOLD)
    assert hit.result() == 8 * THRESHOLD and hit.task_record['from_memo']


@join_app
def _join_two(n: int) -> Any:
    make = python_app(parsl_apps.make)
    return [make(n), make(n)]


def test_join_app(shared_store: Store) -> None:
    joined = auto_proxy(store=shared_store, threshold=THRESHOLD)(_join_two)
    assert [int(np.sum(a)) for a in joined(THRESHOLD * 2).result()] == [THRESHOLD * 2] * 2
