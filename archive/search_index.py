"""Full-text search over releases, in every language.

SQLite's FTS5 ``unicode61`` tokenizer keeps word semantics for English ("war"
never matches "software") but treats a run of Chinese characters as one
token, so "网络" is never found inside "网络安全". Python's ``sqlite3`` cannot
register a custom tokenizer, so we index a *search form* of each release
instead of its raw text: every run of Chinese, Japanese or Korean characters
becomes overlapping character bigrams plus its last character
("知识产权" -> "知识 识产 产权 权"), the rest is left to ``unicode61``.
Queries are rewritten the same way (:func:`rewrite_query`), so a 2-character
word is one token, a longer string a phrase of bigrams, and a single
character a prefix query.

Tables (all created by :func:`ensure_search`):

``releases_fts``
    contentless FTS5 table (title, text, tags). Contentless because storing
    the bigram form would roughly double the archive. It keeps FTS5's token
    counts per row (``columnsize=1``, the ``releases_fts_docsize`` table):
    the ranked search scores every match with ``bm25()``, which needs each
    row's length (a contentless table without them gives every row the same
    length). Its rowid is
    ``published as YYYYMMDD * 2**32 + releases.id`` so that FTS5 yields
    matches newest first and a common word can be cut to its newest N
    matches without scoring every one (the Datasette plugin's table search).
    ``tags`` is left empty (it held facet tokens for filters pushed into the
    MATCH; facets are now counted from ``release_facets``) and never matches.
    ``columnsize=1`` is also what lets other tools read the archive: FTS5 scans
    a contentless table through its ``_docsize`` table, and one without it
    (format 1, ``columnsize=0``) fails every statement that is not a MATCH or
    a rowid lookup with "releases_fts: table does not support scanning":
    ``sqlite-utils tables --counts``, ``sqlite-utils rows``, Datasette's table
    counts on ``/`` and ``/archive`` and its ``releases_fts`` page. A scan
    yields the rowids and NULL columns (the text is in ``releases``). The
    index is rebuilt whenever its stored definition is not :data:`FTS_ARGS`
    (or :data:`SEARCH_VERSION` changed): every writer (crawl, demo, reindex,
    reextract, ingest) upgrades an older archive; the releases are untouched.
``releases_fts_rows``
    release id -> FTS rowid, plus a fingerprint of the indexed values.
``releases_fts_pending``
    old values of rows changed since they were indexed, captured by
    triggers. A contentless FTS5 row can only be removed by passing the exact
    values it was indexed with, and the store calls :func:`index_releases`
    after it has already overwritten them.
``release_facets``
    a log of every release's facet values (source_id, country, kind, language,
    year, statement_type) and publication date: one row appended when a release
    is indexed (:func:`insert_prepared`, in the same transaction) and one by a
    trigger for each change of those columns (``seq`` orders them: the last row
    of a release holds its current values). The Datasette plugin keeps them as
    compact arrays and counts the facets of a search over every match without
    reading release rows; it reads only the rows appended since it last looked.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import unicodedata
from typing import TYPE_CHECKING

from archive.sql import chunks, marks

if TYPE_CHECKING:  # (annotations only: a cleaning worker imports this module for search_form)
    import sqlite_utils

logger = logging.getLogger(__name__)

# Bump when search_form() or the table layout changes: ensure_search rebuilds.
SEARCH_VERSION = "2"  # 2: columnsize=1 (bm25 over every match), release_facets, CJK characters, no tags

FTS_TABLE = "releases_fts"
ROWS_TABLE = "releases_fts_rows"
PENDING_TABLE = "releases_fts_pending"
FACETS_TABLE = "release_facets"
FACETS_LOG_KEY = "facets_log"  # _pressarchive key: changes whenever release_facets is made anew
HELPER_TABLES = (FTS_TABLE, ROWS_TABLE, PENDING_TABLE, FACETS_TABLE)
TRIGGERS = ("releases_fts_on_update", "releases_fts_on_delete", "releases_fts_on_insert",
            "release_facets_on_update")
# Facet columns of the releases table view, counted over every search match by the plugin.
FACET_COLUMNS = ("source_id", "country", "kind", "language", "year", "statement_type")
# What release_facets logs: the facets, and the default sort (pages of a search are cut there).
LOGGED_COLUMNS = FACET_COLUMNS + ("published",)

# The FTS5 table's definition. content='': contentless, the bigram search form is not stored a
# second time. columnsize=1: each row's token counts, for bm25() and for scans (module docstring).
FTS_ARGS = "title, text, tags, content='', columnsize=1, tokenize='unicode61 remove_diacritics 2'"
FTS_DEFINITION = re.compile(r"using\s+fts5\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)

# Columns whose change alters what was indexed: a trigger saves the old values.
INDEXED_COLUMNS = ("title", "text")

ID_BITS = 2**32  # releases.id lives in the low 32 bits of the FTS rowid
REBUILD_CHUNK = 5000  # releases read and indexed at a time by a full rebuild
HASH_SIZE = 32 * 2**20  # FTS5 'hashsize': pending tokens kept in memory per write
# FTS5 'automerge': how many segments of one size are merged into the next (FTS5's default 4).
# Each merge rewrites what it merges, so fewer, wider merges write the index fewer times: with 8,
# benchmarks/ingest.py's writer spent 7% less CPU over 1,000,000 releases, and queries on a
# 1,000,000-release index took as long as with 4 (0.1-7 ms for a word's or phrase's newest 50).
AUTOMERGE = 8

# Han (incl. extensions and compatibility), kana, Hangul; "々〆〇" are Han-like.
# The katakana middle dot U+30FB is punctuation and splits runs.
CJK_CHARS = (
    "\u1100-\u11ff\u3005-\u3007\u3040-\u30fa\u30fc-\u30ff\u3130-\u318f"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\U00020000-\U0003134f"
)
CJK_RUN = re.compile(f"[{CJK_CHARS}]+")
# Separates a text's search form from its list of CJK characters, so that no phrase query
# matches across the two (a token no text or query is expected to hold).
UNIGRAMS_MARK = "pa0cjk0chars"
ONLY_CJK = re.compile(f"^[{CJK_CHARS}]+$")
WORD_CHAR = re.compile(r"\w")


def _bigrams(run: str, trailing: bool) -> str:
    if len(run) == 1:
        return run
    grams = [run[i : i + 2] for i in range(len(run) - 1)]
    if trailing:
        # The last character alone, so a query ending mid-word ("国" in "中国")
        # or a phrase continuing into Latin text ("中国 is") still lines up.
        grams.append(run[-1])
    return " ".join(grams)


def search_form(value) -> str:
    """The text FTS5 indexes for ``value``: NFKC, CJK runs as bigrams, then each CJK character once.

    The characters (after :data:`UNIGRAMS_MARK`) make a one-character query
    (的, 美, 日) a single token instead of a prefix query over every pair that
    starts with it, which at a million releases took seconds.
    """
    if value is None:
        return ""
    text = str(value)
    if text.isascii():  # already NFKC, and no CJK: most English releases
        return text
    text = unicodedata.normalize("NFKC", text)
    runs = CJK_RUN.findall(text)
    if not runs:
        return text
    form = CJK_RUN.sub(lambda m: f" {_bigrams(m.group(), True)} ", text)
    return f"{form} {UNIGRAMS_MARK} {' '.join(dict.fromkeys(''.join(runs)))}"


def _query_form(term: str) -> tuple[str, bool]:
    """Search form of one query term and whether it must be a prefix query.

    The last CJK run gets no trailing unigram (the document's run may go on);
    a last run of one character becomes a prefix ("国"* matches "国家", "国").
    """
    text = unicodedata.normalize("NFKC", term)
    runs = list(CJK_RUN.finditer(text))
    if not runs:
        return text, False
    last = runs[-1]
    ends_with_run = not WORD_CHAR.search(text[last.end() :])
    pieces, pos = [], 0
    for run in runs:
        is_final = run is last and ends_with_run
        pieces.append(text[pos : run.start()])
        pieces.append(f" {_bigrams(run.group(), trailing=not is_final)} ")
        pos = run.end()
    pieces.append(text[pos:])
    alone = text.strip() == last.group()  # one character and nothing else: its own token
    return "".join(pieces), ends_with_run and len(last.group()) == 1 and not alone


def _fts_string(term: str, prefix: bool = False) -> str | None:
    form, cjk_prefix = _query_form(term)
    if not WORD_CHAR.search(form):
        return None
    quoted = '"' + form.strip().replace('"', '""') + '"'
    return quoted + ("*" if prefix or cjk_prefix else "")


QUERY_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
SPACE_BETWEEN_CJK = re.compile(f"(?<=[{CJK_CHARS}])\\s+(?=[{CJK_CHARS}])")


def _term_pattern(term: str, prefix: bool) -> str | None:
    term = unicodedata.normalize("NFKC", term).strip()
    if not re.search(r"\w", term):
        return None
    if CJK_RUN.search(term):
        return re.escape(SPACE_BETWEEN_CJK.sub("", term))
    body = r"\W+".join(re.escape(w) for w in re.findall(r"\w+", term))
    tail = r"\w*" if prefix else ""
    return rf"(?<!\w){body}{tail}(?!\w)"


def match_regex(query: str) -> re.Pattern | None:
    """A regex finding, in plain text, the words and phrases a search query looks for (not its
    OR and -excluded terms): for snippets and excerpts; None when the query names none."""
    patterns = []
    for m in QUERY_TOKEN.finditer(query or ""):
        negate, phrase, word = m.group(1), m.group(2), m.group(3)
        if word == "OR" or negate or (word or "").startswith("-"):
            continue
        term = phrase if phrase is not None else word
        pattern = _term_pattern(term.rstrip("*"), prefix=term.endswith("*"))
        if pattern:
            patterns.append(pattern)
    return re.compile("|".join(patterns), re.IGNORECASE) if patterns else None

# Bounds of what a user may type (the search box, the ranked search, ``export --search``).
# Every word or phrase is one more doclist FTS5 reads and one more term bm25() scores for each
# match: at a million releases 16 common words took 1.9 s to count and 12 s to rank, and 4 KB
# of "a a a ..." tied up a server thread for minutes. A statement's sentence is one quoted
# phrase: 99% of the development corpus's sentences are under 370 characters (English) and
# 180 (Chinese), so 1,000 characters hold any sentence and 32 words or phrases any real query.
QUERY_MAX_CHARS = 1000
QUERY_MAX_TERMS = 32


class QueryTooLong(ValueError):
    """A search over :data:`QUERY_MAX_CHARS` or :data:`QUERY_MAX_TERMS`; the message is for the user."""


def check_query_size(q: str) -> None:
    """Raise :class:`QueryTooLong` for a query past the bounds (counted after NFKC, which
    can make one character eighteen)."""
    # (a query far too long is refused before normalising it: NFKC of megabytes takes a while)
    size = len(q) if len(q) > 4 * QUERY_MAX_CHARS else len(unicodedata.normalize("NFKC", q))
    if size > QUERY_MAX_CHARS:
        raise QueryTooLong(
            f"the search is {size:,} characters long; at most {QUERY_MAX_CHARS:,} are searched: "
            "shorten it to its most telling words or a phrase")
    terms = sum(1 for m in QUERY_TOKEN.finditer(q) if m.group(3) != "OR")
    if terms > QUERY_MAX_TERMS:
        raise QueryTooLong(
            f"the search has {terms} words or phrases; at most {QUERY_MAX_TERMS} are searched: "
            'drop the least telling ones, or put a passage in "quotes" to search it as one phrase')


def rewrite_query(q: str) -> str | None:
    """Turn what a user typed into an FTS5 MATCH expression for releases_fts.

    Words are ANDed; ``"quoted phrases"``; ``OR`` between two terms; ``-word``
    excludes; ``word*`` is a prefix search. Returns None when nothing in
    ``q`` is searchable (callers then match nothing). Raises :class:`QueryTooLong`
    past the bounds. A word or phrase given twice is searched once (AND and NOT
    are idempotent): FTS5 would read its doclist, and bm25() score it, twice.
    """
    check_query_size(q or "")
    clauses: list[str] = []  # positive clauses, ANDed
    excluded: list[str] = []
    pending_or = False
    for m in QUERY_TOKEN.finditer(q or ""):
        negate, phrase, word = m.group(1), m.group(2), m.group(3)
        if word == "OR":
            pending_or = bool(clauses)
            continue
        if phrase is not None:
            # Chinese is written without spaces: "知识产权 保护" means "知识产权保护".
            expr = _fts_string(SPACE_BETWEEN_CJK.sub("", phrase))
        else:
            negate = word.startswith("-") and len(word) > 1
            word = word[1:] if negate else word
            prefix = word.endswith("*") and not ONLY_CJK.match(word[:-1] or "x")
            expr = _fts_string(word.rstrip("*"), prefix=prefix)
        if expr is None:
            continue
        if negate:
            excluded.append(expr)
        elif pending_or:
            clauses[-1] = f"({clauses[-1]} OR {expr})"
        else:
            clauses.append(expr)
        pending_or = False
    if not clauses:
        return None
    clauses, excluded = list(dict.fromkeys(clauses)), list(dict.fromkeys(excluded))
    match = " AND ".join(clauses)
    if excluded and len(clauses) > 1:
        match = f"({match})"
    for expr in excluded:
        match = f"{match} NOT {expr}"
    return match


NO_MATCH = 'tags : "tnothing"'  # a valid MATCH expression that finds nothing


def user_match(q: str | None) -> str:
    """The FTS5 MATCH expression for what a user typed, restricted to title and text.

    The search box's query language (see :func:`rewrite_query`); a query with
    nothing searchable in it matches nothing; one past the bounds raises
    :class:`QueryTooLong`.
    """
    user = rewrite_query(q or "")
    return NO_MATCH if user is None else f"{{title text}} : ({user})"


def matching_release_ids(conn, q: str | None) -> list[int]:
    """Ids of every release matching ``q`` (exact, no cut), newest published first.

    ``conn`` is a ``sqlite3.Connection`` (or anything with ``execute``) on an
    archive whose search index is up to date.
    """
    rows = conn.execute(
        f"select rowid % {ID_BITS} from {FTS_TABLE} where {FTS_TABLE} match ? order by rowid desc",
        [user_match(q)],
    )
    return [row[0] for row in rows]


def fts_rowid(release_id: int, published) -> int:
    """FTS rowid: newest first when read in descending order."""
    digits = re.sub(r"\D", "", str(published or ""))[:8]
    # "2024" and "2024-05" sort at the start of their year or month.
    day = int(digits.ljust(8, "0")) if len(digits) in (4, 6, 8) else 0
    return day * ID_BITS + int(release_id)


def _indexed_values(row: dict) -> tuple[str, str, str]:
    form = row.get("search_form")  # (title, text) already made by a cleaning worker
    if form:
        return form[0], form[1], ""
    return search_form(row.get("title")), search_form(row.get("text")), ""


def _fingerprint(values: tuple[str, str, str]) -> str:
    return hashlib.sha1("\x00".join(values).encode()).hexdigest()[:20]


def _create(db: sqlite_utils.Database) -> None:
    db.execute(f"create virtual table if not exists {FTS_TABLE} using fts5({FTS_ARGS})")
    facets = ", ".join(LOGGED_COLUMNS)
    db.execute(
        f"create table if not exists {FACETS_TABLE} (seq integer primary key, "
        f"release_id integer not null, {facets})"
    )
    db.execute(
        f"create table if not exists {ROWS_TABLE} ("
        "release_id integer primary key, fts_rowid integer not null, fingerprint text not null)"
    )
    columns = ", ".join(INDEXED_COLUMNS)
    db.execute(
        f"create table if not exists {PENDING_TABLE} (release_id integer primary key, {columns})"
    )
    old = ", ".join(f"old.{c}" for c in INDEXED_COLUMNS)
    changed = " or ".join(f"old.{c} is not new.{c}" for c in INDEXED_COLUMNS)
    # Only the first saved values are kept: they are the ones in the index.
    # (A NOT EXISTS guard, not "insert or ignore": an outer upsert or
    # "insert or replace" would override the trigger's conflict clause.)
    save = f"insert into {PENDING_TABLE} (release_id, {columns})"
    not_saved = f"not exists (select 1 from {PENDING_TABLE} where release_id = old.id)"
    triggers = {
        "releases_fts_on_update": f"after update of {columns} on releases when {changed} "
        f"begin {save} select old.id, {old} where {not_saved}; end",
        "releases_fts_on_delete": "before delete on releases "
        f"begin {save} select old.id, {old} where {not_saved}; end",
        # INSERT OR REPLACE deletes the old row without firing delete triggers. Two
        # single-index lookups: "id = new.id or url = new.url" made every insert a slow OR plan.
        "releases_fts_on_insert": "before insert on releases "
        f"begin {save} select id, {columns} from releases where id = new.id "
        f"and not exists (select 1 from {PENDING_TABLE} where release_id = releases.id) "
        f"union all select id, {columns} from releases where url = new.url and id is not new.id "
        f"and not exists (select 1 from {PENDING_TABLE} where release_id = releases.id); end",
    }
    new_facets = ", ".join(f"new.{c}" for c in LOGGED_COLUMNS)
    facets_changed = " or ".join(f"old.{c} is not new.{c}" for c in LOGGED_COLUMNS)
    # New releases are logged when they are indexed (insert_prepared): an insert trigger made a
    # bulk insert of wide rows three times slower (SQLite builds the NEW row for it).
    log = f"insert into {FACETS_TABLE} (release_id, {facets}) values (new.id, {new_facets})"
    triggers["release_facets_on_update"] = (
        f"after update of {facets} on releases when {facets_changed} begin {log}; end"
    )
    db.execute("drop trigger if exists release_facets_on_insert")  # (an early form of the log)
    stored = dict(db.execute("select name, sql from sqlite_master where type = 'trigger'").fetchall())
    for name, body in triggers.items():
        if stored.get(name) != f"CREATE TRIGGER {name} {body}":  # new, or an older archive's definition
            db.execute(f"drop trigger if exists {name}")
            db.execute(f"CREATE TRIGGER {name} {body}")
    # Tokens of a write are gathered in memory and written out as one segment when this
    # much is pending (FTS5's default, 1 MB, writes and later merges ~3 segments a batch).
    config = dict(db.execute(f"select k, v from {FTS_TABLE}_config").fetchall())
    for key, value in (("hashsize", HASH_SIZE), ("automerge", AUTOMERGE)):
        if config.get(key) != value:
            db.execute(f"insert into {FTS_TABLE} ({FTS_TABLE}, rank) values (?, ?)", [key, value])


@contextlib.contextmanager
def insert_trigger_paused(db: sqlite_utils.Database):
    """Inside the writer's transaction: insert rows known to be new without the insert trigger.

    The trigger only matters when an insert replaces a row; running it costs
    ~20 µs a row, a tenth of a bulk insert. Dropped and re-created in the same
    transaction, so no other connection ever sees the archive without it.
    """
    sql = db.execute("select sql from sqlite_master where type = 'trigger' and name = ?",
                     ["releases_fts_on_insert"]).fetchone()
    if sql is None:
        yield
        return
    db.execute("drop trigger releases_fts_on_insert")
    try:
        yield
    finally:
        db.execute(sql[0])


def _drop(db: sqlite_utils.Database) -> None:
    for trigger in TRIGGERS:
        db.execute(f"drop trigger if exists {trigger}")
    for table in HELPER_TABLES:
        db.execute(f"drop table if exists {table}")


def _version(db) -> str | None:
    if not db["_pressarchive"].exists():
        return None
    row = db.execute("select value from _pressarchive where key = 'search_version'").fetchone()
    return row[0] if row else None


def definition_is_current(conn) -> bool:
    """Whether the archive's FTS table exists with this version's definition (:data:`FTS_ARGS`).

    Read-only: ``conn`` is a ``sqlite3.Connection`` or a ``sqlite_utils.Database``.
    """
    row = conn.execute("select sql from sqlite_master where name = ?", [FTS_TABLE]).fetchone()
    found = FTS_DEFINITION.search(row[0] or "") if row else None
    return found is not None and " ".join(found.group(1).split()) == FTS_ARGS


def ensure_search(db: sqlite_utils.Database, batch: int = 2000) -> None:
    """Create the search tables and bring the index up to date with releases.

    Idempotent. Rebuilds from scratch when SEARCH_VERSION changed or the FTS
    table is missing or defined otherwise (an archive indexed by an older
    version: see the module docstring); otherwise indexes releases missing
    from the index and applies pending changes.
    """
    from archive.schema import ensure_schema  # the releases table must exist

    ensure_schema(db)
    with db.atomic():
        if _version(db) != SEARCH_VERSION or not definition_is_current(db):
            if db[FTS_TABLE].exists():
                logger.info("search index format changed: rebuilding")
            _drop(db)
        new_log = not db[FACETS_TABLE].exists()
        _create(db)
        if new_log:  # readers holding the old log's rows must start again (see FACETS_LOG_KEY)
            import uuid

            db["_pressarchive"].insert({"key": FACETS_LOG_KEY, "value": uuid.uuid4().hex}, pk="key", replace=True)
        if db.execute(f"select 1 from {FACETS_TABLE} limit 1").fetchone() is None:
            # A new log beside an index that already holds releases: their current values
            # (releases indexed from now on are logged as they are indexed).
            columns = ", ".join(LOGGED_COLUMNS)
            db.execute(f"insert into {FACETS_TABLE} (release_id, {columns}) "
                       f"select id, {columns} from releases "
                       f"where id in (select release_id from {ROWS_TABLE}) order by id")
        db["_pressarchive"].insert(
            {"key": "search_version", "value": SEARCH_VERSION}, pk="key", replace=True
        )
        # Facet counts on the unfiltered releases page scan these instead of the
        # (wide) rows; source_id is covered by schema's (source_id, published).
        for column in ("country", "kind", "language", "year"):
            db["releases"].create_index([column], if_not_exists=True)
        # (Every schema change in one commit: a reader that opens the search index while the
        # schema changes under it can fail, "vtable constructor failed".)
        analyze(db)
    missing_sql = (
        f"select id from releases where id not in (select release_id from {ROWS_TABLE}) "
        f"union select release_id from {PENDING_TABLE}"
    )
    ids = [row[0] for row in db.execute(missing_sql)]
    for chunk in chunks(ids, batch):
        with db.atomic():
            index_releases(db, chunk)
    if ids:
        logger.info("search index: indexed %d releases", len(ids))


def analyze(db: sqlite_utils.Database) -> None:
    """Give SQLite's planner statistics on releases, when it has none or the archive doubled.

    A search restricted to a facet value (``language = 'en'`` and every
    match of a common word) is planned from them: without statistics SQLite
    reads every English release through the language index and sorts them;
    with them it walks the date index and stops when a page is full. Sampled
    (``analysis_limit``), so it costs well under a second at a million releases.
    """
    size = db.execute("select coalesce(max(rowid), 0) from releases").fetchone()[0]
    row = db.execute("select value from _pressarchive where key = 'analyzed_rows'").fetchone()
    done = int(row[0]) if row else None
    has_stats = db.execute(
        "select 1 from sqlite_master where name = 'sqlite_stat1'").fetchone() is not None
    if has_stats and done is not None and (size < 2 * done or size < 100):
        return
    db.execute("pragma analysis_limit = 2000")
    db.execute("analyze releases")
    db["_pressarchive"].insert({"key": "analyzed_rows", "value": str(size)}, pk="key", replace=True)


def _remove(db, release_id: int, fts_key: int, old_row: dict | None, fingerprint: str) -> bool:
    """Delete one release's tokens; False if its indexed values are unknown."""
    if old_row is None:
        return False
    values = _indexed_values(old_row)
    if _fingerprint(values) != fingerprint:
        return False
    db.execute(
        f"insert into {FTS_TABLE} ({FTS_TABLE}, rowid, title, text, tags) "
        "values ('delete', ?, ?, ?, ?)",
        [fts_key, *values],
    )
    db.execute(f"delete from {ROWS_TABLE} where release_id = ?", [release_id])
    return True


def _release_rows(db: sqlite_utils.Database, ids: list[int]):
    """id, published and INDEXED_COLUMNS of these releases, a chunk a query (SQLite limits bound parameters)."""
    for part in chunks(ids):
        yield from db.query(f"select id, published, {', '.join(INDEXED_COLUMNS)} from releases "
                            f"where id in ({marks(part)})", part)


def index_releases(db: sqlite_utils.Database, release_ids: list[int]) -> None:
    """(Re)index these releases; call inside the writer's transaction.

    Also settles every pending change (rows updated or deleted by any writer
    since they were indexed), which is normally just ``release_ids``.
    """
    pending = {
        row["release_id"]: row
        for row in db.query(f"select * from {PENDING_TABLE}")
    }
    ids = sorted({int(i) for i in release_ids} | set(pending))
    inserts = []  # (fts rowid, release id, values)
    for chunk in chunks(ids):
        indexed = {
            r[0]: (r[1], r[2])
            for r in db.execute(
                f"select release_id, fts_rowid, fingerprint from {ROWS_TABLE} "
                f"where release_id in ({marks(chunk)})",
                chunk,
            )
        }
        current = {row["id"]: row for row in _release_rows(db, chunk)}
        for release_id in chunk:
            row = current.get(release_id)
            values = _indexed_values(row) if row else None
            new_key = fts_rowid(release_id, row["published"]) if row else None
            if release_id in indexed:
                key, fingerprint = indexed[release_id]
                if values and key == new_key and _fingerprint(values) == fingerprint:
                    continue  # unchanged
                old_row = pending.get(release_id) or (row if values else None)
                if not _remove(db, release_id, key, old_row, fingerprint):
                    _rebuild(db)  # only if something bypassed the triggers
                    return
            if row:
                inserts.append((new_key, release_id, values, _fingerprint(values)))
        db.execute(f"delete from {PENDING_TABLE} where release_id in ({marks(chunk)})", chunk)
    insert_prepared(db, inserts)


def index_values(row: dict) -> tuple:
    """What the index holds for a release row (title, text and tags forms) and its fingerprint.

    Pure Python: bulk writers compute it away from the database work.
    """
    values = _indexed_values(row)
    return values, _fingerprint(values)


def entry(release_id: int, published, index: tuple) -> tuple:
    """An index entry for :func:`insert_prepared` from :func:`index_values`."""
    values, fingerprint = index
    return fts_rowid(release_id, published), release_id, values, fingerprint


def prepare(rows: list[dict]) -> list[tuple]:
    """Index entries for release rows (dicts with id, published and INDEXED_COLUMNS).

    Pure Python, so bulk loaders can run it in worker processes and pass the
    result to :func:`insert_prepared`; only for releases not yet indexed.
    """
    return [entry(row["id"], row["published"], index_values(row)) for row in rows]


def insert_prepared(db: sqlite_utils.Database, entries: list[tuple]) -> None:
    """Add entries from :func:`prepare` for releases that are not in the index."""
    # FTS5 buffers a transaction's tokens in memory but must write them out
    # whenever a rowid is lower than the previous one: insert in rowid order.
    entries = sorted(entries)
    db.conn.executemany(
        f"insert into {FTS_TABLE} (rowid, title, text, tags) values (?, ?, ?, ?)",
        [(key, *values) for key, _, values, _ in entries],
    )
    db.conn.executemany(
        f"insert into {ROWS_TABLE} (release_id, fts_rowid, fingerprint) values (?, ?, ?)",
        [(release_id, key, fingerprint) for key, release_id, _, fingerprint in entries],
    )
    log_facets(db, sorted(release_id for _, release_id, _, _ in entries))


def log_facets(db: sqlite_utils.Database, release_ids: list[int]) -> None:
    """Append these releases' current facet values to release_facets (see the module docstring)."""
    columns = ", ".join(LOGGED_COLUMNS)
    for part in chunks(release_ids):
        db.conn.execute(
            f"insert into {FACETS_TABLE} (release_id, {columns}) select id, {columns} from releases "
            f"where id in ({marks(part)}) order by id", part)


def _rebuild(db: sqlite_utils.Database) -> None:
    """Start the index again from releases (its old tokens cannot be removed)."""
    logger.warning("search index out of step with releases: rebuilding it")
    db.execute(f"insert into {FTS_TABLE} ({FTS_TABLE}) values ('delete-all')")
    db.execute(f"delete from {ROWS_TABLE}")
    db.execute(f"delete from {PENDING_TABLE}")
    # A chunk of releases at a time, in FTS rowid order across chunks (FTS5 writes its pending
    # tokens out whenever a rowid is lower than the last): memory stays flat however large the
    # archive (indexing every release at once held ~5 GB at a million).
    keys = sorted(fts_rowid(i, published) for i, published in db.execute("select id, published from releases"))
    for part in chunks(keys, REBUILD_CHUNK):
        insert_prepared(db, prepare(_release_rows(db, [key % ID_BITS for key in part])))
