"""Drift is visible, not silent: a redesign that moves releases to URLs the registry's
``article_pattern`` no longer matches, and a source whose releases stopped coming.

Sites are written under tmp_path and served by the real SiteServer; crawls, ``status``
and ``sources check`` run as the CLI in a subprocess, under ``PRESSARCHIVE_NOW``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import sqlite_utils
from conftest import run_cli, start_child

from crawler.discovery import common
from crawler.sources import Source

T0 = "2017-06-30T12:00:00Z"
OLD = [(f"2017-06-{20 + i:02d}", f"t201706{20 + i:02d}_{5000 + i}.htm") for i in range(6)]
NEW = [f"statement-on-bilateral-cooperation-{i}.html" for i in range(1, 8)]
SIDEBAR = ["/chn/zgyw/201706/t20170601_900.htm", "/chn/zgyw/201706/t20170602_901.htm"]  # other sections
NAV = ["/chn/", "/chn/zgyw/", "/chn/about/", "/chn/lsfw/", "/chn/jmhz/", "/eng/", "/images/logo-2017.png"]
PATTERN_OLD = r"/chn/zytz/\d{6}/t\d{8}_\d+\.htm$"
PATTERN_NEW = r"/chn/news/\d{4}-\d{2}/[a-z0-9-]+\.html$"


def page(title, date):
    paragraphs = "".join(
        f"<p>The spokesperson said on {date} that {title.lower()} reflects a shared commitment to "
        f"dialogue, to open trade and to the peaceful settlement of disputes, paragraph {n}.</p>\n"
        for n in range(3)
    )
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="dcterms.issued" content="{date}"></head>
<body><main><h1>{title}</h1>{paragraphs}</main></body></html>"""


def listing(links):
    nav = "".join(f'<a href="{href}">Section</a> ' for href in NAV)
    items = "".join(f'<li><a href="{href}">{text}</a></li>' for href, text in links)
    side = "".join(f'<a href="{href}">Elsewhere</a> ' for href in SIDEBAR)
    return (f"<html><body><nav>{nav}</nav><ul>{items}</ul><aside>{side}</aside>"
            "<script>createPageHTML(1, 0, \"index\", \"htm\");</script></body></html>")


def build_embassy(root, redesigned=False):
    """A TRS-like embassy site; ``redesigned``: the listing links to /chn/news/2017-06/<slug>.html."""
    (root / "chn" / "zytz" / "201706").mkdir(parents=True, exist_ok=True)
    (root / "chn" / "news" / "2017-06").mkdir(parents=True, exist_ok=True)
    (root / "robots.txt").write_text("User-agent: *\nDisallow:\n")
    for n, (date, name) in enumerate(OLD):
        (root / "chn" / "zytz" / "201706" / name).write_text(page(f"Remarks on cooperation {n}", date))
    for n, name in enumerate(NEW):
        (root / "chn" / "news" / "2017-06" / name).write_text(page(f"Statement on cooperation {n}", f"2017-06-{24 + n}"))
    if redesigned:
        links = [(f"/chn/news/2017-06/{name}", f"Statement {n}") for n, name in enumerate(NEW)]
    else:
        links = [(f"201706/{name}", f"Remarks {n}") for n, (_, name) in enumerate(OLD)]
    (root / "chn" / "zytz" / "index.html").write_text(listing(links))


def registry(path, sources):
    text = ""
    for source_id, listing_url, pattern in sources:
        text += f"""[[sources]]
id = "{source_id}"
name = "Test source {source_id}"
country = "CN"
kind = "embassy"
languages = ["en"]
listings = ["{listing_url}"]
article_pattern = '{pattern}'
delay = 0

"""
    path.write_text(text, encoding="utf-8")
    return path


def run(args, cwd, when=None):
    return run_cli(args, cwd, when=when)


def crawl(cwd, sources, when):
    result = run(["crawl", "--sources", str(sources), "--db", "archive.db", "--log-level", "INFO"], cwd, when)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def last_run(db_path, source_id):
    db = sqlite_utils.Database(db_path)
    row = next(db.query("select * from crawl_runs where source_id = ? order by id desc limit 1", [source_id]))
    db.close()
    return row


def source_line(stdout, source_id):
    return next(line for line in stdout.splitlines() if line.startswith(source_id + " "))


@pytest.fixture
def embassy(tmp_path, site_server):
    root = tmp_path / "site"
    root.mkdir()
    build_embassy(root)
    server = site_server(root)
    sources = registry(tmp_path / "sources.toml", [("cn-embassy", f"{server.base_url}/chn/zytz/", PATTERN_OLD)])
    return root, server, sources


def test_redesign_is_flagged_on_the_first_run_and_stays_flagged(tmp_path, embassy):
    root, server, sources = embassy
    base = server.base_url
    crawl(tmp_path, sources, T0)
    first = last_run(tmp_path / "archive.db", "cn-embassy")
    assert first["new"] == 6 and first["drift"] is None
    # Menus, assets and pager are not candidates; two release-like links of other sections are.
    assert (first["links_seen"], first["links_unmatched"], first["unmatched_sample"]) == (8, 2, None)
    status = run(["status", "--db", "archive.db"], tmp_path, "2017-06-30T13:00:00Z")
    assert status.returncode == 0, status.stdout + status.stderr
    assert " ok " in source_line(status.stdout, "cn-embassy") and "DRIFT" not in status.stdout

    # The site is redesigned: same listing address, releases under a new URL scheme.
    build_embassy(root, redesigned=True)
    server.reset_requests()
    second = crawl(tmp_path, sources, "2017-07-01T12:00:00Z")
    assert "drift: 9 links on the listing, none match article_pattern" in second.stderr
    run2 = last_run(tmp_path / "archive.db", "cn-embassy")
    assert (run2["status"], run2["new"], run2["links_seen"], run2["links_unmatched"]) == ("ok", 0, 9, 9)
    assert run2["drift"] == "9 links on the listing, none match article_pattern"
    sample = json.loads(run2["unmatched_sample"])
    assert sample == [f"{base}/chn/news/2017-06/{name}" for name in NEW[:5]], "the new scheme before the sidebar"
    status = run(["status", "--db", "archive.db"], tmp_path, "2017-07-01T13:00:00Z")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "drift: links do not match article_pattern" in source_line(status.stdout, "cn-embassy")
    assert (f"DRIFT: 9 links on the listing, none match article_pattern; e.g. {base}/chn/news/2017-06/{NEW[0]}"
            in status.stdout)
    assert f"also {base}/chn/news/2017-06/{NEW[1]}" in status.stdout
    assert "1 sources, 0 broken, 1 drifting" in status.stderr

    # Nothing changes on the site: the drifting listing kept no validators, so the next run reads it
    # in full (no 304) and the drift stays visible.
    server.reset_requests()
    crawl(tmp_path, sources, "2017-07-02T12:00:00Z")
    listing_requests = [r for r in server.requests if r.path == "/chn/zytz/"]
    assert listing_requests and not listing_requests[0].if_none_match and listing_requests[0].status == 200
    assert last_run(tmp_path / "archive.db", "cn-embassy")["drift"] == run2["drift"]
    assert run(["status", "--db", "archive.db"], tmp_path, "2017-07-02T13:00:00Z").returncode == 1

    # `sources check` sees the same, live.
    check = run(["sources", "check", "--sources", str(sources)], tmp_path, "2017-07-02T13:00:00Z")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "BROKEN" in source_line(check.stdout, "cn-embassy")
    assert ("reachable, but no release links found: DRIFT: 9 links on the listing, none match "
            f"article_pattern; e.g. {base}/chn/news/2017-06/{NEW[0]}") in check.stdout
    assert "1 sources checked, 1 broken" in check.stderr

    # The registry follows the redesign: the new releases come in and the source is healthy again.
    registry(sources, [("cn-embassy", f"{base}/chn/zytz/", PATTERN_NEW)])
    crawl(tmp_path, sources, "2017-07-03T12:00:00Z")
    fixed = last_run(tmp_path / "archive.db", "cn-embassy")
    assert (fixed["new"], fixed["drift"], fixed["links_unmatched"]) == (7, None, 2)
    status = run(["status", "--db", "archive.db"], tmp_path, "2017-07-03T13:00:00Z")
    assert status.returncode == 0, status.stdout + status.stderr
    db = sqlite_utils.Database(tmp_path / "archive.db")
    assert db["releases"].count == 13, "nothing archived before the redesign is lost"


def test_almost_none_matching_is_drift_too(tmp_path, embassy):
    """A redesign that left one old link in a sidebar: 1 of 10 links match, still drift."""
    root, _, sources = embassy
    build_embassy(root, redesigned=True)
    index = root / "chn" / "zytz" / "index.html"
    index.write_text(index.read_text().replace("<aside>", f'<aside><a href="201706/{OLD[0][1]}">Old</a>'))
    crawl(tmp_path, sources, T0)
    row = last_run(tmp_path / "archive.db", "cn-embassy")
    assert (row["new"], row["links_seen"], row["links_unmatched"]) == (1, 10, 9)
    assert row["drift"] == "1 of 10 links on the listing match article_pattern"
    status = run(["status", "--db", "archive.db"], tmp_path, "2017-06-30T13:00:00Z")
    assert status.returncode == 1 and "DRIFT: 1 of 10 links on the listing match" in status.stdout


def weekly_site(root, source, dates):
    folder = root / source
    (folder / "news").mkdir(parents=True, exist_ok=True)
    links = []
    for n, date in enumerate(dates):
        name = f"news/{date}-statement-{n}.html"
        (folder / name).write_text(page(f"Statement {n} of {source}", date))
        links.append(f'<li><a href="/{source}/{name}">Statement {n}</a></li>')
    (folder / "index.html").write_text(f"<html><body><ul>{''.join(links)}</ul></body></html>")


def test_rhythm_flags_a_source_whose_releases_stopped_coming(tmp_path, site_server):
    root = tmp_path / "site"
    root.mkdir()
    (root / "robots.txt").write_text("User-agent: *\nDisallow:\n")
    from datetime import date, timedelta

    weekly = [(date(2017, 3, 1) - timedelta(weeks=n)).isoformat() for n in range(8)]
    daily = [(date(2017, 5, 25) - timedelta(days=n)).isoformat() for n in range(8)]
    weekly_site(root, "weekly", weekly)  # newest 2017-03-01: 92 days before the run
    weekly_site(root, "sparse", ["2017-03-01", "2017-01-15"])  # as old, but two releases say nothing
    weekly_site(root, "daily", daily)  # newest 7 days old: within the 14-day floor
    server = site_server(root)
    sources = registry(tmp_path / "sources.toml", [
        (name, f"{server.base_url}/{name}/", rf"/{name}/news/\d{{4}}-\d{{2}}-\d{{2}}-[a-z0-9-]+\.html$")
        for name in ("weekly", "sparse", "daily")
    ])
    when = "2017-06-01T12:00:00Z"
    crawl(tmp_path, sources, when)
    db = sqlite_utils.Database(tmp_path / "archive.db")
    assert db["releases"].count == 18
    assert {r["published"] for r in db.query("select published from releases where source_id = 'weekly'")} == set(weekly)
    db.close()

    status = run(["status", "--db", "archive.db"], tmp_path, when)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "drift: no release for 92 d (usually 7 d)" in source_line(status.stdout, "weekly")
    assert ("DRIFT: newest release 2017-03-01 is 92 days old at 2017-06-01; it usually publishes every 7 days "
            "(median of its last 8 publication days), so a release was due within 35 days") in status.stdout
    assert " ok " in source_line(status.stdout, "sparse")
    assert " ok " in source_line(status.stdout, "daily")
    assert "3 sources, 0 broken, 1 drifting" in status.stderr

    # `sources check` takes the rhythm from the archive (./archive.db, or --db) and the dates it finds live.
    check = run(["sources", "check", "--sources", str(sources), "--db", "archive.db"], tmp_path, when)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "BROKEN" in source_line(check.stdout, "weekly")
    assert "DRIFT: newest release 2017-03-01 is 92 days old at 2017-06-01" in check.stdout
    assert " OK " in source_line(check.stdout, "sparse") and " OK " in source_line(check.stdout, "daily")
    missing = run(["sources", "check", "--sources", str(sources), "--db", "nope.db"], tmp_path, when)
    assert missing.returncode == 2 and "archive not found: nope.db" in missing.stderr


def test_link_tally_rules():
    source = Source(id="s", name="S", country="CN", kind="embassy", languages=["en"],
                    article_pattern=r"^https://x\.gov\.cn/news/\d+\.htm$", article_exclude=r"/news/0+\.htm$")
    listing = common.LinkTally("listing", "https://x.gov.cn/news/")
    for url in ("https://x.gov.cn/about/", "https://x.gov.cn/news/", "https://x.gov.cn/a/b/c/",
                "https://x.gov.cn/static/2017/site.css"):
        listing.miss(url)
    assert listing.seen == 0 and not listing.drifting, "menus and assets are no evidence"
    listing.match(20)
    for n in range(2):
        listing.miss(f"https://x.gov.cn/other/2017/06/{n}.htm")
    assert not listing.drifting and listing.unmatched == 2
    feed = common.LinkTally("feed", "https://x.gov.cn/rss.xml")
    feed.miss("https://x.gov.cn/")  # every feed entry is a candidate
    assert feed.drifting and feed.describe() == "1 link in the feed does not match article_pattern"
    assert feed.describe(name_url=True) == "1 link in feed https://x.gov.cn/rss.xml does not match article_pattern"
    assert common.vetoed(source, "https://x.gov.cn/news/000.htm")
    assert not common.vetoed(source, "https://x.gov.cn/news/123.htm")
    assert not common.vetoed(source, "https://x.gov.cn/other/123.htm")
    verdict, sample = common.drift_report([listing, feed])
    assert verdict == "1 link in the feed does not match article_pattern"
    assert sample == ["https://x.gov.cn/"], "the evidence comes from the drifting entry point only"
    assert common.drift_report([listing]) == (None, [])


# -- distributed crawls carry the drift to the archive too ------------------------------------------

REDIS = shutil.which("redis-server")




def test_distributed_crawl_records_drift(tmp_path, embassy, redis_url):
    root, server, sources = embassy
    build_embassy(root, redesigned=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PRESSARCHIVE_NOW"] = T0
    common = ["--sources", str(sources), "--redis", redis_url, "--idle-exit", "3"]
    with open(tmp_path / "ingest.log", "w") as ingest_log, open(tmp_path / "worker.log", "w") as worker_log:
        worker = start_child([sys.executable, "-m", "crawler", "crawl", *common, "--seed", "--db", "w.db"],
                             tmp_path, env, stdout=worker_log, stderr=subprocess.STDOUT)
        assert worker.wait(120) == 0, (tmp_path / "worker.log").read_text()[-2000:]
        # The items wait in Redis (an ingester started first could idle out on a loaded machine before the
        # worker's first item: it did once in CI).
        ingester = start_child([sys.executable, "-m", "crawler", "ingest", "--redis", redis_url, "--db", "archive.db",
                                "--idle-exit", "3"], tmp_path, env, stdout=ingest_log, stderr=subprocess.STDOUT)
        assert ingester.wait(120) == 0, (tmp_path / "ingest.log").read_text()[-2000:]
    row = last_run(tmp_path / "archive.db", "cn-embassy")
    assert (row["links_seen"], row["links_unmatched"]) == (9, 9)
    assert row["drift"] == "9 links on the listing, none match article_pattern"
    assert json.loads(row["unmatched_sample"])[0] == f"{server.base_url}/chn/news/2017-06/{NEW[0]}"
    status = run(["status", "--db", "archive.db"], tmp_path, "2017-06-30T13:00:00Z")
    assert status.returncode == 1 and "DRIFT: 9 links on the listing" in status.stdout
