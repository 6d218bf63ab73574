"""The release page, the archived original and "Cite this", on an archive made by a real crawl.

A fixture site (written under the test's tmp folder, served by the real ``SiteServer`` on
127.0.0.1) is crawled twice by ``python -m crawler crawl`` with WARC capture on, as a user
runs it: between the crawls one release is edited and one taken down, so the archive holds
versions with diffs and a removal. Among the pages: one whose ``<script>`` would set a
marker and call the site back, a Chinese and an Arabic release, the same joint statement
under two addresses, and a PDF. The site is read through an in-process Datasette
(``make_datasette``, as ``pressarchive serve`` builds it); the browser checks are in
``tests/test_release_page_browser.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli
from parsel import Selector

from archive.site.serve import make_datasette

PDFS = Path(__file__).parent / "pdfs"
T0, T1 = "2024-03-20T10:00:00Z", "2024-03-20T12:00:00Z"
# What the archived <script> would do if it ever ran: mark the page and call the site back.
MARKER = "SCRIPT-RAN"
SCRIPT = f"""<script>
document.title = "{MARKER}";
try {{ localStorage.setItem("pressarchive-marker", "{MARKER}"); }} catch (e) {{}}
try {{ window.top.name = "{MARKER}"; }} catch (e) {{}}
fetch("{{{{BASE}}}}/beacon/fetch?ran=1").catch(function () {{}});
new Image().src = "{{{{BASE}}}}/beacon/image";
document.addEventListener("DOMContentLoaded", function () {{
  document.body.setAttribute("data-marker", "{MARKER}");
}});
</script>"""
EN_TITLE = "Joint statement on maritime cooperation in the North Sea"
EN_PARAGRAPHS = [
    ("The foreign ministers of Northland and Southland today adopted a joint statement on maritime "
    "cooperation, committing both governments to freedom of navigation and to the peaceful settlement "
    "of disputes in the North Sea."),
    ("The ministers agreed to hold annual consultations and to establish a working group on fisheries, "
    "marine science and search and rescue, which will report to them before the end of the year."),
    ("Both governments will also share information on vessels in distress and coordinate their coast "
    "guards during storms, under the rules of the International Maritime Organization."),
]
ZH_TITLE = "中华人民共和国外交部发言人就北地国与南地国海上合作联合声明答记者问"
ZH_PARAGRAPHS = [
    "问：北地国与南地国今天发表了关于海上合作的联合声明，中方对此有何评论？",
    ("答：我们注意到有关联合声明。中方一贯主张通过对话协商和平解决海上争议，维护航行自由与地区和平稳定。"
    "我们希望有关国家切实尊重国际法，为地区的和平与发展发挥建设性作用。"),
    "中方愿同各方一道，加强海洋科学研究、渔业养护和海上搜救等领域的务实合作，共同建设和平、合作、和谐的海洋。",
]
AR_TITLE = "بيان وزارة الخارجية بشأن التعاون البحري"
AR_PARAGRAPHS = [
    ("ترحب وزارة الخارجية بالبيان المشترك الذي اعتمده وزيرا خارجية البلدين اليوم بشأن التعاون البحري "
    "وحرية الملاحة والتسوية السلمية للنزاعات في المنطقة."),
    ("وتؤكد الوزارة أن هذا البيان يعكس التزام الحكومتين بالقانون الدولي وبالعمل المشترك من أجل السلام "
    "والاستقرار والتنمية في المنطقة كلها."),
]
EDITED_BEFORE = "Officials from both governments will meet again in the autumn to review the progress made."
EDITED_AFTER = "Officials from both governments will meet again in September in Ottawa to review the progress made."


def page(title, paragraphs, date, lang="en", head=""):
    body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return f"""<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">
<title>{title} | Ministry of Foreign Affairs</title><meta name="dcterms.issued" content="{date}">
{head}</head>
<body><nav><a href="/">Home</a> &gt; <a href="/news/">News</a></nav>
<main><h1>{title}</h1>
{body}</main><footer>Ministry of Foreign Affairs</footer></body></html>"""


# The page whose script must never run: a script, a stylesheet, an image, a meta refresh in
# <noscript> (live once scripting is off, which it is in the sandbox; the crawl ignores it)
# and a Refresh header (routes) all point back at the site.
HOSTILE_HEAD = (SCRIPT + '\n<link rel="stylesheet" href="{{BASE}}/beacon/style.css">'
                '\n<noscript><meta http-equiv="refresh" content="0; url={{BASE}}/beacon/meta-refresh"></noscript>')
PAGES = {
    "maritime.html": (EN_TITLE, EN_PARAGRAPHS + ['<img src="{{BASE}}/beacon/img.png" alt="">'], "2024-03-11", "en",
                      HOSTILE_HEAD),
    "zh-statement.html": (ZH_TITLE, ZH_PARAGRAPHS, "2024-03-12", "zh-CN", ""),
    "ar-statement.html": (AR_TITLE, AR_PARAGRAPHS, "2024-03-13", "ar", ""),
    "edited.html": ("Statement on the trade talks", [
        "The minister welcomed the progress made at the trade talks held this week in the capital.",
        EDITED_BEFORE,
        "The next round of talks will take place in the spring."], "2024-03-14", "en", ""),
    "removed.html": ("Statement that was taken down", [
        "This statement announced a visit by the minister that was later cancelled by the ministry.",
        "The ministry removed the page from its website a few hours after it was published."],
        "2024-03-15", "en", ""),
    "joint.html": ("Joint statement of the two ministers", [
        "The two ministers reaffirmed their shared commitment to an open, rules-based order at sea.",
        "They will meet again next year in Southland to review the implementation of this statement."],
        "2024-03-16", "en", ""),
    "joint-republished.html": ("Joint statement of the two ministers (republished)", [
        "The two ministers reaffirmed their shared commitment to an open, rules-based order at sea.",
        "They will meet again next year in Southland to review the implementation of this statement."],
        "2024-03-16", "en", ""),
}
PDF_NAME = "press-release.pdf"


def build_site(root: Path) -> None:
    news = root / "news" / "2024" / "03"
    news.mkdir(parents=True)
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    for name, (title, paragraphs, date, lang, head) in PAGES.items():
        (news / name).write_text(page(title, paragraphs, date, lang, head), encoding="utf-8")
    shutil.copy(PDFS / "en_press_release.pdf", news / PDF_NAME)
    links = "".join(f'<li><a href="/news/2024/03/{n}">{n}</a></li>' for n in [*PAGES, PDF_NAME])
    (root / "news" / "index.html").write_text(f"<html><body><ul>{links}</ul></body></html>")


def write_routes(root: Path, base: str) -> None:
    """The hostile page is also sent with a Refresh header pointing back at the site."""
    (root / "_routes.json").write_text(json.dumps({
        "/news/2024/03/maritime.html": {"headers": {"Refresh": f"0; url={base}/beacon/refresh-header"}},
    }))


def edit_site(root: Path) -> None:
    """What the publisher does between the two crawls: one edit, one page taken down."""
    edited = root / "news" / "2024" / "03" / "edited.html"
    edited.write_text(edited.read_text(encoding="utf-8").replace(EDITED_BEFORE, EDITED_AFTER), encoding="utf-8")
    (root / "news" / "2024" / "03" / "removed.html").unlink()


SOURCES = """[[sources]]
id = "mfa-north"
name = "Ministry of Foreign Affairs of Northland"
country = "GB"
kind = "foreign_ministry"
languages = ["en", "zh", "ar"]
listings = ["{base}/news/"]
article_pattern = '/news/\\d{{4}}/\\d{{2}}/[^/]+\\.(html|pdf)$'
delay = 0
"""


class CrawledArchive:
    """``path`` of archive.db (warc/ beside it), the site's ``root`` and ``server``, ``ids`` by page name."""

    def __init__(self, path: Path, root: Path, server, ids: dict[str, int]):
        self.path, self.root, self.server, self.ids = path, root, server, ids


def crawl_fixture_site(folder: Path, server_for) -> CrawledArchive:
    """Build the fixture site under ``folder``, serve it (``server_for(root)``) and crawl it twice."""
    root = folder / "site"
    build_site(root)
    server = server_for(root)
    write_routes(root, server.base_url)
    sources = folder / "sources.toml"
    sources.write_text(SOURCES.format(base=server.base_url), encoding="utf-8")
    args = ["crawl", "--sources", sources, "--db", "archive.db", "--log-level", "WARNING"]
    first = run_cli(args, folder, 180, when=T0)
    assert first.returncode == 0, first.stderr[-3000:]
    edit_site(root)
    second = run_cli(args, folder, 180, when=T1)
    assert second.returncode == 0, second.stderr[-3000:]
    conn = sqlite3.connect(folder / "archive.db")
    ids = {url.rsplit("/", 1)[1]: i for i, url in conn.execute("select id, url from releases")}
    conn.close()
    assert set(ids) == {*PAGES, PDF_NAME}
    assert not [p for p in server.paths if "beacon" in p], "the crawl itself never fetches what the page loads"
    return CrawledArchive(folder / "archive.db", root, server, ids)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    """The fixture site crawled twice (module-wide: two crawls take a few seconds); its server
    keeps running so that tests can see every request it receives."""
    from crawler.demo.server import SiteServer

    servers = []

    def start(root):
        servers.append(SiteServer(root).start())
        return servers[-1]

    try:
        yield crawl_fixture_site(tmp_path_factory.mktemp("release-page"), start)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def site(crawled):
    """``get(path) -> httpx.Response`` through an in-process Datasette on the crawled archive."""
    ds = make_datasette(crawled.path)
    loop = asyncio.new_event_loop()

    def get(path):
        return loop.run_until_complete(ds.client.get(path))

    yield get
    loop.close()


def page_of(site, release_id) -> Selector:
    response = site(f"/archive/releases/{release_id}")
    assert response.status_code == 200, response.text[:2000]
    return Selector(text=response.text)


def row(crawled, release_id) -> dict:
    conn = sqlite3.connect(crawled.path)
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute("select * from releases where id = ?", [release_id]).fetchone())
    finally:
        conn.close()


def text_of(selection) -> str:
    return " ".join("".join(selection.css("::text").getall()).split())


# --- the release page ----------------------------------------------------------------------------


def test_release_page_reads_as_a_release(site, crawled):
    release_id = crawled.ids["maritime.html"]
    page = page_of(site, release_id)
    assert page.css("title::text").get() == EN_TITLE
    assert page.css("h1::text").getall() == [EN_TITLE]
    assert page.css("h1.release-title::attr(lang)").get() == "en"
    text = page.css("div.release-text")
    assert text.css("::attr(lang)").get() == "en" and text.css("::attr(dir)").get() == "ltr"
    assert text.css("p::text").getall() == EN_PARAGRAPHS, "the text, one paragraph each, nothing added"
    # Publisher linking to its source row, country, date and where it came from, type, address, status.
    assert page.css("a.release-publisher::attr(href)").get() == "/archive/sources/mfa-north"
    assert page.css("a.release-publisher::text").get() == "Ministry of Foreign Affairs of Northland"
    assert "(GB)" in text_of(page.css(".release-kicker"))
    facts = dict(zip([text_of(dt) for dt in page.css("#provenance dt")], [text_of(dd) for dd in page.css("#provenance dd")]))
    assert facts["Published"] == "11 March 2024: the date comes from the page's metadata"
    assert facts["Type"] == "Joint statement"
    assert facts["Language"].startswith("English (en)")
    assert facts["Original address"] == f"{crawled.server.base_url}/news/2024/03/maritime.html"
    assert facts["Status"] == "Live: the page answered when last checked, 20 March 2024, 12:00 UTC."
    assert page.css("time::attr(datetime)").get() == "2024-03-11"
    original = f"/-/original/archive/{release_id}"
    assert page.css("nav.release-links a::attr(href)").getall() == [
        f"{crawled.server.base_url}/news/2024/03/maritime.html", original, "#cite", "#versions",
        f"/archive/releases/{release_id}.json"]
    # Archived markup is never part of the page.
    assert MARKER not in site(f"/archive/releases/{release_id}").text


def test_row_json_and_other_row_pages_stay_datasettes(site, crawled):
    release_id = crawled.ids["maritime.html"]
    data = site(f"/archive/releases/{release_id}.json?_shape=objects").json()
    (got,) = data["rows"]
    assert got == row(crawled, release_id)
    source = Selector(text=site("/archive/sources/mfa-north").text)
    assert text_of(source.css("h1")) == "sources: mfa-north", "other tables keep Datasette's row page"


@pytest.mark.parametrize(("name", "lang", "direction", "title", "paragraphs"), [
    ("zh-statement.html", "zh", "ltr", ZH_TITLE, ZH_PARAGRAPHS),
    ("ar-statement.html", "ar", "rtl", AR_TITLE, AR_PARAGRAPHS),
])
def test_language_and_direction_of_the_text(site, crawled, name, lang, direction, title, paragraphs):
    page = page_of(site, crawled.ids[name])
    assert page.css("title::text").get() == title
    for element in (page.css("h1.release-title"), page.css("div.release-text")):
        assert element.css("::attr(lang)").get() == lang
        assert element.css("::attr(dir)").get() == direction
    assert page.css("div.release-text p::text").getall() == paragraphs
    assert page.css("html::attr(lang)").get() == "en", "the page around the text is in English"


def test_removed_release_says_when_and_keeps_its_text(site, crawled):
    page = page_of(site, crawled.ids["removed.html"])
    assert text_of(page.css(".release-byline .release-status-removed")) == "Removed on 20 March 2024, 12:00 UTC"
    status = text_of(page.xpath("//section[@id='provenance']//dt[.='Status']/following-sibling::dd[1]"))
    assert status == ("Removed on 20 March 2024, 12:00 UTC: the publisher took the page down; the archived text "
                      "is kept. Removed 20 March 2024, 12:00 UTC (HTTP 404)")
    assert page.css("div.release-text p::text").getall() == list(PAGES["removed.html"][1])
    live = page_of(site, crawled.ids["joint.html"])
    assert text_of(live.css(".release-byline .release-status-live")) == "Live"


def test_versions_with_readable_diffs(site, crawled):
    release_id = crawled.ids["edited.html"]
    page = page_of(site, release_id)
    versions = page.css("#versions li.version")
    assert [text_of(v.css("h3")) for v in versions] == [
        "Version 2: edited by the publisher, 20 March 2024, 12:00 UTC",
        "Version 1: first archived, 20 March 2024, 10:00 UTC"]
    diff = versions[0].css(".diff")
    assert [text_of(d) for d in diff.css(".diff-removed")] == [f"−Removed: {EDITED_BEFORE}"]
    assert [text_of(d) for d in diff.css(".diff-added")] == [f"+Added: {EDITED_AFTER}"]
    # The words that changed are marked within the line, the rest of it is not.
    assert diff.css(".diff-removed del::text").getall() == ["the autumn"]
    assert diff.css(".diff-added ins::text").getall() == ["September in Ottawa"]
    assert text_of(diff.css(".diff-context")[0]) == "Title: Statement on the trade talks"
    # Each version links to its own archived original, which holds that version's words.
    links = [v.css(".version-links a::attr(href)").get() for v in versions]
    assert links == [f"/-/original/archive/{release_id}?version=2", f"/-/original/archive/{release_id}?version=1"]
    assert EDITED_AFTER.encode() in site(links[0]).content and EDITED_BEFORE.encode() not in site(links[0]).content
    assert EDITED_BEFORE.encode() in site(links[1]).content
    assert text_of(page.css(".release-byline")).endswith("2 versions")


def test_other_releases_with_the_same_text(site, crawled):
    joint, copy = crawled.ids["joint.html"], crawled.ids["joint-republished.html"]
    for this, other, title in ((joint, copy, PAGES["joint-republished.html"][0]), (copy, joint, PAGES["joint.html"][0])):
        page = page_of(site, this)
        assert page.css("#same-text li a::attr(href)").getall() == [f"/archive/releases/{other}"]
        assert page.css("#same-text li a::text").getall() == [title]
    alone = page_of(site, crawled.ids["maritime.html"])
    assert text_of(alone.css("#same-text p")) == "No other release in the archive has exactly this text."


# --- cite this ----------------------------------------------------------------------------------


def parse_bibtex(text: str) -> tuple[str, str, dict]:
    """(entry type, key, fields) of one BibTeX entry; fails on unbalanced braces or stray text."""
    match = re.fullmatch(r"\s*@(\w+)\{([^,\s]+),(.*)\}\s*", text, re.DOTALL)
    assert match, text
    kind, key, body = match.groups()
    fields, at = {}, 0
    while body[at:].strip():
        field = re.compile(r"\s*(\w+)\s*=\s*\{").match(body, at)
        assert field, body[at:]
        depth, start, at = 1, field.end(), field.end()
        while depth:
            assert at < len(body), "unbalanced braces"
            if body[at] == "\\":
                at += 2
                continue
            depth += {"{": 1, "}": -1}.get(body[at], 0)
            at += 1
        fields[field.group(1)] = body[start:at - 1]
        at = re.compile(r"\s*,?").match(body, at).end()
    return kind, key, fields


def test_citation_fields_are_exact(site, crawled):
    release_id = crawled.ids["zh-statement.html"]
    stored = row(crawled, release_id)
    data = site(f"/archive/releases/{release_id}.json?_shape=objects").json()["rows"][0]
    sha256 = hashlib.sha256(data["text"].encode("utf-8")).hexdigest()
    assert sha256 == stored["content_hash"], "the crawl's content_hash is the SHA-256 of the stored text"
    page = page_of(site, release_id)
    fields = {dd.attrib["data-field"]: text_of(dd) for dd in page.css(".citation-fields dd")}
    page_url = f"http://localhost/archive/releases/{release_id}"
    assert fields == {
        "publisher": "Ministry of Foreign Affairs of Northland", "title": ZH_TITLE, "published": "2024-03-12",
        "url": f"{crawled.server.base_url}/news/2024/03/zh-statement.html", "archived": stored["last_changed"],
        "archive-id": f"release {release_id}, version 1", "sha256": sha256,
    }
    citation = text_of(page.css("#citation-text"))
    assert citation == (f"Ministry of Foreign Affairs of Northland. \u201c{ZH_TITLE}.\u201d Joint statement, published "
                        f"2024-03-12. {fields['url']}. Archived {stored['last_changed']} by pressarchive (release "
                        f"{release_id}, version 1): {page_url}. SHA-256 of the text: {sha256}.")

    kind, key, bib = parse_bibtex(page.css("#citation-bibtex::text").get())
    assert (kind, key) == ("misc", f"pressarchive-{release_id}")
    assert bib["author"] == "{Ministry of Foreign Affairs of Northland}" and bib["title"] == ZH_TITLE
    assert (bib["date"], bib["year"], bib["month"], bib["urldate"]) == ("2024-03-12", "2024", "3", "2024-03-20")
    assert bib["url"] == fields["url"] and bib["langid"] == "zh"
    assert sha256 in bib["note"] and page_url in bib["note"]
    download = site(f"/-/cite/archive/{release_id}.bib")
    assert download.headers["content-type"] == "application/x-bibtex; charset=utf-8"
    assert parse_bibtex(download.text) == (kind, key, bib)

    (csl,) = json.loads(page.css("#citation-csl::text").get())
    assert csl == {
        "id": f"pressarchive-{release_id}", "type": "webpage", "genre": "Joint statement", "title": ZH_TITLE,
        "author": [{"literal": "Ministry of Foreign Affairs of Northland"}],
        "publisher": "Ministry of Foreign Affairs of Northland", "URL": fields["url"],
        "issued": {"date-parts": [[2024, 3, 12]]}, "accessed": {"date-parts": [[2024, 3, 20]]},
        "archive": "pressarchive", "archive_location": page_url, "language": "zh",
        "note": f"Archived {stored['last_changed']} (release {release_id}, version 1). SHA-256 of the text: {sha256}",
    }
    assert json.loads(site(f"/-/cite/archive/{release_id}.json").text) == [csl]


def test_bibtex_escapes_what_tex_would_read(site, crawled, tmp_path):
    """A title with TeX's special characters stays one balanced field with the same words."""
    copy = tmp_path / "archive.db"
    src, dst = sqlite3.connect(crawled.path), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    release_id = crawled.ids["joint.html"]
    with dst:
        dst.execute("update releases set title = ? where id = ?", ["50% of R&D {costs} #1 _now_ ~ ^ \\ $5", release_id])
    dst.close()
    ds = make_datasette(copy)
    text = asyncio.run(ds.client.get(f"/-/cite/archive/{release_id}.bib")).text
    _, _, fields = parse_bibtex(text)
    assert fields["title"] == (r"50\% of R\&D \{costs\} \#1 \_now\_ \textasciitilde{} \textasciicircum{} "
                               r"\textbackslash{} \$5")


# --- the archived original --------------------------------------------------------------------------


def test_archived_original_is_the_capture_served_inert(site, crawled):
    release_id = crawled.ids["maritime.html"]
    response = site(f"/-/original/archive/{release_id}")
    assert response.status_code == 200
    served = (crawled.root / "news/2024/03/maritime.html").read_bytes().replace(b"{{BASE}}", crawled.server.base_url.encode())
    assert response.content == served, "the bytes as the site sent them"
    headers = response.headers
    assert headers["content-type"] == "text/html"  # as the site sent it (no charset: the page declares it)
    policy = [part.strip() for part in headers["content-security-policy"].split(";")]
    assert policy[0] == "sandbox" and "allow-scripts" not in headers["content-security-policy"]
    assert "default-src 'none'" in policy and "img-src data:" in policy and "form-action 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    assert "refresh" not in headers and "location" not in headers, "archived headers are never replayed"
    assert headers["link"] == f'<{crawled.server.base_url}/news/2024/03/maritime.html>; rel="original"'
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", headers["memento-datetime"])

    pdf = site(f"/-/original/archive/{crawled.ids[PDF_NAME]}")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == (PDFS / "en_press_release.pdf").read_bytes()
    assert pdf.headers["content-disposition"] == 'attachment; filename="press-release.pdf"'
    assert pdf.headers["content-security-policy"].startswith("sandbox;")


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/-/original/archive/99999", 404, "The archive holds no release 99999."),
    ("/-/original/archive/{edited}?version=7", 404, "Release {edited} has no version 7 (it has 1 to 2)."),
    ("/-/original/archive/{edited}?version=two", 400,
     "version='two' is not a version number (release {edited} has versions 1 to 2)."),
    ("/-/original/elsewhere/1", 404, "This site serves no archive named 'elsewhere'."),
    ("/-/cite/archive/99999.bib", 404, "The archive holds no release 99999."),
])
def test_original_of_what_is_not_there(site, crawled, path, status, message):
    response = site(path.format(edited=crawled.ids["edited.html"]))
    assert response.status_code == status
    page = Selector(text=response.text)
    assert text_of(page.css(".release-problem")) == message.format(edited=crawled.ids["edited.html"])


def test_missing_or_broken_capture_is_a_clear_page_never_a_500(crawled, tmp_path):
    """On a copy: a WARC file gone, an offset that is no record, a path outside warc/, no capture."""
    from browsing import serving

    copy = tmp_path / "archive.db"
    src, dst = sqlite3.connect(crawled.path), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    shutil.copytree(crawled.path.parent / "warc", tmp_path / "warc")
    ids = crawled.ids
    with dst:
        dst.execute("update releases set warc_file = 'gone.warc.gz' where id = ?", [ids["maritime.html"]])
        dst.execute("update releases set warc_offset = warc_offset + 3 where id = ?", [ids["zh-statement.html"]])
        dst.execute("update releases set warc_file = '../archive.db', warc_offset = 0 where id = ?",
                    [ids["ar-statement.html"]])
        dst.execute("update releases set warc_file = null where id = ?", [ids["joint.html"]])
    dst.close()
    import urllib.error
    import urllib.request

    def fetch(url):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    with serving(copy) as (base, log):
        expected = {
            "maritime.html": (404, (f"The raw capture of release {ids['maritime.html']} is in the WARC file gone.warc.gz, "
                                   f"which is not in {tmp_path / 'warc'} (was the warc/ folder moved, or not copied "
                                   "along with the archive?).")),
            "zh-statement.html": (410, f"The raw capture of release {ids['zh-statement.html']} cannot be read: "),
            "ar-statement.html": (410, (f"The raw capture of release {ids['ar-statement.html']} cannot be read: "
                                       f"WARC file '../archive.db' is outside {tmp_path / 'warc'}.")),
            "joint.html": (404, (f"The archive holds no raw capture of release {ids['joint.html']} (crawled with "
                                "--no-warc, or before raw capture existed).")),
        }
        for name, (status, message) in expected.items():
            got, body = fetch(f"{base}/-/original/archive/{ids[name]}")
            shown = text_of(Selector(text=body).css(".release-problem"))
            assert (got, shown[:len(message)]) == (status, message), name
        # The release page itself is unaffected: its text comes from the archive.
        got, body = fetch(f"{base}/archive/releases/{ids['maritime.html']}")
        assert got == 200 and EN_PARAGRAPHS[0] in body
        got, _ = fetch(f"{base}/-/original/archive/{ids['edited.html']}")
        assert got == 200
    assert "Traceback" not in log() and "Internal Server Error" not in log()


def test_serve_warc_dir_finds_captures_moved_elsewhere(crawled, tmp_path):
    """An archive copied without its warc/ folder, the WARC files kept elsewhere: ``serve --warc-dir``
    (``make_datasette(warc_dir=...)``) serves the originals from there; without it, the page says where
    it looked."""
    copy = tmp_path / "copy" / "archive.db"
    copy.parent.mkdir()
    src, dst = sqlite3.connect(crawled.path), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    elsewhere = tmp_path / "captures"
    shutil.copytree(crawled.path.parent / "warc", elsewhere)
    release_id = crawled.ids["edited.html"]
    loop = asyncio.new_event_loop()
    try:
        found = loop.run_until_complete(make_datasette(copy, warc_dir=elsewhere).client.get(
            f"/-/original/archive/{release_id}"))
        missing = loop.run_until_complete(make_datasette(copy).client.get(f"/-/original/archive/{release_id}"))
    finally:
        loop.close()
    assert found.status_code == 200, found.text[:500]
    assert found.headers["content-security-policy"].startswith("sandbox")
    assert missing.status_code == 404
    assert str(copy.parent / "warc") in text_of(Selector(text=missing.text).css(".release-problem"))
