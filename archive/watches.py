"""Watches: saved searches whose new, edited and removed matches become entries, delivered once.

A watch is a search-box query (archive/search_index.py's language: phrases,
``OR``, ``-word``, ``prefix*``, Chinese by bigrams) with optional source,
language and statement-type filters. :func:`run_watches` (after every crawl
and ``pressarchive watch run``) turns what the archive gained since the
watch last looked into ``watch_entries`` rows:

``new``
    a release stored since then that matches (``event_at``: its first_seen;
    ``summary``: an excerpt around the first match);
``changed``
    a publisher's edit (a ``release_versions`` row of change ``edit``) of a
    release that matches now or had an entry in this watch before (an edit
    that removes the watched words is news too); ``summary``: the diff;
``removed``
    a removal event (``removals``) of such a release; ``summary``: what was
    seen (``HTTP 404``, ``redirected to ...``).

"Since then" is by id, not by clock: each watch keeps the largest
``releases``, ``release_versions`` and ``removals`` ids it has looked at
(``seen_*``). Ids grow in commit order (one writer at a time), so a release
committed by a crawl still running is never skipped, as a timestamp
watermark could skip it. The entries and the new watermarks are written in
one transaction: a process killed in between leaves neither, and the next
run computes the same entries again. An entry is unique per (watch,
release, kind, version, event time): computing twice never adds it twice.

Delivery (webhook, email: crawler/cli/watch.py sends) is per channel a
watermark too: ``watch_deliveries.last_entry_id``; the entries of a watch
with a larger id are pending for that channel, and the watermark moves only
after the receiver accepted them. A crash between sending and recording
sends them again next run (at least once): each entry carries its stable
``id`` so a receiver can drop one it already has.

``watch remove`` deletes the watch, its entries and its delivery state;
releases and their history are never touched.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field

from archive.search_index import (
    FTS_TABLE,
    ID_BITS,
    ROWS_TABLE,
    check_query_size,
    match_regex,
    rewrite_query,
    user_match,
)
from archive.sql import chunks
from archive.sql import marks as placeholders

CHANNELS = ("webhook", "email")
KINDS = ("new", "changed", "removed")
NAME = re.compile(r"^[\w.-]{1,64}$")  # letters of any script, digits, _ . -
SUMMARY_CHARS = 240  # excerpt of a new match around its first matching term
DIFF_CHARS = 4000  # a changed entry's diff is cut here (the whole diff is in release_versions)


class WatchError(ValueError):
    """A watch that cannot be added, or one that does not exist; the message is for the user."""


@dataclass
class Watch:
    name: str
    query: str
    sources: list = field(default_factory=list)
    languages: list = field(default_factory=list)
    types: list = field(default_factory=list)
    webhook: str | None = None
    email: str | None = None
    created: str | None = None
    last_run: str | None = None
    seen_release_id: int = 0
    seen_version_id: int = 0
    seen_removal_id: int = 0

    @classmethod
    def from_row(cls, row: dict) -> Watch:
        values = dict(row)
        for key in ("sources", "languages", "types"):
            values[key] = json.loads(values[key]) if values.get(key) else []
        for key in ("seen_release_id", "seen_version_id", "seen_removal_id"):
            values[key] = values.get(key) or 0
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def channels(self) -> list[str]:
        return [channel for channel in CHANNELS if getattr(self, channel)]

    def filters(self) -> str:
        parts = [f"{label} {', '.join(values)}" for label, values in
                 (("source", self.sources), ("language", self.languages), ("type", self.types)) if values]
        return "; ".join(parts)


# -- adding, listing, removing --------------------------------------------------------------------


def check_query(query: str) -> None:
    """Raise :class:`WatchError` for a query the search box would refuse or that finds nothing."""
    if not (query or "").strip():
        raise WatchError("the query is empty")
    try:
        check_query_size(query)
    except ValueError as error:
        raise WatchError(str(error)) from None
    if rewrite_query(query) is None:
        raise WatchError(f"nothing in the query {query!r} can be searched (only excluded words or punctuation)")


def _json_list(values) -> str | None:
    return json.dumps(list(values), ensure_ascii=False) if values else None


def add_watch(db, watch: Watch, now: str) -> Watch:
    """Store a new watch; it reports what the archive gains from now on (its watermarks: the
    archive's current largest ids)."""
    if not NAME.match(watch.name or ""):
        raise WatchError(f"bad watch name {watch.name!r}: 1 to 64 letters, digits, '_', '.' or '-'")
    check_query(watch.query)
    if get_watch(db, watch.name) is not None:
        raise WatchError(f"a watch named {watch.name!r} exists; `pressarchive watch remove {watch.name}` first")
    with db.conn:
        marks = _archive_marks(db)
        db.execute(
            "insert into watches (name, query, sources, languages, types, webhook, email, created, last_run, "
            "seen_release_id, seen_version_id, seen_removal_id) values (?, ?, ?, ?, ?, ?, ?, ?, null, ?, ?, ?)",
            [watch.name, watch.query, _json_list(watch.sources), _json_list(watch.languages),
             _json_list(watch.types), watch.webhook, watch.email, now, *marks])
        db.execute("delete from watch_deliveries where watch = ?", [watch.name])  # (none: removed with the watch)
        for channel in CHANNELS:
            if getattr(watch, channel):
                db.execute("insert into watch_deliveries (watch, channel, last_entry_id, status, attempts) "
                           "values (?, ?, 0, null, 0)", [watch.name, channel])
    return get_watch(db, watch.name)


def get_watch(db, name: str) -> Watch | None:
    row = next(db.query("select * from watches where name = ?", [name]), None)
    return Watch.from_row(row) if row else None


def all_watches(db) -> list[Watch]:
    return [Watch.from_row(row) for row in db.query("select * from watches order by name")]


def remove_watch(db, name: str) -> int:
    """Delete a watch, its entries and delivery state; return how many entries went. Releases stay."""
    if get_watch(db, name) is None:
        raise WatchError(f"no watch named {name!r} (`pressarchive watch list` shows them)")
    with db.conn:
        entries = db.execute("delete from watch_entries where watch = ?", [name]).rowcount
        db.execute("delete from watch_deliveries where watch = ?", [name])
        db.execute("delete from watches where name = ?", [name])
    return entries


def has_watches(db) -> bool:
    return db.execute("select 1 from watches limit 1").fetchone() is not None


def any_watch(db_path) -> bool:
    """Whether the archive file has a watch, read without writing (no schema migration): a crawl
    of an archive without watches does nothing more after it."""
    import sqlite3
    from pathlib import Path

    try:
        conn = sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        return conn.execute("select 1 from watches limit 1").fetchone() is not None
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def archive_source_ids(db) -> set[str]:
    """The sources the archive knows (a watch's --source may name one the registry no longer has)."""
    return {row[0] for row in db.execute("select id from sources")}


def entry_counts(db, name: str) -> dict[str, int]:
    counts = dict.fromkeys(KINDS, 0)
    counts.update(db.execute("select kind, count(*) from watch_entries where watch = ? group by kind",
                             [name]).fetchall())
    return counts


def deliveries(db, name: str | None = None) -> list[dict]:
    """Delivery state per watch and channel, with the number of entries pending for it."""
    where, params = ("where d.watch = ?", [name]) if name else ("", [])
    return list(db.query(
        "select d.*, (select count(*) from watch_entries e where e.watch = d.watch and e.id > d.last_entry_id) "
        f"as pending from watch_deliveries d join watches w on w.name = d.watch {where} "
        "order by d.watch, d.channel", params))


# -- matching ------------------------------------------------------------------------------------


def _chunks(ids):
    return chunks(sorted(set(ids)))


def watch_matches(db, watch: Watch, release_ids) -> set[int]:
    """The ids among ``release_ids`` whose release matches the watch's query and filters now.

    The search box's matching (:func:`archive.search_index.user_match`) on the archive's
    search index, which the crawl's writer keeps up to date. ``db``: a sqlite_utils Database or
    sqlite3 connection; no Datasette. Read by ranges of the index's rowids (publication date,
    then id), not id by id: FTS5 seeks to a rowid range, and a run's new releases are mostly
    of a few recent days (:func:`_date_ranges`)."""
    keys: set[int] = set()
    for chunk in _chunks(release_ids):
        keys.update(row[0] for row in db.execute(
            f"select fts_rowid from {ROWS_TABLE} where release_id in ({placeholders(chunk)})", chunk))
    match = user_match(watch.query)
    found: set[int] = set()
    for low, high in _date_ranges(keys):
        rows = db.execute(f"select rowid from {FTS_TABLE} where {FTS_TABLE} match ? and rowid between ? and ?",
                          [match, low, high])
        found.update(row[0] % ID_BITS for row in rows if row[0] in keys)
    return _filtered(db, watch, found)


RANGE_GAP = 100  # index rowids whose dates (YYYYMMDD) are further apart than ~a month: separate ranges


def _date_ranges(keys: set[int]) -> list[tuple[int, int]]:
    """(low, high) rowid ranges covering ``keys``, split where their dates are far apart."""
    ranges: list[list[int]] = []
    for key in sorted(keys):
        if ranges and key // ID_BITS - ranges[-1][1] // ID_BITS <= RANGE_GAP:
            ranges[-1][1] = key
        else:
            ranges.append([key, key])
    return [(low, high) for low, high in ranges]


def _filtered(db, watch: Watch, ids: set[int]) -> set[int]:
    if not ids or not (watch.sources or watch.languages or watch.types):
        return ids
    clauses, params = [], []
    if watch.sources:
        clauses.append(f"source_id in ({placeholders(watch.sources)})")
        params += watch.sources
    if watch.languages:  # "zh" is zh, zh-CN, zh-Hans...
        clauses.append("(" + " or ".join("lower(language) = ? or lower(language) like ?"
                                         for _ in watch.languages) + ")")
        for language in watch.languages:
            params += [language.lower(), language.lower() + "-%"]
    if watch.types:
        clauses.append(f"statement_type in ({placeholders(watch.types)})")
        params += watch.types
    kept: set[int] = set()
    for chunk in _chunks(ids):
        rows = db.execute(f"select id from releases where id in ({placeholders(chunk)}) "
                          f"and {' and '.join(clauses)}", [*chunk, *params])
        kept.update(row[0] for row in rows)
    return kept


def excerpt(text: str | None, query: str, size: int = SUMMARY_CHARS) -> str:
    """Plain text around the first match of ``query``'s words in ``text`` (its start if none)."""
    text = " ".join(unicodedata.normalize("NFKC", text or "").split())
    regex = match_regex(query)
    first = regex.search(text) if regex else None
    start = max(0, first.start() - size // 4) if first else 0
    return ("…" if start else "") + text[start : start + size] + ("…" if start + size < len(text) else "")


# -- computing entries ---------------------------------------------------------------------------


def _archive_marks(db) -> tuple[int, int, int]:
    return tuple(db.execute(f"select coalesce(max(id), 0) from {table}").fetchone()[0]
                 for table in ("releases", "release_versions", "removals"))


def _watched(db, name: str, ids) -> set[int]:
    """Releases among ``ids`` that already have an entry in this watch (they matched before)."""
    found: set[int] = set()
    for chunk in _chunks(ids):
        found.update(row[0] for row in db.execute(
            f"select distinct release_id from watch_entries where watch = ? "
            f"and release_id in ({placeholders(chunk)})", [name, *chunk]))
    return found


def _candidates(db, watch: Watch, marks) -> list[dict]:
    """The entries the archive's rows between the watch's watermarks and ``marks`` make."""
    top_release, top_version, top_removal = marks
    new = [row[0] for row in db.execute("select id from releases where id > ? and id <= ?",
                                        [watch.seen_release_id, top_release])]
    edits = list(db.query(
        "select v.release_id, v.version, v.fetched_at, v.diff, v.title from release_versions v "
        "where v.id > ? and v.id <= ? and v.version > 1 and v.change = 'edit'",
        [watch.seen_version_id, top_version]))
    removals = list(db.query("select release_id, at, detail from removals where id > ? and id <= ? "
                             "and event = 'removed'", [watch.seen_removal_id, top_removal]))
    touched = {e["release_id"] for e in edits} | {r["release_id"] for r in removals}
    matching = watch_matches(db, watch, set(new) | touched)
    # An edited or removed release counts when it matches now or matched before (the edit may
    # have taken the watched words out); the filters apply either way.
    followed = matching | _filtered(db, watch, _watched(db, watch.name, touched))
    releases = _release_rows(db, (set(new) & matching) | (touched & followed))
    entries = []
    for release_id in sorted(set(new) & matching):
        row = releases[release_id]
        entries.append(_entry(release_id, "new", 1, row["first_seen"], row["title"], row["url"],
                              excerpt(row["text"], watch.query)))
    for edit in sorted(edits, key=lambda e: (e["fetched_at"] or "", e["release_id"], e["version"])):
        if edit["release_id"] in followed:
            row = releases[edit["release_id"]]
            diff = edit["diff"] or ""
            entries.append(_entry(edit["release_id"], "changed", edit["version"], edit["fetched_at"],
                                  edit["title"] or row["title"], row["url"],
                                  diff[:DIFF_CHARS] + ("\n…" if len(diff) > DIFF_CHARS else "")))
    for removal in sorted(removals, key=lambda r: (r["at"] or "", r["release_id"])):
        if removal["release_id"] in followed:
            row = releases[removal["release_id"]]
            entries.append(_entry(removal["release_id"], "removed", None, removal["at"], row["title"], row["url"],
                                  removal["detail"] or "removed"))
    return entries


def _entry(release_id, kind, version, event_at, title, url, summary) -> dict:
    return {"release_id": release_id, "kind": kind, "version": version, "event_at": event_at, "title": title,
            "url": url, "summary": summary}


def _release_rows(db, ids) -> dict[int, dict]:
    rows = {}
    for chunk in _chunks(ids):
        for row in db.query(f"select id, title, url, text, first_seen from releases "
                            f"where id in ({placeholders(chunk)})", chunk):
            rows[row["id"]] = row
    return rows


def _insert_entry(db, name: str, entry: dict, now: str) -> bool:
    """Insert an entry unless this watch has it (``is``: a removal's version is NULL, which a
    UNIQUE constraint does not compare)."""
    cursor = db.execute(
        "insert into watch_entries (watch, release_id, kind, version, event_at, title, url, summary, created) "
        "select ?, ?, ?, ?, ?, ?, ?, ?, ? where not exists (select 1 from watch_entries where watch = ? "
        "and release_id = ? and kind = ? and version is ? and event_at is ?)",
        [name, entry["release_id"], entry["kind"], entry["version"], entry["event_at"], entry["title"],
         entry["url"], entry["summary"], now, name, entry["release_id"], entry["kind"], entry["version"],
         entry["event_at"]])
    return cursor.rowcount > 0


def run_watch(db, watch: Watch, now: str) -> dict[str, int]:
    """Add one watch's entries for what the archive gained since it last ran; counts by kind.

    One write transaction (``begin immediate``: two runs at once take turns) holds the
    watermarks read, the entries and the new watermarks."""
    counts = dict.fromkeys(KINDS, 0)
    conn = db.conn
    if conn.in_transaction:
        conn.commit()
    conn.execute("begin immediate")
    try:
        current = get_watch(db, watch.name)
        if current is None:  # removed meanwhile
            conn.execute("rollback")
            return counts
        marks = _archive_marks(db)
        for entry in _candidates(db, current, marks):
            if _insert_entry(db, current.name, entry, now):
                counts[entry["kind"]] += 1
        db.execute("update watches set seen_release_id = ?, seen_version_id = ?, seen_removal_id = ?, "
                   "last_run = ? where name = ?", [*marks, now, current.name])
        conn.execute("commit")
    except BaseException:
        if conn.in_transaction:
            conn.execute("rollback")
        raise
    return counts


def run_watches(db, now: str) -> dict[str, dict[str, int]]:
    """:func:`run_watch` for every watch: ``{name: {"new": n, "changed": n, "removed": n}}``."""
    return {watch.name: run_watch(db, watch, now) for watch in all_watches(db)}


# -- delivery bookkeeping ------------------------------------------------------------------------


def pending_entries(db, name: str, channel: str, limit: int) -> list[dict]:
    """The oldest ``limit`` entries of a watch that ``channel`` has not delivered yet."""
    row = db.execute("select last_entry_id from watch_deliveries where watch = ? and channel = ?",
                     [name, channel]).fetchone()
    if row is None:
        db.execute("insert or ignore into watch_deliveries (watch, channel, last_entry_id, attempts) "
                   "values (?, ?, 0, 0)", [name, channel])
        db.conn.commit()
    mark = row[0] if row else 0
    return list(db.query("select id, watch, release_id, kind, version, event_at, title, url, summary, created "
                         "from watch_entries where watch = ? and id > ? order by id limit ?", [name, mark, limit]))


def record_success(db, name: str, channel: str, last_entry_id: int, at: str) -> None:
    with db.conn:
        db.execute("update watch_deliveries set last_entry_id = max(last_entry_id, ?), status = 'ok', attempts = 0, "
                   "last_error = null, last_attempt = ?, last_success = ? where watch = ? and channel = ?",
                   [last_entry_id, at, at, name, channel])


def record_failure(db, name: str, channel: str, attempts: int, error: str, at: str) -> None:
    """The channel failed this run after ``attempts`` tries: its entries stay pending."""
    with db.conn:
        db.execute("update watch_deliveries set status = 'failing', attempts = coalesce(attempts, 0) + ?, "
                   "last_error = ?, last_attempt = ? where watch = ? and channel = ?",
                   [attempts, error[:500], at, name, channel])


def digest_subject(name: str, entries: list[dict]) -> str:
    counts = {kind: sum(1 for e in entries if e["kind"] == kind) for kind in KINDS}
    return (f"pressarchive: {counts['new']} new, {counts['changed']} changed, "
            f"{counts['removed']} removed for {name}")


def digest_text(watch: Watch, entries: list[dict]) -> str:
    """The body of an email digest: one block per entry, newest last (UTF-8 text)."""
    lines = [f"Watch {watch.name}: {watch.query}" + (f" ({watch.filters()})" if watch.filters() else ""), ""]
    for entry in entries:
        lines.append(f"[{entry['kind']}] {entry['title'] or '(no title)'}")
        lines.append(f"  {entry['url']}")
        lines.append(f"  {entry['event_at']}  (entry {entry['id']})")
        summary = entry["summary"] or ""
        if entry["kind"] == "changed":
            lines += [f"  {line}" for line in summary.splitlines()]
        elif summary:
            lines.append(f"  {summary}")
        lines.append("")
    return "\n".join(lines)


def webhook_payload(watch: Watch, entries: list[dict]) -> dict:
    """The JSON a webhook receives: the watch, and entries with their stable ``id`` (drop repeats by it)."""
    return {"watch": watch.name, "query": watch.query, "subject": digest_subject(watch.name, entries),
            "entries": entries}
