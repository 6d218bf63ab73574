"""The ``crawl_runs`` log as the crawl's callers read it back, and the run bookkeeping of ``ingest``.

One row per source and run: opened by :meth:`archive.writer.ArchiveWriter.start_runs`, closed
by :meth:`~archive.writer.ArchiveWriter.finish_run`. The single-process crawl counts outcomes
in memory; ``pressarchive ingest`` stores batches from many workers as they come, so it adds
each batch's outcomes to the run's row (:func:`add_outcomes`) and closes the row from it.
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

OUTCOMES = ("new", "changed", "unchanged", "removed", "restored")


def run_rows(db_path: Path | str, run_id: str) -> list[dict]:
    """The ``crawl_runs`` rows of one run, in source order ([] when there is no archive)."""
    if not Path(db_path).exists():
        return []
    db = sqlite_utils.Database(db_path)
    try:
        return list(db.query("select * from crawl_runs where run_id = ? order by id", [run_id]))
    finally:
        db.close()


def close_unfinished(db_path: Path | str, run_id: str, status: str, message: str, finished: str) -> int:
    """Close the rows of ``run_id`` still ``running`` after the crawl process stopped (a stop
    signal that came while the archive was being opened, before the crawl could close them):
    ``status`` and ``message`` instead of a run that looks as if it were still going. Returns
    how many were closed; an archive that cannot be written (a full disk) closes none."""
    import sqlite3

    if not Path(db_path).exists():
        return 0
    db = sqlite_utils.Database(db_path)
    try:
        with db.conn:
            return db.execute(
                "update crawl_runs set status = ?, message = coalesce(message, ?), finished = ? "
                "where run_id = ? and status = 'running'", [status, message, finished, run_id]).rowcount
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def run_started(db, run_id: str) -> bool:
    return db.execute("select 1 from crawl_runs where run_id = ?", [run_id]).fetchone() is not None


def run_row_ids(db, run_id: str) -> dict[str, int]:
    """source id -> ``crawl_runs`` row id, for one run."""
    return dict(db.execute("select source_id, id from crawl_runs where run_id = ?", [run_id]).fetchall())


def add_outcomes(db, run_id: str, delta: dict) -> None:
    """Add a batch's ``{(source_id, outcome): n}`` to the run's rows (outcomes only, in one transaction)."""
    with db.atomic():
        for (source_id, outcome), n in delta.items():
            if outcome in OUTCOMES:
                db.execute(f"update crawl_runs set [{outcome}] = coalesce([{outcome}], 0) + ? "
                           "where run_id = ? and source_id = ?", [n, run_id, source_id])


def release_count(db) -> int:
    return db.execute("select count(*) from releases").fetchone()[0]


def sample_release(db_path: Path | str, source_id: str) -> dict | None:
    """The first release a `sources check` stored for ``source_id`` (its title, date and text)."""
    if not Path(db_path).exists():
        return None
    db = sqlite_utils.Database(db_path)
    try:
        return next(db.query("select title, published, text, text_status from releases "
                             "where source_id = ? order by id limit 1", [source_id]), None)
    finally:
        db.close()
