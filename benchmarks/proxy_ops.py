"""Per-operation cost of a resolved proxy: ours (C and pure Python) vs lazy-object-proxy's C proxy.

One row per operation, all measured in the same run: a plain object, our proxy with the compiled
accelerator, our pure-Python proxy (the same module imported with ``PROXYSTORE_PURE_PYTHON=1``),
and ``lazy_object_proxy.Proxy`` from its C extension. The ratio ours (C) / lazy-object-proxy is
printed next to the target (<= 1.00x). Each cell is the minimum over ``--repeat`` runs of a
``timeit`` loop, minus the same loop running ``pass``, divided by the loop count; the runs of
one row's four kinds are interleaved.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import timeit
from collections.abc import Callable
from types import ModuleType
from typing import Any

import common

TARGET = 1.00


class Thing:
    """A user class: an attribute and a method."""

    def __init__(self) -> None:
        self.value = 1

    def method(self) -> int:
        return self.value


# (label, statement on `o`, make the target)
OPERATIONS: list[tuple[str, str, Callable[[], Any]]] = [
    ('attribute   o.value', 'o.value', Thing),
    ('method call o.method()', 'o.method()', Thing),
    ('len(o)      list', 'len(o)', lambda: list(range(10))),
    ('o + 1       int', 'o + 1', lambda: 5),
    ('o[3]        list', 'o[3]', lambda: list(range(10))),
    ('iter(o)     list', 'iter(o)', lambda: list(range(10))),
    ('o == 5      int', 'o == 5', lambda: 5),
    ('hash(o)     str', 'hash(o)', lambda: 'text'),
    ('bool(o)     list', 'bool(o)', lambda: list(range(10))),
]


def pure_python_proxy_module() -> ModuleType:
    """A second copy of ``proxystore.proxy`` that uses its pure-Python slots."""
    spec = importlib.util.find_spec('proxystore.proxy')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    old = os.environ.get('PROXYSTORE_PURE_PYTHON')
    os.environ['PROXYSTORE_PURE_PYTHON'] = '1'
    try:
        spec.loader.exec_module(module)
    finally:
        if old is None:
            del os.environ['PROXYSTORE_PURE_PYTHON']
        else:
            os.environ['PROXYSTORE_PURE_PYTHON'] = old
    return module


def per_op(
    stmt: str, objs: dict[str, Any], number: int, repeat: int, empty: float
) -> dict[str, float]:
    """Seconds per execution of ``stmt`` for each ``o`` in ``objs``, loop overhead removed.

    The runs of the kinds are interleaved (round after round), so that a burst of load from
    other processes slows one run of each kind rather than every run of one kind.
    """
    timers = {kind: timeit.Timer(stmt, globals={'o': obj}) for kind, obj in objs.items()}
    for timer in timers.values():
        timer.timeit(number // 10)  # warm-up
    best = dict.fromkeys(timers, float('inf'))
    for _ in range(repeat):
        for kind, timer in timers.items():
            best[kind] = min(best[kind], timer.timeit(number))
    return {kind: max(t / number - empty, 0.0) for kind, t in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--number', type=int, default=200_000, help='loop count per run (default 200000)'
    )
    parser.add_argument(
        '--repeat', type=int, default=20, help='runs per cell; the minimum is kept (default 20)'
    )
    args = parser.parse_args(argv)

    import lazy_object_proxy
    from lazy_object_proxy import cext

    import proxystore.proxy as default
    from proxystore.factory import SimpleFactory

    accelerated = getattr(default, '_IMPLEMENTATION', 'python') == 'c'
    pure = pure_python_proxy_module()
    common.print_machine_report(
        {
            'lazy-object-proxy': f'{lazy_object_proxy.__version__} (cext.Proxy)',
            'proxystore.proxy': 'C accelerator' if accelerated else 'pure Python (no accelerator)',
        }
    )

    empty = min(timeit.Timer('pass').repeat(repeat=args.repeat, number=args.number)) / args.number
    rows = []
    worst = 0.0
    for label, stmt, make in OPERATIONS:
        kinds: dict[str, Any] = {'plain': make()}
        if accelerated:
            kinds['ours (C)'] = default.Proxy(SimpleFactory(make()))
        kinds['ours (Python)'] = pure.Proxy(SimpleFactory(make()))
        kinds['l-o-p (C)'] = cext.Proxy(lambda make=make: make())
        for proxy in list(kinds.values())[1:]:
            eval(stmt, {'o': proxy})  # resolve it
        times = per_op(stmt, kinds, args.number, args.repeat, empty)
        ours = times.get('ours (C)')
        ratio = ours / times['l-o-p (C)'] if ours is not None else None
        if ratio is not None:
            worst = max(worst, ratio)
        rows.append(
            [
                label,
                common.format_time(times['plain']),
                common.format_time(ours),
                common.format_time(times['ours (Python)']),
                common.format_time(times['l-o-p (C)']),
                common.format_ratio(ratio),
                '' if ratio is None else ('ok' if ratio <= TARGET else 'OVER'),
            ]
        )
    common.print_table(
        [
            'operation (resolved proxy)',
            'plain',
            'ours (C)',
            'ours (Python)',
            'l-o-p (C)',
            'ours C / l-o-p',
            f'target <= {TARGET:.2f}x',
        ],
        rows,
        title=(
            f'Per operation, min of {args.repeat} runs of {args.number} loops, '
            f'minus the empty loop ({empty * 1e9:.1f} ns)'
        ),
    )
    if accelerated:
        print(f'worst ratio ours (C) / lazy-object-proxy: {worst:.2f}x (target <= {TARGET:.2f}x)')
    else:
        print('the C accelerator is not built (or PROXYSTORE_PURE_PYTHON is set): no C column')
    return 0


if __name__ == '__main__':
    sys.exit(main())
