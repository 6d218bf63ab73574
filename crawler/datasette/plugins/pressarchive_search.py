"""Datasette plugin: CJK-aware search, readable text, a read-only archive.

- ``?_search=`` on the ``releases`` table is handled here, not by Datasette's
  built-in FTS filter: the query is rewritten for the bigram index (see
  ``pipelines.search_index``), facet filters are pushed into the MATCH, and
  only the newest ``SEARCH_LIMIT`` matches are listed, so a word found in
  half the archive is as fast as a rare one.
- SQL functions for the canned ``search`` query: ``pressarchive_match(q)``,
  ``pressarchive_rank(...)`` (BM25 over the newest matches, see
  :class:`Ranker`) and ``pressarchive_snippet(text, q)`` (matches wrapped
  in ⟦ ⟧).
- ``text`` is shown as escaped paragraphs, snippets with <mark>; archived
  HTML is always inert because every value is escaped before we add markup.
- Every connection is ``query_only``: nothing can be written through the site.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata

from datasette import hookimpl
from datasette.filters import FilterArguments
from markupsafe import Markup, escape

from pipelines.search_index import (
    CJK_RUN,
    FTS_TABLE,
    ID_BITS,
    QUERY_TOKEN,
    SPACE_BETWEEN_CJK,
    TAG_COLUMNS,
    rewrite_query,
    tags_query,
)

SEARCH_LIMIT = 500  # matches listed by the table view, newest first
NO_MATCH = 'tags : "tnothing"'  # a valid MATCH expression that finds nothing
MARK_START, MARK_END = "\u27e6", "\u27e7"  # ⟦ ⟧: plain text, safe in JSON
SNIPPET_CHARS = 240


def match_expression(q: str, filters: dict | None = None) -> str:
    """Full FTS5 MATCH for a user query, restricted to title/text, plus facets."""
    user = rewrite_query(q or "")
    if user is None:
        return NO_MATCH
    match = f"{{title text}} : ({user})"
    tags = tags_query(filters or {})
    return f"{match} AND {tags}" if tags else match


def _term_pattern(term: str, prefix: bool) -> str | None:
    term = unicodedata.normalize("NFKC", term).strip()
    if not re.search(r"\w", term):
        return None
    if CJK_RUN.search(term):
        return re.escape(SPACE_BETWEEN_CJK.sub("", term))
    body = r"\W+".join(re.escape(w) for w in re.findall(r"\w+", term))
    tail = r"\w*" if prefix else ""
    return rf"(?<!\w){body}{tail}(?!\w)"


def snippet(text: str | None, q: str | None, size: int = SNIPPET_CHARS) -> str | None:
    """An excerpt of ``text`` around the first match of ``q``, matches in ⟦ ⟧."""
    if text is None:
        return None
    patterns = []
    for m in QUERY_TOKEN.finditer(q or ""):
        negate, phrase, word = m.group(1), m.group(2), m.group(3)
        if word == "OR" or negate or (word or "").startswith("-"):
            continue
        term = phrase if phrase is not None else word
        pattern = _term_pattern(term.rstrip("*"), prefix=term.endswith("*"))
        if pattern:
            patterns.append(pattern)
    regex = re.compile("|".join(patterns), re.IGNORECASE) if patterns else None
    first = regex.search(text) if regex else None
    start = max(0, first.start() - size // 4) if first else 0
    window = text[start : start + size]
    if regex:
        window = regex.sub(lambda m: f"{MARK_START}{m.group()}{MARK_END}", window)
    window = " ".join(window.split())
    return ("…" if start else "") + window + ("…" if start + size < len(text) else "")


RANK_TOP = 50  # results the ranked search lists (it scores the newest 500 matches: metadata.yaml)
K1, B, TITLE_WEIGHT = 1.2, 0.75, 10.0  # BM25 constants, as bm25(releases_fts, 10.0, 1.0, 0.0) had them


def _needles(q: str | None) -> list[tuple[str, bool, bool]]:
    """(lowercased text, is a word, is a prefix) for each positive term of ``q``."""
    needles = []
    for m in QUERY_TOKEN.finditer(q or ""):
        negate, phrase, word = m.group(1), m.group(2), m.group(3)
        if word == "OR" or negate or (word or "").startswith("-"):
            continue
        term = phrase if phrase is not None else word
        prefix = term.endswith("*")
        term = unicodedata.normalize("NFKC", term.rstrip("*")).lower()
        if CJK_RUN.search(term):
            needles.append((SPACE_BETWEEN_CJK.sub("", term).strip(), False, False))
        elif re.search(r"\w", term):
            needles.append((" ".join(re.findall(r"\w+", term)), True, prefix))
    return needles


def _count(hay: str, needle: str, word: bool, prefix: bool) -> int:
    """Occurrences of ``needle`` in ``hay`` (both lowercased); words only at word boundaries.

    ``str.find`` and a boundary check per hit: ~20x faster than a regex over the text.
    """
    count, start, size = 0, hay.find(needle), len(needle)
    while start >= 0:
        end = start + size
        if not word or ((start == 0 or not hay[start - 1].isalnum())
                        and (prefix or end >= len(hay) or not hay[end].isalnum())):
            count += 1
        start = hay.find(needle, end)
    return count


class Ranker:
    """SQL aggregate ``pressarchive_rank(fts_rowid, title, text, q)``: BM25 over the rows given.

    The canned ``search`` query feeds it the newest 500 matches and
    gets back a JSON list of the best RANK_TOP FTS rowids, best first (ties:
    newest first). FTS5's own bm25() computes each term's IDF by reading the
    term's whole doclist, ~100-200 ms for a very common word or phrase on a
    million releases; here term frequencies come from the candidates' text
    and IDF from the candidates (for ANDed terms IDF is the same for every
    candidate anyway: each contains every term).
    """

    def __init__(self):
        self.rows = []
        self.needles = None

    def step(self, fts_rowid, title, text, q):
        if self.needles is None:
            self.needles = _needles(q)
        title, text = (title or "").lower(), (text or "").lower()
        counts = [(_count(title, *n), _count(text, *n)) for n in self.needles]
        self.rows.append((fts_rowid, counts, len(text) or 1))  # characters: any language

    def finalize(self):
        if not self.rows:
            return "[]"
        n = len(self.rows)
        average = sum(row[2] for row in self.rows) / n
        idf = []
        for i in range(len(self.needles)):
            df = sum(1 for row in self.rows if row[1][i][0] or row[1][i][1])
            idf.append(math.log(1 + (n - df + 0.5) / (df + 0.5)))
        scored = []
        for fts_rowid, counts, length in self.rows:
            norm = K1 * (1 - B + B * length / average)
            score = 0.0
            for weight, (in_title, in_text) in zip(idf, counts):
                tf = TITLE_WEIGHT * in_title + in_text
                score += weight * tf * (K1 + 1) / (tf + norm)
            scored.append((-score, -fts_rowid))
        scored.sort()
        return json.dumps([-rowid for _, rowid in scored[:RANK_TOP]])


@hookimpl
def prepare_connection(conn, database):
    if database == "_internal":
        return
    conn.create_function("pressarchive_match", 1, match_expression, deterministic=True)
    conn.create_function("pressarchive_snippet", 2, snippet, deterministic=True)
    conn.create_aggregate("pressarchive_rank", 4, Ranker)
    # Belt and braces on top of Datasette's mode=ro: refuse writes outright.
    conn.execute("pragma query_only = 1")
    # The index is read by many small seeks; give it room.
    conn.execute("pragma cache_size = -65536")
    conn.execute("pragma mmap_size = 1073741824")


def _exact_filters(request) -> dict:
    """``?language=zh`` style equality filters on facet columns (facet links)."""
    filters = {}
    for column in TAG_COLUMNS:
        values = request.args.getlist(column) + request.args.getlist(f"{column}__exact")
        if len(values) == 1:
            filters[column] = values[0]
    return filters


# trylast: Datasette's own search filter runs earlier and sets
# supports_search=False (it finds no fts_table for releases); ours wins.
@hookimpl(trylast=True)
def filters_from_request(request, database, table, datasette):
    if table != "releases":
        return None

    async def inner():
        db = datasette.get_database(database)
        if not await db.table_exists(FTS_TABLE):
            return None
        q = request.args.get("_search", "")
        context = {"supports_search": True, "search": q}
        if not q.strip():
            return FilterArguments([], extra_context=context)
        match = match_expression(q, _exact_filters(request))
        # The index is asked once per page: the newest matches' ids go into the page's SQL as
        # literals, so the count, every facet and the rows reuse them instead of running
        # the MATCH again (a phrase of common words costs ~15 ms a MATCH at 1M releases).
        found = await db.execute(
            f"select rowid % {ID_BITS} from {FTS_TABLE} where {FTS_TABLE} match :m "
            f"order by rowid desc limit {SEARCH_LIMIT + 1}",
            {"m": match},
        )
        ids = [int(row[0]) for row in found.rows]
        description = f'search matches "{q}"'
        if len(ids) > SEARCH_LIMIT:
            description += f" (the newest {SEARCH_LIMIT:,} matches: add words or filters to see older ones)"
        listed = ", ".join(str(i) for i in ids[:SEARCH_LIMIT]) or "null"
        return FilterArguments([f"rowid in ({listed})"], {}, [description], context)

    return inner


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
    if column == "title" and table is None and "id" in row.keys():
        # Canned search results: the title links to the full release.
        href = datasette.urls.row(database, "releases", str(row["id"]))
        return Markup(f'<a href="{escape(href)}">{escape(value)}</a>')
    return None
