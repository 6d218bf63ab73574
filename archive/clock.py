"""The crawl's notion of "now", in UTC.

``PRESSARCHIVE_NOW`` (ISO 8601, e.g. ``2017-06-23T12:00:00Z``) overrides the
clock, so tests and replays can run crawls "at" a given time: the recheck
schedule, ``first_seen``/``last_seen`` and run timestamps all follow it.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone


def now() -> datetime:
    fixed = os.environ.get("PRESSARCHIVE_NOW")
    if fixed:
        return parse_iso(fixed)
    return datetime.now(timezone.utc).replace(microsecond=0)


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return iso(now())
