"""Small helpers shared by the library: keys, sizes and class paths."""

from __future__ import annotations

import importlib
import uuid
from typing import Any

__all__ = ['create_key', 'import_class', 'class_path']

_MISSING = object()
_imported: dict[str, Any] = {}


def create_key(obj: Any = None) -> str:
    """Return a new key, unique across processes and hosts.

    Keys are random (UUID4, 122 bits), not derived from ``obj``: two stores
    never collide, and a key reveals nothing about the object. ``obj`` is
    accepted so stores may override key creation per object.
    """
    return uuid.uuid4().hex


def class_path(cls: type) -> str:
    """Return ``'module.Qualname'`` for a class, the inverse of :func:`import_class`."""
    return f'{cls.__module__}.{cls.__qualname__}'


def import_class(path: str) -> Any:
    """Import ``'package.module.Name'`` (or ``'package.module:Name'``) and return it.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such name.

    """
    found = _imported.get(path, _MISSING)
    if found is not _MISSING:
        return found
    if ':' in path:
        module_name, _, qualname = path.partition(':')
    else:
        module_name, _, qualname = path.rpartition('.')
    # import_module, not sys.modules: a module another thread is still
    # importing is in sys.modules half-initialised; import_module waits for it.
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split('.'):
        obj = getattr(obj, part)
    _imported[path] = obj  # only complete imports are remembered
    return obj
