"""Datasette plugin: the reading room's home page and search-result helpers.

- ``/`` and ``/<db>`` open on what the archive holds (``index.html`` and
  ``database.html`` in ``archive/site/templates/`` render it): releases and
  sources (exact counts), languages, date range, the last crawl (from
  ``crawl_runs``), sources that look broken (``archive.health``, the logic of
  ``pressarchive status``), one search box, and links to recent changes and
  removals. Datasette's own table list stays below it.
- The releases table (the search results) and the ranked ``search`` query are
  shown as a reading list (``table.html``, ``query.html``): the templates get
  the sources' names and a snippet function from here.

Every number is counted exactly, under Datasette's ``sql_time_limit_ms``; a
count that runs out of time is shown as unknown, never as a guess.
"""

from __future__ import annotations

import sqlite3
import time

from datasette import hookimpl
from datasette.database import QueryInterrupted
from datasette.handle_exception import handle_exception as default_handle_exception
from datasette.views.base import DatasetteError

HEALTH_MAX_AGE_HOURS = 72  # `pressarchive status`'s default --max-age
LANGUAGE_NAMES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "fr": "French",
    "de": "German", "es": "Spanish", "pt": "Portuguese", "ru": "Russian", "ar": "Arabic",
    "it": "Italian", "nl": "Dutch", "pl": "Polish", "uk": "Ukrainian", "tr": "Turkish",
    "hi": "Hindi", "ur": "Urdu", "fa": "Persian", "vi": "Vietnamese", "id": "Indonesian",
}
STATEMENT_TYPES = {
    "press_release": "Press release", "statement": "Statement", "readout": "Readout",
    "speech": "Speech", "joint_statement": "Joint statement",
    "press_conference": "Press conference", "notice": "Notice", "other": "Other",
}
# Columns a reader needs in a list of results; the rest are a click away (``_col``).
READER_COLUMNS = ("title", "source_id", "published", "language", "statement_type", "text")


class OutOfTime(Exception):
    pass


def _timed(conn, seconds: float):
    deadline = time.perf_counter() + seconds
    conn.set_progress_handler(lambda: time.perf_counter() >= deadline, 1000)


def _one(conn, sql: str, params=()):
    try:
        return conn.execute(sql, params).fetchone()
    except sqlite3.OperationalError as error:
        if error.args == ("interrupted",):
            raise OutOfTime from None
        raise


def _tables(conn) -> set[str]:
    return {name for (name,) in conn.execute("select name from sqlite_master where type in ('table', 'view')")}


def archive_summary(conn, seconds: float) -> dict:
    """What the archive holds, counted exactly (None where a count ran out of time)."""
    tables = _tables(conn)
    summary: dict = {"has_runs": "crawl_runs" in tables, "has_versions": "release_versions" in tables,
                     "has_removals": "removals" in tables, "has_sources": "sources" in tables,
                     "timed_out": set()}

    def count(key, sql, params=()):
        try:
            _timed(conn, seconds)
            summary[key] = _one(conn, sql, params)
        except OutOfTime:
            summary[key] = None
            summary["timed_out"].add(key)
        finally:
            conn.set_progress_handler(None, 1000)

    count("releases", "select count(*) from releases")
    count("removed", "select count(*) from releases where status = 'removed'")
    count("range", "select min(published), max(published) from releases where published is not null "
                   "and published != ''")
    try:
        _timed(conn, seconds)
        summary["languages"] = [tuple(row) for row in conn.execute(
            "select language, count(*) as n from releases group by language order by n desc, language")]
    except sqlite3.OperationalError:
        summary["languages"] = None
    finally:
        conn.set_progress_handler(None, 1000)
    if summary["has_sources"]:
        count("sources", "select count(*), count(distinct country) from sources")
        count("sources_with_releases", "select count(distinct source_id) from releases")
    if summary["has_versions"]:
        count("changes", "select count(*) from release_versions where version > 1")
    if summary["has_runs"]:
        count("last_run", """
            select run_id, min(started), max(finished), count(*), sum(new), sum(changed),
                   sum(removed), sum(errors),
                   sum(status = 'ok'), sum(status = 'partial'), sum(status = 'failed'),
                   sum(status = 'interrupted'), sum(finished is null)
            from crawl_runs where run_id = (select run_id from crawl_runs order by started desc, id desc limit 1)
            group by run_id""")
    summary["broken"] = broken_sources(conn) if summary["has_runs"] and summary["has_sources"] else []
    return summary


def broken_sources(conn) -> list[dict]:
    """The sources ``pressarchive status`` flags (broken or drifting), with its verdict."""
    import sqlite_utils

    from archive.health import source_health

    db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
    rows = source_health(db, HEALTH_MAX_AGE_HOURS)
    return [{"source_id": r["source_id"], "name": r["name"], "health": r["health"],
             "last_run": r["last_run"]}
            for r in rows if r["health"].startswith(("broken", "drift"))]


def source_names(conn) -> dict[str, str]:
    if "sources" not in _tables(conn):
        return {}
    return {sid: name for sid, name in conn.execute("select id, name from sources") if name}


def language_name(code) -> str:
    if not code:
        return "unknown language"
    return LANGUAGE_NAMES.get(code, code)


def statement_type_name(value) -> str:
    if not value:
        return ""
    return STATEMENT_TYPES.get(value, value.replace("_", " ").capitalize())


def _archive_database(datasette, database):
    """The database the home page describes: ``database``, or on ``/`` the first with releases."""
    names = [database] if database else [n for n in datasette.databases if n != "_internal"]
    return [datasette.get_database(n) for n in names]


@hookimpl
def extra_template_vars(template, database, table, request, datasette):
    if template not in ("index.html", "database.html", "table.html", "query.html"):
        return {}

    async def inner():
        helpers = {"pa_language_name": language_name, "pa_type_name": statement_type_name,
                   "pa_reader_columns": READER_COLUMNS}
        candidates = _archive_database(datasette, database)
        db = None
        for candidate in candidates:
            if await candidate.table_exists("releases"):
                db = candidate
                break
        if db is None:
            return helpers
        helpers["pa_db"] = db.name
        helpers["pa_site_title"] = datasette.metadata("title") or "Datasette"
        seconds = datasette.setting("sql_time_limit_ms") / 1000
        if template in ("index.html", "database.html"):
            helpers["pa_home"] = await db.execute_fn(lambda conn: archive_summary(conn, seconds))
        if template in ("table.html", "query.html"):
            helpers["pa_sources"] = await db.execute_fn(source_names)
        return helpers

    return inner


TOOK_TOO_LONG = ('<p>SQL query took too long. The time limit is controlled by the '
                 '<a href="https://docs.datasette.io/en/stable/settings.html#sql-time-limit-ms">sql_time_limit_ms</a> '
                 'configuration option.</p>')


@hookimpl
def handle_exception(datasette, request, exception):
    """A query stopped by ``sql_time_limit_ms`` outside a view (Datasette's own schema refresh,
    before every request, on a loaded server) gets the page a view's slow query gets (400, "SQL
    query took too long"), not a 500."""
    if not isinstance(exception, QueryInterrupted):
        return None
    return default_handle_exception(datasette, request, DatasetteError(TOOK_TOO_LONG, title="SQL Interrupted", status=400,
                                                      message_is_html=True))
