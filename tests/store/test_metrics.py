"""Metrics record without a lock (one list append) and still count every operation."""

from __future__ import annotations

import threading
from pathlib import Path

from proxystore.store.file import FileStore
from proxystore.store.metrics import _FOLD_AT
from proxystore.store.metrics import Metrics


def test_concurrent_records_and_snapshots_lose_nothing() -> None:
    metrics = Metrics()
    per_thread = 3 * _FOLD_AT + 17  # several folds per thread, some mid-record
    snapshots: list[int] = []
    stop = threading.Event()

    def record() -> None:
        for i in range(per_thread):
            metrics.record_read(10, 0.5, miss=i % 2 == 0)
            metrics.record_write(3, 0.25)
            metrics.record('exists')

    def watch() -> None:  # snapshots fold while records are appended
        while not stop.is_set():
            snapshots.append(int(metrics.as_dict()['get']['count']))  # type: ignore[index]

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=record) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    watcher.join()
    total = metrics.as_dict()
    n = 8 * per_thread
    assert total['get'] == {'count': n, 'bytes': 10 * n, 'seconds': 0.5 * n}
    assert total['set'] == {'count': n, 'bytes': 3 * n, 'seconds': 0.25 * n}
    assert total['exists']['count'] == n  # type: ignore[index]
    assert total['cache_misses'] == 8 * ((per_thread + 1) // 2)
    assert snapshots == sorted(snapshots)  # a snapshot never goes back
    assert len(metrics._pending) == 0


def test_reset_drops_pending_records() -> None:
    metrics = Metrics()
    metrics.record_read(5, 1.0, miss=True)
    metrics.reset()
    snapshot = metrics.as_dict()
    assert snapshot['get'] == {'count': 0, 'bytes': 0, 'seconds': 0.0}
    assert snapshot['cache_misses'] == 0


def test_uncached_store_counts_every_read_from_many_threads(tmp_path: Path) -> None:
    store = FileStore('metrics-threads', store_dir=str(tmp_path / 'store'), cache_size=0)
    assert store._plain_reads  # the inline read path, not the general one
    key = store.set([1, 2, 3])
    store.reset_metrics()

    def read() -> None:
        for _ in range(2000):
            assert store.get(key) == [1, 2, 3]
        assert store.get('missing-key') is None

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    metrics = store.metrics()
    assert metrics['get']['count'] == 6 * 2001  # type: ignore[index]
    assert metrics['cache_misses'] == 6 * 2001
    store.cleanup()
