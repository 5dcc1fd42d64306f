"""A task server written against the ProxyStore v0.3.3 API, unchanged.

It follows what steering frameworks built on v0.3 do: the thinker creates the
store with ``stats=True``, sends the store's *type name* and ``kwargs`` with
each task, and the worker re-creates the store by name if it is not there,
resolves its inputs with ``resolve_async`` from several threads, and reports
``stats()`` per task with ``dataclasses.asdict``.
"""

from __future__ import annotations

from typing import Any

from parsl import python_app


@python_app
def run_task(
    store_type: str, store_name: str, store_kwargs: dict[str, Any], arrays: list[Any]
) -> Any:
    import dataclasses
    import threading

    import numpy as np

    import proxystore as ps

    store = ps.store.get_store(store_name)
    if store is None:
        store = ps.store.init_store(store_type, name=store_name, **store_kwargs)

    threads = [threading.Thread(target=ps.proxy.resolve_async, args=(p,)) for p in arrays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals = [float(np.sum(p)) for p in arrays]
    stats = {}
    for p in arrays:
        owner = ps.store.get_store(p)
        stats[ps.proxy.get_key(p)] = {
            method: dataclasses.asdict(timing) for method, timing in owner.stats(p).items()
        }
    result = store.proxy(np.asarray(totals))
    return result, stats
