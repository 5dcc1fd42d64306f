"""Per-key timing statistics (``Store(stats=True)``), as in ProxyStore v0.3.

Store-wide totals live in :mod:`proxystore.store.metrics`; this module keeps
timings per key and method, for applications that report what each task's
data cost. Memory stays bounded: only the most recently used keys are kept
(:data:`DEFAULT_MAX_KEYS`), the oldest are forgotten first.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from dataclasses import replace

__all__ = ['DEFAULT_MAX_KEYS', 'KeyStats', 'TimeStats']

#: Keys whose timings a store keeps (least recently used keys are dropped).
DEFAULT_MAX_KEYS = 10_000


@dataclass
class TimeStats:
    """Timings of one method on one key: call count and average/min/max in milliseconds."""

    calls: int = 0
    avg_time_ms: float = 0.0
    min_time_ms: float = math.inf
    max_time_ms: float = 0.0

    def add_time(self, time_ms: float) -> None:
        """Account for one more call that took ``time_ms``."""
        self.avg_time_ms = (self.avg_time_ms * self.calls + time_ms) / (self.calls + 1)
        self.calls += 1
        self.min_time_ms = min(self.min_time_ms, time_ms)
        self.max_time_ms = max(self.max_time_ms, time_ms)

    def __add__(self, other: TimeStats) -> TimeStats:
        calls = self.calls + other.calls
        if calls == 0:
            return TimeStats()
        return TimeStats(
            calls=calls,
            avg_time_ms=(self.avg_time_ms * self.calls + other.avg_time_ms * other.calls) / calls,
            min_time_ms=min(self.min_time_ms, other.min_time_ms),
            max_time_ms=max(self.max_time_ms, other.max_time_ms),
        )


class KeyStats:
    """Thread-safe ``{key: {method: TimeStats}}`` for the ``max_keys`` most recent keys."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._data: OrderedDict[str, dict[str, TimeStats]] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, key: str, method: str, seconds: float) -> None:
        """Add one call of ``method`` on ``key`` that took ``seconds``."""
        with self._lock:
            methods = self._data.get(key)
            if methods is None:
                methods = self._data[key] = {}
                if len(self._data) > self.max_keys:
                    self._data.popitem(last=False)
            else:
                self._data.move_to_end(key)
            stats = methods.get(method)
            if stats is None:
                stats = methods[method] = TimeStats()
            stats.add_time(seconds * 1000)

    def get(self, key: str) -> dict[str, TimeStats]:
        """A copy of ``key``'s timings (empty if the key was never timed or was dropped)."""
        with self._lock:
            return {m: replace(s) for m, s in self._data.get(key, {}).items()}

    def reset_after_fork(self) -> None:
        """Give a forked child a fresh lock."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
