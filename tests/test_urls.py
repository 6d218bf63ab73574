"""Unit tests for archive.urls: the archive's key of a release URL, and which URLs are fetched.

``tests/test_discovery.py`` and ``tests/test_hostile.py`` check a few variants of one
URL; here each rule of :func:`normalise_url` on its own, what it must leave alone
(path, query order, percent-encoding), and :func:`is_http_url` / :func:`scheme_twin`.
Host aliases are the registry's (``Source.canonical`` in ``crawler/sources.py``), not
this module's.
"""

from __future__ import annotations

import pytest

from archive.urls import (
    TRACKING_PARAMS,
    is_http_url,
    is_tracking_param,
    normalise_url,
    scheme_twin,
)

KEY = "https://www.example.gov/News/Statement.html?id=3"


@pytest.mark.parametrize(
    "variant",
    [
        KEY,
        "HTTPS://WWW.EXAMPLE.GOV/News/Statement.html?id=3",  # scheme and host case
        "https://www.example.gov:443/News/Statement.html?id=3",  # default port
        "https://www.example.gov/News/Statement.html?id=3#section-2",  # fragment
        "https://www.example.gov/News/Statement.html?id=3#",  # empty fragment
        "https://www.example.gov/News/Statement.html?id=3#!/route?x=1",  # hash-bang fragment
        "https://www.example.gov/News/Statement.html?utm_source=x&id=3&utm_medium=email",
        "https://www.example.gov/News/Statement.html?id=3&UTM_Campaign=x",  # tracking names are case-blind
        "  https://www.example.gov/News/Statement.html?id=3\n",  # surrounding whitespace
        "https://reader:secret@www.example.gov/News/Statement.html?id=3",  # credentials never kept
    ],
)
def test_variants_of_one_release_have_one_key(variant):
    assert normalise_url(variant) == KEY


@pytest.mark.parametrize(
    "url, key",
    [
        ("http://a.example:80/x", "http://a.example/x"),
        ("https://a.example:443/x", "https://a.example/x"),
        # another scheme's default port is not this one's
        ("https://a.example:80/x", "https://a.example:80/x"),
        ("http://a.example:443/x", "http://a.example:443/x"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
        ("http://A.Example:8080/x", "http://a.example:8080/x"),
    ],
)
def test_ports(url, key):
    assert normalise_url(url) == key


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example/News/Press-Release.HTML",  # path case is the server's business
        "https://a.example/news/",  # trailing slash kept: /news and /news/ may differ
        "https://a.example/news",
        "https://a.example/news//2017/",  # doubled slashes kept
        "https://a.example/%E4%B8%AD%E6%96%87/a%2Fb.html",  # percent-encoding kept as it is
        "https://a.example/%e4%b8%ad/",  # ... in lower case too
        "https://a.example/中文/新闻.html",  # raw non-ASCII path kept
        "https://a.example/x?b=2&a=1",  # query order kept
        "https://a.example/x?a=1&a=2",  # repeated parameters kept
        "https://a.example/x?q=%20x&r=1+2&s=%2F",  # query bytes kept when nothing is dropped
        "https://a.example/x?flag",  # a key without value
        "https://a.example/x?page=2&ref=home&source=rss",  # not tracking parameters
        "https://a.example./x",  # trailing dot of the host kept
    ],
)
def test_what_normalisation_leaves_alone(url):
    assert normalise_url(url) == url


def test_empty_path_becomes_slash_and_empty_query_goes():
    assert normalise_url("https://a.example") == "https://a.example/"
    assert normalise_url("https://a.example?") == "https://a.example/"
    assert normalise_url("https://a.example/x?") == "https://a.example/x"
    assert normalise_url("https://a.example/x?utm_source=feed") == "https://a.example/x"


def test_normalising_twice_changes_nothing():
    for url in ("HTTPS://A.example:443/x?utm_source=1&b=%20x#f", "http://a.example:8080", "https://a.example/x?a=1"):
        once = normalise_url(url)
        assert normalise_url(once) == once


@pytest.mark.parametrize(
    "name",
    sorted(TRACKING_PARAMS) + ["utm_source", "UTM_TERM", "pk_campaign", "mtm_source", "WT.mc_id", "wt.ac",
                               "__hstc", "__hssc", "__hsfp"],
)
def test_tracking_parameters_are_dropped(name):
    assert is_tracking_param(name)
    assert normalise_url(f"https://a.example/x?id=7&{name}=abc") == "https://a.example/x?id=7"


@pytest.mark.parametrize("name", ["id", "page", "ref", "source", "lang", "utm", "sharer", "fromdate", "spmx", "q"])
def test_ordinary_parameters_are_kept(name):
    assert not is_tracking_param(name)
    assert normalise_url(f"https://a.example/x?{name}=1&utm_source=f") == f"https://a.example/x?{name}=1"


@pytest.mark.parametrize("name", ["_hsenc", "_hsmi"])
def test_hubspot_single_underscore_parameters_are_dropped(name):
    assert normalise_url(f"https://a.example/x?id=7&{name}=abc") == "https://a.example/x?id=7"


@pytest.mark.parametrize("query", ["q=a%20b", "path=/en/news", "ids=1,2", "a=1;b=2", "flag", "q=%e4%b8%ad"])
def test_dropping_tracking_keeps_the_rest_of_the_query_as_it_was(query):
    base = "https://a.example/x?"
    assert normalise_url(f"{base}{query}&utm_source=feed") == normalise_url(base + query)


def test_dropping_tracking_keeps_plain_and_utf8_values_equal():
    base = "https://a.example/x?"
    for query in ("id=3&lang=en", "q=%E4%B8%AD%E6%96%87", "a=1&a=2", "empty="):
        assert normalise_url(f"{base}utm_source=x&{query}&fbclid=y") == base + query


def test_ipv6_host_keeps_its_brackets():
    assert normalise_url("https://[::1]:8443/x") == "https://[::1]:8443/x"
    assert normalise_url("https://[2001:DB8::1]:443/x") == "https://[2001:db8::1]/x"


@pytest.mark.parametrize(
    "url, fetched",
    [
        ("http://a.example", True),
        ("HTTPS://a.example/x", True),
        (" https://a.example/x ", True),
        ("http://127.0.0.1:8080/", True),
        ("https://[::1]/x", True),
        ("ftp://a.example/feed.xml", False),
        ("file:///etc/passwd", False),
        ("mailto:press@a.example", False),
        ("javascript:alert(1)", False),
        ("data:text/html,<p>x</p>", False),
        ("/relative/path.html", False),
        ("//a.example/protocol-relative", False),
        ("http://", False),
        ("https:///path-only", False),
        ("http://:80/", False),
        ("http://[::1", False),  # not a URL at all
        ("", False),
    ],
)
def test_is_http_url(url, fetched):
    assert is_http_url(url) is fetched


@pytest.mark.parametrize(
    "url, twin",
    [
        ("https://a.example/x?id=1", "http://a.example/x?id=1"),
        ("http://a.example/x?id=1", "https://a.example/x?id=1"),
        ("ftp://a.example/x", "ftp://a.example/x"),
        ("/relative", "/relative"),
    ],
)
def test_scheme_twin(url, twin):
    assert scheme_twin(url) == twin
    assert scheme_twin(scheme_twin(url)) == url

