"""Find an optional compiled accelerator, or fall back to the pure-Python code.

``pip install`` builds the C modules when a compiler is available; every
module that has one stays complete without it. ``PROXYSTORE_PURE_PYTHON=1``
in the environment (read at import) switches them all off.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

__all__ = ['load_compiled', 'pure_python_forced']

logger = logging.getLogger(__name__)


def pure_python_forced() -> bool:
    """Whether ``PROXYSTORE_PURE_PYTHON`` asks for the pure-Python code."""
    return os.environ.get('PROXYSTORE_PURE_PYTHON', '').strip() not in ('', '0')


def load_compiled(name: str, api: int, user: str) -> ModuleType | None:
    """The compiled module ``name`` if it is built for interface ``api``, else None.

    Args:
        name: Module path, e.g. ``proxystore._cproxy``.
        api: The interface version ``user`` expects (the module's ``API``):
            a stale build, e.g. left by an older editable install, is ignored.
        user: The module asking, named in the warning about a stale build.

    """
    if pure_python_forced():
        return None
    try:
        module = importlib.import_module(name)
    except ImportError:  # no compiler when installed: the pure-Python code serves
        return None
    if getattr(module, 'API', None) != api:
        logger.warning(
            'Ignoring %s built for another version of %s (reinstall proxystore to '
            'rebuild it); using the pure-Python code.',
            name,
            user,
        )
        return None
    return module
