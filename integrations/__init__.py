"""Adapters that proxy large task arguments and results automatically.

- :mod:`proxystore.integrations.policy`: the shared rule (size threshold,
  store, eviction) deciding what travels as a proxy.
- :mod:`proxystore.integrations.parsl`: a decorator for Parsl apps and a
  switch for a whole DataFlowKernel.
- :mod:`proxystore.integrations.funcx`: a wrapper of the FuncX client.
- :mod:`proxystore.integrations.executor`: a wrapper of any
  ``concurrent.futures.Executor``.

Each needs only its engine's package (``pip install 'proxystore[parsl]'``).
"""
