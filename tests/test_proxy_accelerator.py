"""The compiled accelerator: used when built, never required, switched off on request.

Each check that depends on how ``proxystore.proxy`` was imported runs in a fresh
interpreter, since the choice is made once, at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import proxystore.proxy as default
from proxystore.factory import SimpleFactory
from tests.proxy_impls import IMPLEMENTATIONS
from tests.proxy_impls import use

# Prints what the fresh interpreter's proxystore.proxy is made of, after `prelude`.
_REPORT = """
import inspect, json, sys
{prelude}
import proxystore.proxy as m
from proxystore.factory import SimpleFactory
p = m.Proxy(SimpleFactory([1, 2, 3]))
print(json.dumps({{
    'implementation': m._IMPLEMENTATION,
    'compiled_loaded': sys.modules.get('proxystore._cproxy') is not None,
    'compiled_base': any(c.__module__ == 'proxystore._cproxy' for c in type(p).__mro__),
    'len_is_python': inspect.isfunction(type(p).__dict__['__len__']),
    'works': len(p) == 3 and p + [4] == [1, 2, 3, 4] and not callable(p) and p[0] == 1,
}}))
"""


def _fresh(prelude: str = '', **env: str) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if k != 'PROXYSTORE_PURE_PYTHON'}
    environ.update(env)
    out = subprocess.run(
        [sys.executable, '-c', _REPORT.format(prelude=textwrap.dedent(prelude))],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _built() -> bool:
    return _fresh()['implementation'] == 'c'


@pytest.mark.parametrize('value', ['1', 'yes'])
def test_switch_forces_the_pure_python_proxy(value: str) -> None:
    report = _fresh(PROXYSTORE_PURE_PYTHON=value)
    assert report == {
        'implementation': 'python',
        'compiled_loaded': False,  # not even imported
        'compiled_base': False,
        'len_is_python': True,
        'works': True,
    }


def test_compiled_slots_are_used_when_built() -> None:
    if not _built():
        pytest.skip('the C accelerator is not built in this environment')
    for env in ({}, {'PROXYSTORE_PURE_PYTHON': '0'}, {'PROXYSTORE_PURE_PYTHON': ''}):
        assert _fresh(**env) == {
            'implementation': 'c',
            'compiled_loaded': True,
            'compiled_base': True,
            'len_is_python': False,
            'works': True,
        }


def test_a_missing_extension_falls_back_to_pure_python() -> None:
    # As on a machine that installed without a compiler: the import fails.
    report = _fresh("sys.modules['proxystore._cproxy'] = None")
    assert report['implementation'] == 'python' and report['works']
    assert not report['compiled_base'] and report['len_is_python']


def test_a_stale_extension_is_ignored() -> None:
    # A build left by an older checkout (another interface version) is not used.
    prelude = """
        import types
        stale = types.ModuleType('proxystore._cproxy')
        stale.API = 0
        sys.modules['proxystore._cproxy'] = stale
    """
    report = _fresh(prelude)
    assert report['implementation'] == 'python' and report['works']


def _python_calls(fn: Any) -> list[str]:
    """Names of the Python functions that run while ``fn()`` (a lambda) runs."""
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == 'call':
            calls.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return [name for name in calls if name != '<lambda>']


class Thing:
    value = 1


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_resolved_proxy_operations_run_no_python_code(
    implementation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = use(implementation, monkeypatch, {})
    thing = Thing()
    mapping = module.Proxy(SimpleFactory({'k': 'v'}))
    number = module.Proxy(SimpleFactory(5))
    text = module.Proxy(SimpleFactory('text'))
    obj = module.Proxy(SimpleFactory(thing))
    function = module.Proxy(SimpleFactory(len))
    module.resolve(mapping), module.resolve(number), module.resolve(text)
    module.resolve(obj), module.resolve(function)
    operations = {
        'attribute': lambda: obj.value,
        'method call': lambda: mapping.get('k'),
        'len': lambda: len(mapping),
        '+': lambda: number + 1,
        'reflected +': lambda: 1 + number,
        '[]': lambda: mapping['k'],
        'iter': lambda: iter(mapping),
        '==': lambda: number == 5,
        'hash': lambda: hash(text),
        'bool': lambda: bool(mapping),
        'in': lambda: 'k' in mapping,
        'call': lambda: function('ab'),
        'str': lambda: str(number),
        '-': lambda: -number,
        'int': lambda: int(number),
        'index': lambda: [0, 1, 2, 3, 4, 5][number],
    }
    ran = {name: _python_calls(fn) for name, fn in operations.items()}
    if implementation == 'c':
        assert ran == {name: [] for name in operations}
    else:  # the reference: a Python special method per operation
        assert all(ran.values()), ran


def test_default_module_reports_its_implementation() -> None:
    assert default._IMPLEMENTATION in ('c', 'python')


# What C code asks a type (through its slots) rather than its methods.
_C_API_CHECKS = [
    'PySequence_Check',
    'PyMapping_Check',
    'PyIter_Check',
    'PyCallable_Check',
    'PyNumber_Check',
    'PyIndex_Check',
]


def _c_checks(obj: Any) -> dict[str, int]:
    import ctypes

    results = {}
    for name in _C_API_CHECKS:
        check = getattr(ctypes.pythonapi, name)
        check.argtypes = [ctypes.py_object]
        check.restype = ctypes.c_int
        results[name] = check(obj)
    return results


def test_compiled_classes_fill_the_same_slots_as_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before the sq_item/sq_ass_item slots existed, a C proxy of a str was no
    # sequence to C code: reversed() and iteration through __getitem__ failed.
    from tests.test_proxy import PROTOCOL_TARGETS

    compiled = use('c', monkeypatch, {})
    pure = use('python', monkeypatch, {})
    for label, make_obj in PROTOCOL_TARGETS.items():
        for mode in ('known', 'resolved'):
            proxies = [module.Proxy(SimpleFactory(make_obj())) for module in (compiled, pure)]
            if mode == 'resolved':
                for module, p in zip((compiled, pure), proxies):
                    module.resolve(p)
            c_proxy, pure_proxy = proxies
            assert _c_checks(c_proxy) == _c_checks(pure_proxy), (label, mode)
