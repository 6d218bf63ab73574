"""A write the archive refused is never reported as stored; a forced stop stores first.

Real crawls (``python -m crawler crawl`` / ``scrapy crawl`` in a child process) of
local sites on 127.0.0.1 into archives that cannot take what is fetched: a small
tmpfs (where the test may mount one) and SQLite's page limit (``ARCHIVE_MAX_BYTES``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils
from test_incremental import RELEASES, build_site, sources_file

ROOT = Path(__file__).resolve().parent.parent


def env(**extra):
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(ROOT), **extra}


def big_site(root: Path, count: int, base_placeholder="{BASE}") -> list[str]:
    """``count`` long releases (about 40 KB of text each) listed in a sitemap."""
    rng = random.Random(7)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(4000)]
    (root / "news").mkdir(parents=True)
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    paths = []
    for i in range(count):
        text = "".join(f"<p>{' '.join(rng.choice(words) for _ in range(80))}.</p>\n" for _ in range(60))
        (root / "news" / f"s{i}.html").write_text(
            f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Statement {i}</title>"
            f"<meta name='dcterms.issued' content='2020-01-{1 + i % 28:02d}'></head>"
            f"<body><main><h1>Statement {i} on cooperation</h1>{text}</main></body></html>")
        paths.append(f"/news/s{i}.html")
    return paths


def write_sitemap(root: Path, base: str, paths: list[str]) -> None:
    urls = "".join(f"<url><loc>{base}{p}</loc></url>" for p in paths)
    (root / "sitemap.xml").write_text(
        f"<?xml version='1.0'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>{urls}</urlset>")


def registry(path: Path, base: str) -> Path:
    path.write_text(f"""[[sources]]
id = "big-gov"
name = "Big government"
country = "CA"
kind = "government"
languages = ["en"]
sitemaps = ["{base}/sitemap.xml"]
article_pattern = '/news/s\\d+\\.html$'
delay = 0
""")
    return path


@pytest.fixture
def big(tmp_path, site_server):
    root = tmp_path / "site"
    paths = big_site(root, 120)
    server = site_server(root)
    write_sitemap(root, server.base_url, paths)
    return registry(tmp_path / "sources.toml", server.base_url)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 7 MB tmpfs mounted for the test (needs root and a kernel that lets us mount): room for a new
    archive (about 2 MB of 32 KB pages, and its WAL while the schema is made), not for 120 releases of 40 KB."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root; the ARCHIVE_MAX_BYTES test covers the same path")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=7m", "tmpfs", str(where)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); ARCHIVE_MAX_BYTES covers it")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def assert_failure_recorded(db_path: Path, stored_before: int = 0):
    db = sqlite_utils.Database(db_path)
    stored = db["releases"].count
    run = list(db.query("select * from crawl_runs order by id desc limit 1"))[0]
    assert run["status"] in ("interrupted", "failed"), run
    assert run["new"] == stored - stored_before, "'new' counts what is in the archive, nothing else"
    assert run["not_stored"] > 0 and run["errors"] >= run["not_stored"], run
    assert "could not be written" in run["message"] and "not stored" in run["message"], run["message"]
    return stored, run


def test_full_disk_is_never_reported_as_stored(big, small_tmpfs):
    db = small_tmpfs / "archive.db"
    done = subprocess.run([sys.executable, "-m", "crawler", "crawl", "--sources", str(big), "--db", str(db)],
                          cwd=small_tmpfs.parent, env=env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-6000:]
    assert "database or disk is full" in done.stderr
    assert " ok (" not in done.stdout, done.stdout
    stored, run = assert_failure_recorded(db)
    assert stored < 120
    # The releases that did not fit are fetched again once there is room: move the archive to a real disk.
    roomy = small_tmpfs.parent / "roomy"
    roomy.mkdir()
    for name in ("archive.db", "archive.db-wal"):
        if (small_tmpfs / name).exists():
            shutil.copy(small_tmpfs / name, roomy / name)
    again = subprocess.run([sys.executable, "-m", "crawler", "crawl", "--sources", str(big), "--db", "archive.db",
                            "--no-warc"], cwd=roomy, env=env(), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sqlite_utils.Database(roomy / "archive.db")["releases"].count == 120


def fill_disk(folder: Path) -> Path:
    """A file taking every free byte of ``folder``'s file system (smaller and smaller writes to the last)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        chunk = 1 << 20
        while chunk:
            try:
                os.write(fd, bytes(chunk))
            except OSError:
                chunk //= 2
    finally:
        os.close(fd)
    return filler


def test_a_disk_full_to_the_last_byte_still_records_how_the_run_ended(small_tmpfs):
    """The writer keeps room beside the archive (``archive.db.reserve``): when the disk is so full
    that even the UPDATE closing a run cannot be written, that room is given back and the run's row
    says how the run ended, instead of "running" for ever. The reserve goes when the writer closes."""
    from archive.writer import RESERVE_BYTES, RUN_COUNTS, ArchiveWriter
    from crawler.sources import Source

    source = Source(id="full", name="Full disk", country="CA", kind="government", languages=["en"],
                    article_pattern=".")
    db = small_tmpfs / "archive.db"
    reserve = Path(f"{db}.reserve")
    writer = ArchiveWriter(db, sources={"full": source}, background_checkpoints=False)
    try:
        assert reserve.stat().st_size == RESERVE_BYTES
        row = writer.start_runs("run-1", [source], "2024-03-01T10:00:00Z")["full"]
        filler = fill_disk(small_tmpfs)
        # The disk has no room for that UPDATE: another connection's attempt fails.
        other = sqlite3.connect(db)
        with pytest.raises(sqlite3.OperationalError, match="full"), other:
            other.execute("update crawl_runs set message = 'x' where id = ?", [row])
        other.close()
        counts = dict.fromkeys(RUN_COUNTS, 0) | {"errors": 3, "not_stored": 3}
        writer.finish_run(row, "full", counts, "failed", "archive could not be written", "2024-03-01T10:05:00Z")
        assert not reserve.exists()
    finally:
        writer.close()
    closed = sqlite_utils.Database(db)["crawl_runs"].get(row)
    assert (closed["status"], closed["finished"], closed["not_stored"]) == ("failed", "2024-03-01T10:05:00Z", 3)
    assert filler.stat().st_size > 0, "nothing but the reserve is given back"


def test_archive_size_limit_stops_the_crawl_without_false_success(big, tmp_path):
    """``ARCHIVE_MAX_BYTES`` (SQLite's max_page_count) refuses writes the way a full disk does."""
    first = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "releases", "-a", f"sources_file={big}",
         "-s", f"ARCHIVE_DB={tmp_path / 'archive.db'}", "-s", "ARCHIVE_MAX_BYTES=8000000", "-s", "WARC_ENABLED=0"],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=180)
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    assert "could not be written" in first.stderr
    stored, run = assert_failure_recorded(tmp_path / "archive.db")
    assert 0 < stored < 120, "what fitted is kept"
    assert (tmp_path / "archive.db").stat().st_size <= 8_000_000 + 32768


def test_an_archive_that_cannot_be_created_is_one_line(big, small_tmpfs):
    (small_tmpfs / "filler").write_bytes(b"\0" * (5 * 2**20 - 64 * 1024))
    done = subprocess.run([sys.executable, "-m", "crawler", "crawl", "--sources", str(big), "--db",
                           str(small_tmpfs / "archive.db")],
                          cwd=small_tmpfs.parent, env=env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: archive {small_tmpfs / 'archive.db'} cannot be written: ")
    assert not (small_tmpfs / "archive.db").exists() or (small_tmpfs / "archive.db").stat().st_size < 64 * 1024


def test_second_signal_stores_what_was_fetched_and_exits_nonzero(tmp_path, site_server):
    """A crawl stuck on a slow page: the first Ctrl-C waits for it, the second stops now, after
    storing the releases already fetched (they wait in the writer's batch) and closing the run."""
    root = tmp_path / "slow"
    root.mkdir()
    slugs = list(RELEASES)
    slow = {"r2", "r5"}
    build_site(root, slugs, routes={f"/news/2017/06/{s}.html": {"delay": 60} for s in slow})
    server = site_server(root)
    sources = sources_file(tmp_path, server.base_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", "crawl", "--sources", str(sources), "--db", "archive.db", "--no-warc"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def fetched():
        return {p.rsplit("/", 1)[1][:-5] for p in server.paths if p.startswith("/news/2017/06/")}

    # Stuck: releases fetched, then nothing for 3 s (the host's one slot waits on a slow page;
    # the server records a path once it has answered it).
    deadline, last, quiet_since = time.time() + 60, None, time.time()
    while time.time() < deadline:
        now = fetched()
        if now != last:
            last, quiet_since = now, time.time()
        elif now and time.time() - quiet_since > 3:
            break
        time.sleep(0.1)
    fast = fetched()
    assert fast and not fast & slow and len(fast) < len(slugs), fast
    proc.send_signal(signal.SIGINT)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    started = time.time()
    out, err = proc.communicate(timeout=30)
    assert time.time() - started < 20, "the second signal stops the crawl without waiting for the slow page"
    assert proc.returncode == 1, err[-3000:]
    db = sqlite_utils.Database(tmp_path / "archive.db")
    stored = {row["url"].rsplit("/", 1)[1][:-5] for row in db.query("select url from releases")}
    assert stored == fast, "every release fetched before the signals is stored"
    run = list(db.query("select * from crawl_runs"))[0]
    assert run["status"] == "interrupted" and "twice" in run["message"], run
    assert run["new"] == len(fast)
