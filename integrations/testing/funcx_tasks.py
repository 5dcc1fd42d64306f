"""Module-level task functions for tests run through the FuncX service double.

The SDK registers a module-level function by reference (module and name), so
the double's worker processes must be able to import it: these live in the
installed package rather than in a test module for that reason.
"""

from __future__ import annotations

from typing import Any

__all__ = ['add', 'double_in_place', 'echo', 'exact_type', 'fail', 'make_bytes', 'nbytes']


def add(x: Any, y: Any) -> Any:
    """Return ``x + y``."""
    return x + y


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return the arguments as received, to check they survive the round trip."""
    return args, kwargs


def fail(message: str) -> None:
    """Raise :class:`ValueError` with ``message``, to exercise task failure."""
    raise ValueError(message)


def make_bytes(size: int) -> bytes:
    """Return ``size`` zero bytes, to produce a result of a chosen size."""
    return bytes(size)


def nbytes(data: Any) -> int:
    """Return ``len(data)``, to consume a large argument with a small result."""
    return len(data)


def double_in_place(x: Any) -> Any:
    """Double ``x`` in place and return it (the engine alone returns the doubled data)."""
    x *= 2
    return x


def exact_type(x: Any) -> str:
    """The exact type name of ``x`` as the task sees it."""
    return type(x).__name__
