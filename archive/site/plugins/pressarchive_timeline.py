"""Datasette plugin: timelines of releases per month, and Atom feeds of canned queries.

Timelines
- On the search results page (the releases table with ``?_search=``), a chart of
  the matches per month, one series per top publisher (the 5 with most matches,
  then "other sources"), for the query and the filters of the page. Counted over
  **every** match: from the matching ids the search plugin computed
  (``pressarchive_search`` leaves them in ``request.scope[SCOPE_KEY]``) and its
  arrays of every release's published date and source, in a few ms; where those
  are not exact for the request (a filter on a column the arrays do not hold), by
  SQL over every match under Datasette's time limit. A count that runs out of
  time is shown as not counted, never as a guess.
- On a source's page (``/<db>/sources/<id>``), its releases per month (SQL on
  the ``(source_id, published)`` index).
- The chart is drawn by the server as SVG (``_pa_timeline.html``): no script,
  nothing loaded from the network; each bar has a ``<title>``, and the numbers
  are also given as a table.

Atom feeds (``.atom``)
- An output renderer following the conventions of the ``datasette-atom`` plugin
  (columns ``atom_id``, ``atom_title``, ``atom_updated``, optional
  ``atom_content``, ``atom_content_html``, ``atom_link``, ``atom_author_name``,
  ``atom_author_uri``, ``atom_author_email``; plus ``atom_published``). It is
  ours rather than datasette-atom 0.9 because that one answers a 500 for a query
  with no rows (a new watch, a search with no match: ``max()`` of no dates), and
  titles every feed of a canned query the same (one title for every watch).
- Dates are written RFC 3339 in UTC (a date alone is midnight UTC). HTML content
  is trusted only from the canned queries of the site's metadata, whose SQL
  escapes every archived value (``pressarchive_html``); for any other SQL, HTML
  content is sent as text, so a visitor's query cannot make a feed carry markup.
- A canned query's ``feed_title`` (a ``str.format`` template over its
  parameters) titles the feed, its ``description`` is the feed's subtitle.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from xml.sax.saxutils import escape as xml_escape

import numpy as np
from datasette import hookimpl
from datasette.database import QueryInterrupted
from datasette.filters import Filters
from datasette.utils import tilde_decode, to_css_class
from datasette.utils.asgi import Response
from jinja2 import ChoiceLoader, FunctionLoader
from markupsafe import escape

SCOPE_KEY = "pressarchive.search"  # set by pressarchive_search's filters_from_request
TOP_SERIES = 5
ID_BITS = 2**32  # archive.search_index.ID_BITS: the release id is the FTS rowid's low 32 bits
MONTH = re.compile(r"(\d{4})-(\d{2})")
# Arguments of the results page that change nothing in its WHERE clause (pressarchive_search's NEUTRAL_ARGS).
NEUTRAL_ARGS = {
    "_search", "_searchmode", "_sort", "_sort_desc", "_sort_by_desc", "_next", "_size",
    "_facet", "_facet_size", "_facet_date", "_facet_array", "_labels", "_label", "_nocount",
    "_nofacet", "_nosuggest", "_shape", "_col", "_nocol", "_trace", "_timelimit", "_json",
    "_json_infinity", "_nl", "_stream", "_dl", "_header", "_context", "_ttl", "_hash",
}


# --- Timelines ---------------------------------------------------------------------------------

def month_of(published) -> str | None:
    """``YYYY-MM`` of a published date, None when it has none (or not a date)."""
    if not isinstance(published, str):
        return None
    m = MONTH.match(published)
    return f"{m.group(1)}-{m.group(2)}" if m and 1 <= int(m.group(2)) <= 12 else None


def month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last`` (``YYYY-MM``), both included."""
    year, month = int(first[:4]), int(first[5:])
    end = (int(last[:4]), int(last[5:]))
    months = []
    while (year, month) <= end:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def build_timeline(counts: dict[tuple[str | None, str | None], int], names: dict, top: int = TOP_SERIES,
                   other_label: str = "Other sources") -> dict:
    """The chart of ``counts`` ((month or None, source) -> releases): every month from the first
    to the last with a release, one series per top source and one for the rest, exact."""
    by_source: dict = {}
    undated = 0
    for (month, source), n in counts.items():
        if month is None:
            undated += n
        else:
            by_source[source] = by_source.get(source, 0) + n
    dated = [m for (m, _), n in counts.items() if m is not None and n]
    months = month_range(min(dated), max(dated)) if dated else []
    at = {m: i for i, m in enumerate(months)}
    ranked = sorted(by_source, key=lambda s: (-by_source[s], str(s)))
    shown, rest = ranked[:top], ranked[top:]
    if len(rest) == 1:  # "other sources" of one source is that source
        shown, rest = ranked, []
    series = []
    for key in shown + ([None] if rest else []):
        members = {key} if key is not None else set(rest)
        per_month = [0] * len(months)
        for (month, source), n in counts.items():
            if month is not None and source in members:
                per_month[at[month]] += n
        label = (names.get(key) or key or "(no source)") if key is not None else f"{other_label} ({len(rest)})"
        series.append({"key": key, "label": label, "counts": per_month, "total": sum(per_month),
                       "css": f"pa-series-{len(series)}" if key is not None else "pa-series-other"})
    totals = [sum(s["counts"][i] for s in series) for i in range(len(months))]
    return {"months": months, "series": series, "totals": totals, "max": max(totals, default=0),
            "undated": undated, "total": sum(totals) + undated,
            "bars": sum(1 for t in totals if t)}


def counts_from_store(store, ids) -> dict:
    """(month, source_id) -> matches, from the search plugin's arrays (exact, every match)."""
    with store.lock:
        published = store.codes["published"][ids]
        sources = store.codes["source_id"][ids]
        published_values = list(store.values["published"])
        source_values = list(store.values["source_id"])
    width = max(len(source_values), 1)
    pairs, n = np.unique(published.astype(np.int64) * width + sources, return_counts=True)
    counts: dict = {}
    for pair, count in zip(pairs.tolist(), n.tolist()):
        key = (month_of(published_values[pair // width]), source_values[pair % width])
        counts[key] = counts.get(key, 0) + count
    return counts


def _filter_pairs(request) -> list[tuple[str, str]] | None:
    """The page's column filters; None when it has conditions only its own SQL can say (``_where``)."""
    pairs = []
    for key in request.args:
        if key.startswith("_") and "__" not in key:
            if key not in NEUTRAL_ARGS:
                return None
            continue
        pairs += [(key, value) for value in request.args.getlist(key)]
    return pairs


async def counts_by_sql(db, match: str, pairs: list) -> dict:
    """(month, source_id) -> matches of ``match`` under the column filters ``pairs``, by SQL."""
    where, params = Filters(sorted(pairs), {}, None).build_where_clauses("releases")
    where.append(f"rowid in (select rowid % {ID_BITS} from releases_fts where releases_fts match :_pa_tl_match)")
    params["_pa_tl_match"] = match
    results = await db.execute(
        "select substr(published, 1, 7) as month, source_id, count(*) from releases "
        f"where {' and '.join(where)} group by month, source_id", params)
    counts: dict = {}
    for month, source, n in results.rows:
        key = (month_of(month), source)
        counts[key] = counts.get(key, 0) + n
    return counts


async def source_names(db, keys) -> dict:
    keys = [k for k in keys if k is not None]
    if not keys or not await db.table_exists("sources"):
        return {}
    marks = ", ".join(f":s{i}" for i in range(len(keys)))
    rows = await db.execute(f"select id, name from sources where id in ({marks})",
                            {f"s{i}": k for i, k in enumerate(keys)})
    return {sid: name for sid, name in rows.rows if name}


async def search_timeline(datasette, database, request) -> dict:
    """The timeline of the search on this results page; ``{"unknown": why}`` when not counted."""
    db = datasette.get_database(database)
    planned = request.scope.get(SCOPE_KEY)
    if planned is None:
        return {"unknown": "the search could not be read"}
    try:
        if planned.get("ids") is not None and planned.get("store") is not None:
            counts = counts_from_store(planned["store"], planned["ids"])
        else:
            pairs = _filter_pairs(request)
            if pairs is None:
                return {"unknown": "not drawn for searches with SQL conditions"}
            counts = await counts_by_sql(db, planned["match"], pairs)
    except QueryInterrupted:
        return {"unknown": "not counted (took too long)"}
    names = await source_names(db, {source for _, source in counts})
    return build_timeline(counts, names)


async def source_timeline(datasette, database, source_id: str) -> dict:
    db = datasette.get_database(database)
    if not await db.table_exists("releases"):
        return {"unknown": "the archive has no releases table"}
    try:
        results = await db.execute(
            "select substr(published, 1, 7) as month, count(*) from releases "
            "where source_id = :source group by month", {"source": source_id})
    except QueryInterrupted:
        return {"unknown": "not counted (took too long)"}
    counts: dict = {}
    for month, n in results.rows:
        key = (month_of(month), source_id)
        counts[key] = counts.get(key, 0) + n
    return build_timeline(counts, {source_id: "Releases"})


def _is_results_page(template, table, request) -> bool:
    return (template == "table.html" and table == "releases" and request is not None
            and bool((request.args.get("_search") or "").strip()))


def _is_source_page(template, table, request) -> bool:
    # (the template is row.html, or row-<database>-sources.html: see prepare_jinja2_environment)
    return (table == "sources" and request is not None and template.startswith("row")
            and "pks" in request.url_vars)


@hookimpl
def extra_template_vars(template, database, table, request, datasette):
    if template == "table.html" and table == "releases" and request is not None:
        feed, omitted = feed_url(datasette, database, request)

        async def results():
            found = {"pa_feed_url": feed, "pa_feed_omitted": omitted}
            if _is_results_page(template, table, request):
                found["pa_timeline"] = await search_timeline(datasette, database, request)
            return found

        return results
    if _is_source_page(template, table, request):
        source_id = tilde_decode(request.url_vars.get("pks", ""))

        async def source():
            return {"pa_timeline": await source_timeline(datasette, database, source_id)}

        return source
    return {}


@hookimpl
def extra_css_urls(template, table, request):
    if _is_results_page(template, table, request) or _is_source_page(template, table, request):
        return ["/pressarchive-static/timeline.css"]
    return []


SOURCE_ROW_TEMPLATE = '{% extends "_pa_source_row.html" %}'


@hookimpl
def prepare_jinja2_environment(env, datasette):
    """A source's page is ``_pa_source_row.html`` whatever the database is called: Datasette looks
    for ``row-<database>-sources.html`` first, and the database is named after the archive's file."""

    def source_row(name):
        for db_name in datasette.databases:
            if name == f"row-{to_css_class(db_name)}-{to_css_class('sources')}.html":
                return SOURCE_ROW_TEMPLATE
        return None

    env.loader = ChoiceLoader([FunctionLoader(source_row), env.loader])


# Column filters of the results page the search_feed canned query takes (its parameter names).
FEED_FILTERS = {"source_id": "source", "language": "language", "country": "country", "kind": "kind",
                "statement_type": "type", "year": "year"}


def feed_url(datasette, database, request) -> tuple[str | None, list[str]]:
    """The ``search_feed`` Atom feed of this results page's search and filters, and the filters
    it cannot take (shown on the page: the feed is not filtered by them)."""
    q = (request.args.get("_search") or "").strip()
    if not q:
        return None, []
    params, omitted = {"q": q}, []
    for key in request.args:
        if key.startswith("_") and "__" not in key:
            continue
        values = request.args.getlist(key)
        name = FEED_FILTERS.get(key.removesuffix("__exact"))
        if name and name not in params and len(values) == 1:
            params[name] = values[0]
        else:
            omitted += [f"{key}={value}" for value in values]
    return f"{datasette.urls.database(database)}/search_feed.atom?{urllib.parse.urlencode(params)}", omitted


# --- Atom feeds ------------------------------------------------------------------------------------

REQUIRED_COLUMNS = {"atom_id", "atom_title", "atom_updated"}
ATOM_NS = "http://www.w3.org/2005/Atom"


def html_text(value) -> str:
    """``value`` escaped for HTML (NULL: empty): the canned feeds' SQL builds HTML with it."""
    return "" if value is None else str(escape(value))


def iri_part(value) -> str:
    """``value`` percent-encoded for a segment of a tag: IRI (entry ids of the canned feeds)."""
    return urllib.parse.quote("" if value is None else str(value), safe="-._~")


class BadDate(ValueError):
    pass


def rfc3339(value) -> str:
    """An RFC 3339 timestamp in UTC; a date alone is midnight UTC, a time without offset is UTC."""
    text = str(value or "").strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = dt.datetime.fromisoformat(text)
        else:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise BadDate(f"{value!r} is not an RFC 3339 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canned(datasette, database, query_name) -> dict:
    if not query_name:
        return {}
    try:
        return datasette.metadata(database=database)["queries"][query_name] or {}
    except (KeyError, TypeError):
        return {}


def feed_title(canned: dict, request, sql: str) -> str:
    template = canned.get("feed_title")
    if template:
        names = re.findall(r"\{(\w+)\}", template)
        return template.format(**{n: request.args.get(n) or "" for n in names})
    return canned.get("title") or sql


def _element(name: str, text: str | None = None, **attrs) -> str:
    attributes = "".join(f' {k}="{xml_escape(str(v), {chr(34): "&quot;"})}"' for k, v in attrs.items())
    if text is None:
        return f"<{name}{attributes}/>"
    return f"<{name}{attributes}>{xml_escape(text)}</{name}>"


XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(value) -> str:
    """Text an XML document may hold (control characters dropped)."""
    return XML_INVALID.sub("", str(value))


def render_atom(datasette, request, sql, columns, rows, database, table, query_name, data):
    from datasette.views.base import DatasetteError

    if not REQUIRED_COLUMNS <= set(columns):
        raise DatasetteError("An Atom feed needs the columns " + ", ".join(sorted(REQUIRED_COLUMNS)),
                             status=400)
    canned = _canned(datasette, database, query_name)
    trusted_html = bool(canned)  # the site's own canned SQL escapes what it puts in HTML
    try:
        entries = [_entry(row, columns, trusted_html) for row in rows]
    except BadDate as error:
        raise DatasetteError(f"Atom feed: atom_updated {error}", status=400) from None
    updated = max((e[0] for e in entries), default=None) or dt.datetime.now(dt.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    parts = ['<?xml version="1.0" encoding="utf-8"?>', f'<feed xmlns="{ATOM_NS}">',
             _element("id", _clean(request.url)),
             _element("title", _clean(feed_title(canned, request, sql))),
             _element("updated", updated),
             _element("link", href=_clean(request.url), rel="self"),
             _element("generator", "pressarchive (Datasette)")]
    if canned.get("description"):
        parts.append(_element("subtitle", _clean(" ".join(canned["description"].split()))))
    parts += [e[1] for e in entries]
    parts.append("</feed>")
    return Response("\n".join(parts) + "\n", content_type="application/atom+xml; charset=utf-8")


def _entry(row, columns, trusted_html: bool) -> tuple[str, str]:
    updated = rfc3339(row["atom_updated"])
    parts = ["<entry>", _element("id", _clean(row["atom_id"])), _element("title", _clean(row["atom_title"])),
             _element("updated", updated)]
    if "atom_published" in columns and row["atom_published"]:
        parts.append(_element("published", rfc3339(row["atom_published"])))
    if "atom_link" in columns and row["atom_link"]:
        parts.append(_element("link", href=_clean(row["atom_link"])))
    if "atom_author_name" in columns and row["atom_author_name"]:
        author = [_element("name", _clean(row["atom_author_name"]))]
        for key in ("uri", "email"):
            column = f"atom_author_{key}"
            if column in columns and row[column]:
                author.append(_element(key, _clean(row[column])))
        parts.append("<author>" + "".join(author) + "</author>")
    if "atom_content_html" in columns and row["atom_content_html"] is not None:
        content = _clean(row["atom_content_html"])
        parts.append(_element("content", content, type="html" if trusted_html else "text"))
    elif "atom_content" in columns and row["atom_content"] is not None:
        parts.append(_element("content", _clean(row["atom_content"]), type="text"))
    parts.append("</entry>")
    return updated, "".join(parts)


def can_render_atom(columns):
    return REQUIRED_COLUMNS <= set(columns or [])


@hookimpl
def register_output_renderer(datasette):
    return {"extension": "atom", "render": render_atom, "can_render": can_render_atom}


@hookimpl
def prepare_connection(conn, database, datasette):
    if database == "_internal":
        return
    conn.create_function("pressarchive_html", 1, html_text, deterministic=True)
    conn.create_function("pressarchive_iri", 1, iri_part, deterministic=True)
