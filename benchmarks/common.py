"""Shared protocol helpers for the benchmark scripts.

Protocol: every measurement is run ``warmup`` times untimed, then ``repeat``
times (at least 5 unless a script documents otherwise), and the median is
reported. Servers bind 127.0.0.1 on a free port and are stopped at exit;
cross-process resolves run in a ``spawn``-context worker that is started (and
warmed up) before any timing, and the time is measured *inside* the worker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(BENCH_DIR, 'results')


# -- arguments and repetitions -------------------------------------------------


def add_protocol_args(parser: argparse.ArgumentParser, repeat: int = 5, warmup: int = 1) -> None:
    """Add ``--repeat`` and ``--warmup`` to a script's parser."""
    parser.add_argument(
        '--repeat',
        type=int,
        default=repeat,
        help=f'timed repetitions per measurement; the median is reported (default {repeat})',
    )
    parser.add_argument(
        '--warmup',
        type=int,
        default=warmup,
        help=f'untimed repetitions before timing (default {warmup})',
    )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def measure(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def measure_self_timed(fn: Callable[[], float], repeat: int, warmup: int = 1) -> float:
    """Median of the seconds ``fn()`` returns (it times its own region, e.g. in a worker)."""
    for _ in range(warmup):
        fn()
    return median([fn() for _ in range(repeat)])


# -- sizes and formatting ----------------------------------------------------------

_UNITS = {'B': 1, 'KB': 1 << 10, 'MB': 1 << 20, 'GB': 1 << 30}


def parse_size(text: str) -> int:
    """``'10MB'`` -> 10485760 (binary units: 1 KB = 1024 bytes)."""
    text = text.strip().upper().replace('IB', 'B')
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * _UNITS[unit])
    return int(text)


def format_size(nbytes: float) -> str:
    for unit in ('GB', 'MB', 'KB'):
        if nbytes >= _UNITS[unit]:
            value = nbytes / _UNITS[unit]
            return f'{value:.0f} {unit}' if value == int(value) else f'{value:.1f} {unit}'
    return f'{int(nbytes)} B'


def format_time(seconds: float | None) -> str:
    """Seconds as a short human string with a unit (ns to s)."""
    if seconds is None:
        return '-'
    if seconds < 1e-6:
        return f'{seconds * 1e9:.1f} ns'
    if seconds < 1e-3:
        return f'{seconds * 1e6:.1f} us'
    if seconds < 1:
        return f'{seconds * 1e3:.2f} ms'
    return f'{seconds:.2f} s'


def format_ratio(value: float | None) -> str:
    return '-' if value is None else f'{value:.2f}x'


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = '') -> None:
    """Print a plain-text table; the first column is left-aligned, the others right."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        return '  '.join(parts).rstrip()

    if title:
        print(f'\n{title}')
    print(line(cells[0]))
    print('  '.join('-' * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


# -- machine report ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def _memory() -> str:
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    return f'{int(line.split()[1]) / (1 << 20):.1f} GiB'
    except OSError:
        pass
    return 'unknown'


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except ImportError:
        return 'not installed'
    return str(getattr(mod, '__version__', 'unknown'))


def redis_server_version() -> str:
    exe = shutil.which('redis-server')
    if exe is None:
        return 'not installed'
    out = subprocess.run([exe, '--version'], capture_output=True, text=True, check=False).stdout
    for token in out.split():
        if token.startswith('v='):
            return token[2:]
    return out.strip() or 'unknown'


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ['git', '-C', REPO_ROOT, *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return ''
    return out.stdout


def library_state() -> str:
    """The commit measured, and any uncommitted library files (they are measured too)."""
    commit = _git('rev-parse', '--short', 'HEAD').strip() or 'unknown'
    changed = _git('status', '--porcelain', '--', 'proxystore', 'integrations')
    files = [line[3:].strip() for line in changed.splitlines() if line.strip()]
    if not files:
        return f'commit {commit}'
    return f'commit {commit} + uncommitted changes in {", ".join(files)}'


def _accelerators() -> str:
    """Which implementation the proxy and the serializer run here: 'c' or 'python' each."""
    import proxystore.proxy
    import proxystore.serialize

    return (
        f'proxy {proxystore.proxy._IMPLEMENTATION}, '
        f'serialize {proxystore.serialize._IMPLEMENTATION} (PROXYSTORE_PURE_PYTHON=1 forces python)'
    )


def machine_report(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Describe the machine and the software versions of this run."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    report = {
        'cpu': _cpu_model(),
        'cores': f'{os.cpu_count()} ({usable} usable)',
        'memory': _memory(),
        'os': f'{platform.system()} {platform.release()}',
        'python': f'{platform.python_implementation()} {platform.python_version()}',
        'numpy': _version('numpy'),
        'redis-py': _version('redis'),
        'redis-server': redis_server_version(),
        'proxystore': f'{_version("proxystore")} ({library_state()})',
        'accelerators': _accelerators(),
    }
    report.update(extra or {})
    return report


def print_machine_report(extra: dict[str, str] | None = None) -> None:
    report = machine_report(extra)
    width = max(len(k) for k in report)
    print('Machine')
    for key, value in report.items():
        print(f'  {key.ljust(width)}  {value}')
    sys.stdout.flush()


# -- redis-server ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', port), 0.2):
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def redis_server(attempts: int = 5, timeout: float = 10.0) -> Iterator[tuple[str, int]]:
    """Run a private ``redis-server`` on 127.0.0.1 (free port, no persistence).

    Yields ``(host, port)``; the server and its directory are removed at exit.
    """
    exe = shutil.which('redis-server')
    if exe is None:
        raise RuntimeError('redis-server is not installed (bash scripts/setup.sh installs it)')
    workdir = tempfile.mkdtemp(prefix='bench-redis-')
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(attempts):
            port = free_port()
            proc = subprocess.Popen(
                [
                    exe,
                    '--bind',
                    '127.0.0.1',
                    '--port',
                    str(port),
                    '--save',
                    '',
                    '--appendonly',
                    'no',
                    '--dir',
                    workdir,
                    '--protected-mode',
                    'yes',
                    '--loglevel',
                    'warning',
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if _wait_for_port(port, proc, timeout):
                break
            proc.kill()
            proc.wait()
            proc = None  # the port was taken between choosing and binding: retry
        if proc is None:
            raise RuntimeError(f'redis-server did not start after {attempts} attempts')
        yield '127.0.0.1', port
    finally:
        _stop([proc] if proc is not None else [])
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_cluster(masters: int = 3, timeout: float = 30.0) -> Iterator[tuple[str, int]]:
    """Run a private Redis Cluster of ``masters`` nodes on 127.0.0.1 (no replicas).

    Yields ``(host, port)`` of one node (any node is an entry point); every
    node and its directory are removed at exit.
    """
    exe, cli = shutil.which('redis-server'), shutil.which('redis-cli')
    if exe is None or cli is None:
        raise RuntimeError('redis-server/redis-cli are not installed')
    workdir = tempfile.mkdtemp(prefix='bench-cluster-')
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        while len(ports) < masters:
            port = free_port()
            if port + 10000 > 65535:
                continue
            node_dir = os.path.join(workdir, str(port))
            os.makedirs(node_dir)
            proc = subprocess.Popen(
                [exe, '--bind', '127.0.0.1', '--port', str(port), '--cluster-enabled', 'yes',
                 '--cluster-config-file', os.path.join(node_dir, 'nodes.conf'),
                 '--save', '', '--appendonly', 'no', '--dir', node_dir,
                 '--loglevel', 'warning'],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if _wait_for_port(port, proc, 10):
                procs.append(proc)
                ports.append(port)
            else:
                proc.kill()
                proc.wait()
        subprocess.run(
            [cli, '--cluster', 'create', *(f'127.0.0.1:{p}' for p in ports), '--cluster-yes'],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, '-p', str(p), 'CLUSTER', 'INFO'],
                    check=False,
                    capture_output=True,
                    text=True,
                ).stdout
                for p in ports
            ]
            if all('cluster_state:ok' in s for s in states):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError('the Redis Cluster did not reach cluster_state:ok')
        yield '127.0.0.1', ports[0]
    finally:
        _stop(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Terminate server processes (all at once), killing any that do not exit in 10 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- cross-process worker ----------------------------------------------------------------


def _ready() -> int:
    return os.getpid()


@contextlib.contextmanager
def spawn_worker(preload: Sequence[str] = ('numpy', 'proxystore')) -> Iterator[ProcessPoolExecutor]:
    """A single ``spawn``-context worker process, started and warmed before use.

    ``preload`` modules are imported in the worker while it starts, so no
    timed call pays for imports. Submit functions that time their own work
    and return seconds: process start and argument transfer are excluded.
    """
    ctx = get_context('spawn')
    pool = ProcessPoolExecutor(
        max_workers=1, mp_context=ctx, initializer=_preload, initargs=(tuple(preload),)
    )
    try:
        pool.submit(_ready).result(timeout=120)
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _preload(modules: tuple[str, ...]) -> None:
    for name in modules:
        __import__(name)


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[str]:
    """A temporary directory removed at exit (whatever is left in it)."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
