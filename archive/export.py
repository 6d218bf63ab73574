"""Citable snapshot exports of the archive: ``pressarchive export``.

A snapshot is a folder ``DIR/<UTC timestamp>/`` holding one data file per
table (``releases``, and ``release_versions``, ``removals``, ``sources``,
``crawl_runs`` when the archive has them), a ``manifest.json`` (row counts,
sha256 of every file, filters, schema and tool versions, archive path and
last crawl time), a ``README.md`` describing the columns and a
``SHA256SUMS`` file for ``sha256sum -c``.

Guarantees, and how they are kept:

- Complete or absent: files are written into a hidden ``.export-tmp-*``
  folder inside ``DIR``, fsynced, and the folder is renamed into place only
  after the manifest is written. A killed export leaves at most that hidden
  folder, never a timestamped one; the next export into ``DIR`` removes it
  (one log line). Each export holds a ``flock`` on ``.lock`` in its folder
  for its whole life (the kernel drops it however the process ends), so a
  folder whose lock can be taken is dead, and a running export's folder is
  never touched (:func:`remove_stale_tmp`).
- Reproducible: data files depend only on the archive and the filters (no
  timestamps inside them); column order follows the schema, rows are ordered
  by ``published`` then ``id`` with undated rows last, all rows come from one
  read transaction.
- Bounded memory: rows stream from a cursor in batches; nothing is held per
  archive, so peak RSS does not grow with the archive. ``--search`` holds the
  matching release ids once (a Python list, ~36 bytes an id), copies them
  into a TEMP table of the read connection and lets go of the list: the
  queries then join that table, never a list of literal ids.

The archive is opened read-only; exporting never changes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
from pathlib import Path

import click

from archive import schema, search_index

logger = logging.getLogger(__name__)

EXPORT_TABLES = ("releases", "release_versions", "removals", "sources", "crawl_runs")

# The columns a researcher reads first; the rest follow in schema order.
RELEASES_LEAD_COLUMNS = (
    "id", "source_id", "url", "title", "published", "language",
    "text", "content_hash", "first_seen", "last_seen",
)

SNAPSHOT_NAME = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")
TMP_PREFIX = ".export-tmp-"
TMP_OWNER = re.compile(rf"^{re.escape(TMP_PREFIX)}.*-(\d+)$")  # the exporting pid ends every temp name
TMP_NAME = re.compile(rf"^{re.escape(TMP_PREFIX)}(\d{{8}}T\d{{6}}Z(?:-\d+)?)-\d+$")  # a snapshot's temp folder
TMP_LOCK = ".lock"  # in a temp folder: flocked by its export while it runs
# --search: the matching release ids, in a TEMP table of the export's read-only
# connection (mode=ro still allows TEMP tables; ``pragma query_only`` would not).
SEARCH_TABLE = "temp.export_search_ids"
SEARCH_CLAUSE = f"+id IN (SELECT id FROM {SEARCH_TABLE})"  # see release_filter
SEARCH_LANGUAGE = (
    "the Datasette search box's query language over title and text: words ANDed, "
    '"quoted phrases", OR, -word, word*; Chinese, Japanese and Korean found without '
    'spaces; English by whole words ("war" does not match "software")'
)
BATCH_ROWS = 500  # a few MB of text at most: keeps RSS flat, amortises encoding
ROW_ORDER = (
    "published ascending, then id; rows without a published date "
    "(NULL or empty) come last, by id"
)

COLUMN_NOTES = {
    "releases": {
        "id": "Row id in the archive (stable across snapshots of the same archive).",
        "source_id": "Id of the source in sources.csv.",
        "url": "Normalised URL of the release; unique.",
        "title": "Title as published.",
        "published": "Publication date, YYYY-MM-DD; empty when unknown.",
        "language": "Language code of the text (e.g. en, zh).",
        "text": "Main text, paragraphs separated by a newline (LF).",
        "content_hash": "sha256 (hex) of the normalised text.",
        "first_seen": "When the crawler first stored this release (UTC, ISO 8601).",
        "last_seen": "When the crawler last saw this release (UTC, ISO 8601).",
        "canonical_url": "<link rel=canonical> or og:url given by the page, if any.",
        "fetched_url": "Final URL fetched, after redirects.",
        "year": "Year of publication, for facets.",
        "date_source": "Where the date came from (feed, meta, time, url, text, ...).",
        "word_count": "Number of words (CJK characters counted individually).",
        "country": "Country of the source, copied for facets.",
        "kind": "Kind of source, copied for facets.",
        "summary": "Teaser given by a feed or API; never used as the text.",
        "content_type": "HTTP Content-Type of the page.",
        "encoding": "Character encoding the page was decoded with.",
        "http_status": "HTTP status of the fetch.",
        "extractor": "Component that extracted the text.",
        "family_id": "Statement family (reposts and translations of one statement): the smallest "
                     "release id among its members; empty when the release has no repost or translation.",
    },
    "sources": {
        "id": "Source id, referenced by releases.source_id.",
        "name": "Name of the publishing body.",
        "country": "Country of the publishing body.",
        "kind": "Kind of body (e.g. ministry, head of government).",
        "languages": "JSON list of languages published.",
        "feeds": "JSON list of feed URLs.",
        "sitemaps": "JSON list of sitemap URLs.",
        "listings": "JSON list of listing page URLs.",
        "article_pattern": "Regular expression matching release URLs.",
        "pagination_pattern": "Regular expression matching listing pages.",
        "allowed_domains": "JSON list of domains the crawler may fetch.",
        "delay": "Seconds between requests to this source.",
        "homepage": "Home page of the source.",
        "host_country": "Country hosting the site, when it differs.",
        "max_pages": "Crawl limit of listing pages per run.",
        "notes": "Free-text notes on the source.",
        "article_exclude": "Regular expression: URLs matching article_pattern that are not releases.",
        "verified": "Public evidence for the entry: confirmed, plausible or unverified.",
    },
    "crawl_runs": {
        "id": "Row id.",
        "run_id": "Id of the crawl run (shared by the sources it crawled).",
        "source_id": "Source crawled.",
        "started": "Start of the run (UTC, ISO 8601).",
        "finished": "End of the run (UTC, ISO 8601).",
        "requests": "HTTP requests made.",
        "new": "Releases stored for the first time.",
        "changed": "Releases whose text changed.",
        "unchanged": "Releases seen again unchanged.",
        "empty": "Pages with no extractable text.",
        "errors": "Failed requests or pages.",
        "not_stored": "Releases fetched but refused by the archive (a full disk); fetched again next run.",
        "attachments_skipped": "PDF links not fetched because a per-release or per-run cap was reached.",
        "links_seen": "Candidate release links seen on the source's feeds, sitemaps, listings and APIs.",
        "links_unmatched": "Of those, links that did not match article_pattern.",
        "drift": "Why the source looks redesigned (links stopped matching article_pattern), or empty.",
        "unmatched_sample": "JSON list of up to 5 unmatched links, most article-like first.",
        "status": "ok, partial, failed or interrupted.",
        "message": "Error or summary message.",
    },
}


class ExportError(click.ClickException):
    """A problem the user can fix (bad option, missing archive): exit 2."""

    exit_code = 2


class ExportFailed(click.ClickException):
    """The export could not be written (disk full, permissions): exit 1."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class Filters:
    sources: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    search: str | None = None  # exactly as typed; None: no search

    def as_dict(self) -> dict:
        return {"sources": list(self.sources), "since": self.since, "until": self.until,
                "search": self.search}


@dataclasses.dataclass(frozen=True)
class Options:
    format: str = "csv"  # csv or jsonl
    excel: bool = False


@dataclasses.dataclass
class TableQuery:
    """The SQL statements whose concatenated results make one data file."""

    table: str
    columns: list[str]
    statements: list[tuple[str, list]]


# --- reading the archive -----------------------------------------------------


def open_readonly(db_path: Path) -> sqlite3.Connection:
    """Open the archive read-only, failing with one line if it is not one."""
    if not db_path.is_file():
        raise ExportError(f"archive not found: {db_path} (pass --db PATH)")
    from archive.files import read_only_connection

    try:
        conn = read_only_connection(db_path, isolation_level=None)
        tables = existing_tables(conn)
    except sqlite3.DatabaseError as exc:
        raise ExportError(f"cannot read archive {db_path}: {exc}") from None
    if "releases" not in tables:
        raise ExportError(f"{db_path} is not a pressarchive archive (no releases table)")
    return conn


def existing_tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows}


def ordered_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """Lead columns, then schema order, then columns the schema does not know.

    Schema order (not PRAGMA order) keeps files comparable between archives
    that were migrated from different versions and so gained columns in a
    different order.
    """
    present = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
    lead = RELEASES_LEAD_COLUMNS if table == "releases" else ()
    known = getattr(schema, f"{table.upper()}_COLUMNS", {})
    order = [c for c in lead if c in present]
    order += [c for c in known if c in present and c not in order]
    order += [c for c in present if c not in order]
    return order


def quoted(columns: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def release_filter(filters: Filters) -> tuple[list[str], list]:
    """WHERE clauses selecting the releases the filters ask for.

    ``--search`` is a join on the ids :func:`load_search_ids` put in
    ``SEARCH_TABLE``. ``+id`` keeps SQLite walking the ``published`` index
    (checking each id in the table) instead of fetching the matches by id and
    then sorting whole rows, text included.
    """
    clauses, params = [], []
    if filters.search is not None:
        clauses.append(SEARCH_CLAUSE)
    if filters.sources:
        clauses.append(f"source_id IN ({', '.join('?' * len(filters.sources))})")
        params += filters.sources
    if filters.since:
        clauses.append("published >= ?")
        params.append(filters.since)
    if filters.until:
        clauses.append("published <= ?")
        params.append(filters.until)
    return clauses, params


def where(clauses: list[str]) -> str:
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


def releases_query(conn, filters: Filters) -> TableQuery:
    """Dated rows in (published, id) order, then undated rows by id.

    Two statements instead of ``ORDER BY published IS NULL`` so SQLite walks
    the ``published`` index (which ends in the rowid) and never sorts.
    """
    columns = ordered_columns(conn, "releases")
    select = f"SELECT {quoted(columns)} FROM releases"
    clauses, params = release_filter(filters)
    dated = clauses + ["published IS NOT NULL", "published <> ''"]
    statements = [(f"{select}{where(dated)} ORDER BY published, id", params)]
    if not (filters.since or filters.until):  # a date filter excludes undated rows
        undated = clauses + ["(published IS NULL OR published = '')"]
        statements.append((f"{select}{where(undated)} ORDER BY id", params))
    return TableQuery("releases", columns, statements)


def order_by_key(conn, table: str) -> str:
    """Primary key columns (in key order), else rowid: a stable row order."""
    info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    pk = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]]
    return quoted(pk) if pk else "rowid"


def related_query(conn, table: str, filters: Filters) -> TableQuery:
    """Rows of a side table that belong to the exported releases.

    Tables keyed by ``release_id`` follow every filter; tables with only a
    ``source_id`` (crawl_runs, removals without release_id) follow --source;
    ``sources`` keeps the chosen sources. Date filters concern publication
    dates, and a search concerns their text, so neither cuts crawl runs.
    """
    columns = ordered_columns(conn, table)
    clauses, params = [], []
    selection, selection_params = release_filter(filters)
    if "release_id" in columns and selection == [SEARCH_CLAUSE]:
        # only a search: its ids directly (filtering releases again costs seconds at a million)
        clauses.append(f"release_id IN (SELECT id FROM {SEARCH_TABLE})")
    elif "release_id" in columns and selection:
        clauses.append(f"release_id IN (SELECT id FROM releases{where(selection)})")
        params += selection_params
    elif filters.sources:
        key = "id" if table == "sources" else "source_id"
        if key in columns:
            clauses.append(f"{key} IN ({', '.join('?' * len(filters.sources))})")
            params += filters.sources
    sql = f"SELECT {quoted(columns)} FROM {table}{where(clauses)} ORDER BY {order_by_key(conn, table)}"
    return TableQuery(table, columns, [(sql, params)])


def plan_queries(conn, filters: Filters) -> list[TableQuery]:
    tables = existing_tables(conn)
    queries = [releases_query(conn, filters)]
    for table in EXPORT_TABLES[1:]:
        if table in tables:
            queries.append(related_query(conn, table, filters))
    return queries


def check_search_index(conn, db_path: Path, filters: Filters) -> None:
    """--search needs the archive's search index, complete and of this version.

    Writers index releases in the transaction that stores them; an archive
    can still lack the index (never served or crawled by this version) or
    hold releases written by a tool that does not index. Searching such an
    index would silently leave releases out of a snapshot that claims to
    hold every match, so refuse instead.
    """
    if filters.search is None:
        return
    tables = existing_tables(conn)
    update = f"start 'pressarchive serve --db {db_path}' once (it updates the index), then export again"
    if not {search_index.FTS_TABLE, search_index.ROWS_TABLE, search_index.PENDING_TABLE} <= tables:
        raise ExportError(f"{db_path} has no search index ({search_index.FTS_TABLE}): {update}")
    version = None
    if "_pressarchive" in tables:
        row = conn.execute("SELECT value FROM _pressarchive WHERE key = 'search_version'").fetchone()
        version = row[0] if row else None
    if version != search_index.SEARCH_VERSION:
        raise ExportError(
            f"the search index of {db_path} is out of date (format {version or 'unknown'}, "
            f"not {search_index.SEARCH_VERSION}): {update}"
        )
    # Releases changed since indexed are in the pending table (triggers put them there, deletes
    # included), so with it empty the indexed ids are a subset of releases: equal counts (two
    # O(1)-ish count(*)s, not a 5-second anti-join at a million) then mean every release is indexed.
    pending, releases, indexed = conn.execute(
        f"SELECT (SELECT count(*) FROM {search_index.PENDING_TABLE}), (SELECT count(*) FROM releases), "
        f"(SELECT count(*) FROM {search_index.ROWS_TABLE})"
    ).fetchone()
    if pending or releases != indexed:
        raise ExportError(
            f"the search index of {db_path} is out of date (releases were written without "
            f"updating it): {update}"
        )


def load_search_ids(conn, filters: Filters) -> int | None:
    """Put the ids of every release matching --search into SEARCH_TABLE; return how many.

    Called inside the export's read transaction, so the ids and the rows
    exported come from the same state of the archive.
    """
    if filters.search is None:
        return None
    ids = search_index.matching_release_ids(conn, filters.search)
    ids.sort()  # in key order: the table's b-tree is filled by appending
    conn.execute(f"DROP TABLE IF EXISTS {SEARCH_TABLE}")
    conn.execute(f"CREATE TABLE {SEARCH_TABLE} (id INTEGER PRIMARY KEY)")
    conn.executemany(f"INSERT OR IGNORE INTO {SEARCH_TABLE} (id) VALUES (?)", ((i,) for i in ids))
    return conn.execute(f"SELECT count(*) FROM {SEARCH_TABLE}").fetchone()[0]


def check_sources(conn, filters: Filters) -> None:
    """Unknown source ids are almost always typos: refuse rather than export nothing."""
    tables = existing_tables(conn)
    for source_id in filters.sources:
        known = conn.execute(
            "SELECT 1 FROM releases WHERE source_id = ? LIMIT 1", (source_id,)
        ).fetchone()
        if not known and "sources" in tables:
            known = conn.execute("SELECT 1 FROM sources WHERE id = ?", (source_id,)).fetchone()
        if not known:
            raise ExportError(f"unknown source id: {source_id} (see sources.toml or pressarchive status)")


def last_crawl_time(conn) -> str | None:
    """Newest crawl_runs.finished; releases.last_seen only when there are no runs.

    The fallback scans the releases table, so it is only paid by archives
    filled without crawl runs being recorded.
    """
    latest = None
    if "crawl_runs" in existing_tables(conn):
        latest = conn.execute("SELECT max(finished) FROM crawl_runs").fetchone()[0]
    if latest is None:
        latest = conn.execute("SELECT max(last_seen) FROM releases").fetchone()[0]
    return latest


def archive_schema_version(conn) -> str | None:
    if "_pressarchive" not in existing_tables(conn):
        return None
    row = conn.execute("SELECT value FROM _pressarchive WHERE key = 'schema_version'").fetchone()
    return row[0] if row else None


# --- writing files -----------------------------------------------------------


class HashingFile:
    """Binary file that hashes and counts what goes through it, then fsyncs."""

    def __init__(self, path: Path, bom: bool = False):
        self.path = path
        self.file = open(path, "wb")  # noqa: SIM115 (kept open across writes, closed by close())
        self.sha256 = hashlib.sha256()
        self.size = 0
        if bom:
            self.write("\ufeff")

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.sha256.update(data)
        self.size += len(data)
        try:
            self.file.write(data)
        except OSError as exc:  # name the file in the one-line error
            exc.filename = exc.filename or str(self.path)
            raise

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def excel_safe(value):
    """Stop spreadsheets from running cells as formulas (OWASP CSV injection).

    Only with --excel: the plain CSV keeps every value exactly as archived.
    """
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_field(value) -> str:
    """One RFC 4180 field, exactly as ``csv.writer`` (QUOTE_MINIMAL) writes it.

    Hand-rolled because ``csv.writer`` copies text character by character
    (~40 MB/s); ``in`` and ``replace`` scan in C, several times faster.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        if '"' in value:
            return '"' + value.replace('"', '""') + '"'
        if "," in value or "\n" in value or "\r" in value:
            return '"' + value + '"'
        return value
    return repr(value) if isinstance(value, float) else str(value)


def csv_lines(rows) -> str:
    return "".join(",".join(map(csv_field, row)) + "\r\n" for row in rows)  # CRLF: RFC 4180


def header_text(columns, options: Options) -> str:
    """The CSV header row; JSON Lines has none (each object names its keys)."""
    return csv_lines([columns]) if options.format == "csv" else ""


def batch_text(batch, columns, options: Options) -> str:
    if options.format == "jsonl":
        return "".join(
            json.dumps(dict(zip(columns, row)), ensure_ascii=False, separators=(",", ":")) + "\n"
            for row in batch
        )
    if options.excel:
        batch = [[excel_safe(v) for v in row] for row in batch]
    return csv_lines(batch)


def fetch_batches(conn, query: TableQuery):
    for sql, params in query.statements:
        cursor = conn.execute(sql, params)
        while batch := cursor.fetchmany(BATCH_ROWS):
            yield batch


def count_rows(conn, query: TableQuery) -> int:
    """How many rows ``query`` will write (for a progress bar): its statements with ``count(*)``
    for the column list and no ORDER BY, so SQLite counts index entries instead of reading rows."""
    total = 0
    for sql, params in query.statements:
        source = sql.split(" FROM ", 1)[1].rsplit(" ORDER BY ", 1)[0]
        total += conn.execute(f"SELECT count(*) FROM {source}", params).fetchone()[0]
    return total


def write_table(conn, query: TableQuery, folder: Path, options: Options, progress=None) -> dict:
    """Stream one table into its data file; return its manifest entry.

    ``progress(table, rows_written, rows_total)``, when given, is called before the first
    batch and after each one (the CLI draws a progress bar with it in a terminal)."""
    name = f"{query.table}.{options.format}"
    out = HashingFile(folder / name, bom=options.excel)
    rows = 0
    total = count_rows(conn, query) if progress else None
    try:
        out.write(header_text(query.columns, options))
        if progress:
            progress(query.table, 0, total)
        for batch in fetch_batches(conn, query):
            rows += len(batch)
            out.write(batch_text(batch, query.columns, options))
            if progress:
                progress(query.table, rows, total)
    finally:
        out.close()
    return {
        "name": name,
        "table": query.table,
        "rows": rows,
        "bytes": out.size,
        "sha256": out.sha256.hexdigest(),
        "columns": query.columns,
        "queries": [{"sql": sql, "params": params} for sql, params in query.statements],
    }


def write_text(folder: Path, name: str, text: str) -> dict:
    out = HashingFile(folder / name)
    out.write(text)
    out.close()
    return {"name": name, "bytes": out.size, "sha256": out.sha256.hexdigest()}


def snapshot_readme(files: list[dict], filters: Filters, options: Options,
                    search_matches: int | None = None) -> str:
    """Column guide for the snapshot; no timestamps, so it is reproducible too."""
    lines = [
        "# pressarchive snapshot",
        "",
        ("Official government statements archived by pressarchive. Provenance "
         "(archive, time, tool and schema versions, filters, SQL used) is in "
         "`manifest.json`."),
        "",
        "## Verify",
        "",
        "    sha256sum -c SHA256SUMS",
        "",
        "`manifest.json` also lists the row count, size and sha256 of every data file.",
        "",
        "## Format",
        "",
    ]
    if options.format == "csv":
        lines.append(
            "RFC 4180 CSV, UTF-8"
            + (" with a byte order mark" if options.excel else "")
            + ", CRLF between records, a header row. Fields with commas, quotes "
            "or newlines are quoted; quotes are doubled. Newlines inside `text` "
            "are LF. An empty field is a missing value (NULL)."
        )
        if options.excel:
            lines.append(
                "\nWritten with `--excel`: text cells starting with `= + - @`, tab or "
                "CR are prefixed with `'` so spreadsheets do not run them as "
                "formulas. Use a plain export for analysis."
            )
    else:
        lines.append("JSON Lines, UTF-8: one object per row, keys in column order, null for missing values.")
    lines += ["", f"Rows in `releases` are ordered by {ROW_ORDER}. Other tables by primary key.", ""]
    lines += [f"Filters: `{json.dumps(filters.as_dict(), ensure_ascii=False)}`", ""]
    if filters.search is not None:
        lines += [
            (f"Search: `{json.dumps(filters.search, ensure_ascii=False)}` matched {search_matches} "
             "releases in the archive's full-text index; this snapshot holds those that also pass "
             "the other filters, and only their rows of the tables keyed by release (the SQL in "
             f"`manifest.json` reads the matched ids from `{SEARCH_TABLE}`). Query language: "
             f"{SEARCH_LANGUAGE}."),
            "",
        ]
    for entry in files:
        lines += [f"## {entry['name']} ({entry['rows']} rows)", ""]
        notes = COLUMN_NOTES.get(entry["table"], {})
        fallback = f"column of the archive's {entry['table']} table."
        for column in entry["columns"]:
            lines.append(f"- `{column}`: {notes.get(column, fallback)}")
        lines.append("")
    return "\n".join(lines)


def tool_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pressarchive")
    except metadata.PackageNotFoundError:
        pass
    from archive import __version__

    return __version__


def fsync_dir(path: Path) -> None:
    """Make a rename durable; some platforms cannot open directories."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- snapshot folders ---------------------------------------------------------


def snapshot_name(now: dt.datetime, out_dir: Path) -> str:
    base = now.strftime("%Y%m%dT%H%M%SZ")
    # Two exports in one second: the other may still be writing its temp folder.
    writing = {m.group(1) for p in out_dir.iterdir() if (m := TMP_NAME.match(p.name))}
    name, n = base, 0
    while (out_dir / name).exists() or name in writing:
        n += 1
        name = f"{base}-{n}"
    return name


def snapshot_sort_key(name: str):
    base, _, suffix = name.partition("-")
    return base, int(suffix or 0)


def list_snapshots(out_dir: Path) -> list[Path]:
    """Snapshot folders, oldest first; anything else in DIR is ignored."""
    found = [
        p for p in out_dir.iterdir()
        if SNAPSHOT_NAME.match(p.name) and p.is_dir() and not p.is_symlink()
    ]
    return sorted(found, key=lambda p: snapshot_sort_key(p.name))


def point_latest(out_dir: Path, name: str) -> None:
    """Atomically repoint ``DIR/latest``: a symlink, or a file naming the folder."""
    tmp = out_dir / f"{TMP_PREFIX}latest-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        tmp.symlink_to(name, target_is_directory=True)
    except (OSError, NotImplementedError):
        tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "latest")


def hold_tmp_lock(folder: Path) -> int:
    """Lock ``folder`` as this export's own until the returned descriptor is closed.

    The lock file is locked under another name and renamed: a ``.lock`` that
    can be locked by someone else is therefore always an ended export's.
    """
    pending = folder / f"{TMP_LOCK}.new"
    handle = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    fcntl.flock(handle, fcntl.LOCK_EX)
    os.write(handle, str(os.getpid()).encode())
    os.rename(pending, folder / TMP_LOCK)
    return handle


def pid_alive(pid: int) -> bool:
    """True unless no process has ``pid`` (a reused pid counts as alive: keeping is the safe side)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def tmp_owner_ended(entry: Path) -> bool:
    """True when the export that made temp folder (or ``latest`` link) ``entry`` has ended.

    A folder's ``.lock`` answers for certain. Without one (the first instants
    of an export, a ``latest`` link being swapped, a folder of an older
    version) the pid in the name decides.
    """
    if entry.is_dir() and not entry.is_symlink():
        try:
            handle = os.open(entry / TMP_LOCK, os.O_RDONLY)
        except FileNotFoundError:
            handle = None
        except OSError:
            return False
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            finally:
                os.close(handle)
    match = TMP_OWNER.match(entry.name)
    return bool(match) and not pid_alive(int(match.group(1)))


def tree_size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*"))


def remove_stale_tmp(out_dir: Path) -> list[str]:
    """Remove the temporary folders of exports that ended without finishing (killed, power cut).

    One log line names what was removed and how big it was.
    """
    removed, size = [], 0
    for entry in sorted(out_dir.iterdir()):
        if not entry.name.startswith(TMP_PREFIX) or not tmp_owner_ended(entry):
            continue
        try:
            size += tree_size(entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            logger.warning("could not remove %s, left by an unfinished export: %s", entry, exc.strerror or exc)
            continue
        removed.append(entry.name)
    if removed:
        logger.warning("removed %d temporary folder%s left in %s by exports that did not finish (%s): %s",
                       len(removed), "s" * (len(removed) > 1), out_dir, human_size(size), ", ".join(removed))
    return removed


def human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def prune(out_dir: Path, keep: int) -> list[str]:
    removed = []
    for old in list_snapshots(out_dir)[:-keep]:
        shutil.rmtree(old)
        removed.append(old.name)
    return removed


# --- the export ---------------------------------------------------------------


def write_snapshot(conn, db_path: Path, folder: Path, name: str, filters: Filters,
                   options: Options, now: dt.datetime, progress=None) -> dict:
    """Write every file of snapshot ``name`` into ``folder``; return the manifest."""
    conn.execute("BEGIN")  # one read transaction: all files see the same archive
    try:
        search_matches = load_search_ids(conn, filters)
        data = [write_table(conn, q, folder, options, progress) for q in plan_queries(conn, filters)]
        last_crawl = last_crawl_time(conn)
        db_schema = archive_schema_version(conn)
    finally:
        conn.execute("COMMIT")
    readme = write_text(folder, "README.md", snapshot_readme(data, filters, options, search_matches))
    manifest = {
        "snapshot": name,
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "pressarchive", "version": tool_version()},
        "schema_version": schema.SCHEMA_VERSION,
        "archive": {
            "path": str(db_path.resolve()),
            "last_crawl": last_crawl,
            "schema_version": db_schema,
        },
        "filters": filters.as_dict(),
    }
    if filters.search is not None:
        manifest["search"] = {
            "query": filters.search,
            "matched": search_matches,  # every match in the archive, before the other filters
            "language": SEARCH_LANGUAGE,
            "index": search_index.FTS_TABLE,
            "index_version": search_index.SEARCH_VERSION,
            "ids_table": SEARCH_TABLE,  # holds the matched ids while the queries below run
        }
    manifest |= {
        "format": options.format,
        "excel": options.excel,
        "row_order": {"releases": ROW_ORDER, "other tables": "primary key"},
        "files": data + [readme],
    }
    manifest_text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    manifest_entry = write_text(folder, "manifest.json", manifest_text)
    sums = "".join(f"{f['sha256']}  {f['name']}\n" for f in data + [readme, manifest_entry])
    write_text(folder, "SHA256SUMS", sums)
    return manifest


def export_snapshot(db_path, out_dir, filters: Filters = Filters(), options: Options = Options(),
                    keep: int | None = None, now: dt.datetime | None = None, progress=None) -> Path:
    """Export the archive to a new snapshot folder and return its path.

    ``progress(table, rows_written, rows_total)`` is called as each table is written (:func:`write_table`)."""
    db_path, out_dir = Path(db_path), Path(out_dir)
    conn = open_readonly(db_path)
    try:
        check_sources(conn, filters)
        check_search_index(conn, db_path, filters)
        prepare_out_dir(out_dir)
        remove_stale_tmp(out_dir)
        now = now or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        name = snapshot_name(now, out_dir)
        publish_snapshot(conn, db_path, out_dir, name, filters, options, now, progress)
    finally:
        conn.close()
    point_latest(out_dir, name)
    if keep:
        prune(out_dir, keep)
    return out_dir / name


def publish_snapshot(conn, db_path: Path, out_dir: Path, name: str, filters: Filters,
                     options: Options, now: dt.datetime, progress=None) -> None:
    """Write into a hidden temp folder, then rename it into place when complete.

    Renaming a folder is atomic, so ``DIR/<name>`` either holds every file
    (fsynced first) or does not exist. On failure the temp folder is removed;
    only a killed process leaves one behind (removed by the next export), and
    it is never named like a snapshot. The folder is locked as this export's
    until it is renamed (:func:`hold_tmp_lock`).
    """
    tmp = out_dir / f"{TMP_PREFIX}{name}-{os.getpid()}"
    lock = None
    try:
        tmp.mkdir()
        lock = hold_tmp_lock(tmp)
        write_snapshot(conn, db_path, tmp, name, filters, options, now, progress)
        (tmp / TMP_LOCK).unlink()  # not part of the snapshot; the pid in the name covers the rename
        fsync_dir(tmp)
        os.rename(tmp, out_dir / name)
        fsync_dir(out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            culprit = exc.filename or out_dir
            raise ExportFailed(f"export failed, nothing written: {culprit}: {exc.strerror or exc}") from None
        if isinstance(exc, sqlite3.DatabaseError):
            raise ExportFailed(f"export failed reading {db_path}: {exc}") from None
        raise
    finally:
        if lock is not None:
            os.close(lock)


def prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out is not a folder: {out_dir}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out_dir}: {exc.strerror}") from None


def parse_date(value: str | None, option: str) -> str | None:
    """Accept exactly YYYY-MM-DD: published dates are compared as strings."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise ExportError(f"{option} must be a date YYYY-MM-DD, got {value!r}")


def check_query(search: str | None) -> str | None:
    """A query with nothing to find (empty, only punctuation, only -exclusions) is refused.

    The search box shows no results for it; as a snapshot it would be an
    empty file that looks like "nothing matched", when nothing was asked.
    """
    try:
        nothing = search is not None and search_index.rewrite_query(search) is None
    except search_index.QueryTooLong as exc:
        raise ExportError(f"--search: {exc}") from None
    if nothing:
        raise ExportError(
            f"--search {search!r} has nothing to search for: give a word, a \"phrase\" or word* "
            "(-word only excludes)"
        )
    return search


def build_filters(sources, since, until, search=None) -> Filters:
    since, until = parse_date(since, "--since"), parse_date(until, "--until")
    if since and until and since > until:
        raise ExportError(f"--since {since} is after --until {until}")
    # sorted and deduplicated: the same selection always gives the same manifest
    return Filters(tuple(sorted(set(sources))), since, until, check_query(search))
