"""Every Python code block in the docs and the README runs, so the docs cannot drift."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r'^```python\n(.*?)^```', re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


ALL_PAGES = sorted(p for p in (ROOT / 'docs').rglob('*.md') if 'api' not in p.parts)
PAGES = [p for p in [*ALL_PAGES, ROOT / 'README.md'] if python_blocks(p)]


def test_every_page_is_collected() -> None:
    names = {p.name for p in PAGES}
    assert {'index.md', 'concepts.md', 'stores.md', 'parsl.md', 'funcx.md', 'README.md'} <= names


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(
    page: Path,
    redis_address: tuple[str, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    blocks = python_blocks(page)
    monkeypatch.chdir(tmp_path)
    host, port = redis_address
    # Blocks run as the main module would (guides written as scripts guard on it).
    namespace: dict[str, Any] = {'REDIS_HOST': host, 'REDIS_PORT': port, '__name__': '__main__'}
    if 'REDIS_CLUSTER_PORT' in page.read_text():  # docs/scaling.md: a real cluster
        cluster = request.getfixturevalue('redis_cluster')
        namespace.update(REDIS_CLUSTER_HOST=cluster.host, REDIS_CLUSTER_PORT=cluster.port)
    for number, block in enumerate(blocks, start=1):
        code = compile(block, f'{page.name} block {number}', 'exec')
        exec(code, namespace)


SCRIPT_GUIDES = [ROOT / 'docs' / 'guides' / 'funcx.md', ROOT / 'docs' / 'guides' / 'parsl.md']


@pytest.mark.parametrize('page', SCRIPT_GUIDES, ids=lambda p: p.name)
def test_guide_runs_as_a_script(page: Path, tmp_path: Path) -> None:
    """A guide's blocks, saved as one file and run by a fresh interpreter.

    ``exec`` hides what a real script meets: spawned workers import the main
    module again, so unguarded module-level code runs once per worker.
    """
    script = tmp_path / f'{page.stem}_guide.py'
    script.write_text('\n\n'.join(python_blocks(page)))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_api_reference_lists_every_public_module() -> None:
    api = '\n'.join(p.read_text() for p in (ROOT / 'docs' / 'api').glob('*.md'))
    modules = set()
    for base, package in (
        (ROOT / 'proxystore', 'proxystore'),
        (ROOT / 'integrations', 'proxystore.integrations'),
    ):
        for path in base.rglob('*.py'):
            parts = path.relative_to(base).with_suffix('').parts
            if any(part.startswith('_') and part != '__init__' for part in parts):
                continue
            name = '.'.join((package, *parts)).removesuffix('.__init__')
            modules.add(name)
    missing = {m for m in modules if f'::: {m}\n' not in api + '\n'}
    assert not missing, f'modules missing from docs/api: {sorted(missing)}'
    assert os.path.exists(ROOT / 'mkdocs.yml')


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds with --strict: no broken link, no missing API reference."""
    mkdocs = shutil.which('mkdocs', path=os.path.dirname(sys.executable))
    if mkdocs is None:
        if os.environ.get('CI'):
            pytest.fail('mkdocs is not installed; scripts/setup.sh installs the docs extra')
        pytest.skip('mkdocs is not installed (pip install proxystore[docs])')
    result = subprocess.run(
        [mkdocs, 'build', '--strict', '--site-dir', str(tmp_path / 'site')],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / 'site' / 'api' / 'integrations' / 'index.html').exists()
