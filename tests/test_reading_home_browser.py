"""The home and search-results pages in a real headless Chromium, at desktop and phone sizes.

``pressarchive serve`` runs on 127.0.0.1 (tests/browsing.py); one browser per window size
visits the home page, English and Chinese results (newest first) and the ranked search.
On each: the title is on the first screen and not broken one character per line; on
results pages the search box and the first result are on the first screen too; axe-core
finds no serious or critical violation. Screenshots are saved under the test's tmp_path
for a human to look at.
"""

from __future__ import annotations

import urllib.parse

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

from archive.schema import open_archive
from archive.search_index import ensure_search, index_releases

pytestmark = needs_chromium

LONG_ZH = "中华人民共和国外交部发言人就美方宣布对华加征关税和所谓网络安全问题答记者问"
RELEASES = [
    # id, source, language, published, type, title, text
    (1, "mfa_cn", "zh", "2024-06-02", "press_conference", LONG_ZH,
     "问：美方宣布对华加征关税。你对此有何评论？\n答：中方坚决反对。网络安全是全球性挑战，各国应通过对话合作加以应对。"),
    (2, "gc_ca", "en", "2024-06-01", "joint_statement",
     ("Joint statement by Canada and the People's Republic of China on not conducting or knowingly "
      "supporting cyber-enabled theft of intellectual property"),
     ("Canada and China agreed that neither country's government would conduct or knowingly support "
      "cyber-enabled theft of intellectual property, including trade secrets or other confidential "
      "business information, with the intent of providing competitive advantages to companies or "
      "commercial sectors.")),
    (3, "mfa_cn", "zh", "2024-05-01", "statement", "关于网络安全的声明", "中国政府高度重视网络安全。"),
    (4, "gc_ca", "en", "2023-01-01", "readout", "Readout of a call on cyber security",
     "The ministers discussed cyber security and intellectual property."),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("reading") / "archive.db"
    db = open_archive(path)
    ensure_search(db)
    with db.conn:
        db["sources"].insert_all([{"id": "mfa_cn", "name": "外交部 Ministry of Foreign Affairs", "country": "CN"},
                                  {"id": "gc_ca", "name": "Global Affairs Canada", "country": "CA"}],
                                 pk="id", replace=True)
        db["releases"].insert_all(
            {"id": rid, "source_id": source, "language": language, "published": published,
             "year": int(published[:4]), "statement_type": stype, "title": title, "text": text,
             "url": f"https://example.org/{rid}", "status": "live"}
            for rid, source, language, published, stype, title, text in RELEASES
        )
        index_releases(db, [row[0] for row in RELEASES])
    db.close()
    with serving(path) as (base, log):
        yield base, log


def check_title(driver, css: str, text: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.CSS_SELECTOR, css)
    if text is not None:
        assert element.text == text
    assert on_first_screen(driver, element), (driver.current_url, css)
    # one character per line would make a 38-character title ~38 lines: at least 8 characters a line
    lines = line_count(driver, element)
    assert lines <= len(element.text) / 8 + 1, (driver.current_url, css, lines)
    # room for at least 12 Chinese characters a line (one is one em wide)
    font = driver.execute_script("return parseFloat(getComputedStyle(arguments[0]).fontSize)", element)
    assert element.rect["width"] >= 12 * font, (driver.current_url, css, element.rect["width"], font)


def check_axe(driver) -> None:
    problems = axe_problems(driver)
    assert problems == [], (driver.current_url, problems)


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_home_and_results_read_well(served, tmp_path, size):
    from selenium.webdriver.common.by import By

    base, log = served
    name = "desktop" if size == DESKTOP else "phone"
    with chromium(tmp_path / "profile", size) as driver:
        # home: the title, the box; what the archive holds
        driver.get(f"{base}/archive")
        check_title(driver, ".pa-home h1", "Press archive of official statements")
        assert on_first_screen(driver, driver.find_element(By.CSS_SELECTOR, "input.pa-q"))
        assert "4" in driver.find_element(By.CSS_SELECTOR, ".pa-facts dd").text
        driver.save_screenshot(str(tmp_path / f"home-{name}.png"))
        check_axe(driver)

        pages = [
            ("results-english", "/archive/releases?" + urllib.parse.urlencode({"_search": "intellectual property"}),
             RELEASES[1][5]),
            ("results-chinese", "/archive/releases?" + urllib.parse.urlencode({"_search": "网络安全"}), LONG_ZH),
            ("best-match-chinese", "/archive/search?" + urllib.parse.urlencode({"q": "网络安全"}), RELEASES[2][5]),
        ]
        for shot, path, first_title in pages:
            driver.get(base + path)
            assert driver.title and "select" not in driver.title.lower(), driver.title
            box = driver.find_element(By.CSS_SELECTOR, "input.pa-q")
            assert on_first_screen(driver, box), shot
            check_title(driver, ".pa-results .pa-result:first-child .pa-title", first_title)
            assert on_first_screen(driver, driver.find_element(By.CSS_SELECTOR, ".pa-results .pa-result:first-child"))
            marks = driver.find_elements(By.CSS_SELECTOR, ".pa-result:first-child .pa-snippet mark")
            assert marks, shot
            # no horizontal scrolling: the page fits the window
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, (shot, overflow)
            driver.save_screenshot(str(tmp_path / f"{shot}-{name}.png"))
            check_axe(driver)
    assert (tmp_path / f"results-chinese-{name}.png").stat().st_size > 10_000
    assert "Traceback" not in log()
