"""The release page and the archived original in a real headless Chromium.

The archive is made by a real crawl of the fixture site of ``tests/test_release_page.py``
(served on 127.0.0.1, WARC capture on) and served by the real ``pressarchive serve``. At
1280x900 and 390x844 (one browser per size): an English and a Chinese release have their
title on the first screen, not broken one character per line, and the first paragraph of
their text on the first screen; axe-core finds no serious or critical violation on the
release page and on the archived original. The archived original whose ``<script>`` would
set a marker and call the site back is opened: the marker is never set, and the fixture
site receives no request at all (not its script's, image's, stylesheet's, meta refresh's
or archived Refresh header's). Screenshots are saved in the test's tmp folder.
"""

from __future__ import annotations

import time

import pytest
from browsing import (
    DESKTOP,
    PHONE,
    axe_problems,
    chromium,
    line_count,
    needs_chromium,
    on_first_screen,
    serving,
)
from selenium.webdriver.common.by import By
from test_release_page import (
    EN_PARAGRAPHS,
    EN_TITLE,
    MARKER,
    ZH_PARAGRAPHS,
    ZH_TITLE,
    crawl_fixture_site,
)

from crawler.demo.server import SiteServer

pytestmark = needs_chromium
TIMERS_AS_MICROTASKS = """
window.setTimeout = function (callback) {
  var args = Array.prototype.slice.call(arguments, 2);
  Promise.resolve().then(function () { if (typeof callback === "function") { callback.apply(null, args); } });
  return 0;
};
window.clearTimeout = function () {};
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(archive, base URL of `pressarchive serve`, its log) for the module."""
    folder = tmp_path_factory.mktemp("release-browser")
    servers = []

    def start(root):
        servers.append(SiteServer(root).start())
        return servers[-1]

    try:
        archive = crawl_fixture_site(folder, start)
        with serving(archive.path) as (base, log):
            yield archive, base, log
    finally:
        for server in servers:
            server.stop()


def release_checks(driver, base, release_id, title, first_paragraph, shots, name):
    driver.get(f"{base}/archive/releases/{release_id}")
    driver.save_screenshot(str(shots / f"{name}.png"))
    assert driver.title == title
    h1 = driver.find_element(By.CSS_SELECTOR, "h1.release-title")
    assert h1.text == title
    assert on_first_screen(driver, h1)
    chars_per_line = len(title) / line_count(driver, h1)
    assert chars_per_line >= 8, f"{name}: the title takes {line_count(driver, h1)} lines for {len(title)} characters"
    first = driver.find_element(By.CSS_SELECTOR, ".release-text p")
    assert first.text == first_paragraph
    assert on_first_screen(driver, first), f"{name}: the text's first paragraph is below the first screen"
    width = driver.execute_script("return arguments[0].getBoundingClientRect().width", first)
    viewport = driver.execute_script("return window.innerWidth")
    assert width >= min(viewport - 60, 500), f"{name}: the text column is {width} px wide"
    # The copy button appears with JavaScript; the citation is selectable text either way.
    assert driver.find_element(By.CSS_SELECTOR, "button[data-copy='citation-text']").is_displayed()
    axe_clean(driver, name)


def axe_clean(driver, name):
    """No serious or critical axe-core violation, the BibTeX and CSL-JSON (in <details>) shown too."""
    driver.execute_script("document.querySelectorAll('details').forEach(function (d) { d.open = true; })")
    problems = axe_problems(driver)
    assert problems == [], f"{name}: {problems}"


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_release_pages_and_the_inert_original(served, tmp_path, size):
    archive, base, log = served
    with chromium(tmp_path / "profile", size) as driver:
        label = "desktop" if size == DESKTOP else "phone"
        release_checks(driver, base, archive.ids["maritime.html"], EN_TITLE, EN_PARAGRAPHS[0], tmp_path,
                       f"release-en-{label}")
        release_checks(driver, base, archive.ids["zh-statement.html"], ZH_TITLE, ZH_PARAGRAPHS[0], tmp_path,
                       f"release-zh-{label}")

        for page in ("edited.html", "removed.html"):  # versions with a diff; a removed release
            driver.get(f"{base}/archive/releases/{archive.ids[page]}")
            driver.save_screenshot(str(tmp_path / f"release-{page.split('.')[0]}-{label}.png"))
            axe_clean(driver, f"{page} ({label})")

        # The archived original, linked from the page: its script never runs, nothing is fetched.
        archive.server.reset_requests()
        driver.get(f"{base}/archive/releases/{archive.ids['maritime.html']}")
        driver.find_element(By.LINK_TEXT, "Archived original").click()
        original = f"{base}/-/original/archive/{archive.ids['maritime.html']}"
        assert driver.current_url == original
        time.sleep(1.5)  # time for a meta refresh (delay 0), the fetch and the image to happen
        driver.save_screenshot(str(tmp_path / f"original-{label}.png"))
        assert driver.current_url == original, "an archived refresh was followed"
        assert driver.title != MARKER and EN_TITLE in driver.title
        assert driver.find_element(By.TAG_NAME, "h1").text == EN_TITLE
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-marker") is None
        # Sandboxed: an opaque origin (no access to the site's storage or cookies), no scripting.
        assert driver.execute_script("return window.origin") == "null"
        # The sandbox disables scripting: WebDriver's own scripts still run, but no timer fires
        # (more proof that the page is inert). axe-core waits on setTimeout: run those
        # callbacks as microtasks for it, in this check only.
        driver.execute_script(TIMERS_AS_MICROTASKS)
        problems = axe_problems(driver)
        assert problems == [], f"archived original ({label}): {problems}"
        assert driver.execute_script("return window.name") != MARKER
        driver.get(f"{base}/archive/releases/{archive.ids['maritime.html']}")
        assert driver.execute_script("return window.localStorage.getItem('pressarchive-marker')") is None
        assert archive.server.paths == [], "the archived original made the browser call the site"
    assert "Traceback" not in log()
