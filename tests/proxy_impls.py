"""Both implementations of ``proxystore.proxy``, for the proxy tests that run against each.

``proxystore.proxy`` is the pure-Python reference; with the compiled accelerator
(``proxystore._cproxy``) built, its ``Proxy`` takes the C slots instead. The
same tests run on both, as lazy-object-proxy's suite does: the ``python`` case
is a second copy of the module, imported with ``PROXYSTORE_PURE_PYTHON=1`` (as
CPython's tests import a module with its accelerator blocked), put in place of
the default one everywhere a test can reach it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import FunctionType
from types import ModuleType
from typing import Any

import pytest

import proxystore
import proxystore.proxy as default
import proxystore.store.base as store_base
import proxystore.store.registry as store_registry

IMPLEMENTATIONS = ['c', 'python']

_pure: list[ModuleType] = []


def pure_python_module() -> ModuleType:
    """``proxystore.proxy`` imported again with the accelerator switched off (cached)."""
    if default._IMPLEMENTATION == 'python':
        return default
    if not _pure:
        spec = importlib.util.find_spec('proxystore.proxy')
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        old = os.environ.get('PROXYSTORE_PURE_PYTHON')
        os.environ['PROXYSTORE_PURE_PYTHON'] = '1'
        try:
            spec.loader.exec_module(module)
        finally:
            if old is None:
                del os.environ['PROXYSTORE_PURE_PYTHON']
            else:
                os.environ['PROXYSTORE_PURE_PYTHON'] = old
        assert module._IMPLEMENTATION == 'python'
        _pure.append(module)
    return _pure[0]


def use(name: str, monkeypatch: pytest.MonkeyPatch, namespace: dict[str, Any]) -> ModuleType:
    """Make implementation ``name`` the one a test sees, and return its module.

    For ``python``: ``sys.modules`` and ``proxystore.proxy`` (so pickle finds the
    classes by name), the store's ``Proxy`` (so ``store.proxy()`` makes pure
    proxies), the environment (so ``spawn`` children import the same one), and
    the names the test module imported from ``proxystore.proxy``.
    """
    if name == 'c':
        if default._IMPLEMENTATION != 'c':
            pytest.skip('the C accelerator is not built here (or PROXYSTORE_PURE_PYTHON is set)')
        module = default
    else:
        module = pure_python_module()
        if module is not default:
            monkeypatch.setitem(sys.modules, 'proxystore.proxy', module)
            monkeypatch.setattr(proxystore, 'proxy', module)
            for user in (store_base, store_registry):  # the names they imported from proxy
                for attr in ('Proxy', 'get_factory', 'is_proxy'):
                    if hasattr(user, attr):
                        monkeypatch.setattr(user, attr, getattr(module, attr))
            monkeypatch.setenv('PROXYSTORE_PURE_PYTHON', '1')
    for key, value in list(namespace.items()):
        if isinstance(value, ModuleType) and value.__name__ == 'proxystore.proxy':
            monkeypatch.setitem(namespace, key, module)
        elif (
            isinstance(value, (type, FunctionType))
            and value.__module__ == 'proxystore.proxy'
            and hasattr(module, key)
        ):
            monkeypatch.setitem(namespace, key, getattr(module, key))
    return module
