"""Crash safety at length: 20 SIGKILLs at random moments, then a 60-second mixed read load.

The long form of tests/test_crash.py (whose site builder and checks it
reuses): a mock site of N releases is crawled, the crawl killed with SIGKILL
at a random moment 20 times, the archive checked after each kill
(integrity_check, every release logged as stored present and intact), then a
final run completes it without duplicates. Then crawls of a fresh archive
run back to back for 60 seconds while a plain sqlite3 reader and Datasette
query it; any "database is locked" is counted.

    python benchmarks/crash.py [--kills 20] [--releases 400] [--load-seconds 60] [--seed N]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from crawler.demo.server import SiteServer

_spec = importlib.util.spec_from_file_location("crash_checks", Path(__file__).parents[1] / "tests" / "test_crash.py")
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)


def sources_file(folder: Path, base: str) -> Path:
    path = folder / "sources.toml"
    path.write_text(f"""[[sources]]
id = "crashy"
name = "Crash benchmark site"
country = "CA"
kind = "government"
languages = ["en"]
sitemaps = ["{base}/sitemap.xml"]
article_pattern = '/news/r'
delay = 0
""")
    return path


def kills(folder: Path, sources: Path, count: int, releases: int, rng: random.Random) -> None:
    db = folder / "kills.db"
    reported: set[str] = set()
    for n in range(1, count + 1):
        crawl = checks.start_crawl(folder, sources, db)
        time.sleep(rng.uniform(1.5, 12.0))
        crawl.send_signal(signal.SIGKILL)
        _, stderr = crawl.communicate(timeout=60)
        reported |= set(checks.SCRAPED.findall(stderr))
        stored = checks.check_archive(db, reported) if db.exists() else 0
        print(f"kill {n:>2}: integrity ok, {len(reported)} reported stored all present, {stored} in archive", flush=True)
    crawl = checks.start_crawl(folder, sources, db)
    _, stderr = crawl.communicate(timeout=1800)
    checks.check_archive(db, reported | set(checks.SCRAPED.findall(stderr)))  # raises on a missing release
    conn = sqlite3.connect(db)
    distinct, rows = conn.execute("select count(distinct url), count(*) from releases").fetchone()
    versions = conn.execute("select count(*) from release_versions").fetchone()[0]
    indexed = conn.execute("select count(*) from releases_fts_rows").fetchone()[0]
    conn.close()
    print(f"final run: exit {crawl.returncode}; {rows} releases ({distinct} distinct URLs, expected {releases}), "
          f"{versions} versions, {indexed} indexed")


def load(folder: Path, sources: Path, seconds: float) -> None:
    import asyncio

    from archive.site.serve import make_datasette

    db = folder / "load.db"
    errors, counts, stop = [], {"sqlite": 0, "datasette": 0, "crawls": 0}, threading.Event()

    def plain():
        while not stop.is_set():
            try:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                conn.execute("select source_id, count(*) from releases group by source_id").fetchall()
                conn.execute("select count(*) from releases_fts where releases_fts match 'minister'").fetchone()
                conn.execute("select * from crawl_runs order by id desc limit 5").fetchall()
                conn.close()
                counts["sqlite"] += 1
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc):
                    errors.append(f"sqlite3: {exc}")
            time.sleep(0.005)

    def datasette():
        async def run():
            ds = make_datasette(db)
            paths = [f"/{db.stem}/releases.json?_size=20", f"/{db.stem}.json?sql=select+count(*)+from+releases",
                     f"/{db.stem}/releases?_search=minister", f"/{db.stem}/crawl_runs"]
            while not stop.is_set():
                for path in paths:
                    response = await ds.client.get(path)
                    if "database is locked" in response.text:
                        errors.append(f"datasette {path}")
                    counts["datasette"] += 1
                await asyncio.sleep(0.005)
        asyncio.run(run())

    first = checks.start_crawl(folder, sources, db)  # creates the schema
    time.sleep(3)
    threads = [threading.Thread(target=plain), threading.Thread(target=datasette)]
    for thread in threads:
        thread.start()
    deadline = time.time() + seconds
    crawl = first
    while time.time() < deadline:
        crawl.communicate(timeout=1800)
        counts["crawls"] += 1
        if time.time() < deadline:
            crawl = checks.start_crawl(folder, sources, db)  # a recrawl: conditional GETs, rechecks, run rows
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    print(f"{seconds:.0f} s mixed load: {counts['crawls']} crawls, {counts['sqlite']} sqlite3 reads, "
          f"{counts['datasette']} Datasette requests, {len(errors)} 'database is locked' {errors[:3]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--releases", type=int, default=400)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    print(f"seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="pa-crash-") as tmp:
        folder = Path(tmp)
        checks.build_site(folder / "site", args.releases)
        server = SiteServer(folder / "site").start()
        try:
            sources = sources_file(folder, server.base_url)
            if args.kills:
                kills(folder, sources, args.kills, args.releases, random.Random(args.seed))
            if args.load_seconds:
                load(folder, sources, args.load_seconds)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
