"""Per-store operation counters: how often, how many bytes, how long.

Integrations and users read them to check that objects move as intended (for
example that an auto-proxied argument is fetched once per consuming task and
never by the submitting process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ['Metrics', 'OPERATIONS']

#: Operations a store records. ``resolve`` counts proxies resolved through
#: this store object; ``get`` counts every read, including those of resolves.
OPERATIONS = ('set', 'get', 'exists', 'evict', 'proxy', 'resolve')


@dataclass
class _Timing:
    nbytes: int = 0
    seconds: float = 0.0


class Metrics:
    """Thread-safe counters for one store object, readable as a plain dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, float]] = {}
        self._counters: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._stats = {op: {'count': 0, 'bytes': 0, 'seconds': 0.0} for op in OPERATIONS}
            self._counters = {'cache_hits': 0, 'cache_misses': 0}

    def record(
        self, operation: str, *, count: int = 1, nbytes: int = 0, seconds: float = 0.0
    ) -> None:
        """Add one (or ``count``) completed ``operation`` of ``nbytes`` taking ``seconds``."""
        with self._lock:
            stats = self._stats.setdefault(operation, {'count': 0, 'bytes': 0, 'seconds': 0.0})
            stats['count'] += count
            stats['bytes'] += nbytes
            stats['seconds'] += seconds

    def record_write(self, nbytes: int, seconds: float) -> None:
        """Record one ``set``: every write's path."""
        with self._lock:
            stats = self._stats['set']
            stats['count'] += 1
            stats['bytes'] += nbytes
            stats['seconds'] += seconds

    def record_read(self, nbytes: int, seconds: float, *, miss: bool) -> None:
        """Record one ``get`` (and a cache miss if ``miss``) under one lock: every read's path."""
        with self._lock:
            stats = self._stats['get']
            stats['count'] += 1
            stats['bytes'] += nbytes
            stats['seconds'] += seconds
            if miss:
                self._counters['cache_misses'] += 1

    def increment(self, counter: str, count: int = 1) -> None:
        """Add ``count`` to a plain counter such as ``cache_hits``."""
        with self._lock:
            self._counters[counter] = self._counters.get(counter, 0) + count

    @contextmanager
    def timer(self, operation: str, *, count: int = 1) -> Iterator[_Timing]:
        """Time the body and record it as ``operation`` if it completes.

        Set ``nbytes`` on the yielded object to record the bytes moved.
        """
        timing = _Timing()
        start = time.perf_counter()
        yield timing
        timing.seconds = time.perf_counter() - start
        self.record(operation, count=count, nbytes=timing.nbytes, seconds=timing.seconds)

    def reset_after_fork(self) -> None:
        """Give a forked child a fresh lock (a parent thread may have held this one)."""
        self._lock = threading.Lock()

    def as_dict(self) -> dict[str, dict[str, float] | int]:
        """Return a snapshot: ``{op: {'count', 'bytes', 'seconds'}, counter: int}``."""
        with self._lock:
            snapshot: dict[str, dict[str, float] | int] = {
                op: dict(stats) for op, stats in self._stats.items()
            }
            snapshot.update(self._counters)
            return snapshot
