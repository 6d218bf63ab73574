"""PDF releases: quality of extraction on the generated government PDFs in tests/pdfs/
(see tests/pdfs/make_pdfs.py for what each one mirrors), and PDF links in HTML releases."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from crawler.discovery.attachments import pdf_links
from pipelines.cleaning import is_pdf
from pipelines.extraction import Extraction
from pipelines.pdf import (
    analyse_pdf,
    extract_pdf,
    find_date,
    has_text_layer,
    is_junk_title,
    pdf_date,
)

PDFS = Path(__file__).parent / "pdfs"
FETCHED = datetime(2024, 6, 1, tzinfo=timezone.utc)


def pdf(name: str) -> bytes:
    return (PDFS / name).read_bytes()


@pytest.fixture(scope="module")
def english():
    return analyse_pdf(pdf("en_press_release.pdf"), "https://www.mfat.northland.example/media/mr-2024-031.pdf",
                       fetched_at=FETCHED, languages=["en"])


@pytest.fixture(scope="module")
def chinese():
    return analyse_pdf(pdf("zh_statement.pdf"), "http://nl.china-embassy.example/chn/sgxw/P020240520.pdf",
                       fetched_at=FETCHED, languages=["zh"])


def test_english_release(english):
    release = english.extraction
    assert isinstance(release, Extraction)
    assert english.status == "text" and english.pages == 3
    # /Title is "Microsoft Word - MR-2024-031 final.docx": the headline comes from the page.
    assert release.title == "Minister announces humanitarian assistance for flood-affected communities in the Pacific"
    assert (release.published, release.date_source) == ("2024-03-14", "text"), "printed date beats /CreationDate"
    assert release.language == "en" and release.encoding == "pdf"
    lines = release.text.split("\n")
    assert lines[0] == "Released 14 March 2024", "the headline is not repeated as the first paragraph"
    assert ("The Minister for Foreign Affairs and Trade, the Hon. Margaret Ellison, today announced an immediate "
            "package of humanitarian assistance of 12.5 million dollars for communities affected by severe flooding "
            "in Tuvalu, Kiribati and the Solomon Islands.") in lines, "a wrapped paragraph is one line"
    assert "climate-resilient infrastructure" in release.text
    assert lines[-1].startswith("Media contact: Ministry of Foreign Affairs and Trade media team")
    for furniture in ("GOVERNMENT OF NORTHLAND", "MINISTRY OF FOREIGN AFFAIRS AND TRADE", "MEDIA RELEASE",
                      "www.mfat.northland.example", "Page 1 of 3", "Page 3 of 3", "MR-2024-031"):
        assert furniture not in release.text


def test_paragraphs_broken_by_a_page_are_joined(english, chinese):
    # Page 1 of each ends mid-paragraph ("... the Pacific Islands" / "... 健康稳定发展，"), and the next
    # page goes on after its running head ("Forum and the Red Cross ..." / "各领域务实合作 ...").
    quote = ("\u201cOur Pacific neighbours are facing the worst floods in a generation, and Northland stands with "
             "them,\u201d the Minister said. \u201cWe are working closely with partner governments, the Pacific "
             "Islands Forum and the Red Cross movement to make sure assistance reaches the people who need it "
             "most.\u201d")
    lines = english.extraction.text.split("\n")
    assert lines.count(quote) == 3, "the paragraph is repeated three times in the release, each one whole"
    assert len(lines) == 1 + 7 * 3 + 1
    zh = ("中方始终奉行独立自主的和平外交政策，坚持在和平共处五项原则基础上同各国发展友好合作关系。中国和北地国建交以来，"
          "两国关系总体保持健康稳定发展，各领域务实合作成果丰硕，给两国人民带来了实实在在的利益。")
    zh_lines = chinese.extraction.text.split("\n")
    assert zh_lines.count(zh) == 3 and len(zh_lines) == 1 + 4 * 3 + 1


def test_chinese_statement(chinese):
    release = chinese.extraction
    assert chinese.status == "text" and chinese.pages == 2
    assert release.title == "驻北地国使馆发言人就近期涉华错误言论答记者问"
    assert (release.published, release.date_source) == ("2024-05-20", "text"), "the date under the signature"
    assert release.language == "zh"
    lines = release.text.split("\n")
    assert lines[0] == "问：近日，北地国个别政客发表涉华错误言论，对中国内政说三道四。使馆对此有何评论？"
    assert ("答：我们注意到有关报道。有关言论罔顾事实，严重干涉中国内政，我们对此表示强烈不满和坚决反对，"
            "已向北地国方面提出严正交涉。") in lines
    assert "推动两国关系持续健康稳定向前发展。" in release.text, "no space where a line wrapped"
    assert lines[-1] == "2024年5月20日"
    assert "中华人民共和国驻北地国大使馆" not in release.text
    assert "第 1 页" not in release.text and "共 2 页" not in release.text
    assert " " not in release.text


def test_date_from_pdf_metadata_when_nothing_else_says():
    release = extract_pdf(pdf("en_joint_statement.pdf"), "https://www.mfa.example/docs/joint-statement.pdf",
                          fetched_at=FETCHED)
    assert release.title == "Joint Statement on Maritime Cooperation between Northland and Southland"
    assert (release.published, release.date_source) == ("2023-09-11", "pdf-meta")
    assert release.text.startswith("The Foreign Ministers of Northland and Southland met in Port Adelie")
    assert "- 1 -" not in release.text and len(release.text.split("\n")) == 3


def test_xmp_create_date_is_read_when_there_is_no_creation_date(chinese):
    # zh_statement.pdf has no /CreationDate, only XMP (its printed date wins when there is one).
    assert chinese.metadata["xmp:CreateDate"] == "2024-05-20T16:30:00+08:00"
    assert "CreationDate" not in chinese.metadata and chinese.metadata["Lang"] == "zh-CN"
    assert find_date("", None, chinese.metadata, fetched_on=FETCHED.date(), hints=None, language="zh") == (
        "2024-05-20", "pdf-meta")


def test_url_and_feed_dates_come_first_and_future_dates_are_skipped():
    url = "https://www.mfat.northland.example/media/2024/03/13/release.pdf"
    assert extract_pdf(pdf("en_press_release.pdf"), url, fetched_at=FETCHED).published == "2024-03-13"
    feed = {"date": "2024-03-12", "date_source": "feed"}
    release = extract_pdf(pdf("en_press_release.pdf"), hints=feed, fetched_at=FETCHED)
    assert (release.published, release.date_source) == ("2024-03-12", "feed")
    # Fetched before the printed date and the file's creation: no date rather than a future one.
    early = extract_pdf(pdf("en_press_release.pdf"), fetched_at=datetime(2024, 3, 1, tzinfo=timezone.utc))
    assert (early.published, early.date_source) == (None, None)


def test_scanned_pdf_is_recognised_not_stored_as_text():
    body = pdf("scanned_statement.pdf")
    assert not has_text_layer(body)
    result = analyse_pdf(body, "https://www.mfa.example/statements/scan0001.pdf", fetched_at=FETCHED,
                         hints={"title": "Statement by the Spokesperson on the ceasefire"})
    assert result.status == "scanned" and not result.has_text
    assert result.extraction.text == ""
    assert result.extraction.title == "Statement by the Spokesperson on the ceasefire", "'scan0001' is junk"
    assert (result.extraction.published, result.extraction.date_source) == ("2022-04-07", "pdf-meta")


def test_text_layer_detected():
    assert has_text_layer(pdf("en_press_release.pdf")) and has_text_layer(pdf("zh_statement.pdf"))


@pytest.mark.parametrize("body", [b"", b"<html>not a pdf</html>", pdf("en_joint_statement.pdf")[:2000]])
def test_broken_pdfs_do_not_raise(body):
    result = analyse_pdf(body, "https://www.mfa.example/broken.pdf", hints={"title": "Broken statement"})
    assert result.status in ("unreadable", "empty")
    assert result.extraction.text == "" and result.extraction.title == "Broken statement"
    assert not has_text_layer(body)


@pytest.mark.parametrize("title, junk", [
    ("Microsoft Word - MR-2024-031 final.docx", True),
    ("Microsoft PowerPoint - briefing", True),
    ("scan0001", True),
    ("Untitled", True),
    ("Document1", True),
    ("media-release-14-march.pdf", True),
    ("MR-2024-031", True),
    ("", True),
    ("Joint Statement on Maritime Cooperation", False),
    ("外交部发言人答记者问", False),
])
def test_junk_titles(title, junk):
    assert is_junk_title(title) is junk


def test_pdf_dates():
    assert pdf_date("D:20240315093000+11'00'").isoformat() == "2024-03-15"
    assert pdf_date("2024-05-20T16:30:00+08:00").isoformat() == "2024-05-20"
    assert pdf_date("D:2024") is None and pdf_date(None) is None


def test_is_pdf():
    assert is_pdf(b"%PDF-1.7\n...", "application/octet-stream")
    assert is_pdf(b"", "application/pdf; charset=binary")
    assert not is_pdf(b"<html>", "text/html")


RELEASE_HTML = """<html><head><base href="https://www.mfa.example/news/2024/"></head><body>
<header><a href="/about/annual-report-2023.pdf">Annual report (PDF)</a></header>
<nav><a href="/docs/strategy.pdf">Strategy</a></nav>
<main>
  <h1>Statement on the ceasefire</h1>
  <p>Read the <a href="ceasefire-statement.PDF#page=1">full statement (PDF, 245 KB)</a>.</p>
  <p><a href="/download?id=5812" type="application/pdf">Joint communiqué</a></p>
  <p><a href="/download?id=5813">Download the statement in PDF</a></p>
  <p><a href="/news/2024/other-statement">Another statement</a></p>
  <p><a href="ceasefire-statement.PDF#page=1">again</a> <a href="mailto:press@mfa.example">press</a></p>
  <p><a href="/fr/declaration.pdf?v=2">Version française</a></p>
  <iframe src="/viewer/annex.pdf"></iframe>
</main>
<footer><a href="/privacy.pdf">Privacy notice</a></footer>
</body></html>"""


def test_pdf_links_in_a_release():
    assert pdf_links(RELEASE_HTML, "https://www.mfa.example/news/2024/ceasefire") == [
        "https://www.mfa.example/news/2024/ceasefire-statement.PDF#page=1",
        "https://www.mfa.example/download?id=5812",
        "https://www.mfa.example/download?id=5813",
        "https://www.mfa.example/fr/declaration.pdf?v=2",
        "https://www.mfa.example/viewer/annex.pdf",
    ]


def test_pdf_links_from_a_scrapy_response_and_bytes():
    from scrapy.http import HtmlResponse

    html = '<html><body><p><a href="files/statement.pdf">下载全文</a></p></body></html>'
    response = HtmlResponse("http://nl.china-embassy.example/chn/sgxw/t1.htm", body=html.encode("gbk"),
                            encoding="gbk")
    expected = ["http://nl.china-embassy.example/chn/sgxw/files/statement.pdf"]
    assert pdf_links(response) == expected
    assert pdf_links(html.encode("gbk"), response.url) == expected
    assert pdf_links("", "http://x.example/") == []
