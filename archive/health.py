"""Per-source health of an archive: what ``pressarchive status`` prints.

The verdict comes from the ``source_health`` view (so Datasette shows the
same), plus what depends on the clock: a source with no successful run in
``max_age_hours`` is broken (cron stopped, or every run dies before
finishing), and a source whose releases stopped coming drifts.

Drift is a redesign the crawl does not notice by itself: the site still
answers, so no run fails. It shows two ways:

- **Links** (in the view, from ``crawl_runs.drift``): the last run's feed,
  sitemap, listing or API yielded links, but none or almost none match
  ``article_pattern`` (the rule is in :mod:`crawler.discovery`). ``status``
  shows the verdict and a few of the unmatched links, the most release-like
  first, so the new URL scheme is in front of you on the first run.
- **Rhythm** (here): the newest release is far older than the source's usual
  gap between releases. The rhythm is the median gap between the newest
  :data:`RHYTHM_DAYS` distinct publication days of its releases in the
  archive; the source drifts when, at its last run, its newest release was
  more than ``max(RHYTHM_FLOOR_DAYS, RHYTHM_FACTOR x rhythm)`` days old. Fewer
  than :data:`RHYTHM_MIN_DAYS` publication days give no verdict (a new
  source, an occasional publisher). Distinct days, not releases, so that a
  ministry publishing five releases a day, or a monthly batch, is measured
  by its days: five releases on one day are not five zero-day gaps. The
  floor keeps a daily publisher's holiday fortnight quiet.

Both make ``status`` exit 1, as broken sources do.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from statistics import median

import sqlite_utils

from archive.clock import iso, now
from archive.schema import open_archive

RHYTHM_DAYS = 20  # publication days (the newest) the usual gap is measured over
RHYTHM_MIN_DAYS = 5  # fewer: no rhythm, so no verdict
RHYTHM_FACTOR = 5  # late when the newest release is older than this many usual gaps...
RHYTHM_FLOOR_DAYS = 14  # ... and older than this many days
SAMPLES_SHOWN = 3  # unmatched links printed per drifting source


@dataclass(frozen=True)
class Rhythm:
    """How often a source publishes, from the publication dates in the archive."""

    newest: date  # newest publication day
    gap: float  # median days between consecutive publication days
    days: int  # publication days the median was taken over

    @property
    def limit(self) -> float:
        return max(RHYTHM_FLOOR_DAYS, RHYTHM_FACTOR * self.gap)

    def late(self, at: date, newest: date | None = None) -> int | None:
        """Days since the newest release when that is past the limit at ``at``, else None.
        ``newest``: a newer release seen elsewhere (a live check's feed dates)."""
        newest = max(self.newest, newest) if newest else self.newest
        age = (at - newest).days
        return age if age > self.limit else None

    def explain(self, at: date, newest: date | None = None) -> str:
        newest = max(self.newest, newest) if newest else self.newest
        return (f"newest release {newest.isoformat()} is {(at - newest).days} days old at "
                f"{at.isoformat()}; it usually publishes every {self.gap:g} days (median of its last "
                f"{self.days} publication days), so a release was due within {self.limit:g} days")


def _day(value) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def release_rhythm(db, source_id: str, at: date) -> Rhythm | None:
    """The rhythm of ``source_id`` from the releases published on or before ``at`` (dates in
    the future of the run are errors of a page, not news); None with too few publication days.
    ``db``: a sqlite_utils Database or a sqlite3 connection to the archive."""
    rows = db.execute(
        "select published from releases where source_id = ? and published <= ? "
        "group by published order by published desc limit ?",
        [source_id, at.isoformat() + "\uffff", RHYTHM_DAYS * 2],
    ).fetchall()
    days = sorted({d for d in (_day(published) for (published,) in rows) if d and d <= at}, reverse=True)
    days = days[:RHYTHM_DAYS]
    if len(days) < RHYTHM_MIN_DAYS:
        return None
    gaps = [(newer - older).days for newer, older in pairwise(days)]
    return Rhythm(days[0], median(gaps), len(days))


def source_health(db, max_age_hours: float) -> list[dict]:
    cutoff = iso(now() - timedelta(hours=max_age_hours))
    rows = []
    for row in db.query("select * from source_health"):
        row["details"] = []
        if row["health"] in ("ok", "interrupted") and (row["last_success"] or "") < cutoff:
            row["health"] = f"broken: no successful run in {max_age_hours:g} h"
        elif row["health"].startswith("drift"):
            row["details"] = link_drift_lines(row.get("last_drift"), row.get("last_unmatched_sample"))
        elif row["health"] in ("ok", "interrupted"):
            at = _day(row["last_run"])
            rhythm = release_rhythm(db, row["source_id"], at) if at else None
            late = rhythm.late(at) if rhythm else None
            if late is not None:
                row["health"] = f"drift: no release for {late} d (usually {rhythm.gap:g} d)"
                row["details"] = [f"DRIFT: {rhythm.explain(at)}"]
        rows.append(row)
    return rows


def watch_health(db) -> list[dict]:
    """Each watch with its delivery channels' state (archive/watches.py): what ``status`` prints under
    the sources. A watch without a channel (its Atom feed only) has one row with channel None."""
    from archive.watches import deliveries

    if "watches" not in db.table_names():  # a read-only archive made before watches
        return []
    by_watch = {}
    for row in deliveries(db):
        by_watch.setdefault(row["watch"], []).append(row)
    return [row for watch in db.query("select name, last_run from watches order by name")
            for row in by_watch.get(watch["name"]) or [{"watch": watch["name"], "channel": None,
                                                         "last_run": watch["last_run"]}]]


def link_drift_lines(verdict: str | None, sample_json: str | None) -> list[str]:
    """``DRIFT: 40 links on the listing, none match article_pattern; e.g. URL`` and a few more URLs."""
    if not verdict or verdict == "0":  # 0: the store's value for a stat never set
        return []
    try:
        sample = [url for url in json.loads(sample_json or "[]") if isinstance(url, str)]
    except ValueError:
        sample = []
    sample = sample[:SAMPLES_SHOWN]
    lines = [f"DRIFT: {verdict}" + (f"; e.g. {sample[0]}" if sample else "")]
    lines += [f"       also {url}" for url in sample[1:]]
    return lines


def open_for_status(db_path: Path) -> sqlite_utils.Database:
    """The archive, migrated when it can be written; else read as it is (read-only media)."""
    if os.access(db_path, os.W_OK) and os.access(db_path.parent, os.W_OK):
        return open_archive(db_path)
    from archive.files import read_only_connection

    return sqlite_utils.Database(read_only_connection(db_path))


def overdue(conn, source_id: str, seen=()) -> str | None:
    """``DRIFT: newest release ...`` when ``source_id``'s releases are overdue now for its rhythm in
    the archive ``conn``; ``seen``: publication dates a live check just found (newer is fine)."""
    if conn is None:
        return None
    at = now().date()
    try:
        rhythm = release_rhythm(conn, source_id, at)
    except sqlite3.Error:
        return None  # an archive without releases yet
    newest = max((d for d in map(_day, filter(None, seen)) if d and d <= at), default=None)
    if rhythm is None or rhythm.late(at, newest) is None:
        return None
    return f"DRIFT: {rhythm.explain(at, newest)}"
