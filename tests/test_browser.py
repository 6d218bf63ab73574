"""A real browser searches the served archive.

Starts the real ``serve`` command on 127.0.0.1 as a subprocess and drives
Debian's headless Chromium through Selenium: an English and a Chinese query
typed into the releases table's search box must list the expected releases.
Needs the apt packages ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.schema import open_archive
from pipelines.search_index import ensure_search, index_releases

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", "from crawler.serve import serve_command; serve_command()",
               "--db", str(path), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/-/versions.json", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"serve did not start: {process.stdout.read().decode()}")
            time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(timeout=10)


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
    cells = driver.find_elements(By.CSS_SELECTOR, "table.rows-and-columns td.col-title")
    return [cell.text for cell in cells]


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
