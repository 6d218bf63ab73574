"""Raw capture end to end: WARC files from a real crawl, PDF releases and attachments,
re-extraction from the capture with no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils
from conftest import run_cli

from archive.warc import iter_records, read_record

PDFS = Path(__file__).parent / "pdfs"
WARCIO = Path(sys.executable).with_name("warcio")

RELEASE_HTML = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Joint statement on maritime cooperation | Ministry of Foreign Affairs</title>
<meta name="dcterms.issued" content="2023-09-11"></head>
<body><nav><a href="/">Home</a></nav><main><h1>Joint statement on maritime cooperation</h1>
<p>The foreign ministers of Northland and Southland today adopted a joint statement on maritime cooperation,
committing both governments to freedom of navigation and to the peaceful settlement of disputes.</p>
<p>The ministers agreed to hold annual consultations and to establish a working group on fisheries,
marine science and search and rescue.</p>
<p><a href="/docs/joint-statement-full.pdf">Full statement (PDF, 120 KB)</a></p></main>
<footer><a href="/privacy.pdf">Privacy notice (PDF)</a></footer></body></html>"""


def build(root: Path):
    (root / "statements" / "2024" / "03").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    (root / "statements" / "2024" / "03" / "joint-statement.html").write_text(RELEASE_HTML)
    shutil.copy(PDFS / "en_joint_statement.pdf", root / "docs" / "joint-statement-full.pdf")
    shutil.copy(PDFS / "en_press_release.pdf", root / "statements" / "2024" / "03" / "press-release.pdf")
    shutil.copy(PDFS / "zh_statement.pdf", root / "statements" / "2024" / "03" / "zh-statement.pdf")
    shutil.copy(PDFS / "scanned_statement.pdf", root / "statements" / "2024" / "03" / "scanned.pdf")
    links = "".join(f'<li><a href="/statements/2024/03/{n}">{n}</a></li>'
                    for n in ("joint-statement.html", "press-release.pdf", "zh-statement.pdf", "scanned.pdf"))
    (root / "statements" / "index.html").write_text(f"<html><body><ul>{links}</ul></body></html>")


def crawl(tmp_path, sources, *extra, db="archive.db"):
    return run_cli(["crawl", "--sources", sources, "--db", db, "--log-level", "WARNING", *extra], tmp_path, 120)


@pytest.fixture
def pdf_site(tmp_path, site_server):
    root = tmp_path / "site"
    build(root)
    server = site_server(root)
    sources = tmp_path / "sources.toml"
    sources.write_text(f"""[[sources]]
id = "mfa-pdf"
name = "Ministry publishing PDFs"
country = "GB"
kind = "foreign_ministry"
languages = ["en", "zh"]
listings = ["{server.base_url}/statements/"]
article_pattern = '/statements/\\d{{4}}/\\d{{2}}/[^/]+\\.(html|pdf)$'
delay = 0
""")
    return root, server, sources


def test_warc_capture_pdfs_and_reextract(tmp_path, pdf_site):
    root, server, sources = pdf_site
    result = crawl(tmp_path, sources)
    assert result.returncode == 0, result.stderr[-3000:]
    db = sqlite_utils.Database(tmp_path / "archive.db")
    rows = {r["url"].rsplit("/", 1)[1]: r for r in db["releases"].rows}
    assert set(rows) == {"joint-statement.html", "press-release.pdf", "zh-statement.pdf", "scanned.pdf"}

    # PDFs are releases like any other, searchable, with their type recorded.
    press = rows["press-release.pdf"]
    assert press["content_type"] == "application/pdf" and press["pages"] == 3 and press["text_status"] == "text"
    assert press["title"] == "Minister announces humanitarian assistance for flood-affected communities in the Pacific"
    assert press["published"] == "2024-03-14"
    assert rows["zh-statement.pdf"]["language"] == "zh" and "北地国" in rows["zh-statement.pdf"]["text"]
    scanned = rows["scanned.pdf"]
    assert scanned["text_status"] == "scanned" and not scanned["text"], "recorded as scanned, not as empty text"
    hits = db.execute("select count(*) from releases_fts where releases_fts match 'humanitarian'").fetchone()[0]
    assert hits == 1

    # The "Full statement (PDF)" link is fetched and attached; the footer's privacy PDF is not.
    (attachment,) = db["release_files"].rows
    assert attachment["release_id"] == rows["joint-statement.html"]["id"]
    assert attachment["url"].endswith("/docs/joint-statement-full.pdf")
    assert "Northland and Southland" in attachment["title"] and attachment["text_status"] == "text"
    assert "/privacy.pdf" not in server.paths

    # Every response is in the WARC, and each release points at its own record.
    warc_dir = tmp_path / "warc"
    files = sorted(warc_dir.glob("*.warc.gz"))
    assert files
    check = subprocess.run([str(WARCIO), "check", *map(str, files)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    captured = {rec.url.split("/", 3)[3] for f in files for rec in iter_records(f)}
    assert {"robots.txt", "statements/", "docs/joint-statement-full.pdf"} <= captured
    for name, row in rows.items():
        status, _headers, body = read_record(warc_dir, row["warc_file"], row["warc_offset"])
        assert status == 200
        assert body == (root / "statements" / "2024" / "03" / name).read_bytes()
    run = next(db.query("select * from crawl_runs"))
    assert run["warc_bytes"] > sum(len(p.read_bytes()) for p in root.rglob("*.pdf")) // 2

    # Re-extraction from the capture, with the site gone: a stale extraction is corrected and
    # recorded as an extraction change, not as an edit by the publisher.
    server.stop()
    html = rows["joint-statement.html"]
    with db.conn:
        db.execute("update releases set text = 'stale text from an old extractor', published = '2000-01-01', "
                   "extractor = 'old' where id = ?", [html["id"]])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-m", "crawler", "reextract", "--db", "archive.db", "mfa-pdf"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4 releases re-extracted: 1 new text" in out.stdout
    fixed = db["releases"].get(html["id"])
    assert fixed["text"] == html["text"] and fixed["published"] == "2023-09-11"
    versions = [v["change"] for v in db.query(
        "select change from release_versions where release_id = ? order by version", [html["id"]])]
    assert versions == ["first", "extraction"]
    assert db["releases"].get(rows["scanned.pdf"]["id"])["text_status"] == "scanned"


def test_no_warc(tmp_path, pdf_site):
    _, _, sources = pdf_site
    result = crawl(tmp_path, sources, "--no-warc")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "warc").exists()
    db = sqlite_utils.Database(tmp_path / "archive.db")
    assert db.execute("select count(*) from releases where warc_file is not null").fetchone()[0] == 0
    assert next(db.query("select warc_bytes from crawl_runs"))["warc_bytes"] == 0
