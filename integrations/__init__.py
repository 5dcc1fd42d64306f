"""Adapters that proxy large task arguments and results automatically.

- :mod:`proxystore.integrations.policy`: the shared rule (size threshold,
  store, lifetimes) deciding what travels as a proxy.
- :mod:`proxystore.integrations.parsl`: a decorator for Parsl apps and a
  switch for a whole DataFlowKernel.
- :mod:`proxystore.integrations.funcx`: a wrapper of the FuncX client.
- :mod:`proxystore.integrations.executor`: a wrapper of any
  ``concurrent.futures.Executor``.

Each needs only its engine's package (``pip install 'proxystore[parsl]'``).
"""

from __future__ import annotations

from typing import Any

from proxystore.store.factory import StoreFactory


class _Auto(StoreFactory[Any]):
    """The factory of every proxy an integration makes on the user's behalf.

    Its type is the mark: a task wrapper resolves these arguments before the
    call (the user never asked for a proxy) and re-stores such a proxy when a
    task returns it. It lives here, under a short name, because a pickled
    proxy names its factory's class and must stay a few hundred bytes.
    """
