"""Build the optional C accelerator of ``proxystore.proxy``; all metadata is in pyproject.toml.

``optional=True``: without a compiler (or Python headers) the build skips the
extension with a warning and ``proxystore.proxy`` uses its pure-Python slots.
"""

from __future__ import annotations

from setuptools import Extension
from setuptools import setup

setup(
    ext_modules=[
        Extension('proxystore._cproxy', sources=['proxystore/_cproxy.c'], optional=True),
    ],
)
