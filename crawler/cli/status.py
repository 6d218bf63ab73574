"""``pressarchive status``: per-source health of an archive, for cron mail and monitoring."""

from __future__ import annotations

import sqlite3

import click

from crawler.cli.options import check_db, db_option, fail


@click.command("status")
@db_option(help="SQLite archive file.")
@click.option("--max-age", "max_age_hours", type=float, default=72, show_default=True,
              help="Hours without a successful run after which a source counts as broken.")
def status_command(db_path, max_age_hours):
    """Per-source health; exit code 1 when any source looks broken or drifting (for cron mail and
    monitoring). Drifting: its links no longer match article_pattern, or its releases stopped
    coming at its usual rhythm. Then each watch's last delivery per channel; a failing channel
    (webhook or email) also makes the exit code 1."""
    from archive.health import (  # (slow to import: only when the command runs)
        open_for_status,
        source_health,
        watch_health,
    )
    from crawler.cli.watch import delivery_line

    check_db(db_path, write=False)
    try:
        db = open_for_status(db_path)
        try:
            rows = source_health(db, max_age_hours)
            watches = watch_health(db)
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
        for line in row["details"]:
            click.echo(f"{'':<28} {line}")
        if row["health"].startswith("broken") and row["last_message"]:
            click.echo(f"{'':<28} last error: {row['last_message']}")
    broken = [r for r in rows if r["health"].startswith("broken")]
    drifting = [r for r in rows if r["health"].startswith("drift")]
    for row in watches:
        if row["channel"] is None:
            click.echo(f"watch {row['watch']}: Atom feed only, last run {row['last_run'] or 'never'}")
        else:
            click.echo(f"watch {row['watch']} {row['channel']}: {delivery_line(row)}")
    failing = [row for row in watches if row.get("status") == "failing"]
    click.echo(f"{len(rows)} sources, {len(broken)} broken, {len(drifting)} drifting"
               + (f"; {len(failing)} failing watch deliveries" if failing else ""), err=True)
    raise SystemExit(1 if broken or drifting or failing else 0)
