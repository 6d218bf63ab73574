"""``pressarchive reextract``: clean the archived raw capture again, without the network.

For every release with a WARC location (optionally only some sources), the
stored response is read back, cleaned with the current extractor, and the
archive is updated where the output changed: a changed title or text becomes
a new version labelled ``extraction`` (never ``edit``: the publisher did not
change anything), changed dates, languages or encodings are updated in place,
and the search index follows. Nothing is fetched and nothing is deleted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from crawler.clock import now
from crawler.warc import read_record
from pipelines import history, search_index
from pipelines.clean import NoText, clean_page
from pipelines.schema import open_archive

logger = logging.getLogger(__name__)

DISCOVERY_DATES = ("feed", "listing", "sitemap")  # dates the page itself cannot give again
METADATA = ("published", "date_source", "language", "encoding", "canonical_url", "extractor", "text_status",
            "pages")


def _content_type(headers) -> tuple[str | None, str | None]:
    value = next((v for k, v in headers if k.lower() == "content-type"), "") or ""
    mime = value.split(";")[0].strip().lower() or None
    charset = None
    if "charset=" in value.lower():
        charset = value.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'") or None
    return mime, charset


def reextract(db_path: Path, source_ids=(), warc_dir: Path | None = None) -> dict:
    db = open_archive(db_path)
    search_index.ensure_search(db)
    warc_dir = warc_dir or Path(db_path).parent / "warc"
    languages = {row["id"]: row["languages"] for row in db.query("select id, languages from sources")}
    where, params = "warc_file is not null", []
    if source_ids:
        where += f" and source_id in ({', '.join('?' for _ in source_ids)})"
        params = list(source_ids)
    counts = {"releases": 0, "text_changed": 0, "metadata_changed": 0, "unchanged": 0, "unreadable": 0}
    rows = list(db.query(f"select * from releases where {where} order by id", params))
    touched = []
    for row in rows:
        counts["releases"] += 1
        try:
            _status, headers, body = read_record(warc_dir, row["warc_file"], row["warc_offset"])
        except (OSError, ValueError) as exc:
            counts["unreadable"] += 1
            logger.error("release %s (%s): raw capture %s@%s unreadable: %s", row["id"], row["url"],
                         row["warc_file"], row["warc_offset"], exc)
            continue
        mime, charset = _content_type(headers)
        hints = {}
        if row["date_source"] in DISCOVERY_DATES:
            hints = {"date": row["published"], "date_source": row["date_source"]}
        fetched_at = row["last_changed"] or row["first_seen"]
        try:
            cleaned = clean_page(body, row["fetched_url"] or row["url"], mime or row["content_type"], charset,
                                 fetched_at, hints, _languages(languages.get(row["source_id"])))
        except NoText as exc:
            counts["unchanged"] += 1
            logger.warning("release %s (%s): the current extractor finds %s; archived text kept",
                           row["id"], row["url"], exc)
            continue
        for note in cleaned.pop("notes", []):
            logger.warning("release %s (%s): %s", row["id"], row["url"], note)
        values = dict(cleaned, url=row["url"],
                      year=int(cleaned["published"][:4]) if cleaned.get("published") else None)
        outcome, release_id = history.apply_release(db, values, now=now(), change="extraction", at=fetched_at)
        if outcome == "changed":
            counts["text_changed"] += 1
            touched.append(release_id)
        elif any(values.get(k) != row.get(k) for k in METADATA if k in values):
            counts["metadata_changed"] += 1
            touched.append(release_id)
        else:
            counts["unchanged"] += 1
    with db.atomic():
        if touched:
            search_index.index_releases(db, touched)
    db.close()
    return counts


def _languages(value):
    import json

    try:
        return json.loads(value) if value else None
    except ValueError:
        return None


@click.command("reextract")
@click.argument("source_ids", nargs=-1)
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("archive.db"),
              show_default=True, help="SQLite archive file.")
@click.option("--warc-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the WARC files (default: warc/ next to the archive).")
def reextract_command(source_ids, db_path, warc_dir):
    """Clean the stored raw capture of SOURCE_IDS (default: all) again with the current extractor.

    No network. Changed text becomes a new version labelled `extraction`;
    changed dates and languages are updated in place.
    """
    if not db_path.exists():
        raise click.UsageError(f"no archive at {db_path}")
    counts = reextract(db_path, source_ids, warc_dir)
    click.echo(
        f"{counts['releases']} releases re-extracted: {counts['text_changed']} new text (new versions), "
        f"{counts['metadata_changed']} new metadata, {counts['unchanged']} unchanged, "
        f"{counts['unreadable']} without a readable capture"
    )
