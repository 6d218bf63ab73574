"""A real browser searches the served archive.

Starts the real ``serve`` command on 127.0.0.1 as a subprocess and drives
Debian's headless Chromium through Selenium: an English and a Chinese query
typed into the releases table's search box must list the expected releases,
and on the crawled ~2,400-release archive of ``tests/gensite.py`` (fixture
``generated_archive``) the count shown for a query matching more than 500
releases must be the exact number of matches.
Needs the apt packages ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import unicodedata
from pathlib import Path

import pytest
from browsing import serving

from archive.schema import open_archive
from archive.search_index import ensure_search, index_releases

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
ROOT = Path(__file__).resolve().parent.parent

RELEASES = [
    (1, "Statement on software exports", "en", "2024-06-01", "The software industry matters."),
    (2, "Remarks on the war", "en", "2024-05-01", "The war must end now."),
    (3, "关于网络安全的声明", "zh", "2024-04-01", "中国政府高度重视网络安全。"),
    (4, "知识产权保护", "zh", "2024-03-01", "加强知识产权保护。"),
]


@pytest.fixture
def server(tmp_path):
    path = tmp_path / "archive.db"
    db = open_archive(path)
    ensure_search(db)
    with db.conn:
        db["releases"].insert_all(
            {"id": i, "title": title, "language": lang, "published": published, "year": 2024,
             "text": text, "url": f"https://example.org/{i}", "source_id": "demo"}
            for i, title, lang, published, text in RELEASES
        )
        index_releases(db, [r[0] for r in RELEASES])
    db.close()
    with serving(path) as (base, _log):
        yield base


@pytest.fixture
def generated_server(generated_archive, tmp_path):
    """The crawled generated archive, served by ``pressarchive serve`` from a copy (serve may
    update the search index; the session's archive stays as the crawl left it)."""
    copy = tmp_path / "archive.db"
    source = sqlite3.connect(f"file:{generated_archive.path}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    with serving(copy) as (base, _log):
        yield base, copy


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--window-size=1280,1600", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def search_in_box(driver, base: str, query: str) -> list[str]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/archive/releases")
    box = driver.find_element(By.ID, "_search")
    box.clear()
    box.send_keys(query, Keys.ENTER)
    WebDriverWait(driver, 15).until(expected_conditions.url_contains("_search="))
    titles = driver.find_elements(By.CSS_SELECTOR, "ol.pa-results .pa-title")  # the reading list
    return [title.text for title in titles]


def test_search_box_in_english_and_chinese(server, browser, tmp_path):
    assert search_in_box(browser, server, "war") == ["Remarks on the war"]
    browser.save_screenshot(str(tmp_path / "search-english.png"))
    assert search_in_box(browser, server, "网络") == ["关于网络安全的声明"]
    assert search_in_box(browser, server, "知识产权") == ["知识产权保护"]
    shot = tmp_path / "search-chinese.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_ranked_search_highlights_matches(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/archive/search?q=%E7%BD%91%E7%BB%9C")  # 网络
    marks = browser.find_elements(By.CSS_SELECTOR, "span.snippet mark")
    assert [mark.text for mark in marks] == ["网络"]
    browser.save_screenshot(str(tmp_path / "ranked-search.png"))


def matching_rows(path: Path, field_matches) -> list[sqlite3.Row]:
    """Releases whose title or text matches, computed from the rows (not the search index)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("select id, title, text, published from releases").fetchall()
    finally:
        conn.close()
    return [r for r in rows if field_matches(r["title"] or "") or field_matches(r["text"] or "")]


GENERATED_QUERIES = [
    # typed into the box, truth on one field (title or text)
    ("sanctions", lambda field: bool(re.search(r"(?<!\w)sanctions(?!\w)", field, re.IGNORECASE))),
    ("网络", lambda field: "网络" in unicodedata.normalize("NFKC", field)),
    ('"intellectual property"',
     lambda field: bool(re.search(r"(?<!\w)intellectual\W+property(?!\w)", field, re.IGNORECASE))),
]


def test_search_box_shows_the_exact_count_of_many_matches(generated_server, browser, tmp_path):
    """A query matching more than 500 of ~2,400 crawled releases: the page says how many, exactly
    ("1,195 releases match ..."), and lists the newest match first."""
    from selenium.webdriver.common.by import By

    base, path = generated_server
    for query, field_matches in GENERATED_QUERIES:
        matches = matching_rows(path, field_matches)
        assert len(matches) > 500, query
        titles = search_in_box(browser, base, query)
        totals = [p.text for p in browser.find_elements(By.ID, "pa-total")]
        assert len(totals) == 1, totals
        assert re.match(rf"{len(matches):,} releases match\b", totals[0]), (query, totals[0], len(matches))
        newest = sorted(sorted(matches, key=lambda r: r["id"]), key=lambda r: r["published"], reverse=True)
        assert titles[:3] == [r["title"] for r in newest[:3]], query
    shot = tmp_path / "search-generated.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
