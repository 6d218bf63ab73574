"""The timelines in a real headless Chromium, at desktop and phone sizes.

``pressarchive serve`` runs on 127.0.0.1 (tests/browsing.py) over the fixture archive of
tests/test_feeds.py (known published dates: 15 releases matching "cyber" over January to June
2024 from 7 sources, one undated). On the search results page and on a source's page the
chart must be drawn with the right number of months and bars, every bar visible with a height
in proportion to its count, the legend and the first and last month readable, the page as
wide as the window (nothing overflowing at 390 px); axe-core finds no serious or critical
violation; the "Atom feed of this search" link is on the page. Screenshots go to tmp_path.
"""

from __future__ import annotations

import pytest
from browsing import DESKTOP, PHONE, axe_problems, chromium, needs_chromium, serving
from selenium.webdriver.common.by import By
from test_feeds import build

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = build(tmp_path_factory.mktemp("timeline") / "archive.db")
    with serving(path) as (base, _log):
        yield base


def drawn_bars(driver) -> list[dict]:
    """Every bar as drawn: its month, count and rendered height in CSS pixels."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.pa-timeline svg rect.pa-bar')].map(r => ({"
        "month: r.parentNode.dataset.month, count: +r.dataset.count,"
        "height: r.getBoundingClientRect().height, width: r.getBoundingClientRect().width}));")


def check_chart(driver, months: int, bars: int, counts: dict, shot) -> None:
    svg = driver.find_element(By.CSS_SELECTOR, ".pa-timeline svg.pa-bars")
    assert svg.get_attribute("data-months") == str(months)
    groups = driver.find_elements(By.CSS_SELECTOR, ".pa-timeline svg g.pa-month")
    assert len(groups) == bars
    drawn = drawn_bars(driver)
    per_month: dict = {}
    for bar in drawn:
        assert bar["height"] > 0 and bar["width"] > 0, bar
        per_month[bar["month"]] = per_month.get(bar["month"], 0) + bar["count"]
    assert per_month == counts
    # heights are in proportion to the counts (one release: the same height everywhere)
    unit = [b["height"] / b["count"] for b in drawn]
    assert max(unit) - min(unit) < 0.5, unit
    # the chart fits the window; the page does not scroll sideways
    assert svg.rect["x"] >= 0 and svg.rect["x"] + svg.rect["width"] <= driver.execute_script(
        "return document.documentElement.clientWidth")
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    driver.execute_script("arguments[0].scrollIntoView()", svg)
    driver.save_screenshot(str(shot))
    assert axe_problems(driver) == []


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_timelines_render(served, tmp_path, size):
    with chromium(tmp_path / "profile", size) as driver:
        driver.get(f"{served}/archive/releases?_search=cyber")
        caption = driver.find_element(By.CSS_SELECTOR, ".pa-timeline figcaption").text
        assert caption.startswith("14 releases in 6 months, 2024-01 to 2024-06")
        legend = [" ".join(li.text.split()) for li in driver.find_elements(By.CSS_SELECTOR, ".pa-legend li")]
        assert legend == ["中华人民共和国外交部 4", "Global Affairs Canada 3", "U.S. State 2", "GOV.UK 2", "EEAS 1",
                          "Other sources (2) 2"]
        axis = driver.find_element(By.CSS_SELECTOR, ".pa-timeline .pa-axis").text.split()
        assert axis == ["2024-01", "2024-06"]
        check_chart(driver, 6, 6, {"2024-01": 4, "2024-02": 1, "2024-03": 3, "2024-04": 2, "2024-05": 1,
                                   "2024-06": 3}, tmp_path / f"results-{size[0]}.png")
        link = driver.find_element(By.LINK_TEXT, "Atom feed of this search")
        assert link.get_attribute("href") == f"{served}/archive/search_feed.atom?q=cyber"

        driver.get(f"{served}/archive/releases?_search=cyber&source_id=mfa_cn")
        check_chart(driver, 6, 3, {"2024-01": 2, "2024-03": 1, "2024-06": 1}, tmp_path / f"filtered-{size[0]}.png")

        driver.get(f"{served}/archive/sources/gc_ca")
        assert driver.find_element(By.CSS_SELECTOR, ".pa-timeline h2").text == "Releases per month"
        check_chart(driver, 8, 3, {"2024-01": 1, "2024-04": 2, "2024-08": 1}, tmp_path / f"source-{size[0]}.png")
