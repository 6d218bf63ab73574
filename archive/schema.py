"""The archive's tables, created and migrated in one place.

Every component that writes ``archive.db`` (the crawl's store pipeline, the
search index, exports, ``pressarchive status``) calls :func:`ensure_schema`
first, so a database made by any version of the tool is brought up to date
without losing a row. Columns are only ever added, never dropped.

The search index migrates the same way, in :func:`archive.search_index.ensure_search`
(which calls this first): an index of an older format or definition (format 1's
``releases_fts`` that other tools could not scan) is rebuilt from ``releases`` by the
next crawl, demo, ``reindex``, ``reextract`` or ``ingest``; no release is touched.
"""

from __future__ import annotations

import logging

import sqlite_utils

SCHEMA_VERSION = 3

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
    "article_exclude": str,  # URLs matching article_pattern that are not releases
    "pagination_pattern": str,
    "allowed_domains": str,  # JSON list
    "delay": float,
    "homepage": str,
    "host_country": str,
    "max_pages": int,
    "notes": str,
    "json_api": str,  # JSON
    "wp_rest": str,  # JSON list
    "selectors": str,  # JSON
    "date_from_url": str,
    "host_aliases": str,  # JSON
    "statement_types": str,  # JSON
    "verified": str,  # confirmed / plausible / unverified: public evidence for the entry
    "translations": str,  # JSON: address piece -> the same in the translation's address (archive/translations.py)
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
    "statement_type": str,  # press_release, statement, readout, speech, joint_statement, press_conference, notice, other
    "content_type": str,
    "encoding": str,
    "http_status": int,
    "extractor": str,
    "first_seen": str,  # ISO 8601 UTC
    "last_seen": str,  # ISO 8601 UTC: last time the page answered with this release
    "status": str,  # live or removed
    "removed_at": str,  # when the removal was first seen (NULL while live)
    "version_count": int,  # rows in release_versions
    "last_changed": str,  # fetched_at of the newest version
    "last_checked": str,  # last fetch or conditional check of the page
    "next_check": str,  # when the recheck schedule wants the page again
    "etag": str,  # HTTP validators of the release page, for conditional GET
    "last_modified": str,
    "text_status": str,  # text, or for PDFs without usable text: scanned, empty, encrypted, ...
    "pages": int,  # PDF pages
    "warc_file": str,  # raw capture of the stored text: file under warc/ and record offset
    "warc_offset": int,
    "warc_length": int,
    "family_id": int,  # the statement family (archive/families.py); NULL when the release has no link
}

RELEASE_VERSIONS_COLUMNS = {
    "id": int,
    "release_id": int,
    "version": int,  # 1, 2, ...
    "fetched_at": str,
    "title": str,
    "published": str,
    "text": str,
    "content_hash": str,
    "diff": str,  # unified diff from the previous version's title + text
    "change": str,  # first, edit (by the publisher) or extraction (our extractor changed)
    "extractor": str,
    "warc_file": str,
    "warc_offset": int,
    "warc_length": int,
}

# Documents linked from a release page ("Full statement (PDF)"), fetched and attached to it.
RELEASE_FILES_COLUMNS = {
    "url": str,
    "release_id": int,
    "parent_url": str,
    "source_id": str,
    "title": str,
    "text": str,
    "text_status": str,
    "pages": int,
    "content_type": str,
    "content_hash": str,
    "fetched_at": str,
    "warc_file": str,
    "warc_offset": int,
    "warc_length": int,
}

REMOVALS_COLUMNS = {
    "id": int,
    "release_id": int,
    "event": str,  # removed or restored
    "at": str,
    "http_status": int,
    "detail": str,  # e.g. "HTTP 404", "redirected to https://.../news.html"
}

FETCH_STATE_COLUMNS = {
    "url": str,  # a feed, sitemap or listing page
    "source_id": str,
    "role": str,
    "etag": str,
    "last_modified": str,
    "last_status": int,
    "last_fetched": str,
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
    "removed": int,
    "restored": int,
    "not_modified": int,  # 304 answers to conditional requests
    "rechecked": int,  # known releases fetched again (schedule, feed or sitemap dates)
    "discovered": int,  # release links seen in feeds, sitemaps and listings (known or not)
    "warc_bytes": int,  # raw capture written for this source
    "refused": int,  # requests refused because they pointed at private or local addresses
    "warnings": int,  # pages stored with a problem noted in the log (e.g. a title cut to length)
    "attachments_skipped": int,  # PDF links not fetched: PRESSARCHIVE_MAX_ATTACHMENTS(_PER_RUN) reached
    "not_stored": int,  # releases fetched but refused by the archive (a full disk): fetched again next run
    "newest_seen": str,  # newest publication date announced by feeds and APIs in this run
    # Drift (crawler/discovery/common.py LinkTally): links of feeds, sitemaps, listings and APIs this run.
    "links_seen": int,  # candidate release links read on entry points, matching article_pattern or not
    "links_unmatched": int,  # ... of them, those that do not match (article_exclude'd links are not candidates)
    "drift": str,  # NULL, or why the links look like a redesign: "40 links on the listing, none match article_pattern"
    "unmatched_sample": str,  # with drift: JSON list of up to 5 unmatched links, the most release-like first
    "status": str,  # ok, partial, failed, interrupted
    "message": str,
}

logger = logging.getLogger(__name__)


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


# Page size of new archive files (SQLite's default is 4096; existing files keep theirs). A
# release row holds its whole text, a few KB, which overflows 4 KB pages into chains of
# overflow pages. With 32 KB pages, benchmarks/ingest.py wrote 200,000 releases 36% faster
# (same code), the file is 17% smaller, and search latency is unchanged (benchmarks/search.py).
PAGE_SIZE = 32768

# Indexed key of a release's content_hash (see ensure_schema).
CONTENT_KEY = "substr(content_hash, 1, 12)"


def ensure_schema(db: sqlite_utils.Database) -> sqlite_utils.Database:
    """Create or migrate the archive tables; switch the file to WAL mode."""
    if db.conn.execute("PRAGMA database_list").fetchone()[2]:
        if db.conn.execute("select count(*) from sqlite_master").fetchone()[0] == 0:
            db.execute(f"pragma page_size = {PAGE_SIZE}")  # a new archive
        db.enable_wal()
    _ensure_table(db, "sources", SOURCES_COLUMNS, "id")
    releases = _ensure_table(db, "releases", RELEASES_COLUMNS, "id")
    releases.create_index(["url"], unique=True, if_not_exists=True)
    # Newest-first indexes with id ascending inside a date: Datasette 0.65 sorts the first page of
    # "published desc" without a tie-breaker and later pages by (published desc, id), so the scan
    # order must already be that, or "stream all rows" repeats and skips releases of the same day.
    db.execute("drop index if exists idx_releases_published")
    db.execute("drop index if exists idx_releases_source_id_published")
    db.execute("create index if not exists idx_releases_published_desc on releases (published desc, id)")
    db.execute("create index if not exists idx_releases_source_published_desc "
               "on releases (source_id, published desc, id)")
    # The same text under other URLs (a joint statement on both governments' sites, a release
    # republished by an embassy): the `same_text` query. New archives index the hash's first
    # 12 hex digits (48 bits; the query compares the whole hash too): a 64-character random key
    # dirties nearly every page of its index on each bulk commit, a seventh of the writer's time
    # at a million releases. Archives that have the full index (made before) keep it.
    if "idx_releases_content_hash" not in {index.name for index in releases.indexes}:
        db.execute(f"create index if not exists idx_releases_content_key on releases ({CONTENT_KEY})")
    releases.create_index(["statement_type"], if_not_exists=True)
    releases.create_index(["source_id", "next_check"], if_not_exists=True)
    runs = _ensure_table(db, "crawl_runs", CRAWL_RUNS_COLUMNS, "id")
    runs.create_index(["source_id", "started"], if_not_exists=True)
    versions = _ensure_table(db, "release_versions", RELEASE_VERSIONS_COLUMNS, "id")
    versions.create_index(["release_id", "version"], unique=True, if_not_exists=True)
    versions.create_index(["fetched_at"], if_not_exists=True)
    removals = _ensure_table(db, "removals", REMOVALS_COLUMNS, "id")
    removals.create_index(["release_id"], if_not_exists=True)
    _ensure_table(db, "fetch_state", FETCH_STATE_COLUMNS, "url")
    files = _ensure_table(db, "release_files", RELEASE_FILES_COLUMNS, "url")
    files.create_index(["release_id"], if_not_exists=True)
    _ensure_alternates(db)
    _ensure_families(db)
    _ensure_watches(db)
    _backfill_history(db)
    # Only what changed is re-created: a schema change makes every reader parse the schema again,
    # and one opening the search index meanwhile can fail ("vtable constructor failed").
    stored = dict(db.execute("select name, sql from sqlite_master where type = 'view'").fetchall())
    for name, sql in VIEWS.items():
        if stored.get(name) != f"CREATE VIEW [{name}] as {sql}":
            db.execute(f"drop view if exists [{name}]")
            db.execute(f"CREATE VIEW [{name}] as {sql}")
    db["_pressarchive"].insert(
        {"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key", replace=True
    )
    return db


# Views Datasette shows as tables: history and health at a glance.
VIEWS = {
    "recent_changes": """
        select v.fetched_at as changed_at, r.source_id, r.title, r.url, v.version, v.change, v.diff,
               v.release_id
        from release_versions v join releases r on r.id = v.release_id
        where v.version > 1
        order by v.fetched_at desc""",
    "removed_releases": """
        select r.removed_at, r.source_id, r.title, r.url, r.published, r.last_seen,
               (select detail from removals m where m.release_id = r.id and m.event = 'removed'
                order by m.at desc limit 1) as detail, r.id as release_id
        from releases r where r.status = 'removed'
        order by r.removed_at desc""",
    # One row per source: the health verdict `pressarchive status` prints (it adds staleness and the
    # release rhythm, which depend on the clock: archive/health.py). 'drift' comes from the last run's
    # links (crawl_runs.drift): the site answers, but its links no longer match article_pattern.
    "source_health": """
        with last as (
            select c.* from crawl_runs c
            where c.id = (select max(id) from crawl_runs c2 where c2.source_id = c.source_id
                          and c2.finished is not null)
        ), health as (
            select s.id as source_id, s.name,
                   last.started as last_run, last.status as last_status,
                   (select max(finished) from crawl_runs c where c.source_id = s.id
                    and c.status in ('ok', 'partial')) as last_success,
                   (select max(first_seen) from releases r where r.source_id = s.id) as last_new_release,
                   (select count(*) from crawl_runs c where c.source_id = s.id and c.status = 'failed'
                    and c.id > coalesce((select max(id) from crawl_runs c2 where c2.source_id = s.id
                                         and c2.status in ('ok', 'partial')), 0)) as consecutive_failures,
                   last.discovered as last_discovered, last.not_modified as last_not_modified,
                   last.links_seen as last_links_seen, last.links_unmatched as last_links_unmatched,
                   -- the store writes 0 for a stat never set (a run aborted before the spider opened)
                   nullif(last.drift, '0') as last_drift, nullif(last.unmatched_sample, '0') as last_unmatched_sample,
                   (select count(*) from releases r where r.source_id = s.id) as releases,
                   (select count(*) from releases r where r.source_id = s.id and r.status = 'removed') as removed,
                   last.message as last_message
            from sources s left join last on last.source_id = s.id
        )
        select *,
               case
                 when last_run is null then 'never crawled'
                 when consecutive_failures > 0 then 'broken: ' || consecutive_failures
                      || ' failed run(s) in a row'
                 when last_drift is not null then 'drift: links do not match article_pattern'
                 when last_status in ('ok', 'partial') and coalesce(last_discovered, 0) = 0
                      and coalesce(last_not_modified, 0) = 0 and releases > 0
                      then 'broken: found no releases (layout change?)'
                 when last_status = 'interrupted' then 'interrupted'
                 else 'ok'
               end as health
        from health order by source_id""",
}


# Other language versions a release's page declares (pipelines/extraction/alternates.py), kept as
# found: archive/translations.py links the ones the archive holds, now or when a later crawl
# brings them. Indexed by url: "which pages point at this release?".
RELEASE_ALTERNATES_COLUMNS = {
    "release_id": int,
    "url": str,  # normalised address of the other version
    "hreflang": str,  # the language the page says it is in (NULL for a canonical)
    "evidence": str,  # hreflang, language switcher or canonical
}


def _ensure_alternates(db) -> None:
    table = db["release_alternates"]
    if not table.exists():
        table.create(RELEASE_ALTERNATES_COLUMNS, pk=("release_id", "url"))
    table.create_index(["url"], if_not_exists=True)


# Statement families (archive/families.py). Links are stored once per pair, smaller id first.
FAMILY_TABLES = {
    "release_links": """release_id INTEGER NOT NULL, other_id INTEGER NOT NULL, relation TEXT NOT NULL,
        score REAL, evidence TEXT, linked_at TEXT, PRIMARY KEY (release_id, other_id, relation)""",
    "families": """id INTEGER PRIMARY KEY, first_release_id INTEGER, first_source_id TEXT, first_published TEXT,
        member_count INTEGER, languages TEXT, sources TEXT, updated_at TEXT""",
    "family_members": """release_id INTEGER PRIMARY KEY, family_id INTEGER NOT NULL, relation TEXT,
        similarity REAL, diff TEXT""",
    # The band index (archive/families.py BandIndex): sorted segments of (band key, release) pairs, and
    # the pairs of releases whose text changed since, until a merge leaves them out.
    "minhash_segments": "id INTEGER PRIMARY KEY, entries INTEGER, keys BLOB, ids BLOB",
    "minhash_dropped": "key INTEGER NOT NULL, release_id INTEGER NOT NULL, PRIMARY KEY (key, release_id)",
    # Every release looked at: its shingle count, band hashes (to remove them when its text changes)
    # and MinHash values (a candidate's estimated similarity, before its text is read).
    "minhash_releases": "release_id INTEGER PRIMARY KEY, shingles INTEGER, bands BLOB, signature BLOB",
}


def _ensure_families(db) -> None:
    """Tables of archive/families.py; an older archive gets them empty (``pressarchive link`` fills them)."""
    for name, columns in FAMILY_TABLES.items():
        rowid = " without rowid" if name == "minhash_dropped" else ""  # the key is the whole row
        db.execute(f"create table if not exists [{name}] ({columns}){rowid}")
    if "minhash_bands" in db.table_names():
        _segment_band_rows(db)
    if "signature" not in {column[1] for column in db.execute("pragma table_info(minhash_releases)")}:
        db.execute("alter table minhash_releases add column signature BLOB")
    db.execute("create index if not exists idx_release_links_other_id on release_links (other_id)")
    db.execute("create index if not exists idx_family_members_family_id on family_members (family_id)")
    db.execute("create index if not exists idx_releases_family_id on releases (family_id)")
    # The releases of a source in id order: a release's boilerplate is what the ones before it hold.
    db.execute("create index if not exists idx_releases_source_id_id on releases (source_id, id)")
    _check_minhash_config(db)


def _segment_band_rows(db) -> None:
    """An archive of an older version kept one row per band (``minhash_bands``): its rows become
    one segment of the band index, and the table goes."""
    import numpy as np

    from archive.families import BAND_SHIFT, restamp

    rows = db.execute("select band, hash, release_id from minhash_bands order by band, hash, release_id").fetchall()
    if rows:
        pairs = np.array(rows, dtype=np.int64)
        keys = (pairs[:, 0].astype(np.uint64) << np.uint64(BAND_SHIFT)) | pairs[:, 1].astype(np.uint64)
        db.execute("insert into minhash_segments (entries, keys, ids) values (?, ?, ?)",
                   [len(rows), keys.astype("<u8").tobytes(), pairs[:, 2].astype("<u4").tobytes()])
    db.execute("drop table minhash_bands")
    restamp(db)
    logger.info("repost index: %d band rows of an older version made into one segment", len(rows))


def _check_minhash_config(db) -> None:
    """Band rows and MinHash values made with another configuration (an older version's) would
    never meet the new ones: they are dropped (they are derived from the texts, which stay),
    and ``pressarchive link`` signs those releases again. Links already made are kept."""
    # (imported here: archive.families imports modules that import this one)
    from archive.families import MINHASH_CONFIG, restamp

    if "_pressarchive" not in db.table_names():
        db.execute("create table [_pressarchive] ([key] TEXT PRIMARY KEY, [value] TEXT)")
    row = db.execute("select value from _pressarchive where key = 'minhash'").fetchone()
    if row is not None and row[0] == MINHASH_CONFIG:
        return
    signed = db.execute("select count(*) from minhash_releases").fetchone()[0]
    if signed:
        for table in ("minhash_segments", "minhash_dropped", "minhash_releases"):
            db.execute(f"delete from {table}")
        restamp(db)
        logger.warning("the archive's repost index was made with another MinHash configuration (%s, now %s): "
                       "dropped; run `pressarchive link` to sign its %d releases again (links already made are "
                       "kept)", row[0] if row else "an older version's", MINHASH_CONFIG, signed)
    db.execute("insert or replace into _pressarchive (key, value) values ('minhash', ?)", [MINHASH_CONFIG])


# Saved searches (archive/watches.py): each watch's entries (new, changed, removed matches), and
# per delivery channel a watermark (entries with a larger id are pending for it). seen_* are the
# watch's own watermarks: the largest releases, release_versions and removals ids it has looked at.
# Per table: its columns, then its table constraints.
WATCH_TABLES = {
    "watches": (("name TEXT PRIMARY KEY", "query TEXT NOT NULL", "sources TEXT", "languages TEXT",
                 "types TEXT", "webhook TEXT", "email TEXT", "created TEXT", "last_run TEXT",
                 "seen_release_id INTEGER", "seen_version_id INTEGER", "seen_removal_id INTEGER"), ()),
    "watch_entries": (("id INTEGER PRIMARY KEY", "watch TEXT NOT NULL", "release_id INTEGER", "kind TEXT NOT NULL",
                       "version INTEGER", "event_at TEXT", "title TEXT", "url TEXT", "summary TEXT", "created TEXT"),
                      ("UNIQUE (watch, release_id, kind, version, event_at)",)),
    "watch_deliveries": (("watch TEXT NOT NULL", "channel TEXT NOT NULL", "last_entry_id INTEGER NOT NULL DEFAULT 0",
                          "status TEXT", "attempts INTEGER", "last_error TEXT", "last_attempt TEXT",
                          "last_success TEXT"), ("PRIMARY KEY (watch, channel)",)),
}


def _ensure_watches(db) -> None:
    """Tables of archive/watches.py; a column a table lacks (made by an earlier version) is added."""
    for name, (columns, constraints) in WATCH_TABLES.items():
        db.execute(f"create table if not exists [{name}] ({', '.join(columns + constraints)})")
        have = {row[1] for row in db.execute(f"pragma table_info([{name}])")}
        for column in columns:
            if column.split()[0] not in have:
                db.execute(f"alter table [{name}] add column {column.replace(' PRIMARY KEY', '')}")
    db.execute("create index if not exists idx_watch_entries_watch_id on watch_entries (watch, id)")


def _backfill_history(db) -> None:
    """Releases stored before history existed get version 1 and status live."""
    db.execute("update releases set status = 'live' where status is null")
    db.execute(
        """insert into release_versions (release_id, version, fetched_at, title, published, text,
               content_hash, diff, change, extractor)
           select id, 1, first_seen, title, published, text, content_hash, null, 'first', extractor
           from releases r
           where version_count is null
             and not exists (select 1 from release_versions v where v.release_id = r.id)"""
    )
    db.execute("update releases set version_count = 1, last_changed = first_seen where version_count is null")


def open_archive(path) -> sqlite_utils.Database:
    """Open (creating if needed) an archive file with the current schema."""
    db = sqlite_utils.Database(str(path))
    return ensure_schema(db)
