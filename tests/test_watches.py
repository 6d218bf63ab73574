"""Watches: saved searches whose new, edited and removed matches are delivered once, after every crawl.

A mock site in tmp_path (served by the real SiteServer) changes between real crawls (child
``pressarchive crawl`` processes, clock set by ``PRESSARCHIVE_NOW``). Deliveries go to a real
HTTP receiver and a real SMTP server (aiosmtpd) on 127.0.0.1, started here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlite_utils
from conftest import child_env, run_cli, start_child

T0 = "2017-06-30T12:00:00Z"
EN = {f"r{i}": (f"2017-06-{10 + i:02d}", f"Statement {i} on the Canada-China dialogue") for i in range(1, 5)}
ZH = {"c1": ("2017-06-15", "关于网络安全合作的声明")}


def english(slug, date, title, extra=""):
    paragraphs = [
        f"Global Affairs Canada today issued statement {slug} on the Canada-China dialogue with partners.",
        (f"The minister said that statement {slug} reflects a shared commitment to the rules-based "
        "international order, to open trade and to the protection of human rights around the world."),
        ("Officials from both governments will meet again in the autumn to review the progress made "
        f"on each of the commitments set out in this statement. {extra}"),
    ]
    return _page("en", date, title, paragraphs)


def chinese(slug, date, title):
    paragraphs = [
        f"外交部今天发布声明{slug}，双方同意加强网络安全领域的对话与合作，共同维护开放、安全的网络空间。",
        ("发言人表示，中方愿同各方一道，在相互尊重的基础上推进数字经济、人工智能和数据安全方面的务实合作，"
        "为构建网络空间命运共同体作出贡献。"),
        "双方还就地区和国际问题交换了意见，同意保持密切沟通，在多边框架内加强协调配合，推动双边关系持续健康发展。",
    ]
    return _page("zh-CN", date, title, paragraphs)


def _page(lang, date, title, paragraphs):
    text = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return f"""<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">
<title>{title}</title><meta name="dcterms.issued" content="{date}"></head>
<body><nav><a href="/">Home</a> &gt; <a href="/news/">News</a></nav>
<main><h1>{title}</h1>
{text}</main><footer>Date modified: 2017-06-30</footer></body></html>"""


def build_site(root, releases):
    """Write the pages not written yet, the listing and the feed of ``releases`` {slug: (date, title)}."""
    (root / "news" / "2017" / "06").mkdir(parents=True, exist_ok=True)
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    for slug, (date, title) in releases.items():
        target = root / "news" / "2017" / "06" / f"{slug}.html"
        if not target.exists():
            page = chinese(slug, date, title) if slug.startswith("c") else english(slug, date, title)
            target.write_text(page, encoding="utf-8")
    newest = sorted(releases, key=lambda s: releases[s][0], reverse=True)
    items = "".join(f'<li><a href="/news/2017/06/{s}.html">{releases[s][1]}</a></li>' for s in newest)
    (root / "news" / "index.html").write_text(f"<html><body><ul>{items}</ul></body></html>", encoding="utf-8")
    feed = "".join(f"<item><title>{releases[s][1]}</title><link>{{{{BASE}}}}/news/2017/06/{s}.html</link>"
                   f"<pubDate>Fri, {releases[s][0][-2:]} Jun 2017 12:00:00 +0000</pubDate></item>" for s in newest)
    (root / "feed.xml").write_text(f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                                   f"<title>News</title>{feed}</channel></rss>", encoding="utf-8")
    (root / "_routes.json").write_text("{}")


def sources_file(tmp_path, base):
    path = tmp_path / "sources.toml"
    path.write_text(f"""[[sources]]
id = "mock-gov"
name = "Mock government news"
country = "CA"
kind = "government"
languages = ["en", "zh"]
feeds = ["{base}/feed.xml"]
listings = ["{base}/news/"]
article_pattern = '/news/\\d{{4}}/\\d{{2}}/[a-z]\\d+\\.html$'
delay = 0
""", encoding="utf-8")
    return path


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each POST by ``modes`` in turn (``fail``: HTTP 500,
    ``hang``: no answer until released, ``ok``: 200), then ``ok``. Records every POST."""

    def __init__(self, modes=()):
        self.modes = list(modes)
        self.posts: list[tuple[str, dict]] = []  # (how it was answered, the JSON body)
        self.arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mode = receiver.modes.pop(0) if receiver.modes else "ok"
                receiver.posts.append((mode, body))
                receiver.arrived.set()
                if mode == "hang":
                    receiver.release.wait(60)
                    return
                self.send_response(500 if mode == "fail" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict]:
        return [body for mode, body in self.posts if mode == "ok"]

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd on 127.0.0.1 (plain SMTP, no login), keeping every message it accepts."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                mailbox.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.original_content
                                                                              or envelope.content,
                                                                              policy=policy.default)))
                return "250 OK"

        self.port = closed_port()  # (aiosmtpd's start-up check cannot use port 0)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def env(self) -> dict:
        return {"PRESSARCHIVE_SMTP_HOST": "127.0.0.1", "PRESSARCHIVE_SMTP_PORT": str(self.port),
                "PRESSARCHIVE_SMTP_STARTTLS": "0", "PRESSARCHIVE_SMTP_FROM": "archive@example.org"}

    def subjects(self) -> list[str]:
        return sorted(str(message["Subject"]) for _, message in self.messages)


FAST = {"PRESSARCHIVE_WEBHOOK_BACKOFF": "0.2", "PRESSARCHIVE_DELIVERY_TIMEOUT": "20"}


@pytest.fixture
def receiver():
    made = []

    def start(modes=()):
        made.append(Receiver(modes))
        return made[-1]

    yield start
    for server in made:
        server.stop()


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.controller.stop()


def entries(db, watch):
    return [(r["kind"], r["url"].rsplit("/", 1)[1], r["version"]) for r in
            db.query("select * from watch_entries where watch = ? order by id", [watch])]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


def test_watch_entries_and_delivery_after_crawls(tmp_path, site_server, receiver, mailbox):
    root = tmp_path / "site"
    root.mkdir()
    releases = {**EN, **ZH}
    build_site(root, releases)
    server = site_server(root)
    sources = sources_file(tmp_path, server.base_url)
    hook = receiver(["fail"])  # fails once, then succeeds
    env = {**FAST, **mailbox.env()}

    def cli(*args, when):
        result = run_cli(list(args), tmp_path, 180, when=when, env=env)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        return result

    def crawl(when):
        return cli("crawl", "--sources", sources, "--db", "archive.db", when=when)

    crawl(T0)
    cli("watch", "add", "dialogue", '"Canada-China dialogue"', "--webhook", hook.url, "--email", "a@example.org",
        "--db", "archive.db", when="2017-06-30T12:30:00Z")
    cli("watch", "add", "网安", "网络安全", "--language", "zh", "--email", "b@example.org", "--db", "archive.db",
        when="2017-06-30T12:30:00Z")
    cli("watch", "add", "english-only", "网络安全", "--language", "en", "--db", "archive.db", when=T0)
    dead = f"http://127.0.0.1:{closed_port()}/"
    cli("watch", "add", "dead-end", "dialogue", "--webhook", dead, "--db", "archive.db", when=T0)
    db = sqlite_utils.Database(tmp_path / "archive.db")
    assert db["watch_entries"].count == 0, "a watch reports what comes after it was added"

    # Two new matching releases, one that does not match, a Chinese one; r2 is edited.
    r2 = root / "news/2017/06/r2.html"
    r2.write_text(r2.read_text().replace("in the autumn", "in September in Ottawa"))
    releases.update({"r5": ("2017-06-28", "Canada-China dialogue on trade"),
                     "r6": ("2017-06-29", "Canada-China dialogue on climate"),
                     "r7": ("2017-06-29", "Statement on fisheries"),
                     "c2": ("2017-06-29", "网络安全对话联合新闻稿")})
    build_site(root, releases)
    r7 = root / "news/2017/06/r7.html"
    r7.write_text(r7.read_text().replace("Canada-China dialogue", "Atlantic fisheries"))
    second = crawl("2017-06-30T14:00:00Z")  # the 1 h recheck of r1-r4 is due
    assert "watch dialogue: 2 new, 1 changed, 0 removed; webhook 3 entries delivered; email 3 entries" \
        in second.stdout, second.stdout
    assert "watch dead-end: 2 new, 1 changed, 0 removed; webhook FAILED: POST " in second.stdout
    assert sorted(entries(db, "dialogue")) == [("changed", "r2.html", 2), ("new", "r5.html", 1), ("new", "r6.html", 1)]
    assert entries(db, "网安") == [("new", "c2.html", 1)]
    assert entries(db, "english-only") == []
    changed = next(db.query("select * from watch_entries where kind = 'changed'"))
    assert "+Officials from both governments will meet again in September in Ottawa" in changed["summary"]
    assert changed["event_at"] == "2017-06-30T14:00:00Z"
    zh = next(db.query("select * from watch_entries where watch = '网安'"))
    assert zh["title"] == "网络安全对话联合新闻稿" and "网络安全" in zh["summary"]

    # Webhook: one failure, then one successful POST with the three entries and their ids.
    assert [mode for mode, _ in hook.posts] == ["fail", "ok"]
    (payload,) = hook.delivered()
    ids = [row["id"] for row in db.query("select id from watch_entries where watch = 'dialogue' order by id")]
    assert payload["watch"] == "dialogue" and [e["id"] for e in payload["entries"]] == ids
    assert sorted(e["kind"] for e in payload["entries"]) == ["changed", "new", "new"]
    # Email: one digest per watch, right subjects, Chinese intact.
    assert mailbox.subjects() == ["pressarchive: 1 new, 0 changed, 0 removed for 网安",
                                  "pressarchive: 2 new, 1 changed, 0 removed for dialogue"]
    body = next(m for _, m in mailbox.messages if "网安" in str(m["Subject"])).get_content()
    assert "网络安全对话联合新闻稿" in body and "c2.html" in body

    # The failing channel: recorded, entries pending; status says so and exits 1.
    status = run_cli(["status", "--db", "archive.db"], tmp_path, when="2017-06-30T14:05:00Z")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "watch dead-end webhook: FAILING (3 failed attempts" in status.stdout, status.stdout
    assert "3 pending" in status.stdout
    assert "watch dialogue webhook: ok, last delivery 2017-06-30T14:00:00Z; 0 pending" in status.stdout
    listing = cli("watch", "list", "--db", "archive.db", when="2017-06-30T14:05:00Z").stdout
    assert "dialogue: \"Canada-China dialogue\"\n  entries: 2 new, 1 changed, 0 removed" in listing
    assert "  filters: language zh" in listing
    cli("watch", "remove", "dead-end", "--db", "archive.db", when="2017-06-30T14:05:00Z")
    assert db.execute("select count(*) from watch_deliveries where watch = 'dead-end'").fetchone()[0] == 0
    assert db["releases"].count == 9, "removing a watch touches no release"

    # No change: nothing new, nothing delivered.
    third = crawl("2017-06-30T14:10:00Z")
    assert "watch dialogue:" not in third.stdout, third.stdout
    assert len(hook.posts) == 2 and len(mailbox.messages) == 2
    assert db["watch_entries"].count == 4

    # r4 is taken down. The crawl computes the "removed" entry and is killed while its webhook
    # POST waits for an answer: the next run delivers it, once.
    (root / "news/2017/06/r4.html").unlink()
    hook.modes = ["hang"]
    crash = start_child([sys.executable, "-m", "crawler", "crawl", "--sources", str(sources), "--db", "archive.db"],
                        tmp_path, {**child_env("2017-06-30T19:00:00Z"), **env}, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(hook.posts) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(hook.posts) == 3 and hook.posts[2][0] == "hang"
    finally:
        os.killpg(crash.pid, signal.SIGKILL)
        crash.wait(30)
    hook.release.set()
    assert entries(db, "dialogue")[-1] == ("removed", "r4.html", None)
    assert db.execute("select last_entry_id from watch_deliveries where watch = 'dialogue' and channel = 'webhook'"
                      ).fetchone()[0] == ids[-1], "the killed run recorded no delivery"
    again = cli("watch", "run", "--db", "archive.db", when="2017-06-30T19:05:00Z")
    assert "watch dialogue: 0 new, 0 changed, 0 removed; webhook 1 entries delivered" in again.stdout
    removed = [body for body in hook.delivered() if body["entries"][0]["kind"] == "removed"]
    assert len(removed) == 1 and removed[0]["entries"][0]["summary"] == "HTTP 404"
    assert "pressarchive: 0 new, 0 changed, 1 removed for dialogue" in mailbox.subjects()
    cli("watch", "run", "--db", "archive.db", when="2017-06-30T19:06:00Z")
    assert len(hook.delivered()) == 2 and len(mailbox.messages) == 3, "nothing is delivered twice"
    assert entries(db, "dialogue").count(("removed", "r4.html", None)) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["remove", "nope"], "Error: no watch named 'nope'"),
    (["add", "w", "  "], "Error: the query is empty"),
    (["add", "w", "word " * 40], "Error: the search has 40 words or phrases; at most 32"),
    (["add", "w", "--", "-only -excluded"], "Error: nothing in the query"),  # (-- : QUERY starts with -)
    (["add", "w", "x", "--email", "not an address"], "Error: bad --email 'not an address'"),
    (["add", "w", "x", "--webhook", "ftp://example.org/hook"], "Error: bad webhook URL 'ftp://example.org/hook'"),
    (["add", "w", "x", "--type", "memo"], "Error: unknown --type 'memo'"),
    (["add", "w", "x", "--source", "nowhere"], "Error: unknown source 'nowhere'"),
    (["add", "bad name", "x"], "Error: bad watch name 'bad name'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    from archive.schema import open_archive

    open_archive(tmp_path / "archive.db").close()
    result = run_cli(["watch", args[0], "--db", "archive.db", *args[1:]], tmp_path, 60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr


def test_duplicate_name_and_link_local_webhook_refused(tmp_path):
    from archive.schema import open_archive
    from archive.watches import Watch, WatchError, add_watch
    from crawler.cli.watch import Refused, send_webhook, vetted_address

    db = open_archive(tmp_path / "archive.db")
    add_watch(db, Watch("w", "dialogue"), T0)
    with pytest.raises(WatchError, match="exists"):
        add_watch(db, Watch("w", "other"), T0)
    # Cloud metadata lives on link-local addresses: refused before any connection is made.
    with pytest.raises(Refused, match="link-local"):
        vetted_address("http://169.254.169.254/latest/meta-data/")
    assert vetted_address("http://127.0.0.1:9/hook") == ("127.0.0.1", 9, "127.0.0.1")
    watch = Watch("w", "dialogue", webhook="http://169.254.169.254/")
    attempts, error = send_webhook(watch, [{"id": 1, "kind": "new"}], time.monotonic() + 5)
    assert attempts == 1 and "link-local" in error, "a refused address is not tried again"


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed (.ci/run installs it)")
def test_ingest_runs_the_watches_when_a_worker_run_closes(tmp_path, site_server, redis_url, receiver):
    root = tmp_path / "site"
    root.mkdir()
    build_site(root, {**EN, **ZH})
    sources = sources_file(tmp_path, site_server(root).base_url)
    hook = receiver()
    added = run_cli(["watch", "add", "dialogue", '"Canada-China dialogue"', "--webhook", hook.url, "--db", "dist.db"],
                    tmp_path, 60)
    assert added.returncode == 0, added.stderr
    env = {**child_env(T0), **FAST}
    worker = run_cli(["crawl", "--sources", sources, "--redis", redis_url, "--seed", "--idle-exit", "2",
                      "--db", "w.db"], tmp_path, 180, when=T0, env=FAST)
    assert worker.returncode == 0, worker.stderr[-2000:]
    # The worker's items and its run's end wait in Redis (an ingester started first could idle out on a
    # loaded machine before the worker's first item).
    ingester = start_child([sys.executable, "-m", "crawler", "ingest", "--redis", redis_url, "--db", "dist.db",
                            "--idle-exit", "3"], tmp_path, env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    out, _ = ingester.communicate(timeout=180)
    assert ingester.returncode == 0, out
    assert "watch dialogue: 4 new, 0 changed, 0 removed; webhook 4 entries delivered" in out, out
    db = sqlite_utils.Database(tmp_path / "dist.db")
    assert sorted(entries(db, "dialogue")) == [("new", f"r{i}.html", 1) for i in range(1, 5)]
    (payload,) = hook.delivered()
    assert len(payload["entries"]) == 4


def test_a_delivery_setting_that_is_not_a_number_is_one_warning_and_the_default(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "PRESSARCHIVE_WEBHOOK_ATTEMPTS": "three", "PRESSARCHIVE_DELIVERY_BUDGET": "-5"}
    done = subprocess.run([sys.executable, "-c", "from crawler import settings as s; "
                           "print(s.PRESSARCHIVE_WEBHOOK_ATTEMPTS, s.PRESSARCHIVE_DELIVERY_BUDGET)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "30.0"]
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 2 and "Traceback" not in done.stderr
    assert "PRESSARCHIVE_WEBHOOK_ATTEMPTS='three' is not a number" in warnings[0]
    assert "PRESSARCHIVE_DELIVERY_BUDGET='-5'" in warnings[1]
