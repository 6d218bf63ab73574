"""End-to-end crawl speed of ``pressarchive crawl`` as shipped, on local sites at ``delay = 0``.

Builds N release pages (realistic size: ~46 KB, the median government page of
the development corpus, mostly menus, inline scripts and footer; 10 paragraphs),
serves them from a separate process (so the server's CPU is not counted as the
crawl's) and runs ``pressarchive crawl --sources FILE --db archive.db`` in a
child process exactly as a user does: no setting overridden (robots.txt,
AutoThrottle, WARC capture, cleaning workers all as shipped; the registry says
``delay = 0`` as a local mirror's would). Once with every page in one source,
once split over 20 sources, each on a loopback address of its own
(127.0.0.2, .3, ...: one download slot per host, as separate sites get).
Prints pages/s, CPU seconds and peak RSS of the crawl's process tree (sampled
from /proc), and the ratio to the single-core ceiling: plain trafilatura
(``extract`` with metadata) on the same pages, measured just before and just
after each crawl on the same machine; the ratio is taken to the better of the two.

Goal (issue 18): end to end >= 1.5x that ceiling, for one source and for 20.

    python benchmarks/crawl.py [--pages 2000] [--sources 1 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
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
WORDS = ["minister", "statement", "cooperation", "partners", "security", "trade", "human", "rights", "agreement", "officials", "region", "government", "international", "humanitarian", "assistance", "commitment", "progress", "review", "meeting", "talks"]


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
    for i in range(pages):
        (root / "news" / f"statement-{i}.html").write_text(page(i))


SERVERS = """
import sys, time
from crawler.demo.server import SiteServer
servers = [SiteServer(sys.argv[1], host=f"127.0.0.{2 + k}").start() for k in range(int(sys.argv[2]))]
print(" ".join(server.base_url for server in servers), flush=True)
time.sleep(86400)
"""


def serve(root: Path, hosts: int) -> tuple[subprocess.Popen, list[str]]:
    """The site on ``hosts`` loopback addresses (127.0.0.2, .3, ...: each its own host, so its own
    download slot, as separate government sites are), served by a process of its own."""
    server = subprocess.Popen([sys.executable, "-c", SERVERS, str(root), str(hosts)], stdout=subprocess.PIPE,
                              text=True)
    return server, server.stdout.readline().split()


def registry(bases: list[str]) -> str:
    """One source per base URL; source k lists the pages i with i % len(bases) == k."""
    entries = []
    for k, base in enumerate(bases):
        entries.append(f"""[[sources]]
id = "bench-{k}"
name = "Benchmark site {k}"
country = "CA"
kind = "government"
languages = ["en"]
sitemaps = ["{base}/sitemap-{len(bases)}-{k}.xml"]
article_pattern = '/news/statement-'
delay = 0
""")
    return "\n".join(entries)


def write_sitemaps(root: Path, pages: int, bases: list[str]) -> None:
    for k, base in enumerate(bases):
        locs = "".join(f"<url><loc>{base}/news/statement-{i}.html</loc></url>\n" for i in range(k, pages, len(bases)))
        (root / f"sitemap-{len(bases)}-{k}.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + locs + "</urlset>")


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


def crawl(root: Path, pages: int, sources: int) -> dict:
    """``pressarchive crawl`` as a user runs it (shipped settings: robots.txt, AutoThrottle, WARC
    capture, cleaning workers, the per-source ``delay = 0`` of the registry) of ``pages`` pages
    split over ``sources`` sources, each on a host of its own."""
    with tempfile.TemporaryDirectory(prefix="pa-bench-") as tmp:
        tmp = Path(tmp)
        server, bases = serve(root, sources)
        try:
            write_sitemaps(root, pages, bases)
            (tmp / "sources.toml").write_text(registry(bases))
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            command = [sys.executable, "-m", "crawler", "crawl", "--sources", str(tmp / "sources.toml"),
                       "--db", str(tmp / "archive.db"), "--log-level", "WARNING"]
            started = time.perf_counter()
            child = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
            sampler = TreeSampler(child.pid)
            sampler.start()
            stdout, stderr = child.communicate()
            elapsed = time.perf_counter() - started
            sampler.done = True
            sampler.join()
            db = sqlite_utils.Database(tmp / "archive.db")
            stored = db["releases"].count
            if stored != pages or child.returncode:
                print(f"exit {child.returncode}\n{stdout[-2000:]}\n{stderr[-3000:]}", file=sys.stderr)
            warc = sum(f.stat().st_size for f in (tmp / "warc").glob("*")) if (tmp / "warc").exists() else 0
            return {"pages": pages, "sources": sources, "stored": stored, "seconds": elapsed,
                    "pages_per_s": stored / elapsed, "cpu_s": sum(sampler.cpu.values()),
                    "peak_rss_mb": sampler.peak_tree / 2**20, "peak_rss_main_mb": sampler.peak_main / 2**20,
                    "size_mb": (tmp / "archive.db").stat().st_size / 2**20, "warc_mb": warc / 2**20,
                    "command": " ".join(["pressarchive", *command[3:]])}
        finally:
            server.terminate()
            server.wait()


def ceiling(sample: int = 200) -> float:
    """Pages/s of plain trafilatura (extract with metadata) on one core, on the same pages."""
    import trafilatura

    pages = [page(i) for i in range(sample)]
    started = time.perf_counter()
    for i, body in enumerate(pages):
        trafilatura.extract(body, url=f"http://127.0.0.1/news/statement-{i}.html", with_metadata=True)
    return sample / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 20],
                        help="split the pages over this many sources (one run per value)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    args = parser.parse_args()
    import trafilatura

    from crawler import __version__
    from crawler.runner import build_settings

    shipped = build_settings("archive.db")
    print(f"pressarchive {__version__}, trafilatura {trafilatura.__version__}; CPUs: {os.cpu_count()}, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print("settings as shipped: " + ", ".join(f"{key}={shipped.get(key)}" for key in (
        "ROBOTSTXT_OBEY", "AUTOTHROTTLE_ENABLED", "AUTOTHROTTLE_TARGET_CONCURRENCY", "DOWNLOAD_DELAY",
        "CONCURRENT_REQUESTS", "CONCURRENT_REQUESTS_PER_DOMAIN", "CLEAN_WORKERS", "WARC_ENABLED",
        "ARCHIVE_BATCH_SIZE")) + "; registry delay = 0")
    with tempfile.TemporaryDirectory(prefix="pa-bench-site-") as site:
        root = Path(site)
        build(root, args.pages)
        for sources in args.sources:
            for _ in range(args.repeat):
                before = ceiling()
                run = crawl(root, args.pages, sources)
                after = ceiling()
                best = max(before, after)
                print(f"{run['command']}\n  {run['pages']} pages over {sources} source(s): {run['stored']} stored in "
                      f"{run['seconds']:.1f} s = {run['pages_per_s']:.1f} pages/s; CPU {run['cpu_s']:.1f} s "
                      f"({run['cpu_s'] / run['seconds']:.2f} cores); peak RSS {run['peak_rss_mb']:.0f} MB (crawl "
                      f"process {run['peak_rss_main_mb']:.0f} MB); archive {run['size_mb']:.1f} MB, WARC "
                      f"{run['warc_mb']:.1f} MB", flush=True)
                print(f"  ceiling, plain trafilatura on one core, same pages: {before:.1f} pages/s before, "
                      f"{after:.1f} after; end to end / best = {run['pages_per_s'] / best:.2f}x (goal >= 1.5x)",
                      flush=True)


if __name__ == "__main__":
    main()
