"""Datasette plugin: exact CJK-aware search, readable text, a read-only archive.

- ``?_search=`` on the ``releases`` table is handled here, not by Datasette's
  built-in FTS filter: the query is rewritten for the bigram index (see
  ``archive.search_index``) and the table is restricted to **every** match.
  Datasette's own count, facets, pagination and CSV/JSON streaming then work
  over all matches. Two of those would read every matching release row (a
  count over 500,000 wide rows takes seconds), so for them the plugin answers
  Datasette's SQL itself, with the same result: the matching ids come out of
  the index in one query and are counted against compact arrays of every
  release's facet values (:class:`FacetStore`). A page ordered by date (the
  default) is cut from the matches the same way (:func:`page_of`), so SQLite
  reads only the rows shown. Only queries the plugin can answer exactly are
  answered this way (a search plus equality filters on the facet columns);
  anything else runs as ordinary SQL over every match, where Datasette's time
  limits and notices apply as usual.
- SQL functions for the canned ``search`` query: ``pressarchive_best(q)``
  (FTS5's ``bm25()`` over every match, the title weighted ten times: the best
  50; words and phrases matching many releases are scored from cached postings
  with bm25()'s own arithmetic, ``archive.ranking``), ``pressarchive_match(q)`` and ``pressarchive_snippet(text, q)``
  (matches wrapped in ⟦ ⟧).
- ``text`` is shown as escaped paragraphs, snippets with <mark>; archived
  HTML is always inert because every value is escaped before we add markup.
- Every connection is ``query_only``: nothing can be written through the site.
- Hostile readers: Datasette runs any SQL a visitor sends, so every connection is
  bounded (:func:`harden`): SQLite's limits (the longest string or blob, the
  SQL, expression depth...), an authorizer refusing functions that leak
  pointers or load code and ``ATTACH``, and a budget of bytes a query may
  return. Searches are bounded too (``archive.search_index.QUERY_MAX_CHARS``
  and ``QUERY_MAX_TERMS``: a clear message, never a 500), the plugin's own
  SQL and its ranking thread stop at Datasette's ``sql_time_limit_ms``, a
  request's facets are run once each and at most 10 (:func:`bounded_facets`),
  and no response header grows past a few KB (:func:`bounded_headers`).
- A missing search index makes searches say so (503); an out-of-date one is
  searched as it is, and the pages say that too (``archive.site.serve.search_index_problem``).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import re
import sqlite3
import threading
import time
import uuid
import weakref

import numpy as np
from datasette import hookimpl
from datasette.database import QueryInterrupted, Results
from datasette.filters import FilterArguments, Filters
from datasette.utils import urlsafe_components
from datasette.views.base import DatasetteError
from markupsafe import Markup, escape

from archive.ranking import ranker_for
from archive.search_index import (
    FACET_COLUMNS,
    FACETS_LOG_KEY,
    FACETS_TABLE,
    FTS_TABLE,
    ID_BITS,
    LOGGED_COLUMNS,
    QueryTooLong,
    check_query_size,
    match_regex,
    user_match,
)
from archive.site.serve import search_index_problem

MARK_START, MARK_END = "\u27e6", "\u27e7"  # ⟦ ⟧: plain text, safe in JSON
SNIPPET_CHARS = 240
# Up to this many matches are put into the page's SQL as a list of ids (SQLite reads just
# those rows); more are given as the index query, and SQLite walks the sort order's index
# and keeps the rows the index matched (a list of 100,000 ids would mean 100,000 row reads).
LITERAL_IDS_MAX = 2000
MATCHING_IDS = (f"select rowid % {ID_BITS} from {FTS_TABLE} "
                f"where {FTS_TABLE} match :_pa_match")

# Request arguments that change nothing in the WHERE clause of the table view.
NEUTRAL_ARGS = {
    "_search", "_searchmode", "_sort", "_sort_desc", "_sort_by_desc", "_next", "_size",
    "_facet", "_facet_size", "_facet_date", "_facet_array", "_labels", "_label", "_nocount",
    "_nofacet", "_nosuggest", "_shape", "_col", "_nocol", "_trace", "_timelimit", "_json",
    "_json_infinity", "_nl", "_stream", "_dl", "_header", "_context", "_ttl", "_hash",
}
INTEGER_COLUMNS = {"year"}
FACET_SQL = re.compile(
    r"\s*select \[?(?P<col>\w+)\]? as value, count\(\*\) as count from \(\s*"
    r"select .*? from releases where (?P<where>.*?)\s*\)\s*"
    r"where \[?(?P=col)\]? is not null\s*group by \[?(?P=col)\]? "
    r"order by count desc, value limit (?P<limit>\d+)\s*",
    re.DOTALL,
)


# --- Hostile SQL: what one query may cost ----------------------------------------------------
# SQLite checks these as it works. LENGTH: the longest string or blob a query may build or read
# (printf('%.*c', 999999999, 'x') built 1 GB for 21 s; randomblob(900000000) 0.9 GB). 32 MB is
# three times the largest page the crawl keeps (RELEASE_MAXSIZE, 10 MB), so every archived text
# and diff is read and exported whole, and a LIKE over a string that long stays near the time
# limit (below). The plugin's own id lists are not held to it (_own_sql).
LENGTH_MAX = 32 * 2**20
SQL_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: LENGTH_MAX,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 1_000_000,  # the plugin's longest SQL: 2,000 ids, about 50 KB
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 200,  # parser recursion (SQLite's default 1,000)
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,  # UNION arms (default 500)
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 64,  # json_object() of 32 pairs (default 127)
    # LIKE and GLOB cost the text's length times the pattern's in one uninterruptible call: 64
    # (a _contains filter of 62 characters) keeps one over a 32 MB string to about 4 s.
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 64,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,  # no ATTACH: the site reads the archive and nothing else
}
# Text and blobs one query may hand to Python: without it a query could return a thousand rows
# of 50 MB values (zeroblob(40000000) from releases) before its time limit. A thousand releases
# with their whole texts are a few MB.
RESULT_MAX = 100 * 2**20
# fts3_tokenizer('simple') returns a pointer (and with a second argument installs one: code
# execution); load_extension loads code; fts5(?) hands out FTS5's API pointer; the rtree
# debugging functions parse any blob as a node (CVE-2019-8457); optimize() writes FTS3 tables.
DENIED_FUNCTIONS = frozenset({"fts3_tokenizer", "load_extension", "fts5", "rtreenode",
                              "rtreedepth", "rtreecheck", "optimize"})
DENIED_TABLES = frozenset({"sqlite_stmt"})  # the SQL of other visitors' statements on this connection


def _authorizer(action, arg1, arg2, db_name, trigger):
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_READ and (arg1 or "").lower() in DENIED_TABLES:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def bounded_rows(limit: int = RESULT_MAX):
    """A row factory (rows as ``sqlite3.Row``) that stops a query past ``limit`` bytes of text and blobs."""
    spent: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def row_factory(cursor, values):
        size = sum(len(v) for v in values if isinstance(v, (str, bytes)))
        if size:
            total = spent.get(cursor, 0) + size
            if total > limit:
                raise sqlite3.OperationalError(
                    f"the result is too large (over {limit // 2**20} MB of text): "
                    "ask for fewer rows or columns")
            spent[cursor] = total
        return sqlite3.Row(cursor, values)

    return row_factory


# printf('%.*c', 999999999, 'x') repeats the character 999,999,999 times even when SQLite has
# given up on a result that long (7 s; the length limit only saves the memory): printf() and
# format() get widths and precisions cut to just over LENGTH_MAX, whose result is the same
# (NULL: too long), then run as SQLite's own printf on a private connection.
PRINTF_SPEC = re.compile(r"%(?P<flags>[-+ 0#,!]*)(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?"
                         r"(?P<size>l{0,2})(?P<type>%|[a-zA-Z])")
BUILTINS_LOCAL = threading.local()


def _int_arg(value) -> int:
    """An argument of ``*`` as SQLite's printf reads it (an integer; leading digits of a text)."""
    if isinstance(value, (int, float)):
        return int(value)
    m = re.match(rb"\s*[-+]?\d+", value if isinstance(value, bytes) else str(value or "").encode())
    return int(m.group()) if m else 0


def bounded_printf(fmt, *args):
    """SQLite's printf(), with every width and precision cut to just over LENGTH_MAX."""
    args, top, at = list(args), LENGTH_MAX + 1, 0

    def cut(spec):
        nonlocal at
        if spec == "*":
            if at < len(args) and abs(_int_arg(args[at])) > top:
                args[at] = top if _int_arg(args[at]) > 0 else -top
            at += 1
        elif spec and int(spec) > top:
            return str(top)
        return spec

    def spec(m):
        nonlocal at
        width, precision = cut(m.group("width")), cut(m.group("precision"))
        at += m.group("type") not in ("%", "n")  # the value converted
        return (f"%{m.group('flags')}{width or ''}{'' if precision is None else '.' + precision}"
                f"{m.group('size')}{m.group('type')}")

    if isinstance(fmt, str):
        fmt = PRINTF_SPEC.sub(spec, fmt)
    return sqlite_builtin("printf", fmt, *args)


def sqlite_builtin(name: str, *args):
    """SQLite's own function ``name`` on ``args``, on a private connection (this thread's)."""
    helper = getattr(BUILTINS_LOCAL, "conn", None)
    if helper is None:
        helper = BUILTINS_LOCAL.conn = sqlite3.connect(":memory:", check_same_thread=False)
        helper.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, LENGTH_MAX)
    return helper.execute(f"select {name}({', '.join('?' * len(args))})", args).fetchone()[0]


# instr(), replace() and trim(X, Y) compare every position of X with Y in one call, which no
# time limit interrupts: trim() of 100 KB by 50 KB took 16 s, instr() and replace() of 1 MB by
# 0.5 MB 7 s. Calls up to QUADRATIC_MAX (length times length) run as SQLite's own; larger ones
# run in linear time in Python (str.find and str.replace, a set of characters) with the same result.
# (LIKE and GLOB cost the same way, but Datasette's own filters use them on every row: they keep
# SQLite's, and the pattern is bounded instead: SQLITE_LIMIT_LIKE_PATTERN_LENGTH.)
QUADRATIC_MAX = 10**7


def _large(*values) -> bool:
    if not all(isinstance(v, (str, bytes)) for v in values):
        return False  # NULL or a number: short, and SQLite's conversions apply
    return len(values[0]) * max(len(v) for v in values[1:]) > QUADRATIC_MAX


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def bounded_instr(x, y):
    if not _large(x, y):
        return sqlite_builtin("instr", x, y)
    if isinstance(x, bytes) and isinstance(y, bytes):
        return x.find(y) + 1
    return _text(x).find(_text(y)) + 1


def bounded_replace(x, y, z):
    if not _large(x, y, z) or not y:
        return sqlite_builtin("replace", x, y, z)
    x, y, z = _text(x), _text(y), _text(z)
    if len(x) + x.count(y) * (len(z) - len(y)) > LENGTH_MAX:
        raise sqlite3.DataError("string or blob too big")
    return x.replace(y, z)


def _trimmer(left: bool, right: bool):
    name = "trim" if left and right else "ltrim" if left else "rtrim"

    def trim(x, y):
        if not _large(x, y):
            return sqlite_builtin(name, x, y)
        x = _text(x)
        chars = re.compile("[" + "".join(re.escape(c) for c in set(_text(y))) + "]*")
        start = chars.match(x).end() if left else 0
        end = len(x) - chars.match(x[::-1]).end() if right else len(x)
        return x[start:max(start, end)]

    return name, trim


TRIMMERS = [_trimmer(True, True), _trimmer(True, False), _trimmer(False, True)]


def harden(conn) -> None:
    """SQLite's limits, the authorizer and bounded functions on a connection that runs visitors' SQL."""
    for limit, value in SQL_LIMITS.items():
        conn.setlimit(limit, value)
    conn.set_authorizer(_authorizer)
    for name in ("printf", "format"):
        conn.create_function(name, -1, bounded_printf, deterministic=True)
    conn.create_function("instr", 2, bounded_instr, deterministic=True)
    conn.create_function("replace", 3, bounded_replace, deterministic=True)
    for name, trim in TRIMMERS:
        conn.create_function(name, 2, trim, deterministic=True)


@contextlib.contextmanager
def _own_sql(conn):
    """The plugin's own queries on a visitor's connection: tuples, and its id lists unbounded.

    A search's matching ids come out of the index as one ``group_concat`` of
    about 8 bytes a match (8 MB for a million): past LENGTH_MAX they would fail.
    Nothing but the plugin runs on the connection meanwhile.
    """
    factory = conn.row_factory
    length = conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2**31 - 1)  # clamped to SQLite's maximum
    conn.row_factory = None
    try:
        yield
    finally:
        conn.row_factory = factory
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, length)


@contextlib.contextmanager
def time_limit(conn, deadline: float):
    """Interrupt the connection's statements at ``deadline`` (``time.perf_counter()``), as Datasette's
    ``sql_time_limit_ms`` does for its own queries."""
    conn.set_progress_handler(lambda: time.perf_counter() >= deadline, 1000)
    try:
        yield
    finally:
        conn.set_progress_handler(None, 1000)


def _deadline(datasette) -> float:
    return time.perf_counter() + datasette.setting("sql_time_limit_ms") / 1000


def _interrupted(error: Exception) -> bool:
    return isinstance(error, sqlite3.OperationalError) and error.args == ("interrupted",)


def snippet(text: str | None, q: str | None, size: int = SNIPPET_CHARS) -> str | None:
    """An excerpt of ``text`` around the first match of ``q``, matches in ⟦ ⟧."""
    if text is None:
        return None
    check_query_size(q or "")
    regex = match_regex(q or "")
    first = regex.search(text) if regex else None
    start = max(0, first.start() - size // 4) if first else 0
    window = text[start : start + size]
    if regex:
        window = regex.sub(lambda m: f"{MARK_START}{m.group()}{MARK_END}", window)
    window = " ".join(window.split())
    return ("…" if start else "") + window + ("…" if start + size < len(text) else "")


class FacetStore:
    """Every release's facet values as small integer codes in arrays indexed by release id.

    Read from the ``release_facets`` log (a row for every release indexed and
    every change of a facet column or the date): each refresh reads only the
    rows appended since the last one (a million releases load in 4-5 s, once;
    a new log, after a rebuild, is read anew). Code 0 is NULL.
    """

    CHUNK = 50_000
    MAX_ID = 2**27  # arrays for ids up to here (7 columns x 4 bytes: 3.8 GB at most); beyond: SQL

    def __init__(self):
        self.lock = threading.Lock()
        self.log = None  # which release_facets table the arrays were read from
        self.seq = 0
        self.size = 0
        self.codes = {c: np.zeros(0, dtype=np.int32) for c in LOGGED_COLUMNS}
        self.values = {c: [None] for c in LOGGED_COLUMNS}
        self.lookup = {c: {} for c in LOGGED_COLUMNS}
        self._ranks: dict[str, tuple] = {}

    def code(self, column: str, value) -> int:
        lookup = self.lookup[column]
        code = lookup.get(value)
        if code is None:
            if value is None:
                return 0
            code = lookup[value] = len(self.values[column])
            self.values[column].append(value)
        return code

    def _grow(self, top: int) -> None:
        if top < self.size:
            return
        if top >= self.MAX_ID:
            raise OverflowError(f"release id {top} is too large for the facet arrays")
        size = max(top + 1, int(self.size * 1.5), 1024)
        for column, array in self.codes.items():
            grown = np.zeros(size, dtype=np.int32)
            grown[: len(array)] = array
            self.codes[column] = grown
        self.size = size

    def refresh(self, conn) -> None:
        """Read the log rows appended since the last refresh (call inside the read transaction)."""
        row = conn.execute("select value from _pressarchive where key = ?", [FACETS_LOG_KEY]).fetchone()
        log = row[0] if row else None
        if log != self.log:  # a new log (the index was rebuilt): read it all
            self.__init__()
            self.log = log
        columns = ", ".join(LOGGED_COLUMNS)
        cursor = conn.execute(
            f"select seq, release_id, {columns} from {FACETS_TABLE} where seq > ? order by seq",
            [self.seq],
        )
        while rows := cursor.fetchmany(self.CHUNK):
            ids = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
            # A release logged twice in the chunk: its last row holds its current values.
            _, from_end = np.unique(ids[::-1], return_index=True)
            keep = len(ids) - 1 - from_end
            self._grow(int(ids.max()))
            for j, column in enumerate(LOGGED_COLUMNS, start=2):
                codes = np.fromiter((self.code(column, row[j]) for row in rows), dtype=np.int32,
                                    count=len(rows))
                self.codes[column][ids[keep]] = codes[keep]
            self.seq = rows[-1][0]

    def ranks(self, column: str) -> tuple[np.ndarray, list]:
        """Rank of each code in SQLite's order of the values (NULL 0), and the sorted sort keys."""
        values = self.values[column]
        cached = self._ranks.get(column)
        if cached is None or len(cached[0]) != len(values):
            order = sorted(range(1, len(values)), key=lambda code: sort_key(values[code]))
            ranks = np.zeros(len(values), dtype=np.float64)
            ranks[order] = np.arange(1, len(values), dtype=np.float64)
            cached = self._ranks[column] = (ranks, [sort_key(values[code]) for code in order])
        return cached

    def rank_of(self, column: str, value) -> float:
        """Where ``value`` sorts among the column's values (between two ranks if no release has it)."""
        ranks, keys = self.ranks(column)
        code = self.lookup[column].get(value)
        if code is not None:
            return float(ranks[code])
        return bisect.bisect_left(keys, sort_key(value)) + 0.5


def sort_key(value):
    """SQLite's order of non-NULL values: numbers, then text by code point, then blobs."""
    if isinstance(value, (int, float)):
        return (0, value, b"")
    if isinstance(value, str):
        return (1, 0, value.encode("utf-8"))
    return (2, 0, bytes(value))


def page_of(store: FacetStore, ids: np.ndarray, descending: bool, cursor, size: int) -> np.ndarray:
    """The matches on this page of ``order by published [desc], id``: exactly what SQL would list.

    ``cursor`` is Datasette's ``_next`` as (published or None for $null, id); None on page 1.
    NULL sorts first, as in SQLite (last when descending).
    """
    ranks, _ = store.ranks("published")
    rank = ranks[store.codes["published"][ids]]
    if cursor is not None:
        value, after = cursor
        if value is None:
            keep = (rank > 0) | (ids > after) if not descending else (rank == 0) & (ids > after)
        else:
            at = store.rank_of("published", value)
            later = (rank < at) | (rank == 0) if descending else rank > at
            keep = later | ((rank == at) & (ids > after))
        ids, rank = ids[keep], rank[keep]
    key = -rank if descending else rank
    if len(ids) > size:
        cut = np.partition(key, size)[size]
        near = key <= cut
        ids, key = ids[near], key[near]
    order = np.lexsort((ids, key))
    return ids[order[: size + 1]]


def filter_value(column: str, raw: str):
    """The value a ``?column=raw`` filter compares with, as SQLite would; None: leave it to SQL."""
    if column in INTEGER_COLUMNS:
        if not re.fullmatch(r"-?\d{1,18}", raw):
            return None  # SQLite's numeric conversions of other spellings: leave them to SQL
        return int(raw)
    return raw


STORES: dict[str, FacetStore] = {}
STORES_LOCK = threading.Lock()


def store_for(path: str) -> FacetStore:
    with STORES_LOCK:
        if path not in STORES:
            STORES[path] = FacetStore()
        return STORES[path]


class SearchPlan:
    """One table-view request's search: its matches, and the count and facets over them."""

    def __init__(self, ids: np.ndarray | None, count: int, store: FacetStore | None,
                 expected_where: str | None, page_only: bool = False):
        self.page_only = page_only  # the WHERE lists this page's matches, not all of them
        self.ids = ids  # matching release ids after the facet filters (None: not computed)
        self.count = count
        self.store = store
        self.expected_where = expected_where  # the WHERE this plan answers for; None: answer nothing
        self._facets: dict[str, list] = {}

    def facet_rows(self, column: str, limit: int) -> list[tuple]:
        """What Datasette's column-facet SQL returns: (value, count), commonest first."""
        if column not in self._facets:
            store = self.store
            with store.lock:
                codes = store.codes[column][self.ids] if len(self.ids) else np.zeros(0, np.int32)
                counts = np.bincount(codes, minlength=len(store.values[column]))
                values = list(store.values[column])
            rows = [(values[code], int(n)) for code, n in enumerate(counts) if code and n]
            # SQLite's order: count desc, then value (numbers before text, text by code point)
            rows.sort(key=lambda r: (-r[1], isinstance(r[0], str), r[0]))
            self._facets[column] = rows
        return self._facets[column][:limit]


class Row(tuple):
    """A result row readable by position and by column name, like sqlite3.Row."""

    def __new__(cls, names, values):
        row = super().__new__(cls, values)
        row.names = names
        return row

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self):
        return list(self.names)


ANSWERED = collections.Counter()  # SQL answered from plans, by kind ("count", "facet"): for tests
PLANS: collections.OrderedDict[str, SearchPlan] = collections.OrderedDict()
# Plans live for their request (Datasette asks the count and facets right after the filters);
# the newest are kept, up to this many matching ids in all (8 bytes each).
PLANS_MAX, PLANS_MAX_IDS = 256, 20_000_000


def _remember(plan: SearchPlan) -> str:
    token = uuid.uuid4().hex
    with STORES_LOCK:
        PLANS[token] = plan
        held = sum(len(p.ids) for p in PLANS.values() if p.ids is not None)
        while len(PLANS) > 1 and (len(PLANS) > PLANS_MAX or held > PLANS_MAX_IDS):
            _, old = PLANS.popitem(last=False)
            held -= len(old.ids) if old.ids is not None else 0
    return token


class Unanswerable(Exception):
    """SQL that would run over a page's ids as if they were every match: refused, never answered."""


def answer(plan: SearchPlan, sql: str) -> Results | None:
    """Datasette's count or column-facet SQL for this plan's request, answered from the plan."""
    where = plan.expected_where
    if where is None:
        return None
    if sql == f"select count(*) from releases where {where} ":
        ANSWERED["count"] += 1
        return Results([Row(("count(*)",), (plan.count,))], False, [("count(*)",)])
    m = FACET_SQL.fullmatch(sql)
    if m and m.group("col") in LOGGED_COLUMNS and plan.ids is not None:
        inner = m.group("where")
        # the search's WHERE, maybe followed by Datasette's pagination clauses (_next): the
        # facets of a search count over all of its matches on every page
        if inner == where or inner.startswith(where + " and "):
            rows = plan.facet_rows(m.group("col"), int(m.group("limit")))
            ANSWERED["facet"] += 1
            names = ("value", "count")
            return Results([Row(names, r) for r in rows], False, [(n,) for n in names])
    if plan.page_only and not (sql.startswith("select ") and f" from releases where {where}" in sql
                               and re.search(r" limit \d+(?: offset \d+)?$", sql)):
        # The WHERE lists only the page's rows: only the page itself may be read through it.
        raise Unanswerable(f"pressarchive: the search plan cannot answer {sql[:80]!r}")
    return None


def install(database) -> None:
    """Let this database's execute() answer the plugin's planned counts and facets, and rank
    the canned search's matches before its SQL runs (:func:`rank_for_query`)."""
    if getattr(database, "_pressarchive_execute", None):
        return
    original = database.execute

    async def execute(sql, params=None, *args, **kwargs):
        if isinstance(params, dict) and "_pa_token" in params:
            plan = PLANS.get(params["_pa_token"])
            if plan is None and params.get("_pa_page_only"):
                # Forgotten under load: its WHERE lists one page, so nothing may run over it.
                raise Unanswerable("pressarchive: too many searches at once; load the page again")
            if plan is not None:
                results = answer(plan, sql)
                if results is not None:
                    return results
        if isinstance(params, dict) and RANKED_CALL in sql and isinstance(params.get("q"), str):
            sql, params = await rank_for_query(database, sql, params)
        return await original(sql, params, *args, **kwargs)

    database.execute = execute
    database._pressarchive_execute = original


def _filter_pairs(request):
    """Datasette's column filters of this request, and whether the plugin can count them exactly."""
    pairs, exact = [], True
    for key in request.args:
        if key.startswith("_") and "__" not in key:
            if key not in NEUTRAL_ARGS:
                exact = False  # _where=, _through= and anything else: plain SQL
            continue
        for value in request.args.getlist(key):
            pairs.append((key, value))
            column = key.removesuffix("__exact")
            if column not in FACET_COLUMNS:
                exact = False
    return pairs, exact


# Orders an index of the releases table gives (archive/schema.py, search_index.ensure_search).
INDEXED_SORTS = {"id", "published", "source_id", "country", "kind", "language", "year",
                 "statement_type", "url"}


def _sort_order(request, datasette, database) -> tuple[str | None, bool]:
    """(column, descending) of the page, as Datasette's table view decides it; None: ambiguous."""
    sort, sort_desc = request.args.get("_sort"), request.args.get("_sort_desc")
    if not sort and not sort_desc:
        metadata = datasette.table_metadata(database, "releases")
        sort, sort_desc = metadata.get("sort"), metadata.get("sort_desc")
    if sort and sort_desc:
        return None, False  # Datasette refuses it
    return (sort_desc or sort or "id"), bool(sort_desc)


def _page_request(request, datasette, database):
    """(descending, cursor, page size) when the page is ordered by published; else None."""
    column, descending = _sort_order(request, datasette, database)
    if column != "published":
        return None
    size = (request.args.get("_size") or datasette.table_metadata(database, "releases").get("size")
            or datasette.page_size)
    try:
        size = datasette.max_returned_rows if size == "max" else int(size)
    except ValueError:
        return None
    if not 0 < size <= datasette.max_returned_rows:
        return None
    cursor = None
    after = request.args.get("_next")
    if after:
        components = urlsafe_components(after)
        if len(components) != 2 or not re.fullmatch(r"\d+", components[1]):
            return None
        value = None if after.split(",")[0] == "$null" else components[0]
        cursor = (value, int(components[1]))
    return descending, cursor, size


def _plan_search(conn, store, match, facet_filters, need_ids, page, time_limit_ms=None):
    """In one read transaction: bring the facet arrays up to date, read the matching ids.

    Returns (matching ids after the facet filters, their count, the page's ids or None).
    Each index query stops after ``time_limit_ms`` (QueryInterrupted: Datasette's "took too
    long"), as each of Datasette's own does; reading the facet log does not (its size is the
    archive's, not the visitor's doing: a million releases' log loads in 4-5 s, once).
    """
    def deadline():
        return time.perf_counter() + time_limit_ms / 1000 if time_limit_ms else float("inf")

    own_transaction = not conn.in_transaction
    if own_transaction:
        conn.execute("begin")
    try:
        with _own_sql(conn):
            if not need_ids:
                with time_limit(conn, deadline()):
                    count = conn.execute(
                        f"select count(*) from {FTS_TABLE} where {FTS_TABLE} match ?", [match]
                    ).fetchone()[0]
                if count > LITERAL_IDS_MAX:
                    return None, count, None
            if store is not None:
                with store.lock:
                    try:
                        store.refresh(conn)
                    except OverflowError:
                        store = None  # counted by SQLite instead
            with time_limit(conn, deadline()):
                joined = conn.execute(
                    f"select group_concat(rowid % {ID_BITS}) from {FTS_TABLE} where {FTS_TABLE} match ?",
                    [match],
                ).fetchone()[0]
    except sqlite3.OperationalError as error:
        if _interrupted(error):
            raise QueryInterrupted(error, MATCHING_IDS, {"_pa_match": match}) from None
        raise
    finally:
        if own_transaction:
            conn.execute("commit")
    ids = np.fromstring(joined, dtype=np.int64, sep=",") if joined else np.zeros(0, np.int64)
    if store is None:
        return ids, (len(ids) if not facet_filters else None), None
    with store.lock:
        if len(ids) and ids.max() >= store.size:
            return ids, None, None  # a match the arrays do not know (a release the log missed)
        if facet_filters:
            keep = np.ones(len(ids), dtype=bool)
            for column, value in facet_filters:
                keep &= store.codes[column][ids] == store.lookup[column].get(value, -1)
            ids = ids[keep]
        shown = page_of(store, ids, *page) if page and len(ids) > LITERAL_IDS_MAX else None
    return ids, len(ids), shown


# trylast: Datasette's own search filter runs earlier and sets
# supports_search=False (it finds no fts_table for releases); ours wins.
@hookimpl(trylast=True)
def filters_from_request(request, database, table, datasette):
    if table != "releases":
        return None

    async def inner():
        db = datasette.get_database(database)
        q = request.args.get("_search", "")
        if not await db.table_exists(FTS_TABLE):
            if q.strip():  # (Datasette itself would list every release as if it matched)
                problem = await index_problem(db)
                raise DatasetteError(problem.message if problem else "no search index",
                                     title="Search unavailable", status=503)
            return None
        context = {"supports_search": True, "search": q}
        if not q.strip():
            return FilterArguments([], extra_context=context)
        install(db)
        match = search_match(q)
        pairs, exact = _filter_pairs(request)
        # (a log from an older version lacks columns: searches are then counted by SQL)
        has_log = set(LOGGED_COLUMNS) <= set(await db.table_columns(FACETS_TABLE))
        store = store_for(db.path or db.name) if has_log else None
        exact = exact and store is not None
        facet_filters = []
        if exact:
            for key, value in pairs:
                column = key.removesuffix("__exact")
                value = filter_value(column, value)
                if value is None:
                    exact = False
                    break
                facet_filters.append((column, value))
        shape_only = request.args.get("_shape") in ("array", "object")
        nocount = request.args.get("_nocount") or shape_only
        nofacet = request.args.get("_nofacet") or shape_only
        need_ids = exact and not (nocount and nofacet)
        # A page of a search ordered by date (the default) is cut from the matches here, so SQLite
        # reads just its rows; the count and the facets, which would otherwise read the rows of
        # every match, are answered from the plan (and nothing else may run over that WHERE).
        page = None
        # (facets the plugin keeps no arrays for run as SQL over the WHERE: it must hold every match)
        other_facets = (set(request.args.getlist("_facet")) - set(LOGGED_COLUMNS)
                        or request.args.get("_facet_date") or request.args.get("_facet_array"))
        if (need_ids and not request.args.get("_stream") and not other_facets
                and not datasette.setting("suggest_facets")):
            page = _page_request(request, datasette, database)
        limit_ms = datasette.setting("sql_time_limit_ms")
        ids, count, shown = await db.execute_fn(
            lambda conn: _plan_search(conn, store if need_ids else None, match,
                                      facet_filters if exact else [], need_ids, page, limit_ms)
        )
        if count is None:
            exact, ids, shown = False, None, None
        if shown is not None:
            listed = ", ".join(str(i) for i in sorted(shown.tolist())) or "null"
            clause = f"rowid in ({listed})"
        elif ids is not None and len(ids) <= LITERAL_IDS_MAX:
            listed = ", ".join(str(i) for i in sorted(ids.tolist())) or "null"
            clause = f"rowid in ({listed})"
        elif _sort_order(request, datasette, database)[0] in INDEXED_SORTS:
            # "+rowid": not a lookup key, so SQLite reads the rows in the sort's index order
            # and keeps those the index matched, stopping when the page is full.
            clause = f"+rowid in ({MATCHING_IDS})"
        else:
            # An order no index gives (title, say): SQLite reads each match's row and sorts them
            # (a full scan of the table would read every release instead).
            clause = f"rowid in ({MATCHING_IDS})"
        expected_where = None
        if exact and need_ids:
            where_clauses, _ = Filters(sorted(pairs), {}, None).build_where_clauses("releases")
            expected_where = " and ".join(where_clauses + [clause])
        plan = SearchPlan(ids if exact else None, count or 0, store, expected_where,
                          page_only=shown is not None)
        token = _remember(plan)
        # For other plugins drawing from every match (pressarchive_timeline): the ids after the
        # facet filters and the arrays, when they are exact for this request; else None (use SQL).
        request.scope["pressarchive.search"] = {"match": match, "ids": plan.ids,
                                                "store": store if need_ids and plan.ids is not None else None}
        params = {"_pa_match": match, "_pa_token": token, "_pa_page_only": int(shown is not None)}
        described = f'search matches "{q}"'
        problem = await index_problem(db)
        if problem:
            described += f" (note: {problem.message})"
            context["search_notice"] = problem.message
        return FilterArguments([clause], params, [described], context)

    return inner


def search_match(q: str) -> str:
    """``user_match(q)``, or Datasette's 400 page saying why the query is refused."""
    try:
        return user_match(q)
    except QueryTooLong as error:
        raise DatasetteError(f"Search too long: {error}.", title="Search too long", status=400) from None


INDEX_CHECK_SECONDS = 10  # how long a look at the index's state is trusted (a crawl may fix it)
INDEX_STATES: dict[str, tuple[float, object]] = {}


async def index_problem(db):
    """``archive.site.serve.search_index_problem`` of this database (its cheap form), looked at every
    INDEX_CHECK_SECONDS."""
    key = db.path or db.name
    cached = INDEX_STATES.get(key)
    if cached and time.monotonic() - cached[0] < INDEX_CHECK_SECONDS:
        return cached[1]
    problem = await db.execute_fn(lambda conn: search_index_problem(conn, exact=False))
    INDEX_STATES[key] = (time.monotonic(), problem)
    return problem


RANK_TOP = 50  # results the ranked search lists
RANK_SQL = (f"select rowid, bm25({FTS_TABLE}, 10.0, 1.0, 0.0) as score from {FTS_TABLE} "
            f"where {FTS_TABLE} match ? and rowid >= ? and rowid < ? order by score, rowid desc limit {RANK_TOP}")
RANK_SPLIT_MIN = 100_000  # releases in the index from which a ranked search is scored in two halves
RANK_POOL = None
RANK_LOCAL = threading.local()
RANK_SPLITS: dict[str, tuple[float, int | None]] = {}  # path -> (when, middle FTS rowid)
LOWEST, HIGHEST = -(2**63), 2**63 - 1
RANKED_CALL = "pressarchive_best(:q)"  # in the canned search's SQL (metadata.yaml)
# Rank the commonest words from cached postings (archive.ranking); False: always FTS5's bm25().
RANK_CACHE = True


def _rank_connection(path: str, immutable: bool):
    connections = getattr(RANK_LOCAL, "connections", None)
    if connections is None:
        connections = RANK_LOCAL.connections = {}
    if path not in connections:
        mode = "immutable=1" if immutable else "mode=ro"
        conn = sqlite3.connect(f"file:{path}?{mode}", uri=True, check_same_thread=False)
        _read_only(conn)
        harden(conn)
        connections[path] = conn
    return connections[path]


def _rank_part(path, immutable, match, low, high, deadline):
    conn = _rank_connection(path, immutable)
    with time_limit(conn, deadline):
        return conn.execute(RANK_SQL, [match, low, high]).fetchall()


def _middle(conn, path: str) -> int | None:
    """The FTS rowid that halves the index (None: too small to split), looked up every 5 minutes."""
    cached = RANK_SPLITS.get(path)
    if cached and time.monotonic() - cached[0] < 300:
        return cached[1]
    size = conn.execute(f"select count(*) from {FTS_TABLE}_docsize").fetchone()[0]
    middle = None
    if size >= RANK_SPLIT_MIN:
        middle = conn.execute(f"select id from {FTS_TABLE}_docsize order by id limit 1 offset ?",
                              [size // 2]).fetchone()[0]
    RANK_SPLITS[path] = (time.monotonic(), middle)
    return middle


def _rank_pool():
    global RANK_POOL
    with STORES_LOCK:
        if RANK_POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            RANK_POOL = ThreadPoolExecutor(1, thread_name_prefix="pressarchive-rank")
        return RANK_POOL


def best_matches(conn, path: str | None, q: str, deadline: float, immutable: bool = False,
                 transaction: bool = True) -> str:
    """JSON list of the FTS rowids of the best RANK_TOP matches of ``q``, best first.

    ``bm25()`` over every match, the title counting ten times (ties: newest
    first). A query that is an AND of words or phrases each matching many
    releases (the commonest words) is ranked from cached postings with the
    same arithmetic (``archive.ranking``: the same list, in a few ms once
    the postings are built, following a crawl that is writing). Others are
    ranked by FTS5: bm25() costs about 1.5 µs a match, so on a large archive
    the two halves of the index are scored at once, each on its own
    connection and thread (SQLite runs them on two cores): a row gets the
    same score in either half (IDF and the average length are the whole
    index's), so the best of the halves' bests are the best. The other
    thread's half stops at ``deadline``; ``conn``'s is the caller's to limit.
    A half the other thread has not started (it is busy with another search)
    is scored here instead. ``transaction``: False when called inside a
    statement of ``conn`` (a visitor's SQL: its snapshot is already fixed, and
    only postings already built are used).
    """
    import json

    match = user_match(q)
    if path and RANK_CACHE:
        ranked = ranker_for(path).best(conn, match, RANK_TOP, transaction=transaction,
                                       build=transaction, deadline=deadline if transaction else None)
        if ranked is not None:
            return json.dumps(ranked)
    middle = _middle(conn, path) if path else None
    if middle is None:
        rows = conn.execute(RANK_SQL, [match, LOWEST, HIGHEST]).fetchall()
    else:
        upper = _rank_pool().submit(_rank_part, path, immutable, match, middle, HIGHEST, deadline)
        try:
            rows = conn.execute(RANK_SQL, [match, LOWEST, middle]).fetchall()
        finally:
            started = not upper.cancel()
        rows += upper.result() if started else conn.execute(RANK_SQL, [match, middle, HIGHEST]).fetchall()
        rows.sort(key=lambda row: (row[1], -row[0]))
    return json.dumps([row[0] for row in rows[:RANK_TOP]])


async def rank_for_query(db, sql: str, params: dict) -> tuple[str, dict]:
    """Rank ``params["q"]`` before the canned search's SQL runs, and give it the result.

    Inside the SQL, ``pressarchive_best(:q)`` could only fail with SQLite's
    "user-defined function raised exception"; here a query too long, a missing
    index and Datasette's time limit each get their own page.
    """
    datasette = db.ds
    q = params["q"]
    if not await db.table_exists(FTS_TABLE):
        problem = await index_problem(db)
        raise DatasetteError(problem.message if problem else "no search index",
                             title="Search unavailable", status=503)
    search_match(q)  # refuses a query past the bounds, before any work
    deadline = _deadline(datasette)
    immutable = not db.is_mutable

    def rank(conn):
        try:
            with _own_sql(conn), time_limit(conn, deadline):
                return best_matches(conn, db.path, q, deadline, immutable)
        except sqlite3.OperationalError as error:
            if _interrupted(error):
                raise QueryInterrupted(error, RANK_SQL, {"q": q}) from None
            raise

    best = await db.execute_fn(rank)
    return sql.replace(RANKED_CALL, ":_pa_best"), {**params, "_pa_best": best}


@hookimpl
def prepare_connection(conn, database, datasette):
    if database == "_internal":
        return
    db = datasette.databases.get(database)
    path, immutable = getattr(db, "path", None), not getattr(db, "is_mutable", True)
    conn.create_function("pressarchive_match", 1, user_match, deterministic=True)
    # (called from a visitor's own SQL; the canned search ranks first, in rank_for_query)
    conn.create_function("pressarchive_best", 1,
                         lambda q: best_matches(conn, path, q, _deadline(datasette), immutable,
                                                transaction=False))
    conn.create_function("pressarchive_snippet", 2, snippet, deterministic=True)
    _read_only(conn)
    harden(conn)
    conn.row_factory = bounded_rows()


def _read_only(conn) -> None:
    # Belt and braces on top of Datasette's mode=ro: refuse writes outright.
    conn.execute("pragma query_only = 1")
    # The index is read by many small seeks; give it room.
    conn.execute("pragma cache_size = -65536")
    conn.execute("pragma mmap_size = 1073741824")


@hookimpl
def startup(datasette):
    for db in datasette.databases.values():
        if db.name != "_internal":
            install(db)


def snippet_html(text, q) -> Markup:
    """An escaped excerpt of ``text`` around the first match of ``q``, matches in <mark>
    (the reading list of the releases table and of the ranked search)."""
    try:
        plain = snippet(text, q or "") or ""
    except QueryTooLong:
        plain = snippet(text, "") or ""
    return marked_html(plain)


def marked_html(value) -> Markup:
    """A snippet made by ``pressarchive_snippet()`` (matches in ⟦ ⟧), escaped, matches in <mark>."""
    return Markup(str(escape(value or "")).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>"))


@hookimpl
def extra_template_vars(template, database, request, datasette):
    """The reading lists' snippets; on the ranked search page, the total number of matches
    (it lists the best 50) and the state of the index."""
    if template not in ("query.html", "table.html"):
        return {}
    helpers = {"pa_snippet": snippet_html, "pa_marked": marked_html}
    if template != "query.html" or request is None or not request.args.get("q"):
        return helpers
    if request.url_vars.get("table") != "search":
        return helpers

    async def inner():
        db = datasette.get_database(database)
        if not await db.table_exists(FTS_TABLE):
            return helpers
        problem = await index_problem(db)
        notice = {"search_notice": problem.message, **helpers} if problem else helpers
        try:
            total = await db.execute(
                f"select count(*) from {FTS_TABLE} where {FTS_TABLE} match :m",
                {"m": user_match(request.args.get("q"))},
            )
        except (QueryTooLong, QueryInterrupted):
            return {"search_total_unknown": True, **notice}
        return {"search_total": total.first()[0], **notice}

    return inner


STREAM_DROPPED = {"_stream", "_next", "_shape", "_size", "_nl", "_nocount", "_nofacet"}


def _on(value: str) -> bool:
    return value.lower() not in ("", "0", "off", "false")


async def stream_json(datasette, scope, args, send) -> None:
    """``.json?…&_stream=on``: every row of a table view, page after page, as one JSON array.

    Datasette 0.65 streams only CSV. The rows are objects (as ``_shape=array``); with
    ``_nl=on`` one object a line. Pages are fetched in process (``_size=max``, no count or
    facets) following ``next`` to the end, so a search streams every match. A failure after
    the first page ends the array with ``{"error": ...}``: a stream never ends short silently.
    """
    import json
    import urllib.parse

    kept = [(k, v) for k, v in args if k not in STREAM_DROPPED]
    nl = any(k == "_nl" and _on(v) for k, v in args)
    query = kept + [("_shape", "objects"), ("_size", "max"), ("_nocount", "1"), ("_nofacet", "1")]
    path = scope.get("raw_path") or scope["path"].encode("utf-8")
    path = (path.decode("latin-1") if isinstance(path, bytes) else path).split("?")[0]
    url = f"{path}?{urllib.parse.urlencode(query)}"
    response = await datasette.client.get(url)
    if response.status_code != 200:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
                   if k.lower() in ("content-type",)]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.content})
        return
    content_type = b"application/x-ndjson" if nl else b"application/json; charset=utf-8"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type), (b"access-control-allow-origin", b"*")]})
    first = True

    async def write(objects) -> None:
        nonlocal first
        parts = []
        for obj in objects:
            text = json.dumps(obj, ensure_ascii=False, default=str)
            parts.append(text + "\n" if nl else ("[" if first else ",\n") + text)
            first = False
        if parts:
            await send({"type": "http.response.body", "body": "".join(parts).encode("utf-8"),
                        "more_body": True})

    while True:
        data = response.json()
        await write(data.get("rows", []))
        after = data.get("next")
        if not after:
            break
        response = await datasette.client.get(f"{url}&{urllib.parse.urlencode([('_next', after)])}")
        if response.status_code != 200:
            await write([{"error": f"the stream stopped: HTTP {response.status_code} on the next page",
                          "status": response.status_code}])
            break
    tail = b"" if nl else (b"[]\n" if first else b"]\n")
    await send({"type": "http.response.body", "body": tail, "more_body": False})


# Response headers: Datasette repeats the query string in a ``Link:`` header (a 10 KB Chinese
# query made one of 90 KB, which HTTP clients refuse) and in redirects' ``Location``.
LINK_HEADER_MAX = 2048  # a longer Link (a hint: the page links the same JSON) is dropped
HEADER_MAX = 8192  # any other header this long turns the response into a 414


def bounded_headers(send):
    """``send`` for an ASGI response whose headers stay under HEADER_MAX bytes each."""
    replaced = False

    async def bounded(message):
        nonlocal replaced
        if replaced:
            return  # the app's body of a response already answered with a 414
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", [])
                       if not (k.lower() == b"link" and len(v) > LINK_HEADER_MAX)]
            if any(len(k) + len(v) > HEADER_MAX for k, v in headers):
                replaced = True
                text = (f"414: this request would need a response header over {HEADER_MAX:,} bytes "
                        "(its address is too long): shorten the search or the filters\n").encode()
                await send({"type": "http.response.start", "status": 414,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(text)).encode())]})
                await send({"type": "http.response.body", "body": text})
                return
            message = {**message, "headers": headers}
        await send(message)

    return bounded


# Datasette runs one query (up to facet_time_limit_ms) for every _facet, _facet_date or
# _facet_array it is given, repeats included: a 16 KB address of "&_facet=text" held a thread
# for over ten minutes. Repeats are dropped; more than this many facets asked for is refused.
REQUESTED_FACETS_MAX = 10


def bounded_facets(scope) -> str | None:
    """Drop repeated facet arguments from the request (in ``scope``); a message past the bound."""
    import urllib.parse

    kept, facets = [], set()
    for segment in scope.get("query_string", b"").split(b"&"):
        pair = urllib.parse.parse_qsl(segment.decode("latin-1"), keep_blank_values=True)
        if pair and pair[0][0].startswith("_facet") and pair[0][0] != "_facet_size":
            if pair[0] in facets:
                continue  # the same facet again: the bytes of every other argument are kept as sent
            facets.add(pair[0])
        kept.append(segment)
    if len(facets) > REQUESTED_FACETS_MAX:
        return f"400: {len(facets)} facets asked for; at most {REQUESTED_FACETS_MAX} at once\n"
    scope["query_string"] = b"&".join(kept)
    return None


@hookimpl
def asgi_wrapper(datasette):
    """Adds ``_stream=on`` to the JSON of table views (see :func:`stream_json`), and bounds every
    response's headers (:func:`bounded_headers`) and the facets a request asks for."""
    import urllib.parse

    def wrap(app):
        async def wrapped(scope, receive, send):
            if scope.get("type") != "http":
                await app(scope, receive, send)
                return
            send = bounded_headers(send)
            scope = dict(scope)
            refused = bounded_facets(scope)
            if refused:
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": refused.encode()})
                return
            if scope.get("path", "").endswith(".json"):
                args = urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                              keep_blank_values=True)
                if any(k == "_stream" and _on(v) for k, v in args):
                    await stream_json(datasette, scope, args, send)
                    return
            await app(scope, receive, send)

        return wrapped

    return wrap


LINK_COLUMNS = {"url", "canonical_url", "fetched_url"}


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    if not isinstance(value, str):
        return None
    if column == "text" and table == "releases":
        paragraphs = "".join(f"<p>{escape(p)}</p>" for p in value.split("\n") if p.strip())
        return Markup(f'<div class="release-text">{paragraphs}</div>')
    if column == "snippet":
        html = str(escape(value)).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")
        return Markup(f'<span class="snippet">{html}</span>')
    if column in LINK_COLUMNS and re.match(r"https?://", value):
        return Markup(f'<a href="{escape(value)}" rel="nofollow noopener">{escape(value)}</a>')
    if column == "title" and table is None and "id" in row.keys():  # noqa: SIM118 (a Row holds values)
        # Canned search results: the title links to the full release.
        href = datasette.urls.row(database, "releases", str(row["id"]))
        return Markup(f'<a href="{escape(href)}">{escape(value)}</a>')
    return None
