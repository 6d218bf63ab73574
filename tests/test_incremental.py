"""Scheduled, incremental crawls that keep history, under controlled time.

A mock site in tmp_path (served by the real SiteServer) changes between
crawls: a page edited, a page removed and restored, a page added, a page
whose only change is whitespace, the rest unchanged. ``PRESSARCHIVE_NOW``
sets the crawl's clock so the recheck schedule can be stepped through.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlite_utils
from conftest import run_cli, start_child

from archive.lock import archive_lock

T0 = "2017-06-30T12:00:00Z"
RELEASES = {
    f"r{i}": (f"2017-06-{10 + i:02d}", f"Statement {i} on bilateral cooperation") for i in range(1, 9)
}


def page(slug, date, title, body=None):
    paragraphs = body or [
        f"Global Affairs Canada today issued statement {slug} on bilateral cooperation with partners.",
        f"The minister said that statement {slug} reflects a shared commitment to the rules-based "
        "international order, to open trade and to the protection of human rights around the world.",
        "Officials from both governments will meet again in the autumn to review the progress made "
        "on each of the commitments set out in this statement.",
    ]
    text = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{title} - Canada.ca</title><meta name="dcterms.issued" content="{date}"></head>
<body><nav><a href="/">Home</a> &gt; <a href="/news/">News</a></nav>
<main><h1>{title}</h1>
{text}</main><footer>Date modified: 2017-06-30</footer></body></html>"""


def listing(slugs, next_page=None):
    items = "".join(f'<li><a href="/news/2017/06/{s}.html">{RELEASES.get(s, ("", s))[1]}</a></li>' for s in slugs)
    nxt = f'<a rel="next" href="{next_page}">Next</a>' if next_page else ""
    return f"<html><body><nav><a href='/about.html'>About</a></nav><ul>{items}</ul>{nxt}</body></html>"


def feed(slugs):
    items = "".join(
        f"<item><title>{RELEASES.get(s, ('', s))[1]}</title><link>{{{{BASE}}}}/news/2017/06/{s}.html</link>"
        f"<pubDate>Fri, {RELEASES.get(s, ('2017-06-29',))[0][-2:]} Jun 2017 12:00:00 +0000</pubDate></item>"
        for s in slugs
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>{items}</channel></rss>'


def build_site(root, slugs, routes=None):
    (root / "news" / "2017" / "06").mkdir(parents=True, exist_ok=True)
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    for slug in slugs:
        date, title = RELEASES[slug]
        target = root / "news" / "2017" / "06" / f"{slug}.html"
        if not target.exists():
            target.write_text(page(slug, date, title))
    newest = sorted(slugs, key=lambda s: RELEASES[s][0], reverse=True)
    (root / "news" / "index.html").write_text(listing(newest[:3], "/news/page2.html"))
    (root / "news" / "page2.html").write_text(listing(newest[3:6], "/news/page3.html"))
    (root / "news" / "page3.html").write_text(listing(newest[6:]))
    (root / "feed.xml").write_text(feed(newest[:5]))
    (root / "_routes.json").write_text(json.dumps(routes or {}))


def sources_file(tmp_path, base, extra=""):
    path = tmp_path / "sources.toml"
    path.write_text(f"""[[sources]]
id = "mock-gov"
name = "Mock government news"
country = "CA"
kind = "government"
languages = ["en"]
feeds = ["{base}/feed.xml"]
listings = ["{base}/news/"]
article_pattern = '/news/\\d{{4}}/\\d{{2}}/r\\d+\\.html$'
delay = 0
{extra}""", encoding="utf-8")
    return path


def run(args, cwd, when=None, **kwargs):
    return run_cli(args, cwd, 120, when=when, **kwargs)


def crawl(tmp_path, sources, when, *extra):
    return run(["crawl", "--sources", str(sources), "--db", "archive.db", "--log-level", "INFO", *extra],
               tmp_path, when)


def last_run(db):
    return db.execute("select * from crawl_runs order by id desc limit 1").fetchone(), [
        c[0] for c in db.execute("select * from crawl_runs limit 0").description
    ]


def run_row(db):
    row, columns = last_run(db)
    return dict(zip(columns, row))


@pytest.fixture
def site(tmp_path, site_server):
    root = tmp_path / "site"
    root.mkdir()
    build_site(root, list(RELEASES))
    server = site_server(root)
    return root, server, sources_file(tmp_path, server.base_url)


def test_history_edits_removals_additions_and_schedule(tmp_path, site):
    root, server, sources = site
    db = sqlite_utils.Database(tmp_path / "archive.db")

    first = crawl(tmp_path, sources, T0)
    assert first.returncode == 0, first.stderr[-3000:]
    first_requests = len(server.requests)
    assert db["releases"].count == 8 and db["release_versions"].count == 8
    assert run_row(db)["new"] == 8

    # Ten minutes later nothing changed and nothing is due: conditional GETs only.
    server.reset_requests()
    second = crawl(tmp_path, sources, "2017-06-30T12:10:00Z")
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(server.paths) == ["/feed.xml", "/news/", "/robots.txt"]
    assert all(r.if_none_match for r in server.requests if r.path != "/robots.txt")
    run2 = run_row(db)
    assert (run2["new"], run2["changed"], run2["not_modified"], run2["status"]) == (0, 0, 2, "ok")
    assert len(server.requests) <= 0.25 * first_requests

    # The publisher edits r2, removes r3, re-wraps r5's whitespace, publishes r9.
    r2 = root / "news/2017/06/r2.html"
    r2.write_text(r2.read_text().replace("in the autumn", "in September in Ottawa"))
    (root / "news/2017/06/r3.html").unlink()
    r5 = root / "news/2017/06/r5.html"
    r5.write_text(r5.read_text().replace("Global Affairs Canada today", "Global  Affairs\n  Canada today"))
    RELEASES["r9"] = ("2017-06-29", "Statement 9 on a new partnership")
    try:
        build_site(root, [s for s in RELEASES if s != "r3"])
    finally:
        RELEASES.pop("r9")
    server.reset_requests()
    third = crawl(tmp_path, sources, "2017-06-30T14:00:00Z")  # 2 h later: the 1 h recheck is due
    assert third.returncode == 0, third.stderr[-3000:]
    run3 = run_row(db)
    assert (run3["new"], run3["changed"], run3["removed"], run3["rechecked"]) == (1, 1, 1, 8)
    assert run3["unchanged"] == 6 and run3["not_modified"] >= 5
    assert "/news/page3.html" not in server.paths, "paging stops at the first page of known releases"

    rows = {r["url"].rsplit("/", 1)[1]: r for r in db["releases"].rows}
    assert rows["r2.html"]["version_count"] == 2 and "September in Ottawa" in rows["r2.html"]["text"]
    versions = list(db.query("select * from release_versions where release_id = ? order by version",
                             [rows["r2.html"]["id"]]))
    assert [v["change"] for v in versions] == ["first", "edit"]
    assert "in the autumn" in versions[0]["text"]
    assert "-Officials from both governments will meet again in the autumn" in versions[1]["diff"]
    assert "+Officials from both governments will meet again in September in Ottawa" in versions[1]["diff"]
    assert rows["r5.html"]["version_count"] == 1, "whitespace is not an edit"
    assert rows["r3.html"]["status"] == "removed" and rows["r3.html"]["removed_at"] == "2017-06-30T14:00:00Z"
    assert "statement r3" in rows["r3.html"]["text"], "archived text is never deleted"
    assert rows["r9.html"]["first_seen"] == "2017-06-30T14:00:00Z"
    removal = list(db["removals"].rows)
    assert [(m["event"], m["http_status"], m["detail"]) for m in removal] == [("removed", 404, "HTTP 404")]
    assert rows["r4.html"]["next_check"] == "2017-06-30T18:00:00Z"  # first_seen + 6 h
    assert [r["url"].rsplit("/", 1)[1] for r in db.query("select url from recent_changes")] == ["r2.html"]
    assert [r["url"].rsplit("/", 1)[1] for r in db.query("select url from removed_releases")] == ["r3.html"]

    status = run(["status", "--db", "archive.db"], tmp_path, "2017-06-30T15:00:00Z")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "mock-gov" in status.stdout and " ok " in status.stdout

    # r3 comes back.
    (root / "news/2017/06/r3.html").write_text(page("r3", *RELEASES["r3"]))
    fourth = crawl(tmp_path, sources, "2017-06-30T19:00:00Z")
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert run_row(db)["restored"] == 1
    assert db.execute("select status from releases where url like '%r3.html'").fetchone()[0] == "live"
    assert [m["event"] for m in db.query("select event from removals order by id")] == ["removed", "restored"]


def test_redirect_to_index_counts_as_removal(tmp_path, site):
    root, server, sources = site
    assert crawl(tmp_path, sources, T0).returncode == 0
    (root / "_routes.json").write_text(json.dumps({"/news/2017/06/r1.html": {"status": 301, "location": "/news/"}}))
    result = crawl(tmp_path, sources, "2017-06-30T14:00:00Z")
    assert result.returncode == 0, result.stderr[-3000:]
    db = sqlite_utils.Database(tmp_path / "archive.db")
    (event,) = db["removals"].rows
    assert event["detail"] == f"redirected to {server.base_url}/news/"


def test_unchanged_site_costs_little(tmp_path, site):
    _, server, sources = site
    assert crawl(tmp_path, sources, T0).returncode == 0
    first = len(server.requests)
    server.reset_requests()
    assert crawl(tmp_path, sources, "2017-06-30T12:05:00Z").returncode == 0
    db = sqlite_utils.Database(tmp_path / "archive.db")
    assert run_row(db)["rechecked"] == 0 and db["release_versions"].count == 8
    assert len(server.requests) == 3 and first == 13
    # --backfill walks all listing pages again (releases stay known: nothing re-fetched).
    server.reset_requests()
    assert crawl(tmp_path, sources, "2017-06-30T12:06:00Z", "--backfill").returncode == 0
    assert {"/news/page2.html", "/news/page3.html"} <= set(server.paths)
    assert not [p for p in server.paths if p.startswith("/news/2017/")]


def test_lock_and_status_exit_codes(tmp_path, site):
    _, _, sources = site
    db_path = tmp_path / "archive.db"
    with archive_lock(db_path):
        locked = crawl(tmp_path, sources, T0)
    assert locked.returncode == 3
    assert locked.stderr.strip().splitlines() == [
        f"Error: another crawl is writing archive.db (pid {os.getpid()}); try again when it ends"
    ]
    assert crawl(tmp_path, sources, T0).returncode == 0

    dead = sources_file(tmp_path, "http://127.0.0.1:9").read_text().replace('id = "mock-gov"', 'id = "dead-gov"')
    (tmp_path / "dead.toml").write_text(dead)
    assert crawl(tmp_path, tmp_path / "dead.toml", "2017-06-30T13:00:00Z").returncode == 1
    status = run(["status", "--db", "archive.db"], tmp_path, "2017-06-30T13:30:00Z")
    assert status.returncode == 1
    line = next(line for line in status.stdout.splitlines() if line.startswith("dead-gov"))
    assert "broken: 1 failed run(s) in a row" in line
    assert "could not fetch" in status.stdout
    stale = run(["status", "--db", "archive.db"], tmp_path, "2017-07-10T13:30:00Z")
    mock = next(line for line in stale.stdout.splitlines() if line.startswith("mock-gov"))
    assert "broken: no successful run in 72 h" in mock
    missing = run(["status", "--db", "nope.db"], tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "Error: archive not found: nope.db (run `pressarchive crawl --db nope.db` first, or pass --db PATH)"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_records_interrupted_run_and_next_run_catches_up(tmp_path, site_server, signum):
    root = tmp_path / "slow"
    root.mkdir()
    slugs = list(RELEASES)
    build_site(root, slugs, routes={f"/news/2017/06/{s}.html": {"delay": 0.7} for s in slugs})
    server = site_server(root)
    sources = sources_file(tmp_path, server.base_url)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = start_child([sys.executable, "-m", "crawler", "crawl", "--sources", str(sources), "--db", "archive.db"],
                       tmp_path, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and sum(p.startswith("/news/2017/") for p in server.paths) < 3:
        time.sleep(0.1)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-3000:]
    db = sqlite_utils.Database(tmp_path / "archive.db")
    run1 = run_row(db)
    assert run1["status"] == "interrupted" and "shutdown" in run1["message"]
    stored = db["releases"].count
    assert 1 <= stored < 8, "what was fetched before the signal is kept"

    (root / "_routes.json").write_text("{}")
    again = crawl(tmp_path, sources, None)
    assert again.returncode == 0, again.stderr[-3000:]
    assert db["releases"].count == 8, "the next run picks up what the interrupted one missed"
    assert run_row(db)["new"] == 8 - stored


def test_stop_signal_while_the_archive_opens_leaves_no_run_running(tmp_path, site_server):
    """SIGINT the moment the run rows exist (the store pipeline has just opened the archive): however
    early the signal, no run is left ``running``; each is ``interrupted``, and the CLI says so."""
    root = tmp_path / "slow"
    root.mkdir()
    slugs = list(RELEASES)
    build_site(root, slugs, routes={f"/news/2017/06/{s}.html": {"delay": 0.7} for s in slugs})
    server = site_server(root)
    sources = sources_file(tmp_path, server.base_url)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # run_crawl as `sources check` and scripts call it (Scrapy's own logging, no live table): there
    # the signal can come before the crawl's store pipeline has closed anything
    script = ("import sys; from crawler.runner import build_settings, run_crawl; "
              "from crawler.sources import load_sources; "
              "rows = run_crawl(load_sources(sys.argv[1]), build_settings(sys.argv[2])); "
              "print(' '.join(row['status'] for row in rows)); sys.exit(1)")
    proc = start_child([sys.executable, "-c", script, str(sources), "archive.db"], tmp_path, env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = tmp_path / "archive.db"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05)
            try:
                if conn.execute("select count(*) from crawl_runs").fetchone()[0]:
                    break
            finally:
                conn.close()
        except sqlite3.Error:
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-3000:]
    db = sqlite_utils.Database(path)
    statuses = [row["status"] for row in db.query("select status from crawl_runs")]
    assert statuses == ["interrupted"], (statuses, err[-2000:])
    assert out.split() == ["interrupted"], out
