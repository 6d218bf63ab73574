"""Datasette plugin: CJK-aware search, readable text, a read-only archive.

- ``?_search=`` on the ``releases`` table is handled here, not by Datasette's
  built-in FTS filter: the query is rewritten for the bigram index (see
  ``pipelines.search_index``), facet filters are pushed into the MATCH, and
  only the newest ``SEARCH_LIMIT`` matches are listed, so a word found in
  half the archive is as fast as a rare one.
- SQL functions for the canned ``search`` query: ``pressarchive_match(q)``
  and ``pressarchive_snippet(text, q)`` (matches wrapped in ⟦ ⟧).
- ``text`` is shown as escaped paragraphs, snippets with <mark>; archived
  HTML is always inert because every value is escaped before we add markup.
- Every connection is ``query_only``: nothing can be written through the site.
"""

from __future__ import annotations

import re
import unicodedata

from datasette import hookimpl
from datasette.filters import FilterArguments
from markupsafe import Markup, escape

from pipelines.search_index import (
    CJK_RUN,
    FTS_TABLE,
    QUERY_TOKEN,
    SPACE_BETWEEN_CJK,
    TAG_COLUMNS,
    rewrite_query,
    table_search_clause,
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


@hookimpl
def prepare_connection(conn, database):
    if database == "_internal":
        return
    conn.create_function("pressarchive_match", 1, match_expression, deterministic=True)
    conn.create_function("pressarchive_snippet", 2, snippet, deterministic=True)
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
        probe = await db.execute(
            f"select count(*) from (select 1 from {FTS_TABLE} where {FTS_TABLE} match :m "
            f"order by rowid desc limit {SEARCH_LIMIT + 1})",
            {"m": match},
        )
        description = f'search matches "{q}"'
        if probe.first()[0] > SEARCH_LIMIT:
            description += f" (the newest {SEARCH_LIMIT:,} matches: add words or filters to see older ones)"
        return FilterArguments(
            [table_search_clause(SEARCH_LIMIT)],
            {"pa_search": match},
            [description],
            context,
        )

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
