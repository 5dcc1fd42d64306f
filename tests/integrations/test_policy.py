"""The shared policy: sizes, content keys, lifetimes settings, worker-side wrapper."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from proxystore.exceptions import IntegrationConfigError
from proxystore.exceptions import KeyNotFoundError
from proxystore.integrations.policy import ProxyPolicy
from proxystore.integrations.policy import ProxyResults
from proxystore.integrations.policy import _content_digest
from proxystore.integrations.policy import _is_auto
from proxystore.proxy import Proxy
from proxystore.proxy import get_factory
from proxystore.proxy import get_key
from proxystore.proxy import is_proxy
from proxystore.store.base import Store


def test_str_threshold_counts_utf8_bytes(store: Store) -> None:
    """Item 8: 6,000 two-byte characters are 12,000 bytes, above a 10,000-byte threshold."""
    policy = ProxyPolicy(store, 10_000)
    assert is_proxy(policy.maybe_proxy('é' * 6_000))
    assert not is_proxy(policy.maybe_proxy('e' * 6_000))
    assert not is_proxy(policy.maybe_proxy('e' * 10_000))
    assert is_proxy(policy.maybe_proxy('e' * 10_001))


@pytest.mark.parametrize('bad', ['yes', 1, None, 'AUTO'])
def test_bad_evict_setting(store: Store, bad: Any) -> None:
    with pytest.raises(IntegrationConfigError, match='evict'):
        ProxyPolicy(store, 10, evict=bad)


def test_content_keys_identify_content_not_call(store: Store) -> None:
    policy = ProxyPolicy(store, 100).with_content_keys()
    a = policy.maybe_proxy(list(range(1_000)))
    b = policy.maybe_proxy(list(range(1_000)))
    c = policy.maybe_proxy(list(range(1_001)))
    assert get_key(a) != get_key(b)  # two objects never share a key
    assert _content_digest(a) == _content_digest(b) != _content_digest(c)
    assert _content_digest(ProxyPolicy(store, 100).maybe_proxy(list(range(1_000)))) is None
    # Tests' stores have long temporary paths: compare with the store's own proxy.
    assert len(pickle.dumps(a)) <= len(pickle.dumps(store.proxy(list(range(1_000))))) + 3


def test_unserializable_and_future_holding_objects_pass_through(store: Store) -> None:
    from concurrent.futures import Future

    policy = ProxyPolicy(store, 10)
    holder = [Future(), *range(1_000)]
    assert policy.maybe_proxy(holder) is holder


def test_wrapper_gives_objects_and_keeps_user_proxies(store: Store) -> None:
    policy = ProxyPolicy(store, 100)
    auto = policy.maybe_proxy(np.ones(1_000))
    mine = store.proxy(np.ones(1_000))
    seen: dict[str, Any] = {}

    def record(a: Any, b: Any, inputs: Any = ()) -> int:
        seen.update(a=a, b=b, inputs=inputs)
        return 0

    ProxyResults(record, policy)(auto, mine, inputs=[auto, [auto]])
    assert type(seen['a']) is np.ndarray
    assert seen['b'] is mine  # the user's own proxy arrives as the user sent it
    assert type(seen['inputs'][0]) is np.ndarray and type(seen['inputs'][1][0]) is np.ndarray
    assert _is_auto(auto) and not _is_auto(mine)


def test_pickled_wrapper_looks_the_store_up_when_called(store: Store) -> None:
    """Item 7: unpickling a task never touches the store; the call does (errors are the task's)."""
    wrapped = pickle.loads(pickle.dumps(ProxyResults(len, ProxyPolicy(store, 100))))
    assert wrapped.policy._store is None
    assert wrapped([1, 2]) == 2


def test_key_not_found_keeps_its_hint_when_pickled() -> None:
    """Item 8: the message users see through an engine is the full one."""
    error = KeyNotFoundError('s', 'k', 'It may have been evicted.')
    assert 'may have been evicted' in str(pickle.loads(pickle.dumps(error)))


def test_proxies_stay_small(store: Store) -> None:
    proxy = ProxyPolicy(store, 10).maybe_proxy(np.ones(1_000))
    assert type(get_factory(proxy)).__name__ == '_Auto'
    assert len(pickle.dumps(proxy)) <= len(pickle.dumps(store.proxy(np.ones(1_000))))
    assert isinstance(pickle.loads(pickle.dumps(proxy)), Proxy)
