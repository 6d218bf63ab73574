"""Site families (issue 8): real crawls of WordPress REST, JSON APIs and TRS fixture sites.

The fixture sites (``tests/sites/{wp,gcapi,ec,govuk,trs}_site``) mirror how the real publishers
publish: WordPress ``/wp-json/wp/v2`` collections with ``X-WP-TotalPages``, the Government of
Canada news API, the GOV.UK search API, the EC press corner (JSON search + JSON detail, HTML
pages that are JavaScript shells) and a PRC foreign-ministry TRS site. ``tests/sites/families.toml``
holds their sources (with the new registry keys ``json_api``, ``wp_rest``, ``selectors``,
``date_from_url``, ``host_aliases``, ``statement_types``); ``tests/sites/FAMILIES.json`` says what a
correct crawl stores and which API pages it must ask for.

The sites are copied to a temporary folder and served from there, so that ``{{ALIAS}}`` in their
pages can become ``http://localhost:PORT``: the same server under another host name, which the TRS
source declares as an alias (``host_aliases = { "localhost" = "127.0.0.1" }``).

Each family is crawled once per module (``python -m crawler crawl`` in a child process, as in
tests/test_crawl.py), then a second time to check that nothing is added.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlite_utils
from conftest import run_cli

from crawler.demo.server import SiteServer, substitute_bases

SITES = Path(__file__).parent / "sites"
FAMILY_SITES = ("wp_site", "gcapi_site", "ec_site", "govuk_site", "trs_site")
FAMILIES = json.loads((SITES / "FAMILIES.json").read_text(encoding="utf-8"))
SOURCE_IDS = sorted(k for k in FAMILIES if not k.startswith("_"))
API_SOURCES = sorted(s for s in SOURCE_IDS if FAMILIES[s].get("api"))
JSON_API_SOURCES = sorted(s for s in SOURCE_IDS if "second_crawl_pages" in FAMILIES[s])
ALIAS_TOKEN = b"{{ALIAS}}"
TEXT_SUFFIXES = {".html", ".htm", ".json", ".xml", ".txt"}


class Family:
    """One site family: its server, the sources on it, the archive of its crawls and what the server saw."""

    def __init__(self, site: str, server: SiteServer, folder: Path, sources_file: Path):
        self.site, self.server, self.folder, self.sources_file = site, server, folder, sources_file
        self.source_ids = [s for s in SOURCE_IDS if FAMILIES[s]["site"] == site]
        self.first = self.second = None  # CompletedProcess of each crawl
        self.first_paths: list[str] = []
        self.first_requests: list = []
        self.second_paths: list[str] = []
        self.after_first: dict = {}

    @property
    def db(self) -> sqlite_utils.Database:
        return sqlite_utils.Database(self.folder / "archive.db")

    def crawl(self):
        return run_cli(["crawl", *self.source_ids, "--sources", str(self.sources_file), "--db", "archive.db",
                        "--log-level", "WARNING"], self.folder)

    def rows(self, source_id: str) -> dict[str, dict]:
        base = self.server.base_url
        return {row["url"].removeprefix(base): row
                for row in self.db.query("select * from releases where source_id = ? order by url", [source_id])}


def _fill_aliases(root: Path, alias_base: str) -> None:
    for file in root.rglob("*"):
        if file.is_file() and file.suffix.lower() in TEXT_SUFFIXES:
            data = file.read_bytes()
            if ALIAS_TOKEN in data:
                file.write_bytes(data.replace(ALIAS_TOKEN, alias_base.encode("ascii")))


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """All family sites served from copies, the filled families.toml, and a lazy crawl per family."""
    work = tmp_path_factory.mktemp("families")
    servers = {}
    try:
        for site in FAMILY_SITES:
            copy = work / "sites" / site
            shutil.copytree(SITES / site, copy)
            server = SiteServer(copy).start()
            servers[site] = server
            _fill_aliases(copy, f"http://localhost:{server.port}")
        sources_file = work / "families.toml"
        sources_file.write_text(substitute_bases((SITES / "families.toml").read_text(encoding="utf-8"), servers),
                                encoding="utf-8")
        cache: dict[str, Family] = {}

        def get(site: str, second: bool = False) -> Family:
            family = cache.get(site)
            if family is None:
                folder = work / f"crawl-{site}"
                folder.mkdir()
                family = cache[site] = Family(site, servers[site], folder, sources_file)
                family.first = family.crawl()
                family.first_requests = family.server.requests
                family.first_paths = [str(r) for r in family.first_requests]
                family.after_first = {r["url"]: (r["id"], r["content_hash"], r["first_seen"], r["title"], r["published"])
                                      for r in family.db["releases"].rows} if family.db["releases"].exists() else {}
            if second and family.second is None:
                family.server.reset_requests()
                family.second = family.crawl()
                family.second_paths = family.server.paths
            return family

        get.sources_file = sources_file
        get.servers = servers
        yield get
    finally:
        for server in servers.values():
            server.stop()


def family_of(source_id: str) -> str:
    return FAMILIES[source_id]["site"]


def api_requests(paths: list[str], api: dict) -> list[dict[str, str]]:
    """Query parameters (first value of each) of the requests made to the API endpoint."""
    found = []
    for path in paths:
        parts = urlsplit(path)
        if parts.path == api["path"]:
            found.append({k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()})
    return found


def page_values(paths: list[str], api: dict) -> list[int]:
    return [int(q.get(api["param"], api.get("default", -1))) for q in api_requests(paths, api)]


# -- the registry -------------------------------------------------------------


def test_registry_with_the_new_keys_is_valid(families):
    result = run_cli(["sources", "--sources", str(families.sources_file)], families.sources_file.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    for source_id in SOURCE_IDS:
        assert source_id in result.stdout


# -- what is stored -----------------------------------------------------------


@pytest.mark.parametrize("source_id", SOURCE_IDS)
def test_family_crawl_stores_exactly_the_expected_releases(families, source_id):
    want = FAMILIES[source_id]
    family = families(family_of(source_id))
    assert family.first.returncode == 0, family.first.stderr[-3000:]
    rows = family.rows(source_id)
    assert sorted(rows) == sorted(r["path"] for r in want["releases"]), family.first.stderr[-3000:]
    for release in want["releases"]:
        row = rows[release["path"]]
        where = f"{source_id} {release['path']}"
        assert row["title"] == release["title"], where
        assert row["published"] == release["published"], where
        assert row["year"] == int(release["published"][:4]), where
        assert row["language"] == release["language"], where
        assert release["snippet"] in row["text"], where
        assert release["boilerplate"] not in row["text"], where
        for absent in want.get("absent", []):
            assert absent not in row["text"], f"{where}: {absent!r} must not be in the text"
        if "date_source" in release:
            assert row["date_source"] == release["date_source"], where
        if "summary" in release:
            assert row["summary"] == release["summary"], where
            assert release["summary"] not in row["text"] or release["summary"] in _page_text(family, release), where
        if release["statement_type_from"] == "registry":
            assert row["statement_type"] == release["statement_type"], where
        assert len(row["content_hash"]) == 64 and row["word_count"] > 20, where
        assert row["first_seen"] == row["last_seen"] and row["first_seen"].endswith("Z"), where
    run = family.db.execute("select new, status from crawl_runs where source_id = ?", [source_id]).fetchone()
    assert run == (len(want["releases"]), "ok"), family.first.stderr[-3000:]


def _page_text(family: Family, release: dict) -> str:
    """The fixture page (or detail JSON) a release was made from, as text (for summary checks)."""
    root = family.server.root
    candidates = [root / release["path"].lstrip("/"), root / release["path"].lstrip("/") / "index.html"]
    if "ref" in release:
        slug = release["ref"].lower().replace("/", "_")
        candidates.append(root / "commission/presscorner/api/documents" / f"{slug}.json")
    return "".join(p.read_text(encoding="utf-8") for p in candidates if p.is_file())


@pytest.mark.parametrize("source_id", [s for s in SOURCE_IDS
                                       if any(r["statement_type_from"] == "builtin" for r in FAMILIES[s]["releases"])])
def test_builtin_statement_type_rules(families, source_id):
    """Releases whose type the registry leaves to the crawler's own rules (title / URL / metadata)."""
    rows = families(family_of(source_id)).rows(source_id)
    for release in FAMILIES[source_id]["releases"]:
        if release["statement_type_from"] == "builtin":
            assert rows[release["path"]]["statement_type"] == release["statement_type"], release["path"]


def test_statement_type_is_a_known_value_everywhere(families):
    allowed = {"press_release", "statement", "readout", "speech", "joint_statement", "press_conference", "notice",
               "other", None}
    for site in FAMILY_SITES:
        db = families(site).db
        found = {r[0] for r in db.execute("select distinct statement_type from releases").fetchall()}
        assert found <= allowed, (site, found)


# -- paging --------------------------------------------------------------------


@pytest.mark.parametrize("source_id", API_SOURCES)
def test_api_paging_walks_every_page_and_stops(families, source_id):
    want = FAMILIES[source_id]
    api = want["api"]
    family = families(family_of(source_id))
    requested = api_requests(family.first_paths, api)
    pages = page_values(family.first_paths, api)
    required, optional = set(api["pages"]), set(api.get("optional_pages", []))
    assert required <= set(pages) <= required | optional, (pages, family.first_paths)
    assert len(pages) == len(set(pages)), f"an API page was fetched twice: {pages}"
    for query in requested:
        for key, value in api.get("fixed", {}).items():
            assert query.get(key) == value, (key, query)
    for record in family.first_requests:
        if urlsplit(str(record)).path == api["path"]:
            assert record.status == 200, f"{record} answered {record.status}"
    for prefix in want["never_requested"]:
        assert not [p for p in family.first_paths if p.startswith(prefix)], f"requested {prefix}"


def test_offsite_api_items_are_neither_fetched_nor_stored(families):
    for source_id in SOURCE_IDS:
        urls = FAMILIES[source_id].get("never_requested_urls", [])
        if not urls:
            continue
        db = families(family_of(source_id)).db
        stored = {r[0] for r in db.execute("select url from releases").fetchall()}
        for url in urls:
            assert url not in stored and not any(u.startswith("http://offsite.invalid") for u in stored), url


def test_trs_listing_pages_are_walked_through_createpagehtml(families):
    want = FAMILIES["fixture-mfa-trs"]
    family = families("trs_site")
    for page in want["listing_pages"]:
        assert page in family.first_paths, page
    for prefix in want["never_requested"]:
        assert prefix not in family.first_paths, prefix


# -- second crawl ---------------------------------------------------------------


@pytest.mark.parametrize("site", FAMILY_SITES)
def test_second_crawl_adds_nothing(families, site):
    family = families(site, second=True)
    assert family.second.returncode == 0, family.second.stderr[-3000:]
    after = {r["url"]: (r["id"], r["content_hash"], r["first_seen"], r["title"], r["published"])
             for r in family.db["releases"].rows}
    assert after == family.after_first and after
    runs = list(family.db.query(
        "select * from crawl_runs where run_id = (select max(run_id) from crawl_runs)"))
    assert {r["source_id"] for r in runs} == set(family.source_ids)
    assert sum(r["new"] for r in runs) == 0 and sum(r["changed"] for r in runs) == 0


@pytest.mark.parametrize("source_id", JSON_API_SOURCES)
def test_second_crawl_stops_json_paging_at_a_page_of_known_releases(families, source_id):
    want = FAMILIES[source_id]
    family = families(family_of(source_id), second=True)
    pages = page_values(family.second_paths, want["api"])
    assert set(pages) <= set(want["second_crawl_pages"]), (pages, family.second_paths)


# -- EC press corner: text from the JSON detail endpoint -------------------------


def test_ec_body_comes_from_the_detail_json(families):
    want = FAMILIES["fixture-ec-presscorner"]
    family = families("ec_site")
    rows = family.rows("fixture-ec-presscorner")
    root = family.server.root
    detail_requests = [p for p in family.first_paths if urlsplit(p).path == want["detail_path"]]
    asked = {parse_qs(urlsplit(p).query)["reference"][0] for p in detail_requests}
    assert asked == {r["ref"] for r in want["releases"]}, detail_requests
    for release in want["releases"]:
        slug = release["ref"].lower().replace("/", "_")
        shell = (root / "commission/presscorner/detail/en" / slug / "index.html").read_text(encoding="utf-8")
        assert release["snippet"] not in shell, "the HTML page must be a JavaScript shell"
        detail = json.loads((root / "commission/presscorner/api/documents" / f"{slug}.json").read_text(encoding="utf-8"))
        assert release["snippet"] in detail["docuLanguageResource"]["htmlContent"]
        row = rows[release["path"]]
        assert release["snippet"] in row["text"] and "<p" not in row["text"]
        assert row["url"] == family.server.base_url + release["path"]


# -- host aliases ------------------------------------------------------------------


def test_release_linked_under_an_alias_host_is_stored_once(families):
    want = FAMILIES["fixture-mfa-trs"]
    family = families("trs_site")
    alias = f"http://localhost:{family.server.port}"
    listing = (family.server.root / "eng/xw/fyrbt/lxjzh/index_1.html").read_text(encoding="utf-8")
    for release in want["releases"]:
        if release["linked_via"] in ("alias", "both"):
            assert alias + release["path"] in listing
    urls = [r[0] for r in family.db.execute("select url from releases where source_id = 'fixture-mfa-trs'")]
    assert len(urls) == len(set(urls)) == len(want["releases"])
    assert not [u for u in urls if "localhost" in u], urls
    assert all(u.startswith(family.server.base_url) for u in urls)
    only_alias = [r["path"] for r in want["releases"] if r["linked_via"] == "alias"]
    assert only_alias and all(family.server.base_url + p in urls for p in only_alias)
    # One fetch per release, whichever host name the listing used.
    for release in want["releases"]:
        assert family.first_paths.count(release["path"]) == 1, release["path"]
