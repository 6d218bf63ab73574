"""Hostile readers of the served archive, and ``pressarchive serve``'s operator errors.

Every test serves a real archive made by a real crawl (a copy of the session fixture
``generated_archive``: ~2,400 releases crawled from local sites), either through the
real ``serve`` command (uvicorn in a subprocess on 127.0.0.1, ``--port 0``) or through
the same app in process (``archive.site.serve.make_datasette`` and ``datasette.client``).

- Serving never writes: the archive's bytes and mtime are the same afterwards, a
  read-only folder is served (as an unprivileged user when the tests run as root,
  where permissions would not bind), a file that is not an archive is refused.
- A missing or stale search index: one warning line, and the search pages say so.
- Arbitrary SQL cannot take a server thread or gigabytes for long: printf/randomblob
  bombs, results of many huge values, pointer-leaking functions, ATTACH, quadratic
  string functions; a normal search stays fast while three hostile requests run.
- Searches are bounded (characters, words) with a clear page; the plugin's own SQL and
  its ranking thread stop at the time limit; no response header grows past 8 KB.
- ``--port`` in use or out of range: one line, exit 2, and "Serving" only once bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from archive import search_index
from archive.site.serve import make_datasette
from crawler.cli.serve import serve_command

ROOT = Path(__file__).resolve().parent.parent


# --- Archives and servers ---------------------------------------------------------------------

def copy_archive(source: Path, dest: Path) -> Path:
    """A copy of the crawled archive (SQLite's backup: the session's file is only read)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return dest


def state(path: Path) -> tuple:
    """What 'untouched' means: the same bytes, the same mtime, no new file beside it."""
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


@pytest.fixture
def archive(generated_archive, tmp_path) -> Path:
    return copy_archive(generated_archive.path, tmp_path / "archive.db")


class Served:
    def __init__(self, process, lines):
        self.process, self.lines = process, lines
        self.serving = next(line for line in lines if line.startswith("Serving "))
        self.base = re.search(r"at (http://\S+)/archive", self.serving).group(1)

    def get(self, path: str, timeout: float = 60, **params):
        """(status, headers, text, seconds) of GET ``path`` on the server."""
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        return status, headers, body.decode("utf-8", "replace"), time.monotonic() - started

    def peak_rss_mb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
        raise AssertionError("no VmHWM")

    def reset_peak_rss(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


@contextlib.contextmanager
def serving(path: Path, prefix: tuple = ()):
    """``pressarchive serve --db PATH --port 0`` in a subprocess (after ``prefix``, a command that
    runs the rest); yields a :class:`Served` once it has printed "Serving ... at URL"."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [*prefix, sys.executable, "-c", "from crawler.cli.serve import serve_command; serve_command()",
               "--db", str(path), "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if line.startswith("Serving "):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(60):
            process.kill()
            pytest.fail(f"serve did not start: {lines}")
        yield Served(process, list(lines))
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def client(generated_archive, tmp_path_factory):
    """``get(path, **params)`` -> httpx response from the app ``serve`` runs, in process, on a copy."""
    path = copy_archive(generated_archive.path, tmp_path_factory.mktemp("served") / "archive.db")
    ds = make_datasette(path)
    loop = asyncio.new_event_loop()

    def get(path, **params):
        return loop.run_until_complete(ds.client.get(path, params=params or None))

    get.datasette, get.loop = ds, loop
    yield get
    loop.close()


def plugin_module():
    from datasette.plugins import pm

    return next(p for p in pm.get_plugins() if getattr(p, "LITERAL_IDS_MAX", None) is not None)


def sql_json(client, sql: str):
    return client("/archive.json", sql=sql, _shape="array")


# --- Serving never writes ---------------------------------------------------------------------

def test_serving_leaves_the_archive_untouched(archive):
    before = state(archive)
    with serving(archive) as served:
        assert not any(line.startswith("Warning") for line in served.lines), served.lines
        for path, params in (("/archive/releases", {"_search": "sanctions"}), ("/archive/search", {"q": "网络"}),
                             ("/archive/releases.json", {"_search": "intellectual property", "_facet": "year"})):
            status, _, text, _ = served.get(path, **params)
            assert status == 200, text[:500]
    after = state(archive)
    assert after[:2] == before[:2]  # same bytes, same mtime
    # (a WAL reader makes archive.db-wal and -shm beside the file, as any reader of a live archive)
    assert set(after[2]) - set(before[2]) <= {"archive.db-wal", "archive.db-shm"}


# As root, permissions do not bind: the archive is then served from a read-only tmpfs mounted in
# a mount namespace of the server's own (gone with it), after checking that root cannot write there.
READ_ONLY_MOUNT = (
    'mount -t tmpfs -o size=512m tmpfs "$1" && cp "$2" "$1/archive.db" && mount -o remount,ro "$1" || exit 8; '
    'if touch "$1/probe" 2>/dev/null; then echo "the mount is writable" >&2; exit 9; fi; shift 2; exec "$@"'
)


@pytest.fixture
def read_only_archive(generated_archive, tmp_path):
    """(path to serve, command prefix, the copy served): the archive alone on read-only media
    (no -wal, no -shm beside it, and no way to make them)."""
    copy = copy_archive(generated_archive.path, tmp_path / "archive.db")
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        path = folder / "archive.db"
        shutil.copy(copy, path)
        path.chmod(0o444)
        folder.chmod(0o555)
        with pytest.raises(PermissionError):
            (folder / "probe").write_text("")
        yield path, (), path
        folder.chmod(0o755)
        return
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "--mount", "--", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("running as root without mount namespaces: no read-only medium to serve from")
    mount = tmp_path / "media"
    mount.mkdir()
    prefix = ("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", READ_ONLY_MOUNT, "sh",
              str(mount), str(copy))
    yield mount / "archive.db", prefix, copy


def test_read_only_media_are_served_with_search(read_only_archive):
    path, prefix, copy = read_only_archive
    before = state(copy)
    with serving(path, prefix) as served:
        assert "immutable" in served.serving, served.lines
        status, _, text, _ = served.get("/archive/releases.json", _search="sanctions", _shape="objects")
        assert status == 200 and '"filtered_table_rows_count": 1195' in text, text[:300]
        status, _, text, _ = served.get("/archive/search", q='"intellectual property"')
        assert status == 200 and '<p class="search-total">958 releases match' in text
        status, _, text, _ = served.get("/archive/search.json", q="网络", _shape="array")
        assert status == 200 and text.count('"id"') == 50
        for page in ("/", "/archive", "/archive/releases", "/-/databases.json"):  # (counts left unknown)
            assert served.get(page)[0] == 200, page
    assert state(copy) == before


@pytest.mark.parametrize("kind", ["text", "other-sqlite-wal", "empty-sqlite", "folder"])
def test_a_file_that_is_not_an_archive_is_refused_untouched(tmp_path, kind):
    path = tmp_path / "other.db"
    if kind == "text":
        path.write_text("name,value\nnot,sqlite\n")
    elif kind == "other-sqlite-wal":  # what `serve` once turned into an archive, in WAL mode
        conn = sqlite3.connect(path)
        conn.execute("pragma journal_mode = delete")
        conn.execute("create table notes (body text)")
        conn.execute("insert into notes values ('mine')")
        conn.commit()
        conn.execute("pragma journal_mode = wal")
        conn.close()
    elif kind == "empty-sqlite":
        sqlite3.connect(path).execute("pragma user_version = 1").connection.close()
    else:
        path.mkdir()
    before = state(path) if path.is_file() else sorted(os.listdir(tmp_path))
    result = CliRunner().invoke(serve_command, ["--db", str(path), "--port", "0"])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert str(path) in result.stderr and "Serving" not in result.output
    assert ("not a pressarchive archive" if kind != "folder" else "not a file") in result.stderr
    assert (state(path) if path.is_file() else sorted(os.listdir(tmp_path))) == before


# --- A missing or out-of-date search index ----------------------------------------------------

def drop_search_index(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for (name,) in conn.execute("select name from sqlite_master where type = 'trigger'").fetchall():
            conn.execute(f"drop trigger {name}")
        for table in ("releases_fts", "releases_fts_rows", "releases_fts_pending", "release_facets"):
            conn.execute(f"drop table {table}")
    conn.close()


def test_without_a_search_index_search_pages_say_so(archive):
    drop_search_index(archive)
    before = state(archive)
    with serving(archive) as served:
        warnings = [line for line in served.lines if line.startswith("Warning")]
        assert len(warnings) == 1 and "no search index" in warnings[0], served.lines
        status, _, text, _ = served.get("/archive/releases", _search="sanctions")
        assert status == 503 and "no search index" in text and "Traceback" not in text
        status, _, text, _ = served.get("/archive/releases.json", _search="sanctions")
        assert status == 503 and "no search index" in text
        status, _, text, _ = served.get("/archive/search", q="sanctions")
        assert status == 503 and "no search index" in text
        status, _, text, _ = served.get("/archive/releases.json", _shape="array", _size=5)
        assert status == 200 and text.count('"id"') == 5  # browsing works
    assert state(archive)[:2] == before[:2]
    conn = sqlite3.connect(archive)
    assert conn.execute("select count(*) from sqlite_master where name like 'releases_fts%'").fetchone()[0] == 0
    conn.close()
    # `pressarchive reindex` (what the warning says to run) builds it; then search works, unwarned.
    done = subprocess.run([sys.executable, "-m", "crawler", "reindex", "--db", str(archive)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "is up to date (" in done.stdout, done.stderr[-2000:]
    with serving(archive) as served:
        assert not [line for line in served.lines if line.startswith("Warning")], served.lines
        status, _, text, _ = served.get("/archive/releases.json", _search="sanctions", _shape="objects")
        assert status == 200 and '"filtered_table_rows_count": 1195' in text


def test_a_stale_search_index_is_searched_as_it_is_and_said_so(archive):
    conn = sqlite3.connect(archive)
    with conn:  # a writer that never indexes: two new releases about sanctions
        for i in (1, 2):
            conn.execute("insert into releases (id, url, title, text, published, source_id) values (?, ?, ?, ?, ?, ?)",
                         [900000 + i, f"https://example.org/late/{i}", "Late sanctions", "New sanctions.",
                          "2025-12-30", "pm_ca"])
    conn.close()
    before = state(archive)
    with serving(archive) as served:
        warnings = [line for line in served.lines if line.startswith("Warning")]
        assert len(warnings) == 1 and "out of date (2 releases are not in it)" in warnings[0], served.lines
        status, _, text, _ = served.get("/archive/releases.json", _search="sanctions", _shape="objects")
        assert status == 200 and '"filtered_table_rows_count": 1195' in text  # what the index holds
        assert "out of date" in text  # in the human description
        status, _, text, _ = served.get("/archive/search", q="sanctions")
        assert status == 200 and "search-notice" in text and "out of date" in text
    assert state(archive)[:2] == before[:2]


def test_an_index_from_an_older_version_is_reported(archive):
    conn = sqlite3.connect(archive)
    with conn:
        conn.execute("update _pressarchive set value = '1' where key = 'search_version'")
    conn.close()
    with serving(archive) as served:
        warnings = [line for line in served.lines if line.startswith("Warning")]
        assert len(warnings) == 1 and "older pressarchive (format 1" in warnings[0], served.lines
        status, _, text, _ = served.get("/archive/releases.json", _search="sanctions", _shape="objects")
        assert status == 200 and '"filtered_table_rows_count": 1195' in text and "older pressarchive" in text
    conn = sqlite3.connect(archive)
    assert conn.execute("select value from _pressarchive where key = 'search_version'").fetchone() == ("1",)


# --- Arbitrary SQL ----------------------------------------------------------------------------

def test_printf_and_blob_bombs_end_at_once(client):
    started = time.monotonic()
    response = sql_json(client, "select printf('%.*c', 999999999, 'x') as s")
    assert response.status_code == 200 and response.json() == [{"s": None}]  # SQLite's "too long"
    assert time.monotonic() - started < 5  # was 21-26 s and 1 GB
    for sql in ("select randomblob(900000000)", "select zeroblob(900000000)",
                "select length(group_concat(zeroblob(1000000))) from (select 1 from releases limit 100)"):
        started = time.monotonic()
        response = sql_json(client, sql)
        assert response.status_code == 400 and "too big" in response.text, (sql, response.text[:300])
        assert time.monotonic() - started < 5
    # Under the bound, printf works as SQLite's own.
    response = sql_json(client, "select printf('%5.1f|%-4s|%.*c', 3.14159, 'ab', 3, 'z') as s, "
                                "length(printf('%.*c', 20000000, 'x')) as n")
    assert response.json() == [{"s": "  3.1|ab  |zzz", "n": 20000000}]


def test_a_result_of_many_huge_values_is_refused(client):
    started = time.monotonic()
    response = sql_json(client, "select zeroblob(30000000) as b from releases limit 1000")
    assert response.status_code == 400 and "result is too large" in response.text
    assert time.monotonic() - started < 5


def test_long_texts_are_read_whole(archive):
    """The length limit keeps every archived text readable: a 12 MB text (more than the crawl's
    10 MB page limit could give) is served whole, in JSON and CSV."""
    conn = sqlite3.connect(archive)
    with conn:
        conn.execute("insert into releases (id, url, title, text, published) values (?, ?, ?, ?, ?)",
                     [990001, "https://example.org/long", "Long", "word " * 2_400_000, "2020-01-01"])
    conn.close()
    ds = make_datasette(archive)

    async def fetch():
        return (await ds.client.get("/archive/releases/990001.json?_shape=objects"),
                await ds.client.get("/archive.csv?sql=select+id,text+from+releases+where+id=990001"))

    row, csv = asyncio.run(fetch())
    assert row.status_code == 200 and len(row.json()["rows"][0]["text"]) == 12_000_000
    assert csv.status_code == 200 and len(csv.text) > 12_000_000


@pytest.mark.parametrize("sql, refusal", [
    ("select hex(fts3_tokenizer('simple'))", "not authorized"),  # a pointer into the process
    ("select load_extension('/nonexistent')", "not authorized"),
    ("select rtreenode(2, x'00')", "not authorized"),
    ("select sql from sqlite_stmt", "prohibited"),  # other visitors' statements
    ("select count(*) from releases where title like '%" + "a" * 80 + "%'", "pattern too complex"),
])
def test_dangerous_functions_are_refused(client, sql, refusal):
    response = sql_json(client, sql)
    assert response.status_code == 400 and refusal in response.text, response.text[:300]


def test_attach_is_refused_on_the_sites_connections(client, tmp_path):
    db = client.datasette.get_database("archive")

    def attach(conn):
        try:
            conn.execute(f"attach database '{tmp_path / 'other.db'}' as other")
        except sqlite3.Error as error:
            return str(error)
        return "attached"

    assert "not authorized" in client.loop.run_until_complete(db.execute_fn(attach))
    assert not (tmp_path / "other.db").exists()


@pytest.mark.parametrize("sql, expected", [
    # each was one uninterruptible call of 7-16 s (and more for longer strings)
    ("select length(trim(printf('%.*c', 100000, 'a'), printf('%.*c', 50000, 'b') || 'a')) as v", 0),
    ("select instr(printf('%.*c', 30000000, 'a'), printf('%.*c', 15000000, 'a') || 'b') as v", 0),
    ("select length(replace(printf('%.*c', 30000000, 'a'), printf('%.*c', 15000000, 'a') || 'b', 'x')) as v",
     30000000),
    ("select instr('sanctions on exports', 'exports') as v", 14),  # small calls: SQLite's own
    ("select replace('a-b-c', '-', '+') as v", "a+b+c"),
    ("select rtrim('xxcorexy', 'xy') as v", "xxcore"),
])
def test_quadratic_string_functions_finish_quickly(client, sql, expected):
    started = time.monotonic()
    response = sql_json(client, sql)
    assert response.status_code == 200 and response.json() == [{"v": expected}], response.text[:300]
    assert time.monotonic() - started < 5


def test_the_length_limit_binds_visitors_not_the_plugins_id_lists(generated_archive, tmp_path, monkeypatch):
    """The plugin reads a search's matching ids as one group_concat (about 8 bytes a match at a
    million releases, so several MB): with the limit below that list's length (and above every
    value of this archive), searches stay exact and a visitor's own group_concat is refused."""
    limit, q = 4096, "sanctions OR 网络 OR the"
    conn = sqlite3.connect(f"file:{generated_archive.path}?mode=ro", uri=True)
    ids, matches = conn.execute("select length(group_concat(rowid % 4294967296)), count(*) from releases_fts "
                                "where releases_fts match ?", [search_index.user_match(q)]).fetchone()
    conn.close()
    assert ids > 2 * limit
    ds = make_datasette(copy_archive(generated_archive.path, tmp_path / "archive.db"))  # (loads the plugin)
    plugin = plugin_module()
    monkeypatch.setitem(plugin.SQL_LIMITS, sqlite3.SQLITE_LIMIT_LENGTH, limit)  # before any connection
    monkeypatch.setattr(plugin, "LITERAL_IDS_MAX", 0)  # every match through the id list

    async def fetch():
        return (await ds.client.get("/archive/releases.json", params={"_search": q, "_facet": "year"}),
                await ds.client.get("/archive/search.json", params={"q": q, "_shape": "array"}),
                await ds.client.get("/archive.json?sql=select+group_concat(id)+from+releases"))

    search, ranked, own = asyncio.run(fetch())
    assert search.status_code == 200 and search.json()["filtered_table_rows_count"] == matches
    assert sum(f["count"] for f in search.json()["facet_results"]["year"]["results"]) == matches
    assert ranked.status_code == 200 and len(ranked.json()) == 50
    assert own.status_code == 400 and "too big" in own.text


def test_a_normal_search_stays_fast_while_hostile_requests_run(archive):
    hostile = [
        ("/archive.json", {"sql": "select printf('%.*c', 999999999, 'x')"}),
        ("/archive.json", {"sql": "select zeroblob(30000000) from releases limit 1000"}),
        ("/archive.json", {"sql": "with recursive c(x) as (select 1 union all select x + 1 from c) "
                                  "select count(*) from c"}),  # runs to the 2 s limit
    ]
    with serving(archive) as served:
        assert served.get("/archive/releases", _search="sanctions")[0] == 200  # warm
        served.reset_peak_rss()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for _ in range(2):
                attacks = [pool.submit(served.get, path, **params) for path, params in hostile]
                time.sleep(0.2)
                status, _, text, seconds = served.get("/archive/releases", _search='"intellectual property"')
                assert status == 200 and "<strong>958</strong> releases match" in text
                assert seconds < 10  # was 131 s behind three printf bombs
                for attack in attacks:
                    status, _, _, took = attack.result()
                    assert status in (200, 400) and took < 10
        assert served.peak_rss_mb() < 1024  # one printf bomb alone took 5.7 GB


def test_repeated_facets_run_once_and_their_number_is_bounded(client):
    repeated = "&".join(["_facet=title"] * 300)
    started = time.monotonic()
    response = client(f"/archive/releases.json?_search=sanctions&{repeated}")
    assert response.status_code == 200 and response.json()["filtered_table_rows_count"] == 1195
    assert "title" in response.json()["facet_results"] and time.monotonic() - started < 10
    many = "&".join(f"_facet={c}" for c in ("title", "url", "text", "summary", "published", "first_seen",
                                             "last_seen", "content_hash", "word_count", "date_source", "encoding"))
    response = client(f"/archive/releases.json?{many}")
    assert response.status_code == 400 and "11 facets asked for; at most 10" in response.text


# --- Searches are bounded ---------------------------------------------------------------------

def test_over_long_searches_get_a_clear_page(client):
    words = " ".join(f"w{i}" for i in range(search_index.QUERY_MAX_TERMS + 1))
    for q, says in (("a " * 2000, "4,000 characters"), ("网" * 1001, "1,001 characters"),
                    (words, f"{search_index.QUERY_MAX_TERMS + 1} words or phrases")):
        for path, param in (("/archive/releases", "_search"), ("/archive/releases.json", "_search"),
                            ("/archive/search", "q"), ("/archive/search.json", "q")):
            response = client(path, **{param: q})
            assert response.status_code == 400, (path, response.status_code, response.text[:300])
            assert "Search too long" in response.text and says in response.text
            assert "Traceback" not in response.text
    with pytest.raises(search_index.QueryTooLong):  # pressarchive export --search shares the bound
        search_index.user_match("a " * 600)


def test_a_long_quoted_sentence_is_still_searched(client, generated_archive):
    conn = sqlite3.connect(f"file:{generated_archive.path}?mode=ro", uri=True)
    found = {}
    for release_id, text in conn.execute("select id, text from releases order by id"):
        for paragraph in text.split("\n"):
            latin = re.fullmatch(r"[\x20-\x7e]{300,}", paragraph)
            if latin and "en" not in found:
                found["en"] = (release_id, paragraph[:paragraph.rindex(" ", 0, 400)])
            if re.fullmatch(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]{60,}", paragraph) and "zh" not in found:
                found["zh"] = (release_id, paragraph[:200])
    conn.close()
    assert set(found) == {"en", "zh"}
    for release_id, sentence in found.values():
        q = f'"{sentence}"'
        assert len(q) <= search_index.QUERY_MAX_CHARS
        response = client("/archive/releases.json", _search=q, _shape="objects", _size="max")
        assert response.status_code == 200 and release_id in [r["id"] for r in response.json()["rows"]]
        response = client("/archive/search.json", q=q, _shape="objects")
        assert response.status_code == 200 and release_id in [r["id"] for r in response.json()["rows"]]


def test_repeated_words_are_searched_once():
    assert search_index.rewrite_query("a a b a") == '"a" AND "b"'
    assert search_index.rewrite_query("a -b -b c") == '("a" AND "c") NOT "b"'
    assert search_index.rewrite_query("a a OR c") == '"a" AND ("a" OR "c")'  # not the same clause


def test_the_plugins_own_sql_and_thread_stop_at_the_deadline(generated_archive):
    """The matching ids, the ranking and the ranking thread's half stop at the deadline
    (Datasette's time limit does not reach SQL the plugin runs itself)."""
    from datasette.database import QueryInterrupted

    make_datasette(generated_archive.path)  # (loads the plugin)
    plugin = plugin_module()
    path = str(generated_archive.path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    match = search_index.user_match("sanctions OR property OR the")
    with pytest.raises(QueryInterrupted):
        plugin._plan_search(conn, None, match, [], True, None, time_limit_ms=1e-9)
    assert plugin._plan_search(conn, None, match, [], True, None, time_limit_ms=60_000)[1] > 1195
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        plugin._rank_part(path, False, match, plugin.LOWEST, plugin.HIGHEST, time.perf_counter())
    conn.close()


def test_searches_past_the_time_limit_get_the_took_too_long_page(generated_archive, tmp_path, monkeypatch):
    ds = make_datasette(copy_archive(generated_archive.path, tmp_path / "archive.db"),
                        settings={"sql_time_limit_ms": 1})
    plugin = plugin_module()
    monkeypatch.setattr(plugin, "RANK_SPLIT_MIN", 1)  # score two halves: the thread is used
    monkeypatch.setattr(plugin, "RANK_SPLITS", {})

    async def fetch():
        return [await ds.client.get(path) for path in (
            "/archive/releases?_search=sanctions+OR+intellectual+OR+property+OR+the",
            "/archive/search?q=sanctions+OR+intellectual+OR+property+OR+the",
            "/archive/search.json?q=the+OR+of+OR+and")]

    for response in asyncio.run(fetch()):
        assert response.status_code == 400 and "SQL query took too long" in response.text, response.text[:300]
    if plugin.RANK_POOL is not None:  # the ranking thread is free again at once
        assert plugin.RANK_POOL.submit(lambda: "free").result(timeout=2) == "free"



def test_a_slow_schema_refresh_gets_the_took_too_long_page_not_a_500(generated_archive, tmp_path):
    """Datasette reads the schema (sqlite_master) before every request under the same time limit:
    on a loaded server, or with many tables, that query is stopped outside any view."""
    path = copy_archive(generated_archive.path, tmp_path / "archive.db")
    with sqlite3.connect(path) as conn:  # a schema Datasette cannot read within 1 ms
        for n in range(4000):
            conn.execute(f"create table extra_{n} (id integer primary key, a text, b text, c text)")
    ds = make_datasette(path, settings={"sql_time_limit_ms": 1})

    async def fetch():
        return [await ds.client.get(url) for url in ("/", "/archive/releases", "/archive/releases.json")]

    for response in asyncio.run(fetch()):
        assert response.status_code == 400 and "SQL query took too long" in response.text, response.text[:300]


# --- Response headers -------------------------------------------------------------------------

def test_no_response_header_grows_past_8_kb(client):
    q = "中国政府" * 240  # 960 characters: a search within the bounds, 8.6 KB in the address
    response = client("/archive/releases", _search=q)
    assert response.status_code == 200
    assert all(len(k) + len(v) <= 8192 for k, v in response.headers.raw)
    assert len(response.headers.get("link", "")) <= 2048
    # A redirect that would carry the address in a 27 KB Location header: 414 with a message.
    response = client("/archive/releases", _filter_column_1="title", _filter_op_1="contains",
                      _filter_value_1="知识产权" * 800)
    assert response.status_code == 414 and "too long" in response.text
    assert all(len(k) + len(v) <= 8192 for k, v in response.headers.raw)


# --- --port -----------------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_a_port_out_of_range_is_one_line(archive, port):
    result = CliRunner().invoke(serve_command, ["--db", str(archive), "--port", port])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and f"--port {port}" in result.stderr
    assert "Serving" not in result.output


def test_a_port_in_use_is_one_line_and_never_claims_to_serve(archive):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(serve_command, ["--db", str(archive), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"Error: cannot listen on 127.0.0.1 port {port}: already in use"
    assert "Serving" not in result.output


def test_serving_is_announced_once_the_port_is_bound(archive):
    with serving(archive) as served:
        port = int(re.search(r":(\d+)$", served.base).group(1))
        assert port > 0  # --port 0: the port the kernel gave, printed
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert served.get("/archive/releases.json", _size=1)[0] == 200
