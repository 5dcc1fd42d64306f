"""Connectors: the byte-level backends under every store (see :mod:`.protocol`).

One module per backend; each is usable and testable without a store.
"""

from __future__ import annotations

from proxystore.connectors.protocol import Connector

__all__ = ['Connector']
