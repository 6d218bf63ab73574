"""Incremental crawl cost: a second crawl of an unchanged site vs the first.

Builds a mock government news site (RSS feed + paginated listing, N releases)
in a temporary folder, serves it on 127.0.0.1 with the project's SiteServer,
crawls it twice with ``pressarchive crawl`` (10 minutes apart on the crawl
clock, so no recheck is due), and prints requests, extractions and wall time
of each run and their ratio. Goal: the second crawl makes <= 5% of the first
crawl's requests and re-extracts nothing.

    python benchmarks/recrawl.py [--releases 500] [--per-page 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlite_utils

from crawler.demo.server import SiteServer

PARAGRAPH = (
    "The Minister of Foreign Affairs today issued the following statement on cooperation number {i}. "
    "Canada remains committed to working with its partners on trade, security and human rights, and "
    "officials will meet again later this year to review progress on the commitments made."
)


def build(root: Path, releases: int, per_page: int) -> None:
    (root / "news").mkdir(parents=True)
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    slugs = [f"{2000 + i // 300}/{1 + (i // 25) % 12:02d}/release-{i}" for i in range(releases)]
    for i, slug in enumerate(slugs):
        path = root / "news" / f"{slug}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        date = f"{slug[:4]}-{slug[5:7]}-{1 + i % 28:02d}"
        body = "".join(f"<p>{PARAGRAPH.format(i=i)} ({k})</p>" for k in range(4))
        path.write_text(f"<html><head><title>Statement {i}</title><meta name='dcterms.issued' content='{date}'>"
                        f"</head><body><main><h1>Statement {i}</h1>{body}</main></body></html>")
    newest = list(reversed(slugs))
    pages = [newest[i:i + per_page] for i in range(0, len(newest), per_page)]
    for n, chunk in enumerate(pages):
        links = "".join(f'<li><a href="/news/{s}.html">Statement</a></li>' for s in chunk)
        nxt = f'<a rel="next" href="/news/page{n + 1}.html">Next</a>' if n + 1 < len(pages) else ""
        name = "index.html" if n == 0 else f"page{n}.html"
        (root / "news" / name).write_text(f"<html><body><ul>{links}</ul>{nxt}</body></html>")
    items = "".join(f"<item><title>S</title><link>{{{{BASE}}}}/news/{s}.html</link></item>" for s in newest[:50])
    (root / "feed.xml").write_text(f"<?xml version='1.0'?><rss version='2.0'><channel>{items}</channel></rss>")


def crawl(workdir: Path, sources: Path, when: str) -> tuple[float, dict]:
    env = dict(os.environ, PRESSARCHIVE_NOW=when)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "crawler", "crawl", "--sources", str(sources), "--db", "archive.db",
                    "--log-level", "WARNING"], cwd=workdir, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    db = sqlite_utils.Database(workdir / "archive.db")
    row = next(db.query("select * from crawl_runs order by id desc limit 1"))
    return elapsed, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=500)
    parser.add_argument("--per-page", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp) / "site", Path(tmp) / "work"
        work.mkdir()
        build(root, args.releases, args.per_page)
        with SiteServer(root) as server:
            sources = work / "sources.toml"
            sources.write_text(f"""[[sources]]
id = "bench"
name = "Benchmark site"
country = "CA"
kind = "government"
languages = ["en"]
feeds = ["{server.base_url}/feed.xml"]
listings = ["{server.base_url}/news/"]
article_pattern = '/news/\\d{{4}}/\\d{{2}}/release-\\d+\\.html$'
max_pages = 1000
delay = 0
""")
            t1, first = crawl(work, sources, "2026-01-01T00:00:00Z")
            served_first = len(server.requests)
            server.reset_requests()
            t2, second = crawl(work, sources, "2026-01-01T00:10:00Z")
            served_second = len(server.requests)
    print(f"site: {args.releases} releases, {args.per_page} per listing page")
    print(f"{'':<14}{'requests':>10}{'served':>10}{'new':>8}{'changed':>9}{'extracted':>11}{'seconds':>9}")
    for label, t, row, served in (("first crawl", t1, first, served_first), ("second crawl", t2, second, served_second)):
        extracted = row["new"] + row["changed"] + row["unchanged"] + row["empty"]
        print(f"{label:<14}{row['requests']:>10}{served:>10}{row['new']:>8}{row['changed']:>9}{extracted:>11}{t:>9.1f}")
    ratio = served_second / served_first
    print(f"second/first requests: {ratio:.2%} (goal <= 5%); re-extracted pages in second crawl: "
          f"{second['new'] + second['changed'] + second['unchanged'] + second['empty']}")


if __name__ == "__main__":
    main()
