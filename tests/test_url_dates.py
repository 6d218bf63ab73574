"""A date in the URL never beats a different date printed in the page (#19).

PRC MFA's 2024 migration re-issued older English items under ``202405/t20240530_*``:
the URL (and the source's ``date_from_url``) says 2024-05-30, the page still prints
the day of the press conference. A real crawl of a local site on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlite_utils

ROOT = Path(__file__).resolve().parent.parent


def mfa_page(title: str, printed: str) -> str:
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title></head><body>
<div class="header"><a href="/eng/">Ministry of Foreign Affairs of the People's Republic of China</a></div>
<div class="news-main"><div class="news-title"><h1>{title}</h1>
<p class="time">{printed} 15:00</p></div>
<div class="news-main-content">
<p>Spokesperson: The Chinese side has noted the reports. China firmly opposes all forms of cyber attacks
and cyber-enabled theft, and has taken part in dialogue with the countries concerned on this matter.</p>
<p>Question: Could you share more details on the arrangements for the upcoming dialogue and on its agenda?</p>
<p>Spokesperson: We will release information in due course. Please check back for updates on this website.</p>
</div></div><div class="footer">Copyright Ministry of Foreign Affairs</div></body></html>"""


def test_a_restamped_url_date_loses_to_the_printed_date(tmp_path, site_server):
    root = tmp_path / "mfa"
    folder = root / "eng" / "xw" / "fyrbt" / "lxjzh" / "202405"
    folder.mkdir(parents=True)
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    pages = {
        # migrated: the URL says 2024-05-30, the page the real day of 2022
        "t20240530_11332503.html": mfa_page("Foreign Ministry Spokesperson's Regular Press Conference on March 7, 2022",
                                            "2022-03-07"),
        # new: URL and page agree
        "t20240528_11330000.html": mfa_page("Foreign Ministry Spokesperson's Regular Press Conference on May 28, 2024",
                                            "2024-05-28"),
    }
    for name, html in pages.items():
        (folder / name).write_text(html, encoding="utf-8")
    (root / "eng" / "xw" / "fyrbt" / "lxjzh" / "index.html").write_text(
        "<html><body><ul>" + "".join(f'<li><a href="./202405/{n}">{n}</a></li>' for n in pages) + "</ul></body></html>")
    server = site_server(root)
    sources = tmp_path / "sources.toml"
    sources.write_text(f"""[[sources]]
id = "cn-mfa-en"
name = "MFA (fixture)"
country = "CN"
kind = "foreign_ministry"
languages = ["en"]
listings = ["{server.base_url}/eng/xw/fyrbt/lxjzh/"]
article_pattern = '/eng/xw/fyrbt/lxjzh/\\d{{6}}/t\\d{{8}}_\\d+\\.html$'
date_from_url = 't(\\d{{8}})_'
delay = 0
""")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "crawler", "crawl", "--sources", str(sources), "--db", "archive.db",
                           "--no-warc"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["url"].rsplit("/", 1)[1]: r for r in
            sqlite_utils.Database(tmp_path / "archive.db").query("select url, published, date_source from releases")}
    migrated, fresh = rows["t20240530_11332503.html"], rows["t20240528_11330000.html"]
    assert (migrated["published"], migrated["date_source"]) == ("2022-03-07", "text")
    assert (fresh["published"], fresh["date_source"]) == ("2024-05-28", "url")
    lines = [line for line in done.stderr.splitlines() if "t20240530_11332503" in line and "URL says" in line]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "2024-05-30" in lines[0] and "2022-03-07" in lines[0] and "cn-mfa-en" in lines[0]


def test_the_generic_url_date_is_checked_too(tmp_path):
    """Without ``date_from_url``: a date-bearing URL is still checked against the page."""
    page = tmp_path / "page.html"
    page.write_text(mfa_page("Regular Press Conference on March 7, 2022", "2022-03-07"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "crawler", "extract", str(page), "--url",
                           "https://www.mfa.gov.cn/eng/xw/fyrbt/lxjzh/202405/t20240530_11332503.html"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    import json

    data = json.loads(done.stdout)
    assert (data["published"], data["date_source"]) == ("2022-03-07", "text")
    (warning,) = done.stderr.strip().splitlines()
    assert warning.startswith("Warning: ") and "2024-05-30" in warning and "2022-03-07" in warning
