"""``Store(name, connector)``: any connector under the object level, rebuilt by workers."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import pytest

import proxystore as ps
from proxystore.connectors.file import FileConnector
from proxystore.connectors.local import LocalConnector
from proxystore.exceptions import StoreConfigError
from proxystore.store.base import Store


def _resolve(data: bytes, queue: Any) -> None:
    proxy = pickle.loads(data)
    store = ps.store.get_store(proxy)
    queue.put((sum(proxy), type(store).__name__, type(store.connector).__name__))


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_init_store_composes_and_a_worker_rebuilds_it(tmp_path: Path, method: str) -> None:
    store = ps.store.init_store(Store, name='composed', connector=FileConnector(tmp_path / 'c'))
    data = pickle.dumps(store.proxy([1, 2, 3]))
    # <= 300 B with a store_dir of 20 characters (pytest's tmp_path is longer).
    assert len(data) - len(str(tmp_path / 'c')) + 20 <= 300
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    child = context.Process(target=_resolve, args=(data, queue))
    child.start()
    assert queue.get(timeout=60) == (6, 'Store', 'FileConnector')
    child.join(60)
    assert child.exitcode == 0


def test_config_round_trips_through_the_connector_spec(tmp_path: Path) -> None:
    store = Store('spec', FileConnector(tmp_path / 's', owner='spec'), cache_size=3)
    config = store.config()
    assert config['connector'] == 'proxystore.connectors.file.FileConnector'
    assert config['store_dir'] == str(tmp_path / 's') and config['owner'] == 'spec'
    again = Store.from_config('spec', config)
    key = store.set('shared')
    assert again.get(key) == 'shared' and again.cache_size == 3


@pytest.mark.parametrize(
    'connector',
    [
        object(),
        {'type': 'proxystore.connectors.local.LocalConnector'},
        {'type': 'no.such.X', 'config': {}},
    ],
    ids=['not-a-connector', 'spec-without-config', 'unimportable'],
)
def test_bad_connector_is_config_error(connector: Any) -> None:
    with pytest.raises(StoreConfigError, match='connector'):
        Store('bad', connector)


def test_options_are_checked_before_anything_is_built() -> None:
    with pytest.raises(StoreConfigError, match='cache_size'):
        Store('bad', LocalConnector(), cache_size=-1)
    with pytest.raises(StoreConfigError, match=r"unexpected argument.*'colour'"):
        Store('bad', LocalConnector(), colour='blue')


def test_init_store_takes_a_connector_class_or_path(tmp_path: Path) -> None:
    """A new backend is one connector file (plus a STORES line for a short name)."""
    by_class = ps.store.init_store(LocalConnector, name='by-class')
    assert type(by_class) is Store and isinstance(by_class.connector, LocalConnector)
    by_path = ps.store.init_store(
        'proxystore.connectors.file.FileConnector', name='by-path', store_dir=tmp_path / 'p'
    )
    assert isinstance(by_path.connector, FileConnector)
    key = by_path.set([1, 2])
    rebuilt = Store.from_config('by-path', by_path.config())
    assert rebuilt.get(key) == [1, 2]
    store_by_path = ps.store.init_store(
        'proxystore.store.file.FileStore', name='store-path', store_dir=tmp_path / 'q'
    )
    assert type(store_by_path).__name__ == 'FileStore'


@pytest.mark.parametrize('bad', ['no.such.Thing', 'proxystore.utils.create_key', 'nosuch'])
def test_unknown_type_paths_are_unknown_store_type(bad: str) -> None:
    with pytest.raises(ps.exceptions.UnknownStoreTypeError):
        ps.store.init_store(bad, name='bad')


def test_local_store_without_cache_keeps_objects_as_given() -> None:
    """serialize=False objects of an in-process store, read on the uncached fast path."""
    store = ps.store.local.LocalStore('held', cache_size=0)
    marker = object()
    key = store.set(marker, serialize=False)
    assert store.get(key) is marker
    assert store.get_batch([key]) == [marker]
