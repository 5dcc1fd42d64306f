"""Functions run as Parsl apps by the tests (importable by HTEX workers)."""

from __future__ import annotations

from typing import Any

import numpy as np

from proxystore.proxy import is_proxy


def double(x: Any) -> Any:
    return 2 * x


def total(inputs: Any = ()) -> float:
    return float(sum(np.sum(i) for i in inputs))


def kinds(*args: Any, inputs: Any = (), **kwargs: Any) -> dict[str, Any]:
    """Report which arguments arrived as proxies (without resolving them)."""
    return {
        'args': [is_proxy(a) for a in args],
        'kwargs': {k: is_proxy(v) for k, v in kwargs.items()},
        'inputs': [is_proxy(i) for i in inputs],
    }


def make(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.uint8)


def fail(x: Any) -> None:
    raise ValueError(f'app failed on {len(x)} items')


def size(x: Any) -> int:
    return len(x)
