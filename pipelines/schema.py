"""The archive's tables, created and migrated in one place.

Every component that writes ``archive.db`` (the crawl's store pipeline, the
search index, exports, ``pressarchive status``) calls :func:`ensure_schema`
first, so a database made by any version of the tool is brought up to date
without losing a row. Columns are only ever added, never dropped.
"""

from __future__ import annotations

import sqlite_utils

SCHEMA_VERSION = 1

SOURCES_COLUMNS = {
    "id": str,
    "name": str,
    "country": str,
    "kind": str,
    "languages": str,  # JSON list
    "feeds": str,  # JSON list
    "sitemaps": str,  # JSON list
    "listings": str,  # JSON list
    "article_pattern": str,
    "pagination_pattern": str,
    "allowed_domains": str,  # JSON list
    "delay": float,
    "homepage": str,
    "host_country": str,
    "max_pages": int,
    "notes": str,
}

RELEASES_COLUMNS = {
    "id": int,
    "source_id": str,
    "url": str,  # normalised URL, unique: the upsert key
    "canonical_url": str,  # <link rel=canonical> / og:url when the page gives one
    "fetched_url": str,  # final URL after redirects
    "title": str,
    "published": str,  # ISO date YYYY-MM-DD
    "year": int,  # from published, for facets
    "date_source": str,  # feed, meta, time, url, text, sitemap, listing, htmldate, ...
    "language": str,
    "text": str,
    "word_count": int,
    "content_hash": str,  # sha256 of the normalised text
    "country": str,  # copied from the source, for facets
    "kind": str,  # copied from the source, for facets
    "summary": str,  # teaser given by a feed or API, never used as the text
    "content_type": str,
    "encoding": str,
    "http_status": int,
    "extractor": str,
    "first_seen": str,  # ISO 8601 UTC
    "last_seen": str,  # ISO 8601 UTC
}

CRAWL_RUNS_COLUMNS = {
    "id": int,
    "run_id": str,
    "source_id": str,
    "started": str,
    "finished": str,
    "requests": int,
    "new": int,
    "changed": int,
    "unchanged": int,
    "empty": int,
    "errors": int,
    "status": str,  # ok, failed, partial
    "message": str,
}


def _ensure_table(db, name, columns, pk, **kwargs):
    table = db[name]
    if not table.exists():
        table.create(columns, pk=pk, not_null={pk}, **kwargs)
    else:
        existing = set(table.columns_dict)
        for column, ctype in columns.items():
            if column not in existing:
                table.add_column(column, ctype)
    return table


def ensure_schema(db: sqlite_utils.Database) -> sqlite_utils.Database:
    """Create or migrate the archive tables; switch the file to WAL mode."""
    if db.conn.execute("PRAGMA database_list").fetchone()[2]:
        db.enable_wal()
    _ensure_table(db, "sources", SOURCES_COLUMNS, "id")
    releases = _ensure_table(db, "releases", RELEASES_COLUMNS, "id")
    releases.create_index(["url"], unique=True, if_not_exists=True)
    releases.create_index(["source_id", "published"], if_not_exists=True)
    releases.create_index(["published"], if_not_exists=True)
    releases.create_index(["content_hash"], if_not_exists=True)
    runs = _ensure_table(db, "crawl_runs", CRAWL_RUNS_COLUMNS, "id")
    runs.create_index(["source_id", "started"], if_not_exists=True)
    db["_pressarchive"].insert(
        {"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key", replace=True
    )
    return db


def open_archive(path) -> sqlite_utils.Database:
    """Open (creating if needed) an archive file with the current schema."""
    db = sqlite_utils.Database(str(path))
    return ensure_schema(db)
