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
