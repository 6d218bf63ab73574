"""End-to-end crawl speed: a mock site of N release pages on 127.0.0.1 at zero delay.

Builds N release pages (realistic size: ~46 KB, the median government page of
the development corpus, mostly menus, inline scripts and footer; 10 paragraphs)
plus a sitemap, serves them from a separate process (so the server's CPU is
not counted as the crawl's), crawls them with fetch, clean, store and index,
and prints pages/s, CPU seconds and peak RSS of the crawl's process tree
(the crawl plus its cleaning workers, sampled from /proc). Then, measured in
the same run, the extraction-only ceiling on one core: plain trafilatura
with metadata in a loop, and the project's ``extract`` in a loop.

Goals (issue 9): end-to-end pages/s >= 1.5x the single-core ceiling,
peak RSS <= 400 MB, memory flat as the site grows (run with 1000 and 5000).

    python benchmarks/crawl.py [--pages 5000] [--also 1000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlite_utils

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
# A government page's weight is mostly chrome: a mega menu, inline configuration, breadcrumbs,
# related links and a long footer. Sized to the median government page of the development corpus
# (../shared/corpus, gov pages: median 46 KB of HTML, quartiles 20 and 62 KB); ~46 KB here.
NAV = "".join(
    f'<li class="menu-group"><a href="/section-{i}/">Section {i} of the ministry website</a><ul>'
    + "".join(f'<li><a href="/section-{i}/topic-{j}/" title="Topic {j} of section {i}">Topic {j}</a></li>'
              for j in range(7))
    + "</ul></li>"
    for i in range(40)
)
FOOTER = "".join(f'<li><a href="/about/{i}">About link {i}</a></li>' for i in range(80))
CONFIG = "var siteConfig = " + ", ".join(f'"key{i}": "value {i} of the analytics and consent configuration"'
                                          for i in range(90)) + ";"
WORDS = ("minister statement cooperation partners security trade human rights agreement officials region "
         "government international humanitarian assistance commitment progress review meeting talks").split()
def paragraph(i: int, j: int) -> str:
    words = [WORDS[(i * 7 + j * 13 + k * 3) % len(WORDS)] for k in range(60)]
    return f"<p>Statement {i}, paragraph {j}: " + " ".join(words) + ".</p>"


def page(i: int) -> str:
    day = f"20{10 + i % 14}-{1 + i % 12:02d}-{1 + i % 28:02d}"
    body = "\n".join(paragraph(i, j) for j in range(10))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Statement {i} on international cooperation - Global Affairs</title>
<meta name="dcterms.issued" content="{day}"><meta property="og:title" content="Statement {i} on international cooperation">
<link rel="stylesheet" href="/style.css"><script>var analytics = {{"page": {i}}}; {CONFIG}</script></head>
<body><div class="cookie-banner">This site uses cookies. <button>Accept</button></div>
<header><nav><ul>{NAV}</ul></nav></header>
<ol class="breadcrumb"><li><a href="/">Home</a></li><li><a href="/news/">News</a></li><li>Statements</li></ol>
<main><h1>Statement {i} on international cooperation</h1><p class="date">{day}</p>
{body}
<div class="share">Share this page: Facebook Twitter Email</div></main>
<aside><h2>Related</h2><ul>{NAV[:2000]}</ul></aside>
<footer><p>Date modified: {day}</p><ul>{FOOTER}</ul></footer></body></html>
"""


def build(root: Path, pages: int) -> None:
    (root / "news").mkdir(parents=True)
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    locs = []
    for i in range(pages):
        (root / "news" / f"statement-{i}.html").write_text(page(i))
        locs.append(f"<url><loc>{{{{BASE}}}}/news/statement-{i}.html</loc></url>")
    (root / "sitemap.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "\n".join(locs) + "</urlset>")


def serve(root: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "crawler.demo.server", str(root)], stdout=subprocess.PIPE,
                              text=True)
    line = server.stdout.readline()  # "serving DIR at http://127.0.0.1:PORT/ (Ctrl-C to stop)"
    return server, line.split(" at ")[1].split("/ ")[0].rstrip("/")


CRAWL = """
import json, sys
from crawler.runner import build_settings, run_crawl
from crawler.sources import load_sources
run_crawl(load_sources(sys.argv[1]), build_settings(sys.argv[2], overrides=json.loads(sys.argv[3])))
"""


def _tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


class TreeSampler(threading.Thread):
    """Peak RSS (sum over the process tree, and the main process alone) and CPU seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_tree = self.peak_main = 0
        self.cpu: dict[int, float] = {}
        self.done = False

    def run(self):
        while not self.done:
            total = 0
            for pid in _tree(self.pid):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                rss = int(fields[21]) * PAGE_SIZE
                total += rss
                if pid == self.pid:
                    self.peak_main = max(self.peak_main, rss)
                self.cpu[pid] = (int(fields[11]) + int(fields[12])) / TICKS
            self.peak_tree = max(self.peak_tree, total)
            time.sleep(self.interval)


def crawl(pages: int, workers: int | None, extra: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="pa-bench-") as tmp:
        tmp = Path(tmp)
        build(tmp / "site", pages)
        server, base = serve(tmp / "site")
        try:
            (tmp / "sources.toml").write_text(f"""[[sources]]
id = "bench"
name = "Benchmark site"
country = "CA"
kind = "government"
languages = ["en"]
sitemaps = ["{base}/sitemap.xml"]
article_pattern = '/news/statement-'
delay = 0
""")
            overrides = {"LOG_LEVEL": "WARNING", "AUTOTHROTTLE_ENABLED": False, "DOWNLOAD_DELAY": 0,
                         "EXTENSIONS": {"crawler.throttle.SourceAwareAutoThrottle": None}}
            if workers is not None:
                overrides["CLEAN_WORKERS"] = workers
            overrides.update(extra or {})
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            started = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-c", CRAWL, str(tmp / "sources.toml"), str(tmp / "a.db"),
                                      json.dumps(overrides)], cwd=tmp, env=env, stderr=subprocess.PIPE, text=True)
            sampler = TreeSampler(child.pid)
            sampler.start()
            _, stderr = child.communicate()
            elapsed = time.perf_counter() - started
            sampler.done = True
            sampler.join()
            db = sqlite_utils.Database(tmp / "a.db")
            stored = db["releases"].count
            if stored != pages:
                print(stderr[-3000:], file=sys.stderr)
            return {"pages": pages, "stored": stored, "seconds": elapsed, "pages_per_s": stored / elapsed,
                    "cpu_s": sum(sampler.cpu.values()), "peak_rss_mb": sampler.peak_tree / 2**20,
                    "peak_rss_main_mb": sampler.peak_main / 2**20, "size_mb": (tmp / "a.db").stat().st_size / 2**20}
        finally:
            server.terminate()
            server.wait()


def ceiling(sample: int = 200, rounds: int = 3) -> dict:
    """Pages/s of extraction alone on one core, on the same pages: the best of ``rounds`` runs
    (the least disturbed one, so the ratio to it is not flattered by a slow round)."""
    import trafilatura

    from pipelines import extraction

    pages = [page(i).encode() for i in range(sample)]
    plain = ours = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for i, body in enumerate(pages):
            trafilatura.extract(body.decode(), url=f"http://127.0.0.1/news/statement-{i}.html", with_metadata=True)
        plain = max(plain, sample / (time.perf_counter() - started))
        started = time.perf_counter()
        for i, body in enumerate(pages):
            extraction.extract(body, f"http://127.0.0.1/news/statement-{i}.html")
        ours = max(ours, sample / (time.perf_counter() - started))
    return {"trafilatura_pages_per_s": plain, "project_extract_pages_per_s": ours}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--also", type=int, default=1000, help="a smaller site for the memory comparison (0: skip)")
    parser.add_argument("--workers", type=int, default=None, help="CLEAN_WORKERS (default: one per CPU)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                        help="a Scrapy setting for the crawl, e.g. --set CONCURRENT_ITEMS=100 (repeatable)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the extraction-only ceiling")
    args = parser.parse_args()
    extra = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            extra[name] = json.loads(value)
        except ValueError:
            extra[name] = value
    print(f"CPUs: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    runs = [crawl(n, args.workers, extra) for n in ([args.also] if args.also else []) + [args.pages]]
    for run in runs:
        print(f"{run['pages']:>6} pages: {run['stored']} stored in {run['seconds']:.1f} s = {run['pages_per_s']:.1f} pages/s; "
              f"CPU {run['cpu_s']:.1f} s ({run['cpu_s'] / run['seconds']:.2f} cores); peak RSS {run['peak_rss_mb']:.0f} MB "
              f"(crawl process alone {run['peak_rss_main_mb']:.0f} MB); archive {run['size_mb']:.1f} MB")
    if args.no_ceiling:
        return
    limits = ceiling()
    print(f"ceiling, one core (best of 3 rounds of 200 pages): trafilatura.extract with metadata {limits['trafilatura_pages_per_s']:.1f} pages/s; "
          f"pipelines.extraction.extract {limits['project_extract_pages_per_s']:.1f} pages/s")
    last = runs[-1]
    ratio = last["pages_per_s"] / limits["trafilatura_pages_per_s"]
    print(f"end to end / trafilatura ceiling = {ratio:.2f}x (goal >= 1.5x); "
          f"vs project extract ceiling = {last['pages_per_s'] / limits['project_extract_pages_per_s']:.2f}x; "
          f"peak RSS {last['peak_rss_mb']:.0f} MB (goal <= 400)")


if __name__ == "__main__":
    main()
