"""Per-source health of an archive: what ``pressarchive status`` prints.

The verdict comes from the ``source_health`` view (so Datasette shows the
same), plus staleness, which depends on the clock: a source with no
successful run in ``max_age_hours`` is broken too (cron stopped, or every
run dies before finishing).
"""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import click
import sqlite_utils

from crawler.clock import iso, now
from pipelines.schema import open_archive


def source_health(db, max_age_hours: float) -> list[dict]:
    cutoff = iso(now() - timedelta(hours=max_age_hours))
    rows = []
    for row in db.query("select * from source_health"):
        if row["health"] in ("ok", "interrupted") and (row["last_success"] or "") < cutoff:
            row["health"] = f"broken: no successful run in {max_age_hours:g} h"
        rows.append(row)
    return rows


def open_for_status(db_path: Path) -> sqlite_utils.Database:
    """The archive, migrated when it can be written; else read as it is (read-only media)."""
    if os.access(db_path, os.W_OK) and os.access(db_path.parent, os.W_OK):
        return open_archive(db_path)
    from crawler.cli import read_only_connection

    return sqlite_utils.Database(read_only_connection(db_path))


@click.command("status")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default="archive.db", show_default=True,
              help="SQLite archive file.")
@click.option("--max-age", "max_age_hours", type=float, default=72, show_default=True,
              help="Hours without a successful run after which a source counts as broken.")
def status_command(db_path, max_age_hours):
    """Per-source health; exit code 1 when any source looks broken (for cron mail and monitoring)."""
    from crawler.cli import check_db, fail

    check_db(db_path, write=False)
    try:
        db = open_for_status(db_path)
        try:
            rows = source_health(db, max_age_hours)
        finally:
            db.close()
    except sqlite3.Error as exc:
        fail(f"cannot read the health of {db_path}: {exc}")
    header = f"{'source':<28} {'health':<44} {'last run':<21} {'last success':<21} {'last new release':<21} {'releases':>8}"
    click.echo(header)
    for row in rows:
        click.echo(
            f"{row['source_id']:<28} {row['health']:<44} {row['last_run'] or '-':<21} "
            f"{row['last_success'] or '-':<21} {row['last_new_release'] or '-':<21} {row['releases']:>8}"
        )
        if row["health"].startswith("broken") and row["last_message"]:
            click.echo(f"{'':<28} last error: {row['last_message']}")
    broken = [r for r in rows if r["health"].startswith("broken")]
    click.echo(f"{len(rows)} sources, {len(broken)} broken", err=True)
    raise SystemExit(1 if broken else 0)
