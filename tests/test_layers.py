"""The package drawing in docs/connectors.md holds: imports only point down.

Every import is checked, including those inside functions (a lazy import is
still a dependency): connectors never reach up into stores, the registry
imports no store module, and the core modules below both import neither.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / 'proxystore'


def _imports(path: Path) -> set[str]:
    """Modules (and module.name) imported at run time; ``if TYPE_CHECKING:`` blocks are skipped."""
    found: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, 'id', None) == 'TYPE_CHECKING':
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f'{node.module}.{alias.name}' for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return {name for name in found if name.startswith('proxystore')}


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob('*.py')) if folder else sorted(ROOT.glob('*.py'))


@pytest.mark.parametrize('path', _modules('connectors'), ids=lambda p: p.name)
def test_connectors_never_import_the_store_layer(path: Path) -> None:
    bad = {m for m in _imports(path) if m.startswith(('proxystore.store', 'proxystore.proxy'))}
    assert not bad, f'{path.name} imports {bad}'


#: The Redis connector's helper modules, each importing only those after it (never redis.py).
_REDIS_HELPERS = ['redis_options', 'redis_cluster', 'redis_probe', 'redis_replies', 'redis_wire']


@pytest.mark.parametrize('name', _REDIS_HELPERS)
def test_redis_helpers_import_only_down(name: str) -> None:
    imports = _imports(ROOT / 'connectors' / f'{name}.py')
    ours = {m.split('.')[2] for m in imports if m.startswith('proxystore.connectors.')}
    below = set(_REDIS_HELPERS[_REDIS_HELPERS.index(name) + 1 :]) | {'buffers', 'protocol'}
    assert ours <= below, f'{name}.py imports {ours - below}'


def test_redis_helpers_are_all_listed() -> None:
    on_disk = {p.stem for p in (ROOT / 'connectors').glob('redis_*.py')}
    assert on_disk == set(_REDIS_HELPERS)


def test_registry_imports_no_store_module() -> None:
    for module in ('registry.py', 'types.py', 'options.py'):
        imports = _imports(ROOT / 'store' / module)
        below = ('proxystore.store.types', 'proxystore.store.options')
        bad = {m for m in imports if m.startswith('proxystore.store') and not m.startswith(below)}
        assert not bad, f'{module} imports {bad}'


@pytest.mark.parametrize(
    'name', ['factory.py', 'proxy.py', 'serialize.py', 'exceptions.py', 'utils.py']
)
def test_core_modules_import_no_store_or_connector(name: str) -> None:
    imports = _imports(ROOT / name)
    bad = {m for m in imports if m.startswith(('proxystore.store', 'proxystore.connectors'))}
    if name == 'factory.py':  # the lazy StoreFactory alias for proxies pickled by 0.4
        assert bad <= {'proxystore.store.factory', 'proxystore.store.factory.StoreFactory'}
        source = (ROOT / name).read_text()
        assert 'def __getattr__(name: str)' in source
    else:
        assert not bad, f'{name} imports {bad}'


def test_store_factory_does_not_import_store_base() -> None:
    """base -> factory -> registry, and nothing back (Store is only an annotation there)."""
    imports = _imports(ROOT / 'store' / 'factory.py')
    assert not any(m.startswith('proxystore.store.base') for m in imports)


def test_no_private_names_cross_modules() -> None:
    """``from x import _name`` between proxystore modules is a private cross-module call."""
    offenders = []
    for path in ROOT.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('proxystore'):
                offenders.extend(
                    f'{path.relative_to(ROOT)}: {node.module}.{a.name}'
                    for a in node.names
                    if a.name.startswith('_') and a.name != '__version__'
                )
    assert offenders == []


def test_no_private_methods_called_across_modules() -> None:
    """``x._method()`` of a method another of our modules defines: a private cross-module call."""
    roots = [ROOT, ROOT.parent / 'integrations']
    paths = [p for root in roots for p in root.rglob('*.py')]
    defined: dict[str, set[Path]] = {}
    trees = {path: ast.parse(path.read_text()) for path in paths}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        defined.setdefault(item.name, set()).add(path)
    offenders = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            if not name.startswith('_') or name.startswith('__'):
                continue
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in ('self', 'cls', 'super'):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, 'id', None) == 'super':
                continue
            homes = defined.get(name, set())
            if homes and path not in homes:
                offenders.append(f'{path.relative_to(ROOT.parent)}:{node.lineno} calls .{name}()')
    assert offenders == []
