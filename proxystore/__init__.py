"""ProxyStore: pass large objects by reference through distributed workflows.

>>> import proxystore as ps
>>> p = ps.proxy.Proxy(ps.factory.LambdaFactory(lambda: [1, 2, 3]))
>>> len(p), ps.proxy.is_resolved(p)
(3, True)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from proxystore import connectors
from proxystore import exceptions
from proxystore import factory
from proxystore import proxy
from proxystore import serialize
from proxystore import store
from proxystore import utils

try:
    __version__ = _version('proxystore')
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = '0.0.0+unknown'

__all__ = [
    'connectors',
    'exceptions',
    'factory',
    'proxy',
    'serialize',
    'store',
    'utils',
    '__version__',
]
