"""The archive's one writer: items in, rows, versions, index entries and run records out.

:class:`ArchiveWriter` is used by the crawl's ``StorePipeline`` (pipelines/store.py) and by
``pressarchive ingest`` (distributed crawls). It upserts by normalised URL through
:mod:`archive.history`: a new release gets version 1; a changed one a new version with a
diff; an unchanged one only moves ``last_seen``. Recheck outcomes (304, gone) become
``last_seen`` moves or removal events; documents linked from a release go to
``release_files``. Writes are batched in transactions and the full-text index is updated in
the same transaction. :meth:`ArchiveWriter.finish_run` closes a source's ``crawl_runs`` row
and saves the HTTP validators of its feeds, sitemaps and listings for the next conditional
GET, but only when its run finished without errors (otherwise the next run fetches them
again in full, so nothing missed stays missed). :class:`Preparer` is the database-free half
(items to rows), which bulk loaders run in worker processes.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from archive import families, history, search_index, translations
from archive.clock import parse_iso
from archive.items import EntryFetch, ReleaseCheck, ReleaseItem
from archive.schema import open_archive
from archive.sql import chunks, marks
from archive.statement_type import classify
from archive.urls import normalise_url, scheme_twin

logger = logging.getLogger(__name__)

CLEANED_FIELDS = (
    "title", "published", "date_source", "language", "text", "word_count", "content_hash",
    "canonical_url", "encoding", "extractor", "etag", "last_modified", "text_status", "pages",
)
# Counted by the crawl (stats) and by the writer; together they make a crawl_runs row. The
# last two are not counts but the spider's drift verdict and sample (text, see
# crawler/discovery/common.py LinkTally), which it starts at None so that a run without drift stores NULL.
RUN_COUNTS = ("requests", "new", "changed", "unchanged", "empty", "errors", "removed", "restored",
              "not_modified", "rechecked", "discovered", "warc_bytes", "refused", "warnings", "not_stored",
              "attachments_skipped", "links_seen", "links_unmatched", "drift", "unmatched_sample")


# The writer's own automatic checkpoint, a fallback (see Checkpointer): above the WAL one bulk
# transaction leaves (about 400 MB for 20,000 releases at a million), or the writer would copy
# and fsync every commit itself instead of the background thread.
WAL_CHECKPOINT_BYTES = 2**30
CHECKPOINT_INTERVAL = 1.0  # seconds: the background checkpointer runs at most this often
# Bulk loads: from this many new releases in one batch, the search index's insert trigger is
# dropped and re-created around their INSERT (search_index.insert_trigger_paused; a trigger makes
# SQLite copy every changed page into a statement journal, row after row: 3x slower). That is a
# schema change, and a reader opening the search index meanwhile can fail ("vtable constructor
# failed"), so crawls (ARCHIVE_BATCH_SIZE) and `pressarchive ingest` (200) stay below it.
PAUSE_TRIGGER_ROWS = 1000


class Checkpointer(threading.Thread):
    """Copies committed WAL frames into the archive file from a thread of its own.

    A checkpoint copies every page written since the last one and fsyncs the
    WAL and the file: at a million releases, a tenth of a bulk writer's time.
    SQLite lets another connection checkpoint while the writer goes on writing
    (readers are not blocked either), and Python's sqlite3 releases the GIL
    meanwhile, so here it runs on the other core. The writer nudges it after
    each commit; it runs a PASSIVE checkpoint (never waits for a lock) at most
    every CHECKPOINT_INTERVAL seconds. Once a checkpoint has copied the whole
    WAL, the writer's next transaction starts it again from the beginning, so
    it stays about one batch long. Should this thread fall behind or fail, the
    writer's own automatic checkpoint (wal_autocheckpoint) still bounds the WAL.
    """

    def __init__(self, path):
        super().__init__(name="pressarchive-checkpoint", daemon=True)
        self.path = str(path)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.checkpoints = 0  # completed, for tests and logs

    def nudge(self):
        self.wake.set()

    def run(self):
        try:
            conn = sqlite3.connect(self.path, timeout=0)
        except sqlite3.Error as exc:
            logger.warning("archive %s: no background checkpoints (%s); the writer checkpoints itself", self.path, exc)
            return
        try:
            while not self.stopping.is_set():
                self.wake.wait()
                self.wake.clear()
                if self.stopping.is_set():
                    break
                started = time.monotonic()
                try:
                    conn.execute("pragma wal_checkpoint(passive)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # e.g. another checkpoint running: the next nudge retries
                    logger.debug("archive %s: background checkpoint skipped: %s", self.path, exc)
                self.stopping.wait(max(0.0, CHECKPOINT_INTERVAL - (time.monotonic() - started)))
        finally:
            conn.close()

    def stop(self):
        self.stopping.set()
        self.wake.set()
        self.join()


def run_status(reason: str, entry_ok: int, errors: int) -> str:
    if reason != "finished":
        return "interrupted"
    if entry_ok == 0:
        return "failed"
    return "partial" if errors else "ok"


class PreparedRelease(NamedTuple):
    index: tuple  # search-index values (search_index.index_values)
    new_row: tuple  # should the archive not know it yet: its whole new row, in Prepared.columns order
    first_version: tuple  # ... and its version 1 row without the release id
    alternates: tuple = ()  # (url, hreflang, evidence) of the other language versions its page declares
    signed: object = None  # archive.families.Signed of its text, made by the cleaning worker (or None)


class Prepared:
    """What :meth:`Preparer.prepare` made for a batch: per item (same order), a
    :class:`PreparedRelease` for a release, else None. Picklable, so it can be made in
    another process; it holds everything the writer needs to store those releases
    (:meth:`ArchiveWriter.write_prepared`)."""

    def __init__(self, count: int):
        self.rows: list[PreparedRelease | None] = [None] * count
        self.columns: tuple[str, ...] | None = None  # of every new_row
        self.set_columns = 0  # the first set_columns of them are the ones an item sets

    def values(self, n: int) -> dict:
        """The ``releases`` columns item ``n`` sets (what an update of a known release writes)."""
        return dict(zip(self.columns[: self.set_columns], self.rows[n].new_row))

    def value(self, n: int, column: str):
        return self.rows[n].new_row[self.columns.index(column)]


class Preparer:
    """The database-free half of the writer: turns cleaned items into rows.

    :class:`ArchiveWriter` is one; bulk loaders make their own in worker
    processes (same ``sources`` and ``schedule``) and pass what
    :meth:`prepare` returns to :meth:`ArchiveWriter.write`.
    """

    def __init__(self, sources=None, schedule=history.RECHECK_HOURS):
        self.sources = sources or {}  # id -> Source, for country/kind of new releases
        self.schedule = schedule

    def prepare(self, items) -> Prepared:
        """The Python side of :meth:`write` for a batch: the row each release sets and its
        search-index values. Needs no database (only the sources and schedule), so a bulk
        loader can run it in worker processes and hand the result to :meth:`write`."""
        prepared = Prepared(len(items))
        for n, item in enumerate(items):
            if isinstance(item, ReleaseItem) and not item.parent_url:
                values = self._release_values(item)
                first = self._new_release(values)
                if prepared.columns is None:
                    prepared.columns, prepared.set_columns = tuple(first), len(values)
                prepared.rows[n] = PreparedRelease(
                    search_index.index_values(dict(values, search_form=item.search_form)),
                    tuple(first.values()), history.first_version_row(first), self._alternates(item), item.minhash)
        return prepared

    def _alternates(self, item: ReleaseItem) -> tuple:
        """The page's declared other versions as ``release_alternates`` values, their addresses
        keyed as the archive keys releases (the source's host aliases applied, normalised)."""
        source = self.sources.get(item.source_id)
        own = {item.url, scheme_twin(item.url)}
        found = {}
        for alternate in item.alternates or ():
            url = normalise_url(source.canonical(alternate["url"])) if source else alternate["url"]
            if url not in own and url not in found:
                found[url] = (url, alternate.get("hreflang"), alternate.get("evidence"))
        return tuple(found.values())

    def _new_release(self, values: dict) -> dict:
        """The row a release the archive has never seen starts with: ``values`` first, then the
        columns only a new release sets."""
        at = values["last_seen"]
        return history.new_release_row(values, at, parse_iso(at), self.schedule)

    @staticmethod
    def _warc_columns(item: ReleaseItem) -> dict:
        warc = item.warc or {}
        return {"warc_file": warc.get("file"), "warc_offset": warc.get("offset"), "warc_length": warc.get("length")}

    def _release_values(self, item: ReleaseItem) -> dict:
        """The ``releases`` columns an item sets."""
        values = {field: getattr(item, field) for field in CLEANED_FIELDS}
        values.update(self._warc_columns(item))
        source = self.sources.get(item.source_id)
        values.update(
            url=item.url,
            source_id=item.source_id,
            fetched_url=item.fetched_url,
            http_status=item.http_status,
            content_type=item.content_type,
            year=int(item.published[:4]) if item.published else None,
            summary=(item.hints or {}).get("summary"),
            country=source.country if source else None,
            kind=source.kind if source else None,
            statement_type=classify(item.url, item.title, (item.hints or {}).get("category"),
                                    source.statement_types if source else None),
            last_seen=item.fetched_at,
        )
        return values


# Room kept on the archive's disk for closing the run rows: a file of RESERVE_BYTES beside the
# archive (``archive.db.reserve``), removed when a run row cannot be closed because the disk is
# full (and when the writer closes). Without it a crawl that filled the disk could not even
# record that it failed: its crawl_runs rows would say "running" for ever.
RESERVE_BYTES = 256 * 1024


def make_reserve(db_path) -> Path | None:
    """Write the reserve file beside ``db_path``; None when there is no room even for it (or no file)."""
    if str(db_path) in ("", ":memory:"):
        return None
    path = Path(f"{db_path}.reserve")
    try:
        with open(path, "wb") as handle:
            handle.write(bytes(RESERVE_BYTES))
        return path
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def _disk_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL (Python 3.10's sqlite3 has no error codes: its message, "database or disk is full")."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


class ArchiveWriter(Preparer):
    """Writes items into one archive file; ``counts`` tallies outcomes per source."""

    def __init__(self, db_path, schedule=history.RECHECK_HOURS, sources=None, cache_mb: int = 16,
                 background_checkpoints: bool = True, max_bytes: int = 0):
        self.db = open_archive(db_path)
        if max_bytes:  # a write that would grow the file past it fails as on a full disk (SQLITE_FULL)
            page_size = self.db.execute("pragma page_size").fetchone()[0]
            self.db.execute(f"pragma max_page_count = {max(1, int(max_bytes) // page_size)}")
        # WAL with synchronous=NORMAL: a commit is not fsynced, only checkpoints are. A killed
        # crawl loses nothing (the WAL is in the OS's hands); a power cut can lose the last
        # batches, never corrupt the file, and the next run fetches those releases again.
        self.db.execute("pragma synchronous = normal")
        # Page cache: a crawl's small batches need little; bulk writers (ingest) pass more so that
        # indexes and FTS segments stay in memory.
        self.db.execute(f"pragma cache_size = -{int(cache_mb) * 1024}")
        # The WAL is copied into the file by a Checkpointer thread after commits. The writer's own
        # automatic checkpoint only steps in at WAL_CHECKPOINT_BYTES (instead of SQLite's 1,000
        # pages: fewer, larger copies and fsyncs; bulk writes a quarter faster). The WAL file keeps
        # its size until the writer closes (cutting it back after every checkpoint,
        # journal_size_limit, cost bulk writes a tenth).
        page_size = self.db.execute("pragma page_size").fetchone()[0]
        self.db.execute(f"pragma wal_autocheckpoint = {WAL_CHECKPOINT_BYTES // page_size}")
        search_index.ensure_search(self.db)
        self.checkpointer = None
        if background_checkpoints and self.db.execute("pragma journal_mode").fetchone()[0] == "wal":
            self.checkpointer = Checkpointer(db_path)
            self.checkpointer.start()
        Preparer.__init__(self, sources, schedule)
        self._in_transaction = False  # inside transaction()
        self._deferred: list = []  # index entries of new releases not yet added (see _index_deferred)
        self.counts: Counter = Counter()  # (source_id, outcome) -> n
        self._family_texts = families.Texts(self.db)  # lines and shingles kept between batches
        self.reserve = make_reserve(db_path)

    def release_reserve(self) -> bool:
        """Give the reserve's room back to the disk; False when there was none to give."""
        if self.reserve is None:
            return False
        with contextlib.suppress(OSError):
            self.reserve.unlink()
        self.reserve = None
        return True

    def _count(self, source_id, key):
        self.counts[(source_id, key)] += 1

    def start_runs(self, run_id, sources, started) -> dict:
        """A ``running`` crawl_runs row per source; returns source id -> row id."""
        rows = {}
        with self.db.atomic():
            for source in sources:
                self.db["sources"].upsert(source.as_row(), pk="id")
                cursor = self.db.execute(
                    "insert into crawl_runs (run_id, source_id, started, status) values (?, ?, ?, 'running')",
                    [run_id, source.id, started],
                )
                rows[source.id] = cursor.lastrowid
        return rows

    def write(self, items, prepared: Prepared | None = None) -> None:
        """Store a batch of ReleaseItem / ReleaseCheck in one transaction.

        Releases the archive has never seen (the bulk of a first crawl or a
        backfill) are inserted together, with their versions and index
        entries, by a few ``executemany`` calls; everything else goes through
        :func:`archive.history.apply_release` / ``apply_check`` one by one,
        in the order received. ``prepared``: :meth:`prepare` of these items.
        """
        items = list(items)
        if prepared is None or len(prepared.rows) != len(items):
            prepared = self.prepare(items)
        if self._in_transaction:
            self._write(items, prepared)
            return
        counts = self.counts.copy()
        try:
            with self.db.atomic():
                self._write(items, prepared)
        except BaseException:
            # Nothing of the batch is stored (SQLite rolled it back, or the COMMIT itself failed,
            # e.g. "database or disk is full"): nothing of it may be counted as stored either.
            self.counts, self._deferred = counts, []
            self._rollback()
            raise
        if self.checkpointer:
            self.checkpointer.nudge()

    def _rollback(self):
        """End a transaction a failed COMMIT may have left open (and forget what it read: its
        release ids may be given to other releases)."""
        self._family_texts = families.Texts(self.db)
        if self.db.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.conn.execute("rollback")

    def _write(self, items, prepared: Prepared) -> None:
        if prepared.columns is not None:  # what the cleaning workers signed, for linking
            digest_at = prepared.columns.index("content_hash")
            for row in prepared.rows:
                if row is not None and row.signed is not None:
                    self._family_texts.offer(row.new_row[digest_at], row.signed)
        touched = []
        for n in self._insert_new(prepared):
            item = items[n]
            if prepared.rows[n] is not None:  # a release (the item itself is not needed)
                outcome, release_id, restored = self._store_release(prepared.values(n))
                source_id = prepared.value(n, "source_id")
            elif isinstance(item, ReleaseItem):
                self._store_attachment(item)
                continue
            else:
                outcome, release_id, restored = self._store_check(item)
                source_id = item.source_id
            if outcome in ("new", "changed", "unchanged", "removed"):
                self._count(source_id, outcome)
            if restored:
                self._count(source_id, "restored")
            if outcome in ("new", "changed"):
                touched.append(release_id)
        declared = self._store_alternates(prepared)  # (before new and changed releases are linked)
        if touched or not self._in_transaction:
            self._index_deferred()  # index_releases must see every entry made so far
        if touched:
            search_index.index_releases(self.db, touched)
            # reposts, translations and families of what changed
            families.link_new(self.db, touched, texts=self._family_texts)
        if declared:
            translations.link_new(self.db, declared)

    @contextlib.contextmanager
    def transaction(self):
        """One transaction around several :meth:`write` / :meth:`write_prepared` calls, for
        bulk loaders: fewer, larger commits write each index page once per commit instead of
        once per batch. The writes inside open no savepoints (FTS5 writes its pending tokens
        out at every savepoint, as a segment to merge later), and the index entries of new
        releases are added at the end, in one rowid order (FTS5 also writes its pending
        tokens out whenever a rowid is lower than the one before). An error rolls back all."""
        if self._in_transaction:
            raise RuntimeError("ArchiveWriter.transaction() does not nest")
        counts = self.counts.copy()
        try:
            with self.db.atomic():
                self._in_transaction = True
                try:
                    yield self
                    self._index_deferred()
                finally:
                    self._in_transaction = False
                    self._deferred = []
        except BaseException:
            self.counts = counts  # nothing of the transaction is stored (see write)
            self._rollback()
            raise
        if self.checkpointer:
            self.checkpointer.nudge()

    def _index_deferred(self):
        """Add the index entries of the releases _insert_new stored, in one rowid order."""
        if self._deferred:
            entries, self._deferred = self._deferred, []
            search_index.insert_prepared(self.db, entries)
            # the new releases' families
            families.link_new(self.db, [entry[1] for entry in entries], texts=self._family_texts)

    def write_prepared(self, prepared: Prepared) -> None:
        """Store releases prepared elsewhere (:meth:`Preparer.prepare` in a worker process),
        in one transaction, as :meth:`write` would store the items they were made from. A
        bulk loader ships only ``prepared``: it holds every column, so the items need not
        be pickled twice. Attachments and checks are not in a Prepared: use :meth:`write`."""
        if any(row is None for row in prepared.rows):
            raise ValueError("write_prepared takes releases only; store attachments and checks with write()")
        self.write([None] * len(prepared.rows), prepared)

    def _insert_new(self, prepared: Prepared) -> list[int]:
        """Insert the batch's new releases; return the positions left for the one-by-one path."""
        everything = list(range(len(prepared.rows)))
        if prepared.columns is None:
            return everything
        url_at = prepared.columns.index("url")
        candidates = {}  # url -> position of its first release
        for n, row in enumerate(prepared.rows):
            if row is not None and row.new_row[url_at] not in candidates:
                candidates[row.new_row[url_at]] = n
        if not candidates:
            return everything
        known = set(self._ids_by_url(list(candidates) + [scheme_twin(url) for url in candidates]))
        fresh, seen = [], set()
        for url, n in candidates.items():
            if url in known or scheme_twin(url) in known or scheme_twin(url) in seen:
                continue  # known, or its http/https twin is: the one-by-one path merges them
            seen.add(url)
            fresh.append(n)
        if not fresh:
            return everything
        rows = [prepared.rows[n] for n in fresh]
        # Ids given here (the writer is the only one: nobody else inserts meanwhile), so the
        # versions and index entries need no lookup of what SQLite chose.
        first_id = self.db.execute("select coalesce(max(id), 0) + 1 from releases").fetchone()[0]
        ids = range(first_id, first_id + len(rows))
        columns = ("id", *prepared.columns)
        paused = (search_index.insert_trigger_paused(self.db) if len(rows) >= PAUSE_TRIGGER_ROWS
                  else contextlib.nullcontext())
        with paused:  # these URLs are not in the archive: the insert trigger has nothing to save
            self.db.conn.executemany(
                f"insert into releases ({', '.join(f'[{c}]' for c in columns)}) "
                f"values ({', '.join('?' for _ in columns)})",
                [(i, *row.new_row) for i, row in zip(ids, rows)],
            )
        self.db.conn.executemany(history.VERSION_INSERT, [(i, *row.first_version) for i, row in zip(ids, rows)])
        published_at, source_at = prepared.columns.index("published"), prepared.columns.index("source_id")
        # Indexed when write() ends, or in a transaction() when it ends (see _index_deferred).
        self._deferred.extend(search_index.entry(i, row.new_row[published_at], row.index) for i, row in zip(ids, rows))
        for row in rows:
            self._count(row.new_row[source_at], "new")
        inserted = set(fresh)
        return [n for n in everything if n not in inserted]

    def _store_alternates(self, prepared: Prepared) -> list[int]:
        """Keep the other language versions the batch's pages declare (``release_alternates``;
        evidence is only added: a page that drops its hreflang keeps what it said before).
        New and changed releases are linked with the rest of their family (archive/families.py
        calls archive/translations.py); returns the ids of the others, unchanged releases
        whose page declares something new (a site that added hreflang), to be linked here."""
        unchanged = []
        url_at, seen_at = (prepared.columns.index("url"), prepared.columns.index("last_seen")) \
            if prepared.columns else (None, None)
        for row in prepared.rows:
            if row is None or not row.alternates:
                continue
            url = row.new_row[url_at]
            found = self.db.execute("select id, last_changed from releases where url in (?, ?) order by id limit 1",
                                    [url, scheme_twin(url)]).fetchone()
            if found is None:
                continue
            before = self.db.conn.total_changes
            self.db.conn.executemany(
                "insert or ignore into release_alternates (release_id, url, hreflang, evidence) values (?, ?, ?, ?)",
                [(found[0], *alternate) for alternate in row.alternates])
            # (a new or changed release's last_changed is this fetch: history.apply_release)
            if self.db.conn.total_changes != before and found[1] != row.new_row[seen_at]:
                unchanged.append(found[0])
        return unchanged

    def _ids_by_url(self, urls) -> dict[str, int]:
        """url -> id of the releases with these URLs (in chunks: SQLite limits bound parameters)."""
        ids = {}
        for chunk in chunks(urls):
            ids.update(self.db.execute(
                f"select url, id from releases where url in ({marks(chunk)})", chunk).fetchall())
        return ids

    def _store_attachment(self, item: ReleaseItem):
        """A document linked from a release page: kept in release_files, tied to its release."""
        parent = self.db.execute("select id from releases where url = ?", [item.parent_url]).fetchone()
        self.db["release_files"].upsert(
            dict(
                url=item.url, release_id=parent[0] if parent else None, parent_url=item.parent_url,
                source_id=item.source_id, title=item.title, text=item.text, text_status=item.text_status,
                pages=item.pages, content_type=item.content_type, content_hash=item.content_hash,
                fetched_at=item.fetched_at, **self._warc_columns(item),
            ),
            pk="url", alter=True,
        )
        self._count(item.source_id, "attachments")

    def _store_release(self, values: dict):
        was_removed = self._status(values["url"]) == "removed"
        outcome, release_id = history.apply_release(
            self.db, values, now=parse_iso(values["last_seen"]), schedule=self.schedule
        )
        if outcome == "changed":
            logger.info("source '%s': %s changed since it was archived (new version kept)",
                        values["source_id"], values["url"])
        return outcome, release_id, was_removed

    def _store_check(self, item: ReleaseCheck):
        outcome, release_id = history.apply_check(
            self.db, item.url, outcome=item.outcome, at=item.fetched_at, now=parse_iso(item.fetched_at),
            http_status=item.http_status, detail=item.detail, schedule=self.schedule,
        )
        if outcome == "removed":
            logger.warning("source '%s': %s was removed (%s); archived text kept", item.source_id, item.url, item.detail)
        restored = outcome == "restored"
        return ("unchanged" if restored else outcome), release_id, restored

    def _status(self, url):
        # under either scheme, as history.apply_release finds the row
        row = self.db.execute("select status from releases where url in (?, ?) order by id limit 1",
                              [url, scheme_twin(url)]).fetchone()
        return row[0] if row else None

    def finish_run(self, run_row: int, source_id: str, counts: dict, status: str, message: str | None,
                   finished: str, entry_fetches=()) -> None:
        """Close one crawl_runs row; save entry validators when the source's run was clean. On a
        full disk the reserve (:data:`RESERVE_BYTES`) is given back and the row closed with its room."""
        try:
            self._finish_run(run_row, counts, status, message, finished, entry_fetches)
        except sqlite3.Error as exc:
            self._rollback()
            if not (_disk_full(exc) and self.release_reserve()):
                raise
            self._finish_run(run_row, counts, status, message, finished, entry_fetches)
            logger.warning("source '%s': the archive's disk is full: the run was recorded in the room kept for it "
                           "(%s)", source_id, exc)
        logger.info(
            "source '%s': %s: %d requests, %d new, %d changed, %d unchanged, %d removed, %d without text, "
            "%d errors", source_id, status, counts["requests"], counts["new"], counts["changed"],
            counts["unchanged"], counts["removed"], counts["empty"], counts["errors"],
        )

    def _finish_run(self, run_row, counts, status, message, finished, entry_fetches) -> None:
        with self.db.atomic():
            # An attachment can be stored before its release's batch: tie them up now.
            self.db.execute(
                "update release_files set release_id = (select id from releases r where r.url = parent_url) "
                "where release_id is null"
            )
            self.db["crawl_runs"].update(run_row, dict(counts, finished=finished, status=status, message=message))
            if status == "ok":
                for fetch in entry_fetches:
                    self._save_validators(fetch)

    def _save_validators(self, fetch: EntryFetch):
        if fetch.http_status == 304:
            return  # the stored validators are still the right ones
        self.db["fetch_state"].upsert(
            {"url": fetch.url, "source_id": fetch.source_id, "role": fetch.role, "etag": fetch.etag,
             "last_modified": fetch.last_modified, "last_status": fetch.http_status,
             "last_fetched": fetch.fetched_at},
            pk="url",
        )

    def close(self):
        if self.checkpointer:
            self.checkpointer.stop()
            self.checkpointer = None
        self.db.close()
        self.release_reserve()
