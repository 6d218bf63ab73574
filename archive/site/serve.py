"""``pressarchive serve``: the archive in Datasette, read-only, searchable.

The database is served under its file stem (``archive.db`` -> ``/archive``)
with the project's metadata, canned queries, plugin and CSS from
``archive/site/`` (shipped as package data).

Serving never writes the archive, and works from read-only media:

- The file is checked before anything else opens it (:func:`inspect_archive`):
  a file that is not SQLite, or a SQLite database without a ``releases``
  table, is refused with one line and exit 2, untouched.
- It is served ``mode=ro``: a crawl can write it meanwhile (WAL) and the site
  follows. Where SQLite cannot make the ``-shm`` file a WAL reader needs (a
  read-only folder or mount), no writer can be at work either, so it is served
  ``immutable``. The plugin makes every connection ``query_only`` besides.
- A missing or out-of-date search index is reported (one warning line) and the
  site serves what the index holds, saying so on search pages: indexing is the
  crawl's job (:func:`search_index_problem`).
- The port is bound before "Serving ..." is printed, and the bound socket is
  handed to uvicorn: a port in use or out of range is one line and exit 2.
"""

from __future__ import annotations

import errno
import logging
import socket
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

from archive.files import SQLITE_HEADER
from archive.search_index import (
    FACETS_TABLE,
    FTS_TABLE,
    LOGGED_COLUMNS,
    PENDING_TABLE,
    ROWS_TABLE,
    SEARCH_VERSION,
    definition_is_current,
)

CONFIG_DIR = Path(__file__).parent  # metadata.yaml, plugins/, templates/, static/ beside this file

# Facet suggestions scan every column of the result: seconds on a large
# archive, and the configured facets already cover what is useful.
DEFAULT_SETTINGS = {
    "suggest_facets": False,
    "facet_time_limit_ms": 500,
    # The ranked search scores every match: "the" in 600,000 of a million releases takes ~0.7 s.
    "sql_time_limit_ms": 2000,
    "allow_download": False,
}


logger = logging.getLogger(__name__)


def load_metadata(db_name: str) -> dict:
    """metadata.yaml with its "archive" database renamed to ``db_name``."""
    metadata = yaml.safe_load((CONFIG_DIR / "metadata.yaml").read_text(encoding="utf-8"))
    metadata["databases"] = {db_name: metadata["databases"].pop("archive")}
    metadata["description_html"] = metadata["description_html"].replace(
        'href="/archive/', f'href="/{db_name}/'
    )
    return metadata


def make_datasette(db_path, immutable: bool = False, warc_dir=None, **kw):
    """A Datasette app serving ``db_path`` read-only with the project's config.

    ``immutable``: open the file ``immutable=1`` (read-only media, see
    :func:`inspect_archive`) instead of ``mode=ro``. ``warc_dir``: where the raw
    captures are (default: ``warc/`` beside the archive), for the archived originals.
    Keyword arguments go to ``datasette.app.Datasette``; ``settings`` is merged over
    DEFAULT_SETTINGS.
    """
    from datasette.app import Datasette

    path = Path(db_path)
    settings = {**DEFAULT_SETTINGS, **kw.pop("settings", {})}
    templates = CONFIG_DIR / "templates"
    if immutable:
        kw.setdefault("inspect_data", unknown_counts(path))
    metadata = load_metadata(path.stem)
    if warc_dir:
        metadata.setdefault("plugins", {})["pressarchive_release"] = {"warc_dir": str(Path(warc_dir).resolve())}
    return Datasette(
        [] if immutable else [str(path)],
        immutables=[str(path)] if immutable else None,
        metadata=metadata,
        plugins_dir=str(CONFIG_DIR / "plugins"),
        template_dir=str(templates) if templates.is_dir() else None,
        static_mounts=[("pressarchive-static", str(CONFIG_DIR / "static"))],
        settings=settings,
        **kw,
    )


def unknown_counts(path: Path) -> dict:
    """Datasette's ``inspect_data`` for an immutable archive, with every count unknown.

    Without it Datasette counts every table with no time limit before it serves an
    immutable file (51 s at a million releases) and hashes the whole file on the first
    ``/-/databases.json`` (17 GB). Unknown, the counts are asked for as for a live
    archive: within the time limit, where a page needs them.
    """
    conn = sqlite3.connect(read_only_uri(path, immutable=True), uri=True)
    try:
        tables = [n for (n,) in conn.execute("select name from sqlite_master where type = 'table'")]
    finally:
        conn.close()
    return {path.stem: {"hash": None, "size": path.stat().st_size, "file": str(path),
                        "tables": {table: {"count": None} for table in tables}}}


class ServeError(Exception):
    """What stops ``serve`` before it listens: one line for the user."""


class IndexProblem(NamedTuple):
    missing: bool  # no index at all: nothing can be searched
    message: str


def search_index_problem(conn: sqlite3.Connection, exact: bool = True) -> IndexProblem | None:
    """What is wrong with the archive's search index, read-only; None when it is up to date.

    ``exact`` counts the releases missing from the index (one pass over two
    tables: about 0.5 s at a million releases); otherwise only releases newer
    than the newest indexed one are noticed (two index lookups, for every page).
    """
    tables = {name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}
    if not {FTS_TABLE, ROWS_TABLE, PENDING_TABLE} <= tables:
        return IndexProblem(True, "the archive has no search index: searches find nothing until "
                                  "`pressarchive reindex` (or a crawl) builds it (browsing works)")
    version = None
    if "_pressarchive" in tables:
        row = conn.execute("select value from _pressarchive where key = 'search_version'").fetchone()
        version = row[0] if row else None
    logged = {r[1] for r in conn.execute(f"pragma table_info({FACETS_TABLE})")}
    if version != SEARCH_VERSION or not definition_is_current(conn) or not set(LOGGED_COLUMNS) <= logged:
        return IndexProblem(False, f"the search index was made by an older pressarchive (format "
                                   f"{version or '1'}, this one reads {SEARCH_VERSION}): searches may "
                                   "miss releases, and other tools (sqlite-utils, Datasette's table counts) "
                                   "may not read its releases_fts, until `pressarchive reindex` (or a crawl) "
                                   "re-indexes it")
    if exact:
        unindexed = conn.execute(f"select (select count(*) from releases) - "
                                 f"(select count(*) from {ROWS_TABLE})").fetchone()[0]
    else:
        unindexed = conn.execute(f"select coalesce((select max(id) from releases), 0) > "
                                 f"coalesce((select max(release_id) from {ROWS_TABLE}), 0)").fetchone()[0]
    changed = conn.execute(f"select count(*) from (select 1 from {PENDING_TABLE} limit 1000)").fetchone()[0]
    if unindexed > 0 or changed:
        what = (f"{unindexed:,} releases are not in it" if exact and unindexed > 0 else
                "releases added since are not in it" if unindexed > 0 else
                f"{changed:,}{'+' if changed == 1000 else ''} edited releases are indexed as they were")
        return IndexProblem(False, f"the search index is out of date ({what}): searches may miss "
                                   "them until `pressarchive reindex` (or a crawl) indexes them")
    return None


@dataclass
class ServedArchive:
    path: Path
    immutable: bool  # opened immutable=1: read-only media
    index_problem: IndexProblem | None


def read_only_uri(path: Path, immutable: bool) -> str:
    return f"{path.resolve().as_uri()}?{'immutable=1' if immutable else 'mode=ro'}"


def inspect_archive(path: Path) -> ServedArchive:
    """Check that ``path`` is an archive and how to open it, writing nothing (see the module docstring)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ServeError(f"{path} is not a file: pass the archive's file with --db PATH")
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise ServeError(f"no archive at {path}: run 'pressarchive crawl' first or pass --db PATH") from None
    except OSError as error:
        raise ServeError(f"cannot read {path}: {error.strerror}") from None
    if header != SQLITE_HEADER:
        raise ServeError(f"{path} is not a pressarchive archive (not an SQLite database); left untouched")
    # Without a -wal beside it the file holds everything, and immutable=1 reads it with no
    # side effect at all (mode=ro would make -wal and -shm files beside a WAL-mode database).
    has_wal = Path(f"{path}-wal").exists()
    try:
        conn = sqlite3.connect(read_only_uri(path, immutable=not has_wal), uri=True)
        try:
            tables = {n for (n,) in conn.execute("select name from sqlite_master where type = 'table'")}
            if "releases" not in tables:
                raise ServeError(f"{path} is not a pressarchive archive (an SQLite database with no "
                                 "releases table); left untouched")
            problem = search_index_problem(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        raise ServeError(f"{path} is not a readable SQLite archive ({error}); left untouched") from None
    return ServedArchive(path, _needs_immutable(path), problem)


def _needs_immutable(path: Path) -> bool:
    """True when SQLite cannot read ``path`` mode=ro: a WAL archive in a folder nobody may write."""
    try:
        conn = sqlite3.connect(read_only_uri(path, immutable=False), uri=True)
        try:
            conn.execute("select count(*) from sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as error:
        name = getattr(error, "sqlite_errorname", "")
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
            return True
        raise
    return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port), or :class:`ServeError`."""
    if not 0 <= port <= 65535:
        raise ServeError(f"--port {port} is not a TCP port: give 1-65535 (or 0 for any free port)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ServeError(f"--host {host}: not an address of this machine ({error})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart while old connections linger
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog
    except OSError as error:
        sock.close()
        reason = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise ServeError(f"cannot listen on {host} port {port}: {reason}") from None
    return sock


def site_url(host: str, sock: socket.socket, db_name: str) -> str:
    address = sock.getsockname()
    shown = f"[{address[0]}]" if sock.family == socket.AF_INET6 else host
    return f"http://{shown}:{address[1]}/{db_name}"
