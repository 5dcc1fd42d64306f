"""How a proxy prints: without fetching while unresolved, as its target once resolved."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from proxystore.factory import LambdaFactory
from proxystore.proxy import Proxy
from proxystore.proxy import is_resolved
from proxystore.store.base import Store
from tests.proxy_impls import IMPLEMENTATIONS
from tests.proxy_impls import use


@pytest.fixture(autouse=True, params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    return use(request.param, monkeypatch, globals())


def test_unresolved_repr_names_type_and_key_without_fetching(store: Store) -> None:
    proxy = store.proxy(np.arange(10))
    fresh = Proxy(proxy.__factory__.__class__(*proxy.__factory__.__reduce__()[1]))
    text = repr(fresh)
    assert not is_resolved(fresh)
    assert 'unresolved' in text and 'numpy.ndarray' in text and store.name in text
    assert str(fresh) == str(np.arange(10))  # str() is a conversion: it resolves
    assert repr(fresh) == repr(np.arange(10))  # resolved: the target's repr


def test_unresolved_repr_of_other_factories() -> None:
    calls: list[int] = []
    proxy: Proxy[list[int]] = Proxy(LambdaFactory(lambda: calls.append(1) or [1, 2]))
    assert 'unresolved' in repr(proxy) and not calls
    assert f'{proxy!r}' and not calls
    assert proxy == [1, 2] and repr(proxy) == '[1, 2]'
