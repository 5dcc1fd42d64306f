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


def double_in_place(x: Any) -> Any:
    """Modify the argument and return it (plain engines return the doubled data)."""
    x *= 2
    return x


def check_then_return(x: Any) -> Any:
    """Read the argument and pass it on unchanged."""
    x.sum()
    return x


def in_place_sum(x: Any) -> float:
    """Modify the argument in place and report its sum (each task has its own copy)."""
    x *= 2
    return float(x.sum())


def ones(n: int) -> np.ndarray:
    return np.ones(n)


def text_checks(text: Any) -> list[Any]:
    """Operations that insist on an exact ``str`` (C-level checks)."""
    import hashlib
    import os
    import re

    return [
        type(text) is str,
        len(re.findall('ab', text)),
        len(''.join([text, 'x'])),
        str.upper(text)[:2],
        hashlib.sha256(text.encode()).hexdigest()[:8],
        os.path.join(text[:2], 'x'),
    ]


def dict_checks(mapping: Any) -> list[Any]:
    import json

    return [type(mapping) is dict, len(json.dumps(mapping))]


def array_checks(array: Any) -> list[Any]:
    return [type(array) is np.ndarray, np.array([array, array]).dtype.str]


def is_a_proxy(x: Any) -> bool:
    return is_proxy(x)


def list_of_lists(n: int) -> list[list[int]]:
    return [list(range(n)) for _ in range(3)]


def flat_length(items: Any) -> int:
    """Total length of a list of lists (or of arrays)."""
    return sum(len(i) for i in items)


def fail_first_try(x: Any, marker: str) -> float:
    """Fail the first time (leaving a marker file), succeed on the retry."""
    import os

    if not os.path.exists(marker):
        open(marker, 'w').close()
        raise RuntimeError('first try fails')
    return float(np.sum(x))


def write_output(x: Any, outputs: Any = ()) -> int:
    with open(outputs[0].filepath, 'w') as f:
        f.write(str(len(x)))
    return len(x)
