"""Build the optional C accelerators; all metadata is in pyproject.toml.

``proxystore._cproxy`` gives ``proxystore.proxy`` compiled slots and
``proxystore._cframe`` gives ``proxystore.serialize`` a compiled read of the
common payload. ``optional=True``: without a compiler (or Python headers) the
build skips them with a warning and the pure-Python code serves.
"""

from __future__ import annotations

from setuptools import Extension
from setuptools import setup

setup(
    ext_modules=[
        Extension('proxystore._cproxy', sources=['proxystore/_cproxy.c'], optional=True),
        Extension('proxystore._cframe', sources=['proxystore/_cframe.c'], optional=True),
    ],
)
