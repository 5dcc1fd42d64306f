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


#: Pending records folded into the totals once there are this many (bounds memory).
_FOLD_AT = 1024
#: The pending-record name of a ``get`` that also counts a cache miss.
_READ_MISS = 'get+miss'


class Metrics:
    """Thread-safe counters for one store object, readable as a plain dict.

    Recording takes no lock: each record is one ``list.append`` (atomic in
    CPython, with or without the GIL), which costs a small object's ``get``
    a fraction of what a lock and four dictionary updates did. Records are
    summed into the totals under the lock when 1,024 are pending and on
    every read of the totals, so nothing recorded is lost and a snapshot
    includes every operation that completed before it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[str, int, int, float]] = []
        self._stats: dict[str, dict[str, float]] = {}
        self._counters: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            del self._pending[:]
            self._stats = {op: {'count': 0, 'bytes': 0, 'seconds': 0.0} for op in OPERATIONS}
            self._counters = {'cache_hits': 0, 'cache_misses': 0}

    def record(
        self, operation: str, *, count: int = 1, nbytes: int = 0, seconds: float = 0.0
    ) -> None:
        """Add one (or ``count``) completed ``operation`` of ``nbytes`` taking ``seconds``."""
        pending = self._pending
        pending.append((operation, count, nbytes, seconds))
        if len(pending) >= _FOLD_AT:
            self._fold()

    def record_write(self, nbytes: int, seconds: float) -> None:
        """Record one ``set``: every write's path."""
        pending = self._pending
        pending.append(('set', 1, nbytes, seconds))
        if len(pending) >= _FOLD_AT:
            self._fold()

    def record_read(self, nbytes: int, seconds: float, *, miss: bool) -> None:
        """Record one ``get`` (and a cache miss if ``miss``): every read's path."""
        pending = self._pending
        pending.append((_READ_MISS if miss else 'get', 1, nbytes, seconds))
        if len(pending) >= _FOLD_AT:
            self._fold()

    def increment(self, counter: str, count: int = 1) -> None:
        """Add ``count`` to a plain counter such as ``cache_hits``."""
        with self._lock:
            self._counters[counter] = self._counters.get(counter, 0) + count

    def _fold(self) -> None:
        """Sum the pending records into the totals (the caller may not hold the lock)."""
        with self._lock:
            pending = self._pending
            # Only this method removes records, under the lock; records appended
            # meanwhile land after the first ``n`` and wait for the next fold.
            n = len(pending)
            batch = pending[:n]
            del pending[:n]
            stats = self._stats
            misses = 0
            for name, count, nbytes, seconds in batch:
                operation = name
                if name == _READ_MISS:
                    operation = 'get'
                    misses += 1
                entry = stats.get(operation)
                if entry is None:
                    entry = stats[operation] = {'count': 0, 'bytes': 0, 'seconds': 0.0}
                entry['count'] += count
                entry['bytes'] += nbytes
                entry['seconds'] += seconds
            self._counters['cache_misses'] += misses

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
        self._fold()
        with self._lock:
            snapshot: dict[str, dict[str, float] | int] = {
                op: dict(stats) for op, stats in self._stats.items()
            }
            snapshot.update(self._counters)
            return snapshot
