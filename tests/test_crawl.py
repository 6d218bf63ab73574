"""End to end: real Scrapy crawls of the fixture sites (served on 127.0.0.1) into real SQLite files.

Each crawl runs `python -m crawler crawl` in a child process from a temporary
folder, as a user would (Twisted's reactor cannot restart inside pytest).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlite_utils
from conftest import run_cli

SITE_OF = {"fixture-feed": "feed_site", "fixture-sitemap": "sitemap_site",
           "fixture-listing": "listing_site", "fixture-gbk": "gbk_site"}


def crawl(tmp_path, sources, *ids, db="archive.db"):
    result = run_cli(["crawl", *ids, "--sources", str(sources), "--db", db, "--log-level", "WARNING"], tmp_path)
    return result, sqlite_utils.Database(tmp_path / db)


@pytest.fixture
def crawled(tmp_path, fixture_sources, fixture_servers):
    result, db = crawl(tmp_path, fixture_sources)
    return result, db, fixture_servers


def rows_by_path(db, source_id, base_url):
    return {
        row["url"][len(base_url):]: row
        for row in db.query("select * from releases where source_id = ? order by url", [source_id])
    }


@pytest.mark.parametrize("source_id", sorted(SITE_OF))
def test_crawl_stores_exactly_the_expected_releases(crawled, expected, source_id):
    result, db, servers = crawled
    site = SITE_OF[source_id]
    want = expected[site]
    base = servers[site].base_url
    rows = rows_by_path(db, source_id, base)
    assert sorted(rows) == sorted(r["path"] for r in want["releases"]), result.stderr[-3000:]
    for release in want["releases"]:
        row = rows[release["path"]]
        assert row["title"] == release["title"]
        assert row["published"] == release["published"], release["path"]
        assert row["year"] == int(release["published"][:4])
        assert row["language"] == release["language"]
        assert release["snippet"] in row["text"]
        assert release["boilerplate"] not in row["text"]
        if "date_source" in release:
            assert row["date_source"] == release["date_source"]
        assert len(row["content_hash"]) == 64 and row["word_count"] > 20
        assert row["first_seen"] == row["last_seen"] and row["first_seen"].endswith("Z")
        assert row["country"] and row["kind"]


def test_crawl_is_polite_and_stays_in_bounds(crawled, expected):
    result, db, servers = crawled
    for site, server in servers.items():
        requested = server.paths
        assert requested[0] == "/robots.txt", f"{site}: robots.txt must be read before anything else"
        for forbidden in expected[site]["never_requested"]:
            assert not [p for p in requested if p.startswith(forbidden)], f"{site}: requested {forbidden}"
        agents = {r.user_agent for r in server.requests}
        assert len(agents) == 1 and agents.pop().startswith("pressarchive/")
        assert "+https://" in server.requests[0].user_agent
    offsite = [u for s in expected.values() if isinstance(s, dict) for u in s.get("never_requested_urls", [])]
    assert offsite and not db.execute(
        "select count(*) from releases where url like 'http://offsite.invalid%'"
    ).fetchone()[0]
    assert "offsite.invalid" not in result.stderr or "Filtered offsite" in result.stderr


def test_crawl_runs_and_sources_are_recorded(crawled, expected):
    result, db, _ = crawled
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {r["source_id"]: r for r in db["crawl_runs"].rows}
    assert set(runs) == set(SITE_OF)
    assert len({r["run_id"] for r in runs.values()}) == 1
    for source_id, site in SITE_OF.items():
        run = runs[source_id]
        assert run["new"] == len(expected[site]["releases"])
        assert run["unchanged"] == 0 and run["finished"] >= run["started"]
        assert run["requests"] >= run["new"]
    listing = runs["fixture-listing"]
    assert listing["empty"] == 1, "the page with no main text is counted, not stored"
    assert listing["errors"] == 1 and listing["status"] == "partial" and "404" in listing["message"]
    assert runs["fixture-feed"]["status"] == "ok"
    assert {r["id"] for r in db["sources"].rows} == set(SITE_OF)
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    # One clear line for the 404, naming the source and the URL.
    missing = expected["listing_site"]["missing"][0]
    lines = [line for line in result.stderr.splitlines() if missing in line]
    assert len(lines) == 1 and "source 'fixture-listing'" in lines[0] and "HTTP 404" in lines[0]


def test_second_crawl_adds_nothing(crawled, tmp_path, fixture_sources):
    _, db, _ = crawled
    before = {r["url"]: (r["id"], r["content_hash"], r["first_seen"]) for r in db["releases"].rows}
    result, db = crawl(tmp_path, fixture_sources)
    assert result.returncode == 0, result.stderr[-3000:]
    after = {r["url"]: (r["id"], r["content_hash"], r["first_seen"]) for r in db["releases"].rows}
    assert after == before
    second = list(db.query("select * from crawl_runs where run_id = (select max(run_id) from crawl_runs)"))
    assert len(second) == 4 and sum(r["new"] for r in second) == 0 and sum(r["changed"] for r in second) == 0


def test_one_broken_source_does_not_stop_the_others(tmp_path, site_server, expected):
    feed = site_server("feed_site")
    sources = tmp_path / "sources.toml"
    sources.write_text(
        f"""
[[sources]]
id = "dead"
name = "Unreachable"
country = "CA"
kind = "government"
languages = ["en"]
feeds = ["http://127.0.0.1:9/feed.xml"]
article_pattern = 'x'
delay = 0

[[sources]]
id = "not-a-feed"
name = "Feed URL that serves HTML"
country = "CA"
kind = "government"
languages = ["en"]
feeds = ["{feed.base_url}/en/contact"]
article_pattern = '/en/news/'
delay = 0

[[sources]]
id = "fixture-feed"
name = "Feed"
country = "CA"
kind = "head_of_government"
languages = ["en"]
feeds = ["{feed.base_url}/en/news.rss"]
article_pattern = '/en/news/[a-z-]+/\\d{{4}}/\\d{{2}}/\\d{{2}}/[^/]+$'
delay = 0
""", encoding="utf-8")
    result, db = crawl(tmp_path, sources)
    assert result.returncode == 1, "a failed source must show in the exit code for cron"
    runs = {r["source_id"]: r for r in db["crawl_runs"].rows}
    assert runs["dead"]["status"] == "failed" and runs["dead"]["errors"] >= 1
    assert runs["not-a-feed"]["status"] == "failed"
    assert runs["fixture-feed"]["status"] == "ok" and runs["fixture-feed"]["new"] >= 3
    dead_lines = [line for line in result.stderr.splitlines() if "source 'dead'" in line]
    assert dead_lines and "127.0.0.1:9/feed.xml" in dead_lines[0]
    assert "Traceback" not in result.stderr
    assert "dead: failed" in result.stdout and "fixture-feed: ok" in result.stdout


def test_demo_runs_offline_from_any_folder(tmp_path):
    result = run_cli(["demo"], tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    db = sqlite_utils.Database(tmp_path / "archive.db")
    phrase = "neither country's government would conduct or knowingly support cyber-enabled theft of intellectual property"
    hits = list(db.query("select source_id, published, title from releases where text like ?", [f"%{phrase}%"]))
    assert [(h["source_id"], h["published"]) for h in hits] == [("demo-gac", "2017-06-22")]
    counts = dict(db.execute("select source_id, count(*) from releases group by source_id").fetchall())
    assert counts == {"demo-gac": 8, "demo-cn-embassy-en": 6, "demo-cn-embassy-zh": 6}
    zh = db.execute("select text from releases where url like '%t20170623_1234568.htm'").fetchone()[0]
    assert "网络" in zh and "知识产权" in zh
    assert "pressarchive serve" in result.stdout


def test_scrapy_cfg_commands_work_from_repo_root(tmp_path, site_server):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(repo, "scrapy.cfg")):
        pytest.skip("not running from a source checkout")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scrapy = [sys.executable, "-m", "scrapy"]
    listed = subprocess.run(scrapy + ["list"], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert listed.stdout.split() == ["releases"], listed.stderr[-2000:]
    feed = site_server("feed_site")
    sources = tmp_path / "s.toml"
    sources.write_text(f"""[[sources]]
id = "fixture-feed"
name = "Feed"
country = "CA"
kind = "head_of_government"
languages = ["en"]
feeds = ["{feed.base_url}/en/news.rss"]
article_pattern = '/en/news/'
delay = 0
""", encoding="utf-8")
    db = tmp_path / "scrapy.db"
    run = subprocess.run(
        scrapy + ["crawl", "releases", "-a", f"sources_file={sources}", "-s", f"ARCHIVE_DB={db}", "-s", "LOG_LEVEL=WARNING"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert sqlite_utils.Database(db)["releases"].count >= 3
