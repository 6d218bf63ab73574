"""Hostile registries: patterns that backtrack for ever, values that are not numbers, selectors
that are not CSS. Each is refused by `pressarchive sources` (the installed CLI, in a child
process: RE2 and cssselect would print to the real stderr, which CliRunner does not see) with
one line naming the file, the source and the key, exit code 2; and a registry pattern that
would backtrack for a day in Python's ``re`` crawls a hostile link in microseconds (RE2).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils

from archive.statement_type import classify
from crawler.sources import (
    MAX_URL_CHARS,
    Source,
    SourceError,
    load_sources,
    url_pattern,
)
from pipelines.cleaning import url_date

CLI = Path(sys.executable).with_name("pressarchive")
BASE = {
    "id": '"hostile-a"',
    "name": '"Hostile A"',
    "country": '"CA"',
    "kind": '"government"',
    "languages": '["en"]',
    "feeds": '["http://127.0.0.1:8000/feed.xml"]',
    "article_pattern": r"'/news/\d{4}/'",
    "delay": "0",
}


def registry(changes: dict | None = None, tail: str = "") -> str:
    """BASE with ``changes`` (raw TOML values; None drops the key), then ``tail`` (tables)."""
    values = {**BASE, **(changes or {})}
    body = "".join(f"{key} = {value}\n" for key, value in values.items() if value is not None)
    return "[[sources]]\n" + body + tail


DEEP_CSS = ":is(" * 200 + "p" + ")" * 200
# label, registry text, source named in the message, key named, words the message must hold
CASES = [
    # regexes RE2 cannot run, with the RE2 way to say it
    ("lookahead", registry({"article_pattern": r"'(a+)+$|^https?://[^/]+/(?!tag/)[a-z]+/$'"}), "hostile-a",
     "article_pattern", ("RE2 has no lookahead; match the releases with article_pattern and the URLs to leave out "
                         "with article_exclude")),
    ("lookbehind", registry(tail="statement_types = { '(?<=/)notice' = \"notice\" }\n"), "hostile-a",
     "statement_types", "'(?<=/)notice': RE2 (the safe regex engine) rejects it"),
    ("backreference", registry({"article_pattern": r"'/(\d+)/\1'"}), "hostile-a", "article_pattern",
     "RE2 has no backreferences"),
    ("python end anchor", registry({"pagination_pattern": r"'\?page=\d+\Z'"}), "hostile-a", "pagination_pattern",
     r"write \z (or $)"),
    ("atomic group", registry({"article_pattern": r"'/news/(?>\d+)/'"}), "hostile-a", "article_pattern",
     "RE2 needs no atomic groups"),
    ("possessive", registry({"article_pattern": r"'/news/\d++/'"}), "hostile-a", "article_pattern",
     "drop the second +"),
    ("verbose flag", registry({"article_pattern": r"'(?x) /news/ \d+'"}), "hostile-a", "article_pattern",
     "no verbose mode"),
    ("python {,n}", registry({"article_pattern": r"'/news/\d{,4}/'"}), "hostile-a", "article_pattern",
     "'{,4}' repeats 0 to 4 times in Python but is literal text in RE2: write {0,4}"),
    ("huge repeat", registry({"article_pattern": r"'/news/\d{5000}'"}), "hostile-a", "article_pattern",
     "RE2 repeats at most {1000} times"),
    ("broken regex", registry({"article_pattern": "'/news/(['"}), "hostile-a", "article_pattern",
     "bad regular expression"),
    ("empty pattern", registry({"article_pattern": "''"}), "hostile-a", "article_pattern",
     "empty regular expression"),
    ("matches everything", registry({"pagination_pattern": "'(page)?'"}), "hostile-a", "pagination_pattern",
     "matches every URL"),
    ("bad exclude", registry({"article_exclude": r"'/tag/(?=x)'"}), "hostile-a", "article_exclude",
     "RE2 has no lookahead; rewrite the pattern without it"),
    # date_from_url that can never give a date
    ("date 6 digits", registry({"date_from_url": r"'t(\d{6})_'"}), "hostile-a", "date_from_url",
     r"its group (\d{6}) cannot match 8 digits YYYYMMDD"),
    ("date no group", registry({"date_from_url": r"'t\d{8}_'"}), "hostile-a", "date_from_url",
     "needs one group of 8 digits"),
    ("date letters for y", registry({"date_from_url": r"'/(?P<y>[a-z]{4})/(?P<m>\d\d)/(?P<d>\d\d)/'"}),
     "hostile-a", "date_from_url", "group y ([a-z]{4}) cannot match a year"),
    ("date month 13+", registry({"date_from_url": r"'/(?P<y>\d{4})/(?P<m>[2-9]\d)/(?P<d>\d\d)/'"}),
     "hostile-a", "date_from_url", "group m ([2-9]\\d) cannot match a month"),
    ("date lookahead", registry({"date_from_url": r"'t(\d{8})(?=_)'"}), "hostile-a", "date_from_url",
     "RE2 has no lookahead"),
    # selectors that are not CSS, or not elements where elements are needed
    ("css syntax", registry(tail="[sources.selectors]\ntitle = ['h1', 'div..title']\n"), "hostile-a", "selectors",
     "title: 'div..title' is not a valid CSS selector"),
    ("css unquoted attribute", registry(tail="[sources.selectors]\ntitle = ['meta[property=og:title]::attr(content)']\n"),
     "hostile-a", "selectors", "is not a valid CSS selector"),
    ("css unknown pseudo", registry(tail="[sources.selectors]\ndate = ['time::datetime']\n"), "hostile-a",
     "selectors", "date: 'time::datetime' is not a valid CSS selector"),
    ("css text in remove", registry(tail="[sources.selectors]\nremove = ['p::text']\n"), "hostile-a", "selectors",
     "remove: 'p::text' selects text or an attribute"),
    ("css empty", registry(tail="[sources.selectors]\nbody = ['  ']\n"), "hostile-a", "selectors",
     "body: empty CSS selector"),
    ("css too deep", registry(tail=f"[sources.selectors]\nbody = ['{DEEP_CSS}']\n"), "hostile-a", "selectors",
     "body:"),
    ("css too long", registry(tail="[sources.selectors]\nbody = ['" + "div " * 400 + "']\n"), "hostile-a",
     "selectors", "CSS selector of 1,600 characters"),
    # numbers that are not numbers, or absurd
    ("delay nan", registry({"delay": "nan"}), "hostile-a", "delay", "must be a finite number of seconds, not nan"),
    ("delay inf", registry({"delay": "inf"}), "hostile-a", "delay", "must be a finite number of seconds, not inf"),
    ("delay overflow", registry({"delay": "1e400"}), "hostile-a", "delay", "not inf"),
    ("delay -inf", registry({"delay": "-inf"}), "hostile-a", "delay", "not -inf"),
    ("delay over a day", registry({"delay": "100000"}), "hostile-a", "delay", "at most 86,400 seconds"),
    ("delay 400 digits", registry({"delay": "1" + "0" * 400}), "hostile-a", "delay", "at most 86,400 seconds"),
    ("delay bool", registry({"delay": "true"}), "hostile-a", "delay", "expected a number, got a boolean"),
    ("max_pages negative", registry({"max_pages": "-5"}), "hostile-a", "max_pages", "between 1 and 100,000"),
    ("max_pages float", registry({"max_pages": "2.5"}), "hostile-a", "max_pages", "expected an integer, got float"),
    ("max_pages huge", registry({"max_pages": "9223372036854775807"}), "hostile-a", "max_pages",
     "between 1 and 100,000"),
    ("max_pages bool", registry({"max_pages": "true"}), "hostile-a", "max_pages", "got a boolean"),
    ("api size 0", registry({"feeds": None}, "[[sources.json_api]]\nurl = 'http://127.0.0.1:8000/api?page={page}'\n"
                                             "url_field = 'link'\nsize = 0\n"), "hostile-a", "json_api",
     "size must be between 1 and 1,000"),
    ("api max_pages bool", registry({"feeds": None}, "[[sources.json_api]]\nurl = 'http://127.0.0.1:8000/api'\n"
                                                     "url_field = 'link'\nmax_pages = true\n"), "hostile-a",
     "json_api", "'max_pages' must be an integer"),
    # wrong types, empty strings, URLs that are not http(s) URLs
    ("feeds not strings", registry({"feeds": "[1]"}), "hostile-a", "feeds", "expected a list of strings"),
    ("empty language", registry({"languages": '[""]'}), "hostile-a", "languages", "is not a BCP 47"),
    ("empty domain", registry({"allowed_domains": '[""]'}), "hostile-a", "allowed_domains", "is not a host name"),
    ("bad ipv6 url", registry({"feeds": '["http://[::1/feed"]'}), "hostile-a", "feeds", "is not a valid URL"),
    ("port out of range", registry({"feeds": '["http://127.0.0.1:99999/feed"]'}), "hostile-a", "feeds",
     "is not a valid URL (Port out of range"),
    ("space in url", registry({"listings": '["http://127.0.0.1:8000/a b"]'}), "hostile-a", "listings",
     "has spaces or control characters"),
    ("javascript url", registry({"homepage": '"javascript:alert(1)"'}), "hostile-a", "homepage",
     "is not an absolute http(s) URL"),
    ("url over the cap", registry({"sitemaps": '["http://127.0.0.1:8000/' + "s" * 3000 + '"]'}), "hostile-a",
     "sitemaps", "URL of 3,022 characters (at most 2,048)"),
    ("bad alias", registry(tail='host_aliases = { "a..b" = "127.0.0.1" }\n'), "hostile-a", "host_aliases",
     "is not a pair of host names"),
    ("type not a string", registry(tail="statement_types = { '/notices/' = 1 }\n"), "hostile-a",
     "statement_types", "'1' is not one of"),
    ("newline in id", registry({"id": '"bad\\nid"'}), "bad\\nid", "id", "use lowercase letters"),
]


# Runs the CLI's entry point (what the `pressarchive` script calls) on many registries in one
# child process, capturing the real stdout and stderr (file descriptors 1 and 2, so output
# from C libraries counts too) of each run: one Scrapy import instead of one per case.
DRIVER = """
import os, sys
from crawler.cli import main
for registry in sys.argv[1:]:
    streams = [os.open(registry + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for suffix in (".out", ".err")]
    saved = [os.dup(1), os.dup(2)]
    os.dup2(streams[0], 1)
    os.dup2(streams[1], 2)
    sys.argv = ["pressarchive", "sources", "--sources", registry]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in streams + saved:
        os.close(fd)
    with open(registry + ".code", "w") as handle:
        handle.write(str(code))
"""


def child_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run_sources(path: Path) -> subprocess.CompletedProcess:
    """`pressarchive sources --sources PATH`, the installed script, in a child process."""
    return subprocess.run([str(CLI), "sources", "--sources", str(path)], capture_output=True, text=True,
                          timeout=120, env=child_env(), check=False)


@pytest.fixture(scope="module")
def rejected(tmp_path_factory):
    """Every case of CASES through the CLI: label -> (path, CompletedProcess)."""
    folder = tmp_path_factory.mktemp("registries")
    paths = {}
    for number, (label, text, *_rest) in enumerate(CASES):
        paths[label] = folder / f"case-{number}.toml"
        paths[label].write_text(text, encoding="utf-8")
    subprocess.run([sys.executable, "-c", DRIVER, *map(str, paths.values())], env=child_env(), timeout=300,
                   check=True)
    return {label: (path, subprocess.CompletedProcess(
        [CLI, "sources", "--sources", path], int(Path(f"{path}.code").read_text()),
        Path(f"{path}.out").read_text(encoding="utf-8"), Path(f"{path}.err").read_text(encoding="utf-8")))
        for label, path in paths.items()}


@pytest.mark.parametrize("label, text, source, key, words", CASES, ids=[case[0] for case in CASES])
def test_hostile_registry_is_refused_in_one_line(rejected, label, text, source, key, words):
    path, result = rejected[label]
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {path}: source '{source}': key '{key}': "), lines[0]
    assert words in lines[0]


# One case of each kind through the `pressarchive` script itself.
SCRIPT_CASES = ["lookahead", "date 6 digits", "css unquoted attribute", "delay nan", "port out of range"]


@pytest.mark.parametrize("label", SCRIPT_CASES)
def test_installed_script_refuses_in_one_line(tmp_path, label):
    _, text, source, key, words = next(case for case in CASES if case[0] == label)
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    result = run_sources(path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [result.stderr.rstrip("\n")]
    assert result.stderr.startswith(f"Error: {path}: source '{source}': key '{key}': ") and words in result.stderr


@pytest.mark.parametrize("text, source, words", [
    ("sources = [1, 2]\n", "#1", "expected a [[sources]] table, got int"),
    ("[[sources]]\nid = 7\n", "#1", "key 'id': expected a string, got int"),
    ("a = " + "[" * 2000 + "]" * 2000 + "\n", None, "TOML syntax error: arrays or tables nested too deeply"),
    ("a = " + "1" * 5000 + "\n", None, "TOML value out of range: Exceeds the limit (4300 digits)"),
])
def test_hostile_file_is_refused_in_one_line(tmp_path, text, source, words):
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    result = run_sources(path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"Error: {path}: " + (f"source '{source}': " if source else ""))
    assert words in result.stderr


def test_same_messages_in_process(tmp_path):
    """load_sources gives the CLI's line (what `crawl`, `demo` and `sources check` print too)."""
    for label, text, source, key, words in CASES:
        path = tmp_path / "sources.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(SourceError) as info:
            load_sources(path)
        message = str(info.value)
        assert message.startswith(f"{path}: source '{source}': key '{key}': ") and words in message, label
        assert "\n" not in message


# -- the patterns at crawl time ---------------------------------------------------------------


def test_catastrophic_pattern_runs_in_linear_time():
    pattern = url_pattern("(a+)+$")
    url = "http://127.0.0.1/news/" + "a" * 2000 + "!"
    started = time.perf_counter()
    assert pattern.search(url) is None
    assert pattern.search("http://127.0.0.1/news/" + "a" * 40) is not None
    assert time.perf_counter() - started < 0.5  # Python's re: 2**2000 steps; with 40 a's and a '!', a day


def test_url_over_the_cap_never_matches_and_is_logged_once(caplog):
    source = Source(id="s", name="S", country="CA", kind="government", languages=["en"],
                    article_pattern=r"/news/r\d+\.html", allowed_domains=["127.0.0.1"],
                    pagination_pattern=r"\?page=\d+")
    ok = "http://127.0.0.1/news/r1.html?ref=" + "x" * (MAX_URL_CHARS - 34)
    long = ok + "x"
    assert len(ok) == MAX_URL_CHARS and source.article_re.search(ok)
    with caplog.at_level(logging.WARNING, logger="crawler.sources"):
        assert source.article_re.search(long) is None
        assert source.article_re.search(long) is None
        assert source.pagination_re.search(long + "?page=2") is None
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [(f"source 's': skipped a URL of {MAX_URL_CHARS + 1} characters (over {MAX_URL_CHARS}): "
                      f"{long[:100]}…")]


def test_url_date_and_statement_types_use_the_safe_engine():
    assert str(url_date(r"t(\d{8})_", "http://x.gov/t20240115_1.htm")) == "2024-01-15"
    assert str(url_date(r"/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/", "http://x.gov/2024/01/15/a")) == "2024-01-15"
    # A group that caught letters, or nothing, gives no date, not an error that loses the page.
    assert url_date(r"/(?P<y>\w+)/(?P<m>\d\d)/(?P<d>\d\d)?/", "http://x.gov/news/01//") is None
    assert url_date(r"(a+)+$", "http://x.gov/" + "a" * 40 + "!") is None  # at once
    assert url_date(r"t(\d{8})_", "http://x.gov/t20240115_" + "x" * MAX_URL_CHARS) is None
    assert classify("http://x.gov/" + "a" * 40 + "!", custom={"(a+)+$": "notice"}) == "other"
    assert classify("http://x.gov/consular/notices/1", custom={"/notices/": "notice"}) == "notice"
    assert classify("http://x.gov/x", custom={"(?!x)": "notice"}) == "other"  # never validated: passed over


def test_hostile_urls_do_not_break_host_checks():
    source = Source(id="s", name="S", country="CA", kind="government", languages=["en"], article_pattern="/news/",
                    allowed_domains=["example.gov"], host_aliases={"old.example.gov": "example.gov"})
    assert not source.allows("http://[::1/news/")
    assert source.canonical("http://[::1/news/") == "http://[::1/news/"
    assert source.canonical("http://old.example.gov:99999/news/") == "http://old.example.gov:99999/news/"
    assert source.canonical("http://old.example.gov:8080/news/") == "http://example.gov:8080/news/"


# -- a real crawl ---------------------------------------------------------------------------------

RELEASE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Minister meets counterpart</title>
<meta name="dcterms.issued" content="2024-03-01"></head><body><main><h1>Minister meets counterpart</h1>
<p>The Minister met her counterpart today to discuss trade, security and the situation in the region.</p>
<p>Both sides agreed to continue the dialogue and to meet again before the end of the year in the capital.</p>
<p>They welcomed the progress made since the last meeting and signed a memorandum on research cooperation.</p>
</main></body></html>"""


def test_crawl_with_catastrophic_pattern_finishes_promptly(tmp_path, site_server):
    """`(a+)+$` is valid RE2 and the listing links to 48 a's and a '!': Python's re would take
    2**48 steps in the reactor thread (a hung crawl that ignores Ctrl-C); RE2 takes microseconds.
    A link over MAX_URL_CHARS (but under Scrapy's own 2,083) is skipped with one log line."""
    site = tmp_path / "site"
    (site / "news").mkdir(parents=True)
    (site / "news" / "r1.html").write_text(RELEASE, encoding="utf-8")
    server = site_server(site)
    evil = "/news/" + "a" * 48 + "!.html"
    long = "/news/r2.html?ref=" + "x" * (MAX_URL_CHARS + 12 - len(server.base_url) - 18)
    assert len(server.base_url + long) == MAX_URL_CHARS + 12 < 2083
    (site / "news" / "index.html").write_text(
        f'<html><body><ul><li><a href="/news/r1.html">Minister meets counterpart</a></li>'
        f'<li><a href="{evil}">Hostile</a></li><li><a href="{long}">Too long</a></li></ul></body></html>',
        encoding="utf-8")
    sources = tmp_path / "sources.toml"
    sources.write_text(registry({
        "id": '"hostile-re"', "feeds": None, "listings": f'["{server.base_url}/news/"]',
        "article_pattern": r"'(a+)+$|/news/r\d+\.html'",
    }), encoding="utf-8")
    env = child_env()
    env["PRESSARCHIVE_NOW"] = "2024-03-20T12:00:00Z"
    started = time.monotonic()
    try:
        result = subprocess.run([str(CLI), "crawl", "--sources", str(sources), "--db", str(tmp_path / "archive.db"),
                                 "--no-warc"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                                check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the crawl was still running after 120 s: a registry regex backtracked on a hostile URL")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert elapsed < 60, f"crawl took {elapsed:.0f} s"
    db = sqlite_utils.Database(tmp_path / "archive.db")
    assert [row["url"] for row in db.query("select url from releases")] == [server.base_url + "/news/r1.html"]
    assert "/news/r1.html" in server.paths
    assert not [path for path in server.paths if path.startswith(("/news/r2.html", "/news/aaa"))]
    skipped = [line for line in result.stderr.splitlines() if "skipped a URL of" in line]
    assert len(skipped) == 1 and f"source 'hostile-re': skipped a URL of {MAX_URL_CHARS + 12} characters" in skipped[0]
