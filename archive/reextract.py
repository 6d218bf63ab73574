"""``pressarchive reextract``: clean the archived raw capture again, without the network.

For every release with a WARC location (optionally only some sources), the
stored response is read back, cleaned with the current extractor, and the
archive is updated where the output changed: a changed title or text becomes
a new version labelled ``extraction`` (never ``edit``: the publisher did not
change anything), changed dates, languages or encodings are updated in place,
and the search index follows. Nothing is fetched and nothing is deleted.

Before anything is written, the request is checked against the archive: an
unknown source id, or a raw capture folder that is missing (or holds none of
the WARC files the releases point to), is refused with one line
(:class:`ReextractRefused`, exit 2). WARC files missing from a folder that
holds others are one line naming them; their releases are skipped and the
command exits 1, as it does when a record cannot be read.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from archive import families, history, search_index
from archive.clock import now
from archive.schema import open_archive
from archive.warc import read_record

logger = logging.getLogger(__name__)

DISCOVERY_DATES = ("feed", "listing", "sitemap")  # dates the page itself cannot give again
METADATA = ("published", "date_source", "language", "encoding", "canonical_url", "extractor", "text_status",
            "pages")


class ReextractRefused(ValueError):
    """The request cannot be carried out at all (unknown source, no raw capture); ``str()`` says why."""


def _read_only(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True)


def _columns(conn, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"pragma table_info([{table}])")}


def check_source_ids(conn, db_path, source_ids) -> None:
    """Every id asked for must be a source of the archive (catalogued, or with releases)."""
    if not source_ids:
        return
    known = {row[0] for row in conn.execute("select source_id from releases")}
    if _columns(conn, "sources"):
        known |= {row[0] for row in conn.execute("select id from sources")}
    unknown = [sid for sid in dict.fromkeys(source_ids) if sid not in known]
    if unknown:
        listed = ", ".join(sorted(known)[:6]) + (", ..." if len(known) > 6 else "")
        names = ", ".join(repr(sid) for sid in unknown)
        raise ReextractRefused(f"unknown source id{'s' * (len(unknown) > 1)} {names} in {db_path} "
                               f"(its sources: {listed or 'none'})")


def captures_needed(conn, source_ids) -> dict[str, int]:
    """WARC file -> number of the selected releases whose raw capture it holds."""
    if "warc_file" not in _columns(conn, "releases"):
        return {}  # an archive from before raw capture
    where, params = "warc_file is not null", list(source_ids)
    if source_ids:
        where += f" and source_id in ({', '.join('?' for _ in source_ids)})"
    return dict(conn.execute(f"select warc_file, count(*) from releases where {where} group by warc_file", params))


def missing_captures(needed: dict[str, int], warc_dir: Path) -> dict[str, int]:
    """The needed WARC files that are not in ``warc_dir``; refused when none of them is there."""
    releases = sum(needed.values())
    if needed and not warc_dir.is_dir():
        raise ReextractRefused(f"no raw capture folder {warc_dir.absolute()}: the WARC files of {releases} releases should be "
                               "there (moved? pass --warc-dir)")
    missing = {name: n for name, n in needed.items() if not (warc_dir / name).is_file()}
    if needed and len(missing) == len(needed):
        raise ReextractRefused(f"none of the {len(needed)} WARC files of {releases} releases is in {warc_dir.absolute()} "
                               "(moved? pass --warc-dir)")
    return missing


def _describe_missing(missing: dict[str, int], warc_dir: Path) -> str:
    names = sorted(missing)
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{sum(missing.values())} releases not re-extracted: {len(names)} WARC "
            f"file{'s' * (len(names) > 1)} missing from {warc_dir.absolute()}: {shown}")


def _content_type(headers) -> tuple[str | None, str | None]:
    value = next((v for k, v in headers if k.lower() == "content-type"), "") or ""
    mime = value.split(";")[0].strip().lower() or None
    charset = None
    if "charset=" in value.lower():
        charset = value.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'") or None
    return mime, charset


def reextract(db_path: Path, clean, source_ids=(), warc_dir: Path | None = None, progress=None) -> dict:
    """Re-extract; return the counts. Raises :class:`ReextractRefused` before writing anything.

    ``clean(body, url, content_type, charset, fetched_at, hints, languages)`` is the crawl's
    cleaning step (``pipelines.cleaning.clean_capture``, passed in by the CLI): it returns the
    release's cleaned values and notes, or None and why the page has no text.
    ``progress(done, total)``, when given, is called before each release and once at the end
    (the CLI draws a progress bar with it in a terminal).
    """
    warc_dir = Path(warc_dir or Path(db_path).parent / "warc")
    conn = _read_only(db_path)
    try:
        check_source_ids(conn, db_path, source_ids)
        missing = missing_captures(captures_needed(conn, source_ids), warc_dir)
    finally:
        conn.close()
    if missing:
        logger.error("%s", _describe_missing(missing, warc_dir))
    db = open_archive(db_path)
    search_index.ensure_search(db)
    languages = {row["id"]: row["languages"] for row in db.query("select id, languages from sources")}
    where, params = "warc_file is not null", []
    if source_ids:
        where += f" and source_id in ({', '.join('?' for _ in source_ids)})"
        params = list(source_ids)
    counts = {"releases": 0, "text_changed": 0, "metadata_changed": 0, "unchanged": 0, "unreadable": 0}
    rows = list(db.query(f"select * from releases where {where} order by id", params))
    touched = []
    for index, row in enumerate(rows):
        if progress:
            progress(index, len(rows))
        counts["releases"] += 1
        if row["warc_file"] in missing:
            counts["unreadable"] += 1  # said once for the whole file, above
            continue
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
        cleaned, notes, no_text = clean(body, row["fetched_url"] or row["url"], mime or row["content_type"], charset,
                                        fetched_at, hints, _languages(languages.get(row["source_id"])))
        if cleaned is None:
            counts["unchanged"] += 1
            logger.warning("release %s (%s): the current extractor finds %s; archived text kept",
                           row["id"], row["url"], no_text)
            continue
        for note in notes:
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
    if progress:
        progress(len(rows), len(rows))
    with db.atomic():
        if touched:
            search_index.index_releases(db, touched)
            families.link_new(db, touched)  # a changed text may join or leave a family; dates choose its first copy
    db.close()
    return counts


def _languages(value):
    import json

    try:
        return json.loads(value) if value else None
    except ValueError:
        return None
