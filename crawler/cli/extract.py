"""``pressarchive extract FILE``: what a crawl would store of one saved page, as JSON."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click

from crawler.cli.options import EXIT_SOURCE_FAILED, fail


@click.command("extract")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--url", help="The page's original URL (helps dates and links).")
@click.option("--charset", help="Charset the server declared in Content-Type, if any.")
def extract(file, url, charset):
    """Print title, text, date and language extracted from a saved page (HTML or PDF), as JSON.

    FILE is the page as saved from the site (raw bytes: its encoding is detected as in a crawl).
    Exit codes: 0 text found; 1 a page, but no main text in it (the JSON is
    still printed: title and date help to write selectors); 2 not a page at
    all (empty, or binary data such as an image or an archive).
    """
    body = _read_page(file)
    result, no_text = _extract_page(body, file, url, charset)
    click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    if no_text:
        fail(f"{file}: {no_text}", EXIT_SOURCE_FAILED)


def _read_page(file: Path) -> bytes:
    from pipelines.cleaning import is_pdf, looks_binary

    try:
        if file.is_dir():
            fail(f"{file} is a folder, not a page")
        if not stat.S_ISREG(file.stat().st_mode):  # /dev/zero would be read forever
            fail(f"{file} is not a regular file (a device, pipe or socket), not a page")
        body = file.read_bytes()
    except FileNotFoundError:
        fail(f"file not found: {file}")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    if not body.strip():
        fail(f"{file} is empty: not a page")
    if not is_pdf(body) and looks_binary(body):
        fail(f"{file} is not a page: binary data (an image, archive or program?), not HTML or PDF")
    return body


def _extract_page(body: bytes, file: Path, url, charset):
    """The extraction of a page, and why it has no text (None when it has): what a crawl would
    store, or the reason it would not. Decoding repairs are one warning line each."""
    from pipelines import extraction
    from pipelines.cleaning import SCRIPT_ONLY_MAX_WORDS, SCRIPT_ONLY_RE, is_pdf
    from pipelines.encoding import decode_notes
    from pipelines.pdf import TEXT_STATUSES, analyse_pdf

    if is_pdf(body):
        analysed = analyse_pdf(body, url)
        if not analysed.has_text:
            return analysed.extraction, f"PDF without usable text: {TEXT_STATUSES.get(analysed.status, analysed.status)}"
        return analysed.extraction, None
    with decode_notes() as notes:
        result = extraction.extract(body, url, http_charset=charset)
    for note in [*dict.fromkeys(notes), *result.notes]:
        click.echo(f"Warning: {file}{f' ({url})' if url else ''}: {note}", err=True)
    if not result.text.strip():
        return result, "no main text found (a listing, a JavaScript shell or an error page?)"
    if extraction.word_count(result.text) <= SCRIPT_ONLY_MAX_WORDS and SCRIPT_ONLY_RE.search(result.text):
        return result, "JavaScript-only page: no text without running its scripts"
    return result, None
