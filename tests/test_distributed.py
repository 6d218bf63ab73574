"""Distributed crawling with a real Redis: two workers, one ingester, the local demo sites."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils
from conftest import child_env, start_child

from crawler.demo.server import DEMO_SITES

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(not REDIS, reason="redis-server not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env():
    return child_env()


def wait_for_items(redis_url, workers, timeout=120):
    """Until the workers have put an item in Redis for the ingester (or all ended)."""
    import redis

    from pipelines.queue import ITEMS_KEY

    server = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while not server.llen(ITEMS_KEY) and time.monotonic() < deadline:
        if all(worker.poll() is not None for worker in workers):
            return
        time.sleep(0.1)


def start(args, cwd, log):
    with open(log, "w") as out:  # the child has its own copy
        return start_child([sys.executable, "-m", "crawler", *args], cwd, env(), stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def slow_demo(tmp_path, site_server):
    """The demo sites, with every release page answering after 0.3 s so that both workers get work."""
    servers = {}
    for name, root in DEMO_SITES.items():
        copy = tmp_path / "sites" / name
        shutil.copytree(root, copy)
        routes = json.loads((copy / "_routes.json").read_text()) if (copy / "_routes.json").exists() else {}
        for page in copy.rglob("t2017*.htm"):
            routes[f"/{page.relative_to(copy).as_posix()}"] = {"delay": 0.3}
        for page in copy.glob("en/global-affairs/news/2017/06/*.html"):
            routes[f"/{page.relative_to(copy).as_posix()}"] = {"delay": 0.3}
        (copy / "_routes.json").write_text(json.dumps(routes))
        servers[name] = site_server(copy)
    from crawler.demo.server import DEMO_SOURCES, substitute_bases

    sources = tmp_path / "sources.toml"
    sources.write_text(substitute_bases(DEMO_SOURCES.read_text(encoding="utf-8"), servers), encoding="utf-8")
    return servers, sources


def archive_rows(path: Path):
    db = sqlite_utils.Database(path)
    return sorted((r["url"], r["title"], r["published"], r["text"]) for r in db["releases"].rows)


def single_process(tmp_path, sources) -> list:
    work = tmp_path / "single"
    work.mkdir()
    result = subprocess.run([sys.executable, "-m", "crawler", "crawl", "--sources", str(sources), "--db", "a.db"],
                            cwd=work, env=env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return archive_rows(work / "a.db")


def release_paths(servers):
    return [p for s in servers.values() for p in s.paths if p.endswith((".htm", ".html")) and "/20" in p]


def test_two_workers_one_ingester_equal_single_process(tmp_path, redis_url, slow_demo):
    servers, sources = slow_demo
    expected = single_process(tmp_path, sources)
    assert len(expected) == 20
    for server in servers.values():
        server.reset_requests()
    work = tmp_path / "dist"
    work.mkdir()
    common = ["--sources", str(sources), "--redis", redis_url, "--idle-exit", "4", "--log-level", "INFO"]
    w1 = start(["crawl", *common, "--seed", "--db", "w1.db"], work, work / "w1.log")
    w2 = start(["crawl", *common, "--db", "w2.db"], work, work / "w2.log")
    # The ingester runs beside the workers from their first item on (started before it, on a loaded
    # machine, it could idle out while the workers were still starting).
    wait_for_items(redis_url, (w1, w2))
    ingester = start(["ingest", "--redis", redis_url, "--db", "dist.db", "--idle-exit", "12"], work, work / "ingest.log")
    for proc in (w1, w2, ingester):
        assert proc.wait(180) == 0, (work / "w1.log").read_text()[-2000:] + (work / "ingest.log").read_text()[-2000:]
    assert archive_rows(work / "dist.db") == expected
    paths = release_paths(servers)
    assert len(paths) == len(set(paths)) == 20, "every release fetched once, across both workers"
    db = sqlite_utils.Database(work / "dist.db")
    runs = list(db.query("select run_id, source_id, requests, new, status from crawl_runs"))
    assert {r["status"] for r in runs} == {"ok"}
    assert sum(r["new"] for r in runs) == 20
    per_worker = {}
    for r in runs:
        per_worker[r["run_id"]] = per_worker.get(r["run_id"], 0) + r["requests"]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), "both workers fetched pages"


def test_killed_worker_and_killed_ingester_lose_nothing(tmp_path, redis_url, slow_demo):
    servers, sources = slow_demo
    expected_urls = sorted(r[0] for r in single_process(tmp_path, sources))
    work = tmp_path / "dist"
    work.mkdir()
    common = ["--sources", str(sources), "--redis", redis_url, "--idle-exit", "4"]
    w1 = start(["crawl", *common, "--seed", "--db", "w1.db"], work, work / "w1.log")
    w2 = start(["crawl", *common, "--db", "w2.db"], work, work / "w2.log")
    deadline = time.time() + 60
    while time.time() < deadline and len(release_paths(servers)) < 26:  # 20 from the single run + 6
        time.sleep(0.05)
    w2.send_signal(signal.SIGKILL)  # dies holding a request in flight
    assert w1.wait(180) == 0, (work / "w1.log").read_text()[-3000:]

    # The ingester dies in the middle of its work, then comes back.
    ingester = start(["ingest", "--redis", redis_url, "--db", "dist.db", "--batch", "3"], work, work / "i1.log")
    time.sleep(2.5)
    ingester.send_signal(signal.SIGKILL)
    ingester.wait(10)
    again = subprocess.run([sys.executable, "-m", "crawler", "ingest", "--redis", redis_url, "--db", "dist.db",
                            "--idle-exit", "3"], cwd=work, env=env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    db = sqlite_utils.Database(work / "dist.db")
    urls = [r["url"] for r in db["releases"].rows]
    assert sorted(urls) == expected_urls and len(urls) == len(set(urls))
    assert db.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_per_host_delay_holds_across_workers(tmp_path, redis_url, site_server):
    site = site_server("feed_site")
    sources = tmp_path / "sources.toml"
    sources.write_text(f"""[[sources]]
id = "polite"
name = "Polite"
country = "CA"
kind = "head_of_government"
languages = ["en"]
feeds = ["{site.base_url}/en/news.rss", "{site.base_url}/en/news.atom"]
article_pattern = '/en/news/'
delay = 0.6
""")
    work = tmp_path / "dist"
    work.mkdir()
    common = ["--sources", str(sources), "--redis", redis_url, "--idle-exit", "3"]
    w1 = start(["crawl", *common, "--seed", "--db", "w1.db"], work, work / "w1.log")
    w2 = start(["crawl", *common, "--db", "w2.db"], work, work / "w2.log")
    for proc in (w1, w2):
        assert proc.wait(180) == 0
    # The items wait in Redis (an ingester started first could idle out on a loaded machine before the
    # workers' first item: it did once in the full suite).
    ingester = start(["ingest", "--redis", redis_url, "--db", "dist.db", "--idle-exit", "3"], work, work / "i.log")
    assert ingester.wait(180) == 0
    # robots.txt is fetched by each worker for itself; every other request waits for the host's turn.
    times = sorted(r.received for r in site.requests if r.path != "/robots.txt")
    assert len(times) >= 5
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.55, gaps
    db = sqlite_utils.Database(work / "dist.db")
    assert db["releases"].count >= 3
