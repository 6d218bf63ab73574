"""Shared fixtures: local HTTP servers for the fixture sites and the demo sites.

Sites live in ``tests/sites/<name>/`` (pages written for these tests, mirroring
real government markup); ``tests/sites/EXPECTED.json`` says what a correct crawl
of each must store, and ``tests/sites/sources.toml`` has one source per site with
``{base_<name>}`` placeholders for the servers' base URLs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from crawler.demo.server import DEMO_SITES, DEMO_SOURCES, SiteServer, substitute_bases

SITES = Path(__file__).parent / "sites"
FIXTURE_SITES = ("feed_site", "sitemap_site", "listing_site", "gbk_site")
FIXTURE_SOURCES = SITES / "sources.toml"
pytest_plugins = ["netguard"]  # no test sends a packet outside loopback (tests/netguard.py)


def pytest_configure(config):
    import os

    if os.environ.get("PRESSARCHIVE_STORE_DURATIONS") == "1" and not hasattr(config, "workerinput"):
        from scheduling import DurationRecorder

        config.pluginmanager.register(DurationRecorder(), "pressarchive-durations")


def pytest_unconfigure(config):
    """Stop this process's fork server (tests/zygote.py), if a test started it."""
    import shutil

    while _ZYGOTE:
        zygote = _ZYGOTE.pop()
        zygote.close()
        shutil.rmtree(zygote.folder, ignore_errors=True)


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (the default, pyproject.toml) runs with tests/scheduling.py: modules
    split where no fixture is shared, longest tests first."""
    if config.getvalue("dist") == "loadfile":
        from scheduling import LongestFirstScheduling

        return LongestFirstScheduling(config, log)
    return None


@pytest.fixture(scope="session")
def expected() -> dict:
    """tests/sites/EXPECTED.json: per site, the releases a correct crawl stores."""
    return json.loads((SITES / "EXPECTED.json").read_text(encoding="utf-8"))


@pytest.fixture
def site_server() -> Callable[..., SiteServer]:
    """Factory: ``site_server("feed_site")`` starts a server for tests/sites/feed_site.

    Also accepts a path (e.g. a copy of a site under tmp_path that a test edits).
    Every server started is stopped when the test ends.
    """
    started: list[SiteServer] = []

    def start(site: str | Path) -> SiteServer:
        root = Path(site) if isinstance(site, Path) else SITES / site
        server = SiteServer(root).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def child_env(when: str | None = None, **extra) -> dict:
    """The environment of a child ``pressarchive``: ours without PYTHONPATH (the child imports the
    installed package, as a user's does), with ``PRESSARCHIVE_NOW=when`` to set its clock."""
    import os

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if when:
        env["PRESSARCHIVE_NOW"] = when
    return {**env, **extra}


def run_cli(args, cwd, timeout: float = 180, when: str | None = None, env: dict | None = None, **kwargs):
    """``python -m crawler ARGS`` in a child process from ``cwd``, as a user runs it.

    Twisted's reactor cannot restart inside pytest, so crawls run in a child. The child
    gets :func:`child_env` (``when``: its clock; ``env``: entries added), text output and
    ``timeout`` seconds; the CompletedProcess is returned whatever the exit code. The child is
    a fork of tests/zygote.py's server, which has the third-party libraries imported already
    (about 0.7 CPU-s saved a run) and guards the child's sockets as tests/netguard.py guards
    ours; ``PRESSARCHIVE_TEST_FORK=0`` starts every child as a new ``python`` instead.
    """
    import sys

    return run_child([sys.executable, "-m", "crawler", *args], cwd, {**child_env(when), **(env or {})}, timeout,
                     **kwargs)


def run_child(command, cwd, env: dict, timeout: float = 180, **kwargs):
    """``subprocess.run(command, capture_output=True, text=True)`` for a Python child (``python -m``,
    ``python -c``, a console script of this Python), run by a fork of tests/zygote.py's server when
    it can be: the same process, without a second of imports (see ``run_cli``)."""
    import subprocess

    command = [str(part) for part in command]
    zygote = None if kwargs else _zygote(env, command)
    if zygote is not None:
        return zygote.run(command, cwd, env, timeout)
    return subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def start_child(command, cwd, env: dict, **kwargs):
    """``subprocess.Popen(command, cwd=cwd, env=env, **kwargs)`` for a Python child that keeps running
    while the test works (signals, a crawl killed halfway, a worker and an ingester side by side): a
    fork of tests/zygote.py's server when it can be (``stdin``/``stdout``/``stderr``, ``text`` and
    ``start_new_session`` are what it takes), with the same ``pid``, signals, pipes and exit status."""
    import subprocess

    command = [str(part) for part in command]
    forkable = set(kwargs) <= {"stdin", "stdout", "stderr", "text", "start_new_session"}
    zygote = _zygote(env, command) if forkable else None
    if zygote is not None:
        return zygote.popen(command, cwd, env, **kwargs)
    return subprocess.Popen(command, cwd=cwd, env=env, **kwargs)


_ZYGOTE: list = []  # this pytest process's tests/zygote.py server, started by the first run_cli


def _zygote(env: dict, command: list[str] | None = None):
    """The pre-started Python (tests/zygote.py) that forks ``run_cli``'s children, or None: when
    ``PRESSARCHIVE_TEST_FORK=0``, when ``command`` is not one a fork of this Python can run
    (``python_argv``), or when ``env`` changes what Python reads at start-up (``PYTHON*``, locale
    variables), so the fork would not be the process a real start gives."""
    import os
    import tempfile

    from zygote import Zygote, python_argv, starts_alike

    if os.environ.get("PRESSARCHIVE_TEST_FORK", "1") == "0":
        return None
    if command is not None and python_argv(command) is None:
        return None
    if not _ZYGOTE:
        _ZYGOTE.append(Zygote(tempfile.mkdtemp(prefix="pressarchive-zygote-"), child_env()))
    if not starts_alike(env, _ZYGOTE[0].env):
        return None
    return _ZYGOTE[0]


@pytest.fixture
def cli():
    """The CLI runner (:func:`run_cli`): ``cli(["crawl", "--sources", path], tmp_path)``."""
    return run_cli


@pytest.fixture
def fixture_servers(site_server) -> dict[str, SiteServer]:
    """All four fixture sites, started; keys are the site directory names."""
    return {name: site_server(name) for name in FIXTURE_SITES}


def write_sources(template: Path, servers: dict, dest: Path) -> Path:
    """Write ``template`` to ``dest`` with ``{base_<name>}`` replaced by the servers' base URLs."""
    dest.write_text(substitute_bases(template.read_text(encoding="utf-8"), servers), encoding="utf-8")
    return dest


@pytest.fixture
def fixture_sources(tmp_path, fixture_servers) -> Path:
    """A sources.toml for the four running fixture sites (ids fixture-feed, fixture-sitemap,
    fixture-listing, fixture-gbk)."""
    return write_sources(FIXTURE_SOURCES, fixture_servers, tmp_path / "sources.toml")


@pytest.fixture
def demo_servers(site_server) -> dict[str, SiteServer]:
    """The built-in demo sites, started: ``{"gov": ..., "embassy": ...}``."""
    return {name: site_server(root) for name, root in DEMO_SITES.items()}


@pytest.fixture
def demo_sources(tmp_path, demo_servers) -> Path:
    """The demo's sources.toml with the running demo servers' base URLs filled in."""
    return write_sources(DEMO_SOURCES, demo_servers, tmp_path / "demo-sources.toml")


# --- A generated archive of ~2,400 releases, crawled for real (tests/test_exact_search.py,
# tests/test_browser.py). -------------------------------------------------------------------


@pytest.fixture(scope="session")
def generated_archive(tmp_path_factory):
    """Path of a real ``archive.db`` made by crawling the sites of ``tests/gensite.py``.

    The four generated sites (~2,400 releases, sitemap discovery) are served by
    ``SiteServer`` on 127.0.0.1 and crawled by ``python -m crawler crawl`` in a child
    process, as tests/test_crawl.py does (WARC capture on, as a user runs it). Built once
    per test run: ~35 s on 2 cores (printed with ``-s``, kept in ``build_seconds``). Under
    pytest-xdist the first worker to need it builds it in the run's shared temporary
    folder while the others wait on a lock, then every worker reads the same file (no test
    writes to it: those that need to write work on a copy).
    """
    import fcntl
    import json
    import os
    import subprocess

    import gensite

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "generated-archive"
    done = root / "built.json"
    with open(shared / "generated-archive.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            root.mkdir(exist_ok=True)
            built = _build_generated_archive(root)
            done.write_text(json.dumps(built), encoding="utf-8")
    built = json.loads(done.read_text(encoding="utf-8"))
    assert built["returncode"] == 0, built["stderr"][-5000:]
    crawl = subprocess.CompletedProcess(built["args"], built["returncode"], built["stdout"], built["stderr"])
    archive = GeneratedArchive(root / "archive.db", gensite.load(root), built["bases"], built["seconds"], crawl)
    print(f"\ngenerated_archive: {len(archive.site.releases)} releases generated and crawled in "
          f"{archive.build_seconds:.1f} s ({archive.path})")
    return archive


def _build_generated_archive(root: Path) -> dict:
    """Write the generated sites under ``root``, serve them and crawl them into ``root/archive.db``."""
    import os
    import subprocess
    import sys
    import time

    import gensite

    started = time.monotonic()
    site = gensite.build(root)
    servers = {}
    for key, folder in site.sites.items():
        servers[key] = SiteServer(folder).start()  # (TCP_NODELAY: crawler/demo/server.py)
    try:
        sources = write_sources(site.sources_template, servers, root / "gen-sources.toml")
        # The crawl runs the code under test (this checkout), whatever else is installed.
        root_dir = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root_dir, os.environ.get("PYTHONPATH")]))}
        env["PRESSARCHIVE_NOW"] = "2026-01-15T12:00:00Z"  # every generated date is before it
        args = [sys.executable, "-m", "crawler", "crawl", "--sources", str(sources), "--db", str(root / "archive.db"),
                "--log-level", "WARNING"]
        result = subprocess.run(args, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        bases = {key: server.base_url for key, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    return {"args": args, "returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr,
            "bases": bases, "seconds": time.monotonic() - started}


class GeneratedArchive:
    """What ``generated_archive`` gives: ``path`` (archive.db), ``site`` (gensite.GeneratedSite),
    ``bases`` (server key -> base URL the crawl saw), ``build_seconds``, ``crawl`` (CompletedProcess)."""

    def __init__(self, path, site, bases, build_seconds, crawl):
        self.path, self.site, self.bases = path, site, bases
        self.build_seconds, self.crawl = build_seconds, crawl

    def __fspath__(self):
        return str(self.path)


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on a free 127.0.0.1 port for the test (distributed crawls); skipped
    where Debian's redis-server is not installed (.ci/run installs it)."""
    import shutil
    import socket
    import subprocess
    import time

    redis = shutil.which("redis-server")
    if not redis:
        pytest.skip("redis-server not installed (.ci/run installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
