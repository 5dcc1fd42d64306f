"""The store registry: init_store, get_store, STORES and rebuilding from proxies."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.exceptions import MissingDependencyError
from proxystore.exceptions import StoreConfigError
from proxystore.exceptions import UnknownStoreTypeError
from proxystore.store import STORES
from proxystore.store import registry
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore


@pytest.mark.parametrize('store_type', ['local', 'LOCAL', 'Local', STORES.LOCAL, LocalStore])
def test_init_store_types(store_type: Any) -> None:
    store = ps.store.init_store(store_type, name='s')
    assert isinstance(store, LocalStore)
    assert ps.store.get_store('s') is store


def test_init_store_replaces_same_name(tmp_path: Any) -> None:
    first = ps.store.init_store('local', name='same')
    second = ps.store.init_store('file', name='same', store_dir=tmp_path)
    assert ps.store.get_store('same') is second and first is not second


def test_get_store_unknown_is_none() -> None:
    assert ps.store.get_store('never-made') is None


@pytest.mark.parametrize('bad', ['nosuch', 'redis-cluster', 3, dict])
def test_unknown_store_type(bad: Any) -> None:
    with pytest.raises(UnknownStoreTypeError) as info:
        ps.store.init_store(bad, name='x')
    assert isinstance(info.value, ValueError)
    if bad == 'nosuch':
        assert "'local'" in str(info.value) and "'redis'" in str(info.value)


def test_wrong_constructor_arguments() -> None:
    with pytest.raises(StoreConfigError, match='store_dir'):
        ps.store.init_store('file', name='f')  # missing store_dir
    with pytest.raises(StoreConfigError, match='hostnme'):
        ps.store.init_store('redis', name='r', hostnme='x', port=1)
    with pytest.raises(StoreConfigError):
        ps.store.init_store('local', name='')


def test_stores_enum_members() -> None:
    assert {m.name for m in STORES} >= {'LOCAL', 'FILE', 'REDIS'}
    assert STORES.from_name('file') is STORES.FILE
    assert STORES.FILE.load() is FileStore


def test_missing_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, 'redis', None)  # simulates an absent package
    monkeypatch.delitem(sys.modules, 'proxystore.store.redis', raising=False)
    monkeypatch.delitem(sys.modules, 'proxystore.connectors.redis', raising=False)
    # ... in a process that never imported the backend (no remembered classes).
    monkeypatch.setattr(ps.store.types, '_classes', {})
    monkeypatch.setattr(ps.utils, '_imported', {})
    with pytest.raises(MissingDependencyError, match=r'proxystore\[redis\]') as info:
        ps.store.init_store('redis', name='r', hostname='localhost', port=1)
    assert isinstance(info.value, ImportError)


def test_register_store_conflict() -> None:
    ps.store.register_store(LocalStore('dup'))
    with pytest.raises(StoreConfigError, match='already registered'):
        ps.store.register_store(LocalStore('dup'))
    ps.store.unregister_store('dup')
    assert ps.store.get_store('dup') is None


def test_proxy_rebuilds_unregistered_store(tmp_path: Any) -> None:
    store = FileStore('rebuild-me', store_dir=tmp_path / 's')
    data = pickle.dumps(store.proxy(np.arange(5)))
    del store
    import gc

    gc.collect()
    assert ps.store.get_store('rebuild-me') is None
    p = pickle.loads(data)
    assert np.array_equal(p, np.arange(5))
    rebuilt = ps.store.get_store('rebuild-me')
    assert isinstance(rebuilt, FileStore) and rebuilt.store_dir == str(tmp_path / 's')
    q = pickle.loads(data)
    assert q[0] == 0
    assert rebuilt.metrics()['resolve']['count'] == 2  # later proxies reuse the rebuilt store


def test_unregistered_live_store_is_found_in_same_process() -> None:
    store = LocalStore('live-local')
    p = pickle.loads(pickle.dumps(store.proxy([1, 2])))
    assert p == [1, 2]


def test_store_name_mapping_to_other_backend(tmp_path: Any) -> None:
    file_store = FileStore('clash', store_dir=tmp_path / 'c')
    data = pickle.dumps(file_store.proxy([1]))
    local = ps.store.init_store('local', name='clash')
    p = pickle.loads(data)
    assert p == [1]  # read from a FileStore on tmp_path / 'c', not from the LocalStore
    assert ps.store.get_store('clash') is local


def test_local_store_proxy_in_rebuilt_store_is_clear_error() -> None:
    store = LocalStore('gone-local')
    data = pickle.dumps(store.proxy([1]))
    del store
    import gc

    gc.collect()
    p = pickle.loads(data)
    with pytest.raises(ps.exceptions.KeyNotFoundError, match='gone-local'):
        len(p)


def test_registry_module_is_reexported() -> None:
    assert ps.store.init_store is registry.init_store


def test_store_pickles_as_reference(store: Store) -> None:
    assert pickle.loads(pickle.dumps(store)) is store


def test_serialize_once_then_store_payload(store: Store) -> None:
    from proxystore.serialize import payload_size

    parts = store.serialize({'a': list(range(10))})
    assert payload_size(parts) > 0
    p = store.proxy({'ignored': True}, payload=parts)
    assert p == {'a': list(range(10))}
