"""Is this file an archive, and may we write it? Asked before anything opens a ``--db`` file.

A wrong ``--db`` (another program's database, a folder, something under ``/proc``)
must be refused without changing it: :func:`db_problem` reads at most a file's first
16 bytes and its table names. :func:`read_only_connection` opens an archive for
reading, also on read-only media.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"
# Tables that make a SQLite file a pressarchive archive (any one: an archive being created).
ARCHIVE_TABLES = {"releases", "sources", "crawl_runs", "_pressarchive"}
SQLITE_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def db_problem(path: Path, *, write: bool, create: bool) -> str | None:
    """Why ``path`` cannot be the archive a command needs, or None.

    ``write``: the command writes the archive (``crawl``, ``demo``, ``reextract``,
    ``ingest``); ``create``: a missing file is made into a new archive (``crawl``,
    ``demo``, ``ingest``), else it must exist (``status``, ``export``,
    ``reextract``, ``serve``).
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return _missing_db_problem(path, create)
    except OSError as exc:  # a path through a file (ENOTDIR), a folder we may not enter
        return f"--db {path}: {exc.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return f"--db {path} is a folder; give the archive's file (e.g. {path / 'archive.db'})"
    if not stat.S_ISREG(info.st_mode):
        return f"--db {path} is not a regular file (a device, pipe or socket), so not an archive"
    problem = _content_problem(path, create)
    if problem or not write:
        return problem
    return _write_problem(path)


def _missing_db_problem(path: Path, create: bool) -> str | None:
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return f"the folder of --db {path} {what}: {folder}"
    if not create:
        return f"archive not found: {path} (run `pressarchive crawl --db {path}` first, or pass --db PATH)"
    try:  # really create a file there: permissions, read-only mounts and /proc all answer
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot create --db {path}: no new file can be made in {folder} ({exc.strerror})"
    return None


def _content_problem(path: Path, create: bool) -> str | None:
    """The file must be a SQLite database holding an archive (or empty, for a new one)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read --db {path}: {exc.strerror}"
    if not header:  # SQLite makes an empty file into a new database
        return None if create else f"--db {path} is an empty file, not an archive"
    if header != SQLITE_HEADER:
        return f"--db {path} is not a SQLite database, so not an archive (left untouched)"
    try:
        conn = read_only_connection(path)
        try:
            tables = {name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"cannot read --db {path} as SQLite: {exc}"
    if tables and not tables & ARCHIVE_TABLES:
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        return f"--db {path} is a SQLite database of something else (tables {shown}), not an archive (left untouched)"
    if not tables and not create:
        return f"--db {path} is an empty SQLite database, not an archive"
    return None


def read_only_connection(path: Path, **options) -> sqlite3.Connection:
    """A read-only connection to the archive ``path``, also on read-only media.

    SQLite reads a WAL-mode file through a ``-shm`` file it creates beside it,
    so ``mode=ro`` fails in a folder nobody may write (a read-only mount, a
    backup copy). No writer can be at work there either, so the file is then
    opened ``immutable`` (unless a ``-wal`` holds commits not yet in the file).
    """
    uri = Path(path).resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, **options)
    try:
        conn.execute("select 1 from sqlite_master limit 1")  # the file is opened lazily: open it now
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(Path(path).parent, os.W_OK) or Path(f"{path}-wal").exists():
            raise
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, **options)


def _write_problem(path: Path) -> str | None:
    """Permissions first (what a user can fix), then SQLite's own answer to a write lock."""
    folder = path.parent
    for needed in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if needed.exists() and not os.access(needed, os.W_OK):
            return f"--db {needed} is read-only: this command writes the archive (check its permissions)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (f"the folder of --db {path} is not writable: SQLite keeps {path.name}-wal and "
                f"{path.name}-shm beside the archive ({folder})")
    try:
        conn = sqlite3.connect(str(path), timeout=0, isolation_level=None)
        try:
            conn.execute("begin immediate")  # asks for the write lock; writes nothing
            conn.execute("rollback")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in SQLITE_BUSY_CODES:  # extended codes too
            return None  # another process is writing: the crawl lock says so, with its pid
        return f"--db {path} cannot be written: {exc}"
    except sqlite3.Error as exc:
        return f"--db {path} cannot be written: {exc}"
    return None
