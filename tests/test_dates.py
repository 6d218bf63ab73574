"""Unit tests for pipelines.dates: the date parser and DateFinder's precedence rules.

``tests/test_extraction.py`` checks dates through ``extract()`` on fixture pages and
``tests/test_url_dates.py`` the URL-date rule in a real crawl; here each rule is
checked on its own, on small pages parsed by the extractor's own parser, with a
fixed fetch date, so a failure names the rule that broke.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from pipelines.dates import (
    MIN_DATE,
    URL_DATE_TOLERANCE_DAYS,
    DateFinder,
    dates_in_text,
    find_published,
    parse_date_value,
)
from pipelines.extraction.text import parse_html

FETCHED = date(2024, 1, 1)
HEADLINE = "Statement on maritime cooperation"
BODY = "<p>" + "The minister welcomed the agreement reached today between the two countries. " * 4 + "</p>"


def page(body: str = "", head: str = "", h1: str = HEADLINE):
    return parse_html(f"<html><head><title>{h1}</title>{head}</head><body><h1>{h1}</h1>{body}{BODY}</body></html>")


def best(body: str = "", head: str = "", *, url: str | None = None, language: str = "en", hints=None,
         fetched_on: date = FETCHED, notes: list | None = None):
    finder = DateFinder(page(body, head), url, fetched_on=fetched_on, language=language, headline=HEADLINE)
    return finder.best(hints, notes)


# --- parse_date_value: machine-readable values and written dates ---------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        # ISO 8601, with or without time and offset: the date as written (the publisher's day)
        ("2017-06-26", date(2017, 6, 26)),
        ("2017-06-26T10:00:00Z", date(2017, 6, 26)),
        ("2017-06-26T23:30:00-05:00", date(2017, 6, 26)),
        ("2017-06-26 08:00", date(2017, 6, 26)),
        ("2017/6/2", date(2017, 6, 2)),
        ("2017.06.26", date(2017, 6, 26)),
        # RFC 822 / 1123 (feeds)
        ("Mon, 26 Jun 2017 14:00:00 GMT", date(2017, 6, 26)),
        ("Thu, 01 Jun 2017 00:00:00 +0800", date(2017, 6, 1)),
        # compact (TRS ``t20170626_``, PubDate values)
        ("20170626", date(2017, 6, 26)),
        ("20170626_123", date(2017, 6, 26)),
        # Chinese, Korean, Japanese
        ("2017年6月26日", date(2017, 6, 26)),
        ("2017 年 06 月 26 日 10:00", date(2017, 6, 26)),
        ("2017년 6월 26일", date(2017, 6, 26)),
        ("令和元年5月1日", date(2019, 5, 1)),
        ("平成29年6月26日", date(2017, 6, 26)),
        ("昭和64年1月7日", date(1989, 1, 7)),
        # written English, day first and month first
        ("26 June 2017", date(2017, 6, 26)),
        ("26th June, 2017", date(2017, 6, 26)),
        ("June 26, 2017", date(2017, 6, 26)),
        ("Jun. 26 2017", date(2017, 6, 26)),
        ("Sept 5, 2017", date(2017, 9, 5)),
        ("5 Sept. 2017", date(2017, 9, 5)),
        # other languages' month names
        ("1er juin 2017", date(2017, 6, 1)),
        ("26 février 2017", date(2017, 2, 26)),
        ("26. März 2017", date(2017, 3, 26)),
        ("26 de junio de 2017", date(2017, 6, 26)),
        ("26 de março de 2017", date(2017, 3, 26)),
        ("12 dicembre 2019", date(2019, 12, 12)),
        ("5 mei 2020", date(2020, 5, 5)),
        # numeric day-first
        ("26.06.2017", date(2017, 6, 26)),
        ("26/06/2017", date(2017, 6, 26)),
        ("5.6.2017", date(2017, 6, 5)),
    ],
)
def test_parse_date_value_formats(value, expected):
    assert parse_date_value(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None, "", "   ",
        # relative or incomplete: no day, no year, no date at all
        "yesterday", "3 days ago", "last week", "June 2017", "26 June", "2017", "201706",
        # impossible dates
        "31 June 2017", "2017-13-01", "2017-02-30", "30.02.2017", "20171301", "20170230",
        # a month name inside a word, digits run together
        "Mayday 2017", "2017062", "0622017", "2017062612",
    ],
)
def test_parse_date_value_refuses_relative_incomplete_and_impossible(value):
    assert parse_date_value(value) is None


def test_text_dates_come_in_order_of_position():
    text = "Published 26 June 2017. Updated 2017-06-30. See also the statement of June 1, 2017."
    assert dates_in_text(text) == [(text.index("26 June"), date(2017, 6, 26)),
                                   (text.index("2017-06-30"), date(2017, 6, 30)),
                                   (text.index("June 1"), date(2017, 6, 1))]


def test_slash_dates_follow_day_first_and_the_impossible_reading_is_swapped():
    assert dates_in_text("03/04/2017") == [(0, date(2017, 4, 3))]
    assert dates_in_text("03/04/2017", day_first=False) == [(0, date(2017, 3, 4))]
    # Only slashes are read month first: 03.04.2017 is day first everywhere.
    assert dates_in_text("03.04.2017", day_first=False) == [(0, date(2017, 4, 3))]
    # A reading with a month over 12 is the other one, whatever day_first says.
    assert dates_in_text("13/04/2017", day_first=False) == [(0, date(2017, 4, 13))]
    assert dates_in_text("04/13/2017", day_first=True) == [(0, date(2017, 4, 13))]


@pytest.mark.parametrize("day_first", [True, False])
def test_us_numeric_date_with_a_late_day(day_first):
    assert dates_in_text("06/22/2017", day_first=day_first) == [(0, date(2017, 6, 22))]


# --- DateFinder: where a date comes from, strongest first ----------------------------------------


def test_publication_meta_ranks_and_modification_meta_is_never_used():
    head = ('<meta property="article:modified_time" content="2019-05-05">'
            '<meta name="dcterms.issued" content="2019-03-03">'
            '<meta property="article:published_time" content="2019-04-04">')
    assert best(head=head) == ("2019-04-04", "meta")  # article:published_time ranks above dcterms.issued
    # Only a modification date: never the publication date from metadata.
    only_modified = best(head='<meta property="article:modified_time" content="2019-05-05">')
    assert only_modified[1] != "meta"


def test_itemprop_date_published_on_an_element():
    body = '<p>Published <span itemprop="datePublished">June 5, 2019</span></p>'
    assert best(body) == ("2019-06-05", "meta")


def test_json_ld_date_published():
    head = '<script type="application/ld+json">{"@type": "NewsArticle", "datePublished": "2019-02-02T10:00Z"}</script>'
    assert best(head=head, body="<p>4 March 2019</p>") == ("2019-02-02", "json-ld")


def test_generic_meta_is_weaker_than_time_but_stronger_than_text():
    generic = '<meta name="date" content="2019-05-05">'
    assert best('<time datetime="2019-03-03">3 March</time>', generic) == ("2019-03-03", "time")
    assert best("<p>4 March 2019</p>", generic) == ("2019-05-05", "meta")


def test_time_element_labelled_modified_is_skipped():
    body = ('<p>Last modified: <time datetime="2019-05-05">5 May</time></p>'
            '<p><time datetime="2019-03-03">3 March</time></p>')
    assert best(body) == ("2019-03-03", "time")


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://x.example/2019/03/03/statement", "2019-03-03"),
        ("https://x.example/news/2019/3/3/statement", "2019-03-03"),
        ("https://x.example/news/2019-03-03-statement", "2019-03-03"),
        ("https://x.example/eng/201903/t20190303_123.html", "2019-03-03"),
        ("https://x.example/news/20190303/statement", "2019-03-03"),
        ("https://x.example/2019/03/03", "2019-03-03"),
    ],
)
def test_url_dates(url, expected):
    assert best(url=url) == (expected, "url")


@pytest.mark.parametrize("url", [
    "https://x.example/news/20191303/statement",  # month 13
    "https://x.example/news/2019/02/30/statement",  # no such day
    "https://x.example/2025/01/01/statement",  # after the fetch
    "https://x.example/1989/12/31/statement",  # before MIN_DATE
    "https://x.example/news/statement-2019",  # a year is not a date
    "https://20190303.example/news/statement",  # the host is not the path
])
def test_url_without_a_usable_date(url):
    assert best(url=url)[1] != "url"


def test_url_date_tolerance_is_3_days_either_way():
    assert URL_DATE_TOLERANCE_DAYS == 3
    url = "https://x.example/2019/03/10/statement"
    for printed, expected in [("2019-03-10", ("2019-03-10", "url")), ("2019-03-13", ("2019-03-10", "url")),
                              ("2019-03-07", ("2019-03-10", "url")), ("2019-03-14", ("2019-03-14", "text")),
                              ("2019-03-06", ("2019-03-06", "text"))]:
        notes = []
        assert best(f"<p>Published: {printed}</p>", url=url, notes=notes) == expected, printed
        if expected[1] == "url":
            assert notes == []
        else:
            assert notes == [f"the URL says 2019-03-10 but the page prints {printed} (text); the page's date is kept"]


def test_url_date_against_a_time_element_names_it():
    notes = []
    body = '<time datetime="2022-03-07T15:00">7 March 2022</time>'
    found = best(body, url="https://x.example/202405/t20240530_1.html", fetched_on=date(2024, 6, 1), notes=notes)
    assert found == ("2022-03-07", "time")
    assert notes == ["the URL says 2024-05-30 but the page prints 2022-03-07 (time); the page's date is kept"]


def test_url_date_stands_against_dates_the_page_does_not_claim_as_publication():
    url = "https://x.example/2019/03/03/statement"
    # a modification date, a date after the fetch, a date before MIN_DATE: none outvotes the URL
    for body in ("<p>Updated: 2019-03-20</p>", "<p>Published: 2030-01-01</p>", "<p>Published: 1980-01-01</p>"):
        notes = []
        assert best(body, url=url, notes=notes) == ("2019-03-03", "url"), body
        assert notes == []


def test_meta_beats_a_url_date_without_any_note():
    notes = []
    head = '<meta property="article:published_time" content="2019-03-20">'
    assert best("<p>Published: 2019-03-25</p>", head, url="https://x.example/2019/03/03/s", notes=notes) == (
        "2019-03-20", "meta")
    assert notes == []


@pytest.mark.parametrize(
    "hints, expected",
    [
        ({"date": "2019-01-01"}, ("2019-01-01", "feed")),  # no date_source: a feed's date
        ({"date": "Tue, 01 Jan 2019 10:00:00 GMT", "date_source": "feed"}, ("2019-01-01", "feed")),
        ({"date": "2019-01-01", "date_source": "listing"}, ("2019-01-01", "listing")),
        ({"date": "2019-01-01", "date_source": "sitemap"}, ("2019-01-01", "sitemap")),
        ({"date": "not a date", "date_source": "feed"}, (None, None)),
        ({"date": "1985-01-01", "date_source": "feed"}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_hints_when_the_page_has_no_date(hints, expected):
    assert best(hints=hints) == expected


def test_the_full_precedence_chain():
    """Each source beats every weaker one present on the same page."""
    layers = [
        ("meta", '<meta name="dcterms.issued" content="2019-01-10">', "", None),
        ("json-ld", '<script type="application/ld+json">{"datePublished": "2019-01-09"}</script>', "", None),
        ("url", "", "", "https://x.example/2019/01/08/statement"),
        ("feed", "", "", None),
        ("time", "", '<time datetime="2019-01-07">7 January</time>', None),
        ("meta", '<meta name="date" content="2019-01-06">', "", None),
        ("listing", "", "", None),
        ("text", "", "<p>5 January 2019</p>", None),
        ("sitemap", "", "", None),
    ]
    hint_dates = {"feed": "2019-01-08", "listing": "2019-01-06", "sitemap": "2019-01-05"}
    for strongest in range(len(layers)):
        present = layers[strongest:]
        head = "".join(layer[1] for layer in present)
        body = "".join(layer[2] for layer in present)
        url = next((layer[3] for layer in present if layer[3]), None)
        source = present[0][0]
        hints = next(({"date": hint_dates[name], "date_source": name} for name, *_ in present if name in hint_dates),
                     None)
        found = best(body, head, url=url, hints=hints)
        assert found[1] == source, (source, found)


# --- the visible text --------------------------------------------------------------------------


def test_labelled_date_beats_a_nearer_unlabelled_one():
    body = "<p>Ottawa, 2 March 2019</p><p>Published: 1 March 2019</p>"
    assert best(body) == ("2019-03-01", "text")


def test_chinese_label():
    body = "<p>来源：外交部</p><p>发布时间：2017年6月26日 10:00</p>"
    assert best(body, language="zh") == ("2017-06-26", "text")


def test_modification_and_copyright_dates_are_not_publication_dates():
    body = "<p>Last updated: 5 March 2019</p><p>© 12 January 2018</p><p>1 March 2019</p>"
    assert best(body) == ("2019-03-01", "text")
    assert best("<p>Last updated: 5 March 2019</p>")[1] != "text"


def test_an_unlabelled_date_far_from_the_headline_is_not_taken():
    far = "<p>" + "Background of the cooperation between the two countries. " * 40 + "</p><p>1 March 2019</p>"
    assert len(far) > 1500
    assert best(far)[1] != "text"
    # The same date just below the headline is.
    assert best("<p>1 March 2019</p>") == ("2019-03-01", "text")


def test_dates_after_the_headline_are_preferred_to_dates_before_it():
    tree = parse_html(f"<html><body><p>4 March 2019</p><h1>{HEADLINE}</h1><p>1 March 2019</p>{BODY}</body></html>")
    finder = DateFinder(tree, None, fetched_on=FETCHED, language="en", headline=HEADLINE)
    assert finder.from_text() == date(2019, 3, 1)


def test_date_never_after_the_fetch_nor_before_min_date():
    assert MIN_DATE == date(1990, 1, 1)
    head = '<meta property="article:published_time" content="2019-03-03">'
    assert best(head=head, fetched_on=date(2019, 3, 3)) == ("2019-03-03", "meta")  # the fetch day itself is fine
    assert best(head=head, fetched_on=date(2019, 3, 2))[0] != "2019-03-03"
    assert best("<p>Published: 31 December 1989</p>") == (None, None)
    assert best("<p>Published: 1 January 1990</p>") == ("1990-01-01", "text")


def test_headline_anchor_follows_the_title_not_only_the_h1():
    """The title may be in a <div>; the date printed next to it is found by the title's words."""
    tree = parse_html(f"<html><body><div class='nav'><p>9 January 2019</p></div>{'<p>menu</p>' * 3}"
                      f"<div class='title'>{HEADLINE}</div><p>1 March 2019</p>{BODY}</body></html>")
    finder = DateFinder(tree, None, fetched_on=FETCHED, language="en", headline=HEADLINE)
    assert finder.from_text() == date(2019, 3, 1)


def test_day_first_by_language():
    assert best("<p>Published: 03/04/2019</p>", language="en", url="https://example.org/x") == ("2019-03-04", "text")
    assert best("<p>Publié le : 03/04/2019</p>", language="fr", url="https://example.org/x") == ("2019-04-03", "text")


def test_us_government_english_pages_read_slashes_month_first():
    assert best("<p>Published: 03/04/2019</p>", language="en", url="https://www.state.gov/x") == ("2019-03-04", "text")


def test_find_published_refuses_dates_after_the_fetch_day():
    tree = page("<p>Published: 1 January 2024</p>")
    fetched = datetime(2024, 1, 1, 0, 30, tzinfo=timezone.utc)
    assert find_published(tree, None, fetched_at=fetched, language="en", headline=HEADLINE) == ("2024-01-01", "text")
    assert find_published(tree, None, fetched_at=datetime(2023, 12, 31, 23, 30, tzinfo=timezone.utc),
                          language="en", headline=HEADLINE)[0] != "2024-01-01"


def test_find_published_compares_with_the_fetch_day_in_utc():
    tree = page("<p>Published: 1 January 2024</p>")
    # 20:00 on 31 December in New York is 01:00 on 1 January in UTC: the date is not in the future.
    fetched = datetime(2023, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert find_published(tree, None, fetched_at=fetched, language="en", headline=HEADLINE) == ("2024-01-01", "text")


def test_printed_reports_time_before_text():
    finder = DateFinder(page('<p>4 March 2019</p><time datetime="2019-03-03">3 March</time>'), None,
                        fetched_on=FETCHED, language="en", headline=HEADLINE)
    assert finder.printed() == (date(2019, 3, 3), "time")
    assert DateFinder(page(), None, fetched_on=FETCHED, language="en", headline=HEADLINE).printed() is None
