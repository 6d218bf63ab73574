"""The demo is idempotent, and third-party tools read the archive (issue #22).

- ``pressarchive demo`` run twice on the same archive (the CLI in a child process, offline)
  adds nothing: every table keeps its row count but ``crawl_runs`` (one run per source more),
  and releases keep their ids, text and URLs, which name the demo sites' stable addresses.
- ``pressarchive demo --serve`` serves those addresses: the archive's original URLs answer
  while it runs, and another demo run meanwhile (same stable ports) neither collides nor adds.
- ``sqlite-utils tables --counts``, ``sqlite-utils rows`` and ``datasette inspect`` (the real
  CLIs from the venv) exit 0 on a crawled archive with exact counts; plain Datasette and the
  project's site answer ``/``, ``/archive`` and every table page with nothing logged as an error.
- An archive whose search index has format 1's definition (contentless FTS5 without
  ``columnsize``: "table does not support scanning") is upgraded by ``pressarchive reindex``,
  releases untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import child_env, run_cli, start_child

from archive.search_index import FTS_ARGS, FTS_TABLE, matching_release_ids
from crawler.demo import DEMO_SITES_PORT
from crawler.demo.server import DEMO_SITES, SiteServer, demo_bases

VENV_BIN = Path(sys.executable).parent
DEMO_SOURCE_IDS = ("demo-gac", "demo-cn-embassy-en", "demo-cn-embassy-zh")
GROWS_BY_A_RUN = {"crawl_runs": len(DEMO_SOURCE_IDS)}  # the only table a run that finds nothing new adds to
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy


def free_port_pair() -> int:
    """A port P with P and P + 1 free on 127.0.0.1 (below Linux's ephemeral range, as the default)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        try:
            for candidate in (port, port + 1):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports")


def table_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table' order by name")]
        return {name: conn.execute(f"select count(*) from [{name}]").fetchone()[0] for name in names}
    finally:
        conn.close()


def releases(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("select id, url, canonical_url, fetched_url, content_hash, text from releases "
                            "order by id").fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def demo_twice(tmp_path_factory):
    """An archive made by `pressarchive demo` run twice, with what each run printed and left."""
    folder = tmp_path_factory.mktemp("demo")
    port = free_port_pair()
    runs = []
    for _ in range(2):
        result = run_cli(["demo", "--db", "archive.db", "--sites-port", port], folder, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        runs.append({"result": result, "counts": table_counts(folder / "archive.db"),
                     "releases": releases(folder / "archive.db")})
    return {"folder": folder, "db": folder / "archive.db", "port": port, "runs": runs}


def test_demo_again_adds_nothing(demo_twice):
    first, second = demo_twice["runs"]
    assert first["counts"]["releases"] == 20 and first["counts"]["release_versions"] == 20
    for source in DEMO_SOURCE_IDS:
        assert f"{source}: ok (0 new, 0 changed, 0 unchanged, 0 removed, 0 errors" in second["result"].stdout
    grown = {name: second["counts"][name] - count for name, count in first["counts"].items()
             if second["counts"].get(name) != count}
    assert grown == GROWS_BY_A_RUN
    assert set(second["counts"]) == set(first["counts"])
    assert second["releases"] == first["releases"]  # same ids, URLs, text
    assert "Running the demo again adds nothing" in second["result"].stdout


def test_demo_urls_name_the_stable_addresses(demo_twice):
    bases = tuple(f"{base}/" for base in demo_bases(demo_twice["port"]).values())
    rows = demo_twice["runs"][1]["releases"]
    assert {row[1].split("/")[2] for row in rows} == {base.split("/")[2] for base in bases}
    for _, url, canonical_url, fetched_url, _, _ in rows:
        assert url.startswith(bases) and fetched_url == url
        assert canonical_url in (url, None)  # the gov pages' rel=canonical names the stable address too
    assert sum(row[2] == row[1] for row in rows) == 8
    assert demo_bases() == {name: f"http://127.0.0.1:{DEMO_SITES_PORT + i}" for i, name in enumerate(DEMO_SITES)}
    assert DEMO_SITES_PORT + len(DEMO_SITES) - 1 < 32768  # below Linux's ephemeral ports


def read_lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def wait_for(lines: queue.Queue, prefix: str, seen: list, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting {prefix!r} in: {''.join(seen)}")


def get(url: str, timeout: float = 10):
    try:
        with NO_PROXY.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_demo_serve_answers_the_original_addresses(demo_twice, tmp_path):
    folder, port = demo_twice["folder"], demo_twice["port"]
    urls = [row[1] for row in demo_twice["runs"][1]["releases"]]
    process = start_child([sys.executable, "-m", "crawler", "demo", "--db", "archive.db", "--serve", "--port", "0",
                           "--sites-port", str(port)], folder, child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    lines, seen = queue.Queue(), []
    threading.Thread(target=read_lines, args=(process.stderr, lines), daemon=True).start()
    try:
        serving = wait_for(lines, "Serving", seen)
        assert sum(line.startswith("Demo site ") for line in seen) == len(DEMO_SITES), seen
        titles = {row[1]: row[5][:40] for row in demo_twice["runs"][1]["releases"]}
        for url in urls:  # every original address answers, with the archived text in it
            status, body = get(url)
            assert status == 200, url
            assert titles[url].split()[0].encode() in body
        site = serving.split(" at ", 1)[1].split()[0]
        assert get(site)[0] == 200
        # Another demo meanwhile, into another archive, on the same stable ports: no collision, same URLs.
        other = run_cli(["demo", "--db", tmp_path / "other.db", "--sites-port", port], folder, timeout=120)
        assert other.returncode == 0, other.stdout + other.stderr
        assert sorted(row[1:5] for row in releases(tmp_path / "other.db")) == \
               sorted(row[1:5] for row in demo_twice["runs"][1]["releases"])
        assert table_counts(folder / "archive.db")["releases"] == 20  # the served run crawled too: nothing new
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    with pytest.raises(OSError):  # the demo sites stopped with it
        NO_PROXY.open(urls[0], timeout=5)


def test_demo_site_server_proxies_only_its_own_origin(tmp_path):
    public = "http://127.0.0.1:9"  # a stable address nothing listens on
    with SiteServer(DEMO_SITES["gov"], public_base=public) as server:
        proxied = urllib.request.build_opener(urllib.request.ProxyHandler({"http": server.base_url}))
        with proxied.open(f"{public}/en/global-affairs/news.atom", timeout=10) as response:
            assert f"{public}/en/global-affairs/news/2017/06/".encode() in response.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            proxied.open("http://127.0.0.1:10/en/global-affairs/news.atom", timeout=10)
        assert refused.value.code == 403
        assert server.paths == ["/en/global-affairs/news.atom", "http://127.0.0.1:10/en/global-affairs/news.atom"]
        status, body = get(server.url("/en/global-affairs/news.atom"))  # asked directly: same page
        assert status == 200 and public.encode() in body


# --- third-party tools ----------------------------------------------------------------------------


def tool(name: str, *args, cwd: Path):
    return subprocess.run([str(VENV_BIN / name), *map(str, args)], check=False, cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=child_env())


@pytest.fixture(scope="module")
def crawled(demo_twice, tmp_path_factory) -> Path:
    """A copy of the demo archive (the tools must not see a crawl's lock or leave files by it)."""
    folder = tmp_path_factory.mktemp("tools")
    shutil.copy(demo_twice["db"], folder / "archive.db")
    return folder / "archive.db"


def test_sqlite_utils_counts_every_table_exactly(crawled):
    result = tool("sqlite-utils", "tables", crawled.name, "--counts", cwd=crawled.parent)
    assert result.returncode == 0, result.stderr
    counts = {row["table"]: row["count"] for row in json.loads(result.stdout)}
    assert counts == table_counts(crawled)
    assert counts[FTS_TABLE] == counts["releases"] == 20


def test_sqlite_utils_rows_of_the_search_index(crawled):
    counts = table_counts(crawled)
    for table in [name for name in counts if name.startswith(FTS_TABLE)] + ["releases"]:
        count = counts[table]
        result = tool("sqlite-utils", "rows", crawled.name, table, cwd=crawled.parent)
        assert result.returncode == 0, f"{table}: {result.stderr}"
        assert len(json.loads(result.stdout)) == count, table


def test_datasette_inspect(crawled):
    result = tool("datasette", "inspect", crawled.name, cwd=crawled.parent)
    assert result.returncode == 0, result.stderr
    tables = json.loads(result.stdout)[crawled.stem]["tables"]
    assert {name: info["count"] for name, info in tables.items()} == table_counts(crawled)


def pages(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type in ('table', 'view') "
                                            "and name not like 'sqlite_%' order by name")]
    finally:
        conn.close()
    return ["/", f"/{db.stem}"] + [f"/{db.stem}/{name}" for name in names]


def visit(ds, paths: list[str]) -> dict[str, int]:
    async def go():
        await ds.invoke_startup()
        return {path: (await ds.client.get(path, follow_redirects=True)).status_code for path in paths}

    return asyncio.run(go())


def test_plain_datasette_serves_every_page_without_an_error(crawled, capsys, caplog):
    from datasette.app import Datasette

    paths = pages(crawled)
    assert f"/{crawled.stem}/{FTS_TABLE}" in paths and len(paths) > 15
    with caplog.at_level(logging.ERROR):
        statuses = visit(Datasette([str(crawled)]), paths)
    assert statuses == {path: 200 for path in paths}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "ERROR" not in capsys.readouterr().err  # Datasette writes failed SQL to stderr


def test_pressarchive_site_home_and_database_pages_log_no_error(crawled, capsys, caplog):
    from archive.site.serve import make_datasette

    with caplog.at_level(logging.ERROR):
        statuses = visit(make_datasette(crawled), ["/", f"/{crawled.stem}"])
    assert statuses == {"/": 200, f"/{crawled.stem}": 200}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "ERROR" not in capsys.readouterr().err


def test_format_1_index_is_rebuilt_readable_and_releases_untouched(crawled, tmp_path):
    db = tmp_path / "archive.db"
    shutil.copy(crawled, db)
    conn = sqlite3.connect(db)  # the index as format 1 made it: contentless, no columnsize
    conn.execute(f"drop table {FTS_TABLE}")
    conn.execute(f"create virtual table {FTS_TABLE} using fts5({FTS_ARGS.replace('columnsize=1', 'columnsize=0')})")
    conn.commit()
    conn.close()
    before = releases(db)
    broken = tool("sqlite-utils", "tables", db.name, "--counts", cwd=tmp_path)
    assert broken.returncode != 0 and "table does not support scanning" in broken.stderr

    # (the version key still says the current format: the table's definition alone triggers the rebuild)
    result = run_cli(["reindex", "--db", db], tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    fixed = tool("sqlite-utils", "tables", db.name, "--counts", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert {row["table"]: row["count"] for row in json.loads(fixed.stdout)}[FTS_TABLE] == 20
    assert releases(db) == before
    conn = sqlite3.connect(db)
    try:
        assert len(matching_release_ids(conn, "cyber-enabled theft")) == 2
        assert len(matching_release_ids(conn, "知识产权")) == 1  # the Chinese releases are indexed again too
    finally:
        conn.close()
