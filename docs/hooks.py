"""MkDocs hook: give mkdocstrings the installed package layout.

``integrations/`` is installed as ``proxystore.integrations`` (setuptools
``package-dir``), which static analysis cannot see from the source tree. Before
the build, mirror the installed layout with symlinks in ``build/docs-src``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRROR = os.path.join(ROOT, 'build', 'docs-src')


def on_startup(**kwargs: Any) -> None:
    """Build the mirror once, before MkDocs reads its configuration."""
    package = os.path.join(MIRROR, 'proxystore')
    shutil.rmtree(MIRROR, ignore_errors=True)
    os.makedirs(package)
    source = os.path.join(ROOT, 'proxystore')
    for entry in os.listdir(source):
        if entry != '__pycache__':
            os.symlink(os.path.join(source, entry), os.path.join(package, entry))
    os.symlink(os.path.join(ROOT, 'integrations'), os.path.join(package, 'integrations'))
