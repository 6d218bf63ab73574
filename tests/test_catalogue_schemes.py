"""The bundled catalogue's own entries, crawled for real on sites that mirror the publishers as they are now.

Issue #19: the sites moved. The Chinese editions of the PRC embassies left ``/chn/`` for the site root,
NATO moved to ``/en/news-and-events/articles/<kind>/YYYY/MM/DD/<slug>`` (discovered through its
sitemap), and the PRC foreign ministry re-issued its older English items under ``202405/t20240530_*``
URLs whose date is not the publication date. The fixture sites mirror those schemes:

* ``tests/sites/trs_embassy_root/``: a PRC embassy TRS site, Chinese edition at the root (home page,
  ``/zytz/`` with a ``createPageHTML()`` pager, ``/sgxw/``, sections several levels deep, one legacy
  ``/chn/`` page) and the English edition under ``/eng/`` (``/eng/sgxw/``, ``/eng/zytz_0/``);
* ``tests/sites/nato_site/``: NATO's AEM site, a sitemap of articles, transcripts and official texts
  (two migrated items whose ``lastmod`` is the migration day), plus pages that are not releases;
* ``tests/sites/mfa_restamped/``: the MFA English press-conference column with two re-stamped items
  (``202405/t20240530_11347225.html`` prints 2022-02-16) and one current item.

The registries crawled here are COPIES of the bundled catalogue entries: :func:`localise` only swaps
the real host for the local server (``https`` for ``http``), in the URLs and in the regexes, and sets
``delay = 0``. So the catalogue's own listings, sitemaps, ``article_pattern``, ``article_exclude``,
``pagination_pattern``, ``date_from_url``, selectors and statement types are what is tested. The
crawls run the CLI in a child process (as tests/test_families.py does), at a fixed clock.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import conftest
import pytest
import sqlite_utils
import tomllib

from crawler.demo.server import SiteServer
from crawler.sources import VERIFIED, bundled_catalogue, load_sources

SITES = Path(__file__).parent / "sites"
CATALOGUE = tomllib.loads(bundled_catalogue().read_text(encoding="utf-8"))["sources"]
NOW = "2026-12-01T12:00:00Z"  # after every fixture date, whatever the machine's clock says

# -- what each catalogue entry must find on the fixture sites (paths; titles; published dates) -----------

# trs_embassy_root: the links of the root home page, and of the /zytz/ and /sgxw/ listings.
HOME = ["/zytz/202602/t20260216_11860600.htm", "/lsyw/lszj/mqzc00/gjmq00/202501/t20250110_11530399.htm",
        "/sgxw/202503/t20250320_11578901.htm", "/chn/lsyw/lszj/hzlxz00/202309/t20230916_11143961.htm"]
ZYTZ = ["/zytz/202602/t20260216_11860600.htm", "/zytz/202512/t20251218_11777001.htm",
        "/zytz/202505/t20250520_11630002.htm"]  # the last one only on page 2 (index_1.htm)
SGXW = ["/sgxw/202503/t20250320_11578901.htm"]
ENGLISH = ["/eng/zytz_0/202602/t20260216_11860601.htm", "/eng/sgxw/202305/t20230505_11070695.htm"]
NOT_RELEASES = ["/", "/zytz/", "/zytz/index_1.htm", "/eng/lsyw/gzrz/", "/eng/sgxw/"]

TRS_TITLES = {
    "/zytz/202602/t20260216_11860600.htm": ("关于对加拿大、英国持普通护照人员试行免签政策的通知", "2026-02-16"),
    "/zytz/202512/t20251218_11777001.htm": ("驻加拿大使馆关于2026年元旦期间暂停对外办公的通知", "2025-12-18"),
    "/zytz/202505/t20250520_11630002.htm": ("关于在加中国公民注意防范电信诈骗的提醒", "2025-05-20"),
    "/lsyw/lszj/mqzc00/gjmq00/202501/t20250110_11530399.htm": ("240小时过境免签政策适用口岸及停留区域", "2025-01-10"),
    "/sgxw/202503/t20250320_11578901.htm": ("大使出席渥太华大学中文教学交流活动", "2025-03-20"),
    "/chn/lsyw/lszj/hzlxz00/202309/t20230916_11143961.htm": ("护照、旅行证申办须知", "2023-09-16"),
    "/eng/zytz_0/202602/t20260216_11860601.htm": ("Notice on China's Visa Waiver Policy for the UK and Canada", "2026-02-16"),
    "/eng/sgxw/202305/t20230505_11070695.htm": ("Ambassador Meets with Representatives of Canadian Business Community",
                                                "2023-05-04"),
}

NATO = {
    "/en/news-and-events/articles/news/2025/01/14/nato-launches-baltic-sentry-to-increase-critical-infrastructure-security":
        ("NATO launches Baltic Sentry to increase critical infrastructure security", "2025-01-14", None),
    "/en/news-and-events/articles/news/2017/06/29/defence-ministers-agree-to-strengthen-nato-deterrence-and-defence":
        ("Defence Ministers agree to strengthen NATO deterrence and defence", "2017-06-29", None),
    "/en/news-and-events/events/transcripts/2001/07/24/press-statement-by-the-secretary-general":
        ("Press statement by the Secretary General", "2001-07-24", "speech"),
    "/en/about-us/official-texts-and-resources/official-texts/2025/06/25/the-hague-summit-declaration":
        ("The Hague Summit Declaration", "2025-06-25", "statement"),
}
NATO_NOT_RELEASES = ["/en/news-and-events/articles/news", "/en/what-we-do/deterrence-and-defence/electromagnetic-warfare",
                     "/en", "/cps/en/natohq/news_151250.htm"]

MFA_BASE = "/eng/xw/fyrbt/lxjzh/"
MFA = {  # path -> (printed date, the date in the URL)
    MFA_BASE + "202405/t20240530_11347225.html": ("2022-02-16", "2024-05-30"),
    MFA_BASE + "202407/t20240730_11463275.html": ("2022-03-02", "2024-07-30"),
    MFA_BASE + "202611/t20261127_11990001.html": ("2026-11-27", "2026-11-27"),
}

# source id -> (fixture site, the paths a crawl of its catalogue entry must store: exactly these)
EXPECTED = {
    "cn-embassy-ca-zh": ("trs_embassy_root", sorted(set(HOME + ZYTZ))),
    "cn-embassy-ca-en": ("trs_embassy_root", sorted(ENGLISH)),
    "cn-embassy-gb-zh": ("trs_embassy_root", sorted(set(HOME + SGXW))),
    "cn-embassy-au-zh": ("trs_embassy_root", sorted(HOME)),
    "cn-embassy-de-zh": ("trs_embassy_root", sorted(HOME)),
    "nato-news": ("nato_site", sorted(NATO)),
    "cn-mfa-en": ("mfa_restamped", sorted(MFA)),
}
# Sources whose URL sets are disjoint share one crawl; the Chinese editions of other embassies, crawled on
# the same mirror, each get their own archive.
CRAWLS = {
    "main": ["cn-embassy-ca-zh", "cn-embassy-ca-en", "nato-news", "cn-mfa-en"],
    "gb": ["cn-embassy-gb-zh"],
    "au": ["cn-embassy-au-zh"],
    "de": ["cn-embassy-de-zh"],
}


# -- copies of catalogue entries, pointed at a local server ---------------------------------------------


def catalogue_entry(source_id: str) -> dict:
    return json.loads(json.dumps(next(e for e in CATALOGUE if e["id"] == source_id)))  # a deep copy


def entry_hosts(entry: dict) -> set[str]:
    urls = [*entry.get("feeds", []), *entry.get("sitemaps", []), *entry.get("listings", []),
            *entry.get("wp_rest", []), *(a["url"] for a in entry.get("json_api", []))]
    if "homepage" in entry:
        urls.append(entry["homepage"])
    hosts = {urlsplit(u).hostname for u in urls}
    return hosts | set(entry.get("host_aliases", {})) | set(entry.get("host_aliases", {}).values())


def localise(entry: dict, base_url: str) -> dict:
    """A copy of a catalogue entry whose hosts are the local server: URLs, regexes and domains.

    ``https://HOST`` becomes ``BASE_URL``, ``HOST`` escaped in a regex (``ca\\.china-embassy\\.gov\\.cn``)
    becomes the server's ``127\\.0\\.0\\.1:PORT`` and ``https://`` in a regex ``https?://``. Nothing else
    of the entry changes, apart from ``delay = 0`` (local server) and host aliases dropped (one host).
    """
    local = urlsplit(base_url).netloc
    hosts = sorted(entry_hosts(entry), key=len, reverse=True)

    def url(value: str) -> str:
        for host in hosts:
            for scheme in ("https://", "http://"):
                value = value.replace(scheme + host, base_url)
        return value

    def regex(value: str) -> str:
        for host in hosts:
            value = value.replace(host.replace(".", "\\."), local.replace(".", "\\."))
        return value.replace("https://", "https?://")

    out = dict(entry)
    for key in ("feeds", "sitemaps", "listings", "wp_rest"):
        if key in out:
            out[key] = [url(u) for u in out[key]]
    if "homepage" in out:
        out["homepage"] = url(out["homepage"])
    for key in ("article_pattern", "article_exclude", "pagination_pattern"):
        if key in out:
            out[key] = regex(out[key])
    if "statement_types" in out:
        out["statement_types"] = {regex(k): v for k, v in out["statement_types"].items()}
    out["allowed_domains"] = [urlsplit(base_url).hostname]
    out.pop("host_aliases", None)
    out["delay"] = 0
    return out


def toml_value(value) -> str:
    """A TOML value: JSON strings and arrays are TOML basic strings and arrays; tables become inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items()) + " }"


def registry_text(entries: list[dict]) -> str:
    return "\n".join("[[sources]]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in entry.items())
                     for entry in entries)


def run_cli(args, cwd, timeout=180):
    return conftest.run_cli(args, cwd, timeout, when=NOW)


class Crawl:
    """One crawl of localised catalogue entries: its registry file, archive and CLI result."""

    def __init__(self, folder: Path, ids: list[str], servers: dict[str, SiteServer]):
        self.folder, self.ids, self.servers = folder, ids, servers
        self.registry = folder / "sources.toml"
        self.registry.write_text(registry_text([localise(catalogue_entry(i), servers[EXPECTED[i][0]].base_url)
                                                for i in ids]), encoding="utf-8")
        self.result = run_cli(["crawl", *ids, "--sources", str(self.registry), "--db", "archive.db",
                               "--log-level", "WARNING"], folder)

    @property
    def db(self) -> sqlite_utils.Database:
        return sqlite_utils.Database(self.folder / "archive.db")

    def rows(self, source_id: str) -> dict[str, dict]:
        base = self.servers[EXPECTED[source_id][0]].base_url
        return {r["url"][len(base):]: r for r in self.db.query(
            "select * from releases where source_id = ? order by url", [source_id])}


@pytest.fixture(scope="module")
def crawls(tmp_path_factory):
    """The three fixture sites served, and a lazy crawl per group of CRAWLS."""
    work = tmp_path_factory.mktemp("catalogue-schemes")
    servers = {site: SiteServer(SITES / site).start() for site in ("trs_embassy_root", "nato_site", "mfa_restamped")}
    done: dict[str, Crawl] = {}

    def get(source_id: str) -> Crawl:
        group = next(name for name, ids in CRAWLS.items() if source_id in ids)
        if group not in done:
            folder = work / group
            folder.mkdir()
            done[group] = Crawl(folder, CRAWLS[group], servers)
        return done[group]

    get.servers = servers
    try:
        yield get
    finally:
        for server in servers.values():
            server.stop()


# -- the catalogue's patterns against the schemes seen on the real hosts ---------------------------------


REAL_HOSTS = {"trs_embassy_root": None, "nato_site": "https://www.nato.int", "mfa_restamped": "https://www.fmprc.gov.cn"}
EMBASSY_HOST = {"cn-embassy-ca-zh": "ca", "cn-embassy-ca-en": "ca", "cn-embassy-gb-zh": "gb", "cn-embassy-au-zh": "au",
                "cn-embassy-de-zh": "de"}


def real_url(source_id: str, path: str) -> str:
    site = EXPECTED[source_id][0]
    base = REAL_HOSTS[site] or f"https://{EMBASSY_HOST[source_id]}.china-embassy.gov.cn"
    return base + path


@pytest.mark.parametrize("source_id", sorted(EXPECTED))
def test_bundled_patterns_take_the_current_urls_and_leave_the_rest(source_id):
    """The unmodified catalogue entry, on the real host: every fixture release matches, nothing else does."""
    source = {s.id: s for s in load_sources()}[source_id]
    site, wanted = EXPECTED[source_id]
    chinese = sorted(set(HOME + ZYTZ + SGXW))
    if site == "trs_embassy_root":  # an edition's pattern takes all of its releases, whatever listing links them
        wanted, others = (ENGLISH, chinese) if source_id.endswith("-en") else (chinese, ENGLISH)
        others = others + NOT_RELEASES
    else:
        others = {"nato_site": NATO_NOT_RELEASES, "mfa_restamped": [MFA_BASE, MFA_BASE + "index_1.html"]}[site]
    for path in wanted:
        assert source.article_re.search(source.canonical(real_url(source_id, path))), path
    for path in others:
        assert not source.article_re.search(real_url(source_id, path)), path


def test_old_chinese_edition_patterns_would_have_missed_the_root():
    """What issue #19 fixed: a /chn/-only pattern takes none of the 2025-2026 root URLs."""
    import re

    old = re.compile(r"^https?://ca\.china-embassy\.gov\.cn/chn/(?:[a-z_0-9]+/)+\d{6}/t\d{8}_\d+\.htm$")
    new = {s.id: s for s in load_sources()}["cn-embassy-ca-zh"]
    root = [p for p in set(HOME + ZYTZ) if not p.startswith("/chn/")]
    assert root and not [p for p in root if old.search(real_url("cn-embassy-ca-zh", p))]
    assert all(new.article_re.search(real_url("cn-embassy-ca-zh", p)) for p in root)


def test_localised_copy_changes_only_the_host():
    entry = catalogue_entry("cn-embassy-ca-zh")
    local = localise(entry, "http://127.0.0.1:8765")
    assert local["listings"] == ["http://127.0.0.1:8765/", "http://127.0.0.1:8765/zytz/"]
    assert local["article_pattern"] == entry["article_pattern"].replace(
        "ca\\.china-embassy\\.gov\\.cn", "127\\.0\\.0\\.1:8765")
    assert {k: v for k, v in local.items() if k not in ("listings", "homepage", "article_pattern", "article_exclude",
                                                         "pagination_pattern", "statement_types", "allowed_domains",
                                                         "delay")} == \
        {k: v for k, v in entry.items() if k not in ("listings", "homepage", "article_pattern", "article_exclude",
                                                     "pagination_pattern", "statement_types", "delay")}


# -- real crawls of the localised entries ------------------------------------------------------------------


@pytest.mark.parametrize("source_id", sorted(EXPECTED))
def test_catalogue_entry_crawls_exactly_the_current_releases(crawls, source_id):
    crawl = crawls(source_id)
    assert crawl.result.returncode == 0, crawl.result.stderr[-3000:]
    rows = crawl.rows(source_id)
    assert sorted(rows) == EXPECTED[source_id][1], crawl.result.stderr[-3000:]
    for path, row in rows.items():
        assert row["word_count"] > 20 and len(row["content_hash"]) == 64, path
    run = crawl.db.execute("select new, errors, status from crawl_runs where source_id = ?", [source_id]).fetchone()
    assert run == (len(EXPECTED[source_id][1]), 0, "ok"), crawl.result.stderr[-3000:]


@pytest.mark.parametrize("source_id", ["cn-embassy-ca-zh", "cn-embassy-ca-en", "cn-embassy-gb-zh"])
def test_embassy_titles_dates_and_language(crawls, source_id):
    rows = crawls(source_id).rows(source_id)
    language = "en" if source_id.endswith("-en") else "zh"
    for path, row in rows.items():
        title, published = TRS_TITLES[path]
        assert (row["title"], row["published"], row["language"]) == (title, published, language), path
    if source_id == "cn-embassy-ca-zh":
        assert rows["/zytz/202602/t20260216_11860600.htm"]["statement_type"] == "notice"
        assert "2026年2月17日起" in rows["/zytz/202602/t20260216_11860600.htm"]["text"]
        assert "版权所有" not in rows["/zytz/202602/t20260216_11860600.htm"]["text"]


def test_embassy_root_listing_pages_are_walked(crawls):
    paths = crawls("cn-embassy-ca-zh").servers["trs_embassy_root"].paths
    for page in ("/", "/zytz/", "/zytz/index_1.htm", "/eng/sgxw/", "/eng/zytz_0/"):
        assert page in paths, page
    assert "/chn/" not in paths and "/chn/sgxw/" not in paths  # the old edition root is no start URL any more


def test_nato_articles_come_from_the_sitemap_dated_by_their_url(crawls):
    crawl = crawls("nato-news")
    rows = crawl.rows("nato-news")
    for path, (title, published, kind) in NATO.items():
        row = rows[path]
        assert (row["title"], row["published"], row["language"]) == (title, published, "en"), path
        if kind:
            assert row["statement_type"] == kind, path
    # Migrated items: the sitemap's lastmod is the migration day, the URL keeps the original date.
    assert rows[next(p for p in NATO if "/2017/" in p)]["published"] == "2017-06-29"
    assert "/sitemap.xml" in crawl.servers["nato_site"].paths


def test_mfa_restamped_items_keep_their_printed_date(crawls):
    """The catalogue's cn-mfa-en selectors take the printed date; the URL's re-issue date is not used."""
    rows = crawls("cn-mfa-en").rows("cn-mfa-en")
    for path, (printed, in_url) in MFA.items():
        assert rows[path]["published"] == printed, (path, in_url)
        assert rows[path]["date_source"] == "selector", path
    restamped = rows[MFA_BASE + "202405/t20240530_11347225.html"]
    assert restamped["title"] == "Foreign Ministry Spokesperson Wang Wenbin's Regular Press Conference on February 16, 2022"
    assert restamped["statement_type"] == "press_conference"


# -- verified: every entry says how far public evidence backs it --------------------------------------------


def test_every_catalogue_entry_states_its_verification():
    assert all("verified" in entry for entry in CATALOGUE), [e["id"] for e in CATALOGUE if "verified" not in e]
    sources = load_sources()
    assert {s.verified for s in sources} <= set(VERIFIED)
    counts = {level: sum(s.verified == level for s in sources) for level in VERIFIED}
    assert sum(counts.values()) == len(sources) == len(CATALOGUE)
    assert counts["confirmed"] and counts["plausible"] and counts["unverified"], counts
    by_id = {s.id: s.verified for s in sources}
    # Entries resting on family conventions or generated feed lists are not claimed as confirmed.
    assert by_id["us-embassy-au"] == "unverified" and by_id["cn-embassy-au-zh"] == "plausible"
    assert by_id["nato-news"] == "confirmed" and by_id["cn-embassy-ca-zh"] == "plausible"


def test_sources_command_prints_verified(tmp_path):
    sources = {s.id: s for s in load_sources()}
    table = run_cli(["sources"], tmp_path)
    assert table.returncode == 0, table.stderr[-2000:]
    lines = {line.split()[0]: line.split() for line in table.stdout.splitlines() if line.strip()}
    assert set(lines) == set(sources)
    for source_id, fields in lines.items():
        assert fields[4] == sources[source_id].verified, fields
    counts = {level: sum(s.verified == level for s in sources.values()) for level in VERIFIED}
    summary = ", ".join(f"{counts[level]} {level}" for level in VERIFIED if counts[level])
    assert f"{len(sources)} sources OK: {summary} (" in table.stderr
    listed = run_cli(["sources", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {row["id"]: row["verified"] for row in rows} == {i: s.verified for i, s in sources.items()}


def test_verified_defaults_to_unverified_and_rejects_other_values(tmp_path):
    entry = localise(catalogue_entry("cn-mfa-en"), "http://127.0.0.1:8000")
    del entry["verified"]
    good = tmp_path / "good.toml"
    good.write_text(registry_text([entry]), encoding="utf-8")
    (source,) = load_sources(good)
    assert source.verified == "unverified"
    for value, problem in (('"checked"', "'checked' is not one of confirmed, plausible, unverified"),
                           ("true", "expected a string, got a boolean")):
        bad = tmp_path / "bad.toml"
        bad.write_text(registry_text([entry]) + f"verified = {value}\n", encoding="utf-8")
        result = run_cli(["sources", "--sources", str(bad)], tmp_path)
        assert result.returncode == 2 and result.stdout == "", result
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"source 'cn-mfa-en': key 'verified': {problem}" in result.stderr, result.stderr


def test_archive_sources_table_keeps_verified(crawls):
    crawl = crawls("cn-embassy-ca-zh")
    stored = {r["id"]: r["verified"] for r in crawl.db.query("select id, verified from sources")}
    assert stored == {i: catalogue_entry(i)["verified"] for i in CRAWLS["main"]}


def test_readme_states_the_catalogue_counts():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    sources = load_sources()
    counts = ", ".join(f"{sum(s.verified == level for s in sources)} {level}" for level in VERIFIED)
    assert counts in " ".join(readme.split()), counts
