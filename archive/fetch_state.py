"""What earlier crawls left in the archive that this crawl needs: the crawl state.

Read once at spider start from ``ARCHIVE_DB`` (read-only): known release URLs
and when each was last seen (listings stop at known pages; feeds and sitemaps
only fetch new or updated entries), releases due for a recheck, HTTP
validators of feeds, sitemaps and listings (conditional GET), and whether the
source's last run finished (if not, the next run walks everything again).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SourceState:
    known: dict[str, str] = field(default_factory=dict)  # url -> last_seen (ISO)
    due: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (url, etag, last_modified)
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    last_status: str | None = None

    @property
    def complete(self) -> bool:
        """The last run walked the source to the end, so "all known" means "nothing older is new"."""
        return self.last_status in ("ok", "partial")


def load_state(db_path: str | Path, source_ids, now_iso: str, max_rechecks: int) -> dict[str, SourceState]:
    states = {sid: SourceState() for sid in source_ids}
    path = Path(db_path)
    if not path.exists():
        return states
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
        for sid, state in states.items():
            if "releases" in tables:
                state.known = dict(conn.execute("select url, last_seen from releases where source_id = ?", [sid]))
                if _has_column(conn, "releases", "next_check"):
                    state.due = conn.execute(
                        "select url, etag, last_modified from releases where source_id = ? and next_check <= ? "
                        "order by next_check limit ?", [sid, now_iso, max_rechecks],
                    ).fetchall()
            if "fetch_state" in tables:
                state.validators = {
                    url: (etag, modified)
                    for url, etag, modified in conn.execute(
                        "select url, etag, last_modified from fetch_state where source_id = ?", [sid]
                    )
                }
            if "crawl_runs" in tables:
                row = conn.execute(
                    "select status from crawl_runs where source_id = ? and finished is not null "
                    "order by id desc limit 1", [sid],
                ).fetchone()
                state.last_status = row[0] if row else None
    finally:
        conn.close()
    return states


def _has_column(conn, table, column) -> bool:
    return any(r[1] == column for r in conn.execute(f"pragma table_info([{table}])"))
