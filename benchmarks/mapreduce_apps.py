"""Functions run as Parsl apps by ``parsl_mapreduce.py``.

They live in their own module so HTEX workers import them by reference
(``parsl_mapreduce.py`` puts this directory on the workers' ``PYTHONPATH``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def double(x: Any) -> Any:
    """Map step: a new array twice the input."""
    return 2 * x


def total(inputs: Any = ()) -> float:
    """Reduce step: the sum of every element of every input array."""
    return float(sum(np.sum(i) for i in inputs))
