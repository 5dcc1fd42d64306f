"""Stores: named key-value interfaces for Python objects, and their registry.

>>> import proxystore as ps
>>> store = ps.store.init_store('local', name='docs')
>>> key = store.set([1, 2, 3])
>>> store.get(key)
[1, 2, 3]
"""

from __future__ import annotations

from proxystore.store.base import Store
from proxystore.store.registry import get_store
from proxystore.store.registry import init_store
from proxystore.store.registry import register_store
from proxystore.store.registry import unregister_store
from proxystore.store.types import STORES

__all__ = [
    'STORES',
    'Store',
    'get_store',
    'init_store',
    'register_store',
    'unregister_store',
]
