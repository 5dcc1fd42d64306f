"""Small helpers shared by the library: keys, sizes and class paths."""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ['create_key', 'import_class', 'class_path']

_MISSING = object()
_imported: dict[str, Any] = {}


#: Keys drawn from the OS at once: one ``getrandom`` call per 64 keys, not per key.
_KEYS_PER_DRAW = 64
#: Byte maps that set a UUID4's version nibble (byte 6) and RFC 4122 variant (byte 8).
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_RFC = bytes((b & 0x3F) | 0x80 for b in range(256))
#: Keys drawn and not yet handed out. Emptied in a forked child, which must
#: never hand out a key its parent may also hand out.
_drawn: list[str] = []


def _draw() -> list[str]:
    raw = bytearray(os.urandom(16 * _KEYS_PER_DRAW))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC)
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, len(text), 32)]


def create_key(obj: Any = None) -> str:
    """Return a new key, unique across processes and hosts: a random UUID4 in hex.

    Keys are random (UUID4, 122 bits from ``os.urandom``, the same as
    ``uuid.uuid4().hex``), not derived from ``obj``: two stores never collide,
    and a key reveals nothing about the object. ``obj`` is accepted so stores
    may override key creation per object. The random bytes are drawn 64 keys
    at a time, which makes a key a list pop instead of a system call (a
    visible share of a small object's ``set``); a forked child draws its own.
    """
    while True:
        try:
            return _drawn.pop()  # atomic: threads never get the same key
        except IndexError:
            _drawn.extend(_draw())


os.register_at_fork(after_in_child=_drawn.clear)


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
