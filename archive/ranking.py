"""Exact BM25 ranking of the commonest words from cached postings, following a growing archive.

FTS5's ``bm25()`` costs about 1.5 µs a match (half of it reading the row's
length from ``releases_fts_docsize``): ranking "the", in 600,000 of a million
releases, took 0.65-1 s a query. The score of a row depends on few numbers:

    score = -sum over the query's phrases i of
            idf_i * f_i * (k1 + 1) / (f_i + k1 * (1 - b + b * D / avgdl))

with ``f_i`` the phrase's weighted count in the row (title x10, text x1, tags
x0), ``D`` the row's length in tokens (every column), ``avgdl`` the index's
total tokens over its rows, ``idf_i = log((N - n_i + 0.5) / (n_i + 0.5))``
(1e-6 when not positive) with ``n_i`` the rows the phrase matches (SQLite's
``fts5_aux.c``, k1 = 1.2, b = 0.75). So a phrase that matches many rows gets
a :class:`Postings` entry, its matching FTS rowids (sorted), ``f`` and ``D``;
a query that is an AND of such phrases is scored with NumPy in the same
floating-point operations, in the same order, as ``bm25()`` (the same doubles,
so the same best 50 and the same ties, newest first), in a few ms.

``f`` is not read from the index's binary format: an entry is built from one
``bm25()`` query over the phrase's matches (what a ranked query cost before),
inverted with the known ``D``, ``avgdl`` and ``idf`` and checked: the scores
recomputed from it must equal ``bm25()``'s bit for bit, or nothing is cached.

Following a crawl (the server reads an archive a crawl is writing): every
(re)indexing appends the release to ``release_facets`` (see
``archive.search_index``), so, like the plugin's facet arrays, the ranker
reads the log rows appended since it last looked, in the same read
transaction as the query: the changed releases leave the entries, and their
indexed values (the release row, or the pending old values, checked against
the index's fingerprint) are indexed in a private in-memory FTS5 table, where
the same inversion gives each entry its new rows. The rows and lengths of
every indexed release are kept too (12 bytes a release) and must add up to
the index's own row and token counts (its averages record) after every
refresh: anything the log did not say (a release deleted) starts the ranker
afresh. Too many changes at once (a rebuild) do too.

Queries with OR, NOT, a prefix, or a phrase matching fewer than
:data:`CACHE_MIN_MATCHES` releases are left to FTS5 (they are not slow there).
Entries are kept least recently used first, up to :data:`CACHE_MAX_BYTES`.
"""

from __future__ import annotations

import collections
import itertools
import math
import re
import sqlite3
import threading
import time

import numpy as np

from archive.search_index import (
    FACETS_LOG_KEY,
    FACETS_TABLE,
    FTS_TABLE,
    ID_BITS,
    PENDING_TABLE,
    ROWS_TABLE,
    index_values,
)
from archive.sql import chunks, marks

K1, B = 1.2, 0.75  # fts5_aux.c
WEIGHTS = (10.0, 1.0, 0.0)  # title, text, tags: the ranked search's bm25() arguments
# A phrase matching at least this many releases gets postings (below, FTS5's bm25() ranks a word
# in under ~15 ms at a million releases, 1.5 µs a match; a phrase of common words takes longer:
# FTS5 checks the positions of every release holding its words).
CACHE_MIN_MATCHES = 10_000
# Phrases found less common than that, remembered (not counted again) for this long; at most SMALL_MAX.
RECOUNT_SECONDS = 600.0
SMALL_MAX = 10_000
# Postings kept, least recently used dropped first: 16 bytes a match ("the" at a million
# releases, 600,625 matches: 9.6 MB).
CACHE_MAX_BYTES = 256 * 2**20
# More releases (re)indexed since the last look than this: start afresh (a rebuild, a bulk load).
# Following costs about 0.3 ms a changed release (its text indexed again in memory; 1,000
# changed releases with 6 phrases cached: 0.34 s).
DELTA_MAX = 2_000
# Loading the index's rows and building postings may run this long past the caller's time limit
# (at a million releases: about 1.3 s to load, 1-3 s to build "the"); it is paid once.
BUILD_SECONDS = 10.0
LOCK_WAIT = 0.25  # seconds a search waits for another one's loading or building, then FTS5 ranks it
DOCS_CHUNK = 200_000  # docsize rows read per query when loading (bounded group_concat)

PHRASE = r'"(?:[^"]|"")*"'
PLAIN_AND = re.compile(rf"\{{title text\}} : \(({PHRASE}(?: AND {PHRASE})*)\)")


def plain_phrases(match: str) -> list[str] | None:
    """The phrases of a MATCH made by ``user_match`` that is an AND of plain phrases (no OR,
    NOT or prefix), in FTS5's order; None for anything else."""
    m = PLAIN_AND.fullmatch(match)
    return re.findall(PHRASE, m.group(1)) if m else None


def phrase_match(phrase: str) -> str:
    return f"{{title text}} : ({phrase})"


def varints(data: bytes) -> list[int]:
    """SQLite varints (FTS5's averages record, a docsize row)."""
    values, i = [], 0
    while i < len(data):
        value = 0
        for n in range(9):
            byte = data[i]
            i += 1
            if n == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        values.append(value)
    return values


def decode_sizes(data: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row lengths (sum of the column sizes) from concatenated docsize blobs, vectorised.

    Varints of up to 4 bytes (a column of 268 million tokens); longer ones are decoded one by one.
    """
    if not len(lengths):
        return np.zeros(0, np.int64)
    ends = (data & 0x80) == 0
    last = np.flatnonzero(ends)
    starts = np.concatenate(([0], last[:-1] + 1))
    if (len(last) and last[-1] != len(data) - 1) or np.any(last - starts > 3):
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        raw = data.tobytes()
        return np.array([sum(varints(raw[a:b])) for a, b in itertools.pairwise(offsets)], np.int64)
    which = np.repeat(np.arange(len(last)), last - starts + 1)
    shift = 7 * (last[which] - np.arange(len(data)))
    values = np.add.reduceat((data & 0x7F).astype(np.int64) << shift, starts)
    row_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    rows = np.searchsorted(row_starts, starts, side="right") - 1
    return np.bincount(rows, weights=values, minlength=len(lengths)).astype(np.int64)


def idf(n_rows: int, n_hit: int) -> float:
    value = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
    return value if value > 0.0 else 1e-6


def term_score(freq, length, idf_value: float, avgdl: float):
    """One phrase's part of bm25(), in fts5_aux.c's operations and order."""
    return idf_value * ((freq * (K1 + 1.0)) / (freq + K1 * ((1 - B) + B * length / avgdl)))


def invert(scores: np.ndarray, length: np.ndarray, idf_value: float, avgdl: float) -> np.ndarray | None:
    """The weighted counts ``f`` behind one-phrase bm25() scores; None unless they give the
    scores back exactly."""
    g = -scores / idf_value
    k = K1 * ((1 - B) + B * length / avgdl)
    freq = np.rint(g * k / (K1 + 1.0 - g))
    if len(freq) and not np.array_equal(-1.0 * (0.0 + term_score(freq, length, idf_value, avgdl)), scores):
        return None
    return freq


class Postings:
    """One phrase's matches: FTS rowids (sorted), weighted counts, row lengths."""

    __slots__ = ("freq", "length", "rowids")

    def __init__(self, rowids: np.ndarray, freq: np.ndarray, length: np.ndarray):
        if len(rowids) > 1 and not np.all(rowids[1:] > rowids[:-1]):
            order = np.argsort(rowids, kind="stable")
            rowids, freq, length = rowids[order], freq[order], length[order]
        self.rowids = rowids
        self.freq = freq.astype(np.float32)  # (whole numbers: exact up to 2**24)
        self.length = length.astype(np.int32)

    @property
    def nbytes(self) -> int:
        return self.rowids.nbytes + self.freq.nbytes + self.length.nbytes

    def without(self, release_ids: np.ndarray) -> Postings:
        keep = ~np.isin(self.rowids % ID_BITS, release_ids)
        return Postings(self.rowids[keep], self.freq[keep], self.length[keep])

    def plus(self, rowids: np.ndarray, freq: np.ndarray, length: np.ndarray) -> Postings:
        return Postings(np.concatenate([self.rowids, rowids]), np.concatenate([self.freq, freq]),
                        np.concatenate([self.length, length]))


class Stale(Exception):
    """The read transaction sees an older archive than the ranker already follows."""


class Unusable(Exception):
    """The ranker cannot answer exactly (an index it cannot read or follow): FTS5 ranks instead."""


def scored(postings: list[Postings], n_rows: int, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(rowids, bm25() scores) of every row matching the AND of these phrases (the query's order)."""
    avgdl = float(n_tokens) / float(n_rows)
    smallest = min(range(len(postings)), key=lambda i: len(postings[i].rowids))
    rowids = postings[smallest].rowids
    where: list = [None] * len(postings)
    where[smallest] = np.arange(len(rowids))
    for i, entry in enumerate(postings):
        if i == smallest:
            continue
        at = np.searchsorted(entry.rowids, rowids)
        at[at == len(entry.rowids)] = 0
        hit = entry.rowids[at] == rowids if len(entry.rowids) else np.zeros(len(rowids), bool)
        rowids, at = rowids[hit], at[hit]
        where = [w[hit] if w is not None else None for w in where]
        where[i] = at
    score = np.zeros(len(rowids))
    for entry, at in zip(postings, where):
        score = score + term_score(entry.freq[at].astype(np.float64), entry.length[at].astype(np.float64),
                                   idf(n_rows, len(entry.rowids)), avgdl)
    return rowids, -1.0 * score


def top_rowids(postings: list[Postings], n_rows: int, n_tokens: int, top: int) -> list[int]:
    """The ``top`` best rows of the AND of these phrases, as
    ``order by bm25(...), rowid desc limit top`` lists them."""
    rowids, score = scored(postings, n_rows, n_tokens)
    if len(score) > top:
        cut = np.partition(score, top - 1)[top - 1]
        near = np.flatnonzero(score <= cut)
        rowids, score = rowids[near], score[near]
    order = np.lexsort((-rowids, score))
    return rowids[order[:top]].tolist()


class Ranker:
    """The postings of one archive's common phrases, and the rows and lengths of its index."""

    def __init__(self, min_matches: int = CACHE_MIN_MATCHES, max_bytes: int = CACHE_MAX_BYTES):
        self.min_matches, self.max_bytes = min_matches, max_bytes
        self.lock = threading.Lock()
        self.entries: collections.OrderedDict[str, Postings] = collections.OrderedDict()
        self.log = self.seq = None  # the release_facets log and position the arrays follow
        self.rowids = self.lengths = None  # every indexed row (sorted) and its length
        self.n_tokens = 0
        self.tokenize = None
        self.small: collections.OrderedDict[str, float] = collections.OrderedDict()  # phrase -> when counted
        self.lock_small = threading.Lock()
        self.failed = None  # the stamp of an index the ranker could not follow (FTS5 ranks)
        self.builds = collections.Counter()  # (phrase built, refreshed, reset): for tests

    # --- the archive's state -------------------------------------------------------------

    @staticmethod
    def _stamp(conn) -> tuple:
        """(log id, last log seq, rows, tokens) of the snapshot ``conn`` reads."""
        row = conn.execute("select value from _pressarchive where key = ?", [FACETS_LOG_KEY]).fetchone()
        seq = conn.execute(f"select max(seq) from {FACETS_TABLE}").fetchone()[0] or 0
        block = conn.execute(f"select block from {FTS_TABLE}_data where id = 1").fetchone()
        averages = varints(bytes(block[0])) if block else [0]
        return row[0] if row else None, seq, averages[0], sum(averages[1:])

    def _load(self, conn, stamp) -> None:
        """Every indexed row and its length (a million in about half a second); postings dropped."""
        ids, sizes, after = [], [], -(2**63)
        while True:
            joined, hexed, lengths, last = conn.execute(
                f"select group_concat(id), group_concat(hex(sz), ''), group_concat(length(sz)), max(id) "
                f"from (select id, sz from {FTS_TABLE}_docsize where id > ? order by id limit {DOCS_CHUNK})",
                [after]).fetchone()
            if joined is None:
                break
            part = np.array(joined.split(","), dtype=np.int64)
            lengths = np.array(lengths.split(","), dtype=np.int64)
            ids.append(part)
            sizes.append(decode_sizes(np.frombuffer(bytes.fromhex(hexed), np.uint8), lengths))
            after = last
        self.rowids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        self.lengths = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        self.entries.clear()
        self.log, self.seq = stamp[0], stamp[1]
        self.builds["reset"] += 1
        self._check(stamp)

    def _check(self, stamp) -> None:
        self.n_tokens = int(self.lengths.sum())
        if len(self.rowids) != stamp[2] or self.n_tokens != stamp[3]:
            raise Unusable("the index's rows or lengths differ from its averages record")

    def _refresh(self, conn, stamp, may_load: bool = True) -> None:
        """Bring the rows, lengths and postings up to the snapshot's log position."""
        log, seq = stamp[0], stamp[1]
        if self.rowids is None or log != self.log:
            if not may_load:
                raise Stale()
            self._load(conn, stamp)
            return
        if seq < self.seq:
            raise Stale()
        if seq == self.seq:
            if len(self.rowids) != stamp[2] or self.n_tokens != stamp[3]:
                if not may_load:
                    raise Stale()
                self._load(conn, stamp)  # the index changed without a log row (a deleted release)
            return
        changed = [r[0] for r in conn.execute(
            f"select distinct release_id from {FACETS_TABLE} where seq > ? and seq <= ? limit ?",
            [self.seq, seq, DELTA_MAX + 1])]
        if len(changed) > DELTA_MAX:
            if not may_load:
                raise Stale()
            self._load(conn, stamp)
            return
        try:
            self._apply(conn, np.array(sorted(changed), dtype=np.int64))
            self.seq = seq
            self._check(stamp)
        except Unusable:
            if not may_load:
                raise Stale() from None
            self._load(conn, stamp)
        self.builds["refresh"] += 1

    def _apply(self, conn, changed: np.ndarray) -> None:
        rows = []  # (release id, fts rowid, fingerprint) of the changed releases still indexed
        for part in chunks(changed.tolist()):
            rows += conn.execute(f"select release_id, fts_rowid, fingerprint from {ROWS_TABLE} "
                                 f"where release_id in ({marks(part)})", part).fetchall()
        new = np.array(sorted(r[1] for r in rows), dtype=np.int64)
        sizes = {}
        for part in chunks(new.tolist()):
            for rowid, blob in conn.execute(f"select id, sz from {FTS_TABLE}_docsize "
                                            f"where id in ({marks(part)})", part):
                sizes[rowid] = sum(varints(bytes(blob)))
        if len(sizes) != len(new):
            raise Unusable("an indexed release has no length")
        keep = ~np.isin(self.rowids % ID_BITS, changed)
        lengths = np.array([sizes[r] for r in new.tolist()], dtype=np.int64)
        rowids = np.concatenate([self.rowids[keep], new])
        order = np.argsort(rowids, kind="stable")
        self.rowids, self.lengths = rowids[order], np.concatenate([self.lengths[keep], lengths])[order]
        if self.entries:
            matches = self._delta_matches(conn, rows, list(self.entries))
            for phrase, (rowids, freq) in matches.items():
                length = self.lengths[np.searchsorted(self.rowids, rowids)]
                self.entries[phrase] = self.entries[phrase].without(changed).plus(rowids, freq, length)

    def _delta_matches(self, conn, rows, phrases) -> dict:
        """Each phrase's (rowids, weighted counts) among the changed releases, from their indexed
        values put into a private FTS5 table (the index is contentless)."""
        by_id = {r[0]: r for r in rows}
        values = {}
        for part in chunks(by_id):
            for rid, title, text in conn.execute(
                    f"select id, title, text from releases where id in ({marks(part)})", part):
                values[rid] = {"title": title, "text": text}
            for rid, title, text in conn.execute(  # not yet re-indexed: the index holds the old values
                    f"select release_id, title, text from {PENDING_TABLE} where release_id in ({marks(part)})",
                    part):
                values[rid] = {"title": title, "text": text}
        scratch = sqlite3.connect(":memory:")
        try:
            if self.tokenize is None:
                sql = conn.execute("select sql from sqlite_master where name = ?", [FTS_TABLE]).fetchone()[0]
                m = re.search(r"tokenize\s*=\s*('(?:[^']|'')*')", sql)
                self.tokenize = f", tokenize={m.group(1)}" if m else ""
            scratch.execute(f"create virtual table d using fts5(title, text, tags, columnsize=1{self.tokenize})")
            inserts = []
            for rid, (_, rowid, fingerprint) in by_id.items():
                if rid not in values:
                    raise Unusable("an indexed release has no row")
                indexed, check = index_values(values[rid])
                if check != fingerprint:
                    raise Unusable("a release's indexed values are not known")
                inserts.append((rowid, *indexed))
            if not inserts:  # every changed release left the index
                return {phrase: (np.zeros(0, np.int64), np.zeros(0)) for phrase in phrases}
            scratch.executemany("insert into d (rowid, title, text, tags) values (?, ?, ?, ?)", inserts)
            scratch.commit()  # (FTS5 writes its row and token counts when the transaction ends)
            n_rows, n_tokens = self._stamp_of(scratch)
            lengths = {rowid: sum(varints(bytes(blob))) for rowid, blob in scratch.execute("select id, sz from d_docsize")}
            weights = ", ".join(str(w) for w in WEIGHTS)
            out = {}
            for phrase in phrases:
                found = scratch.execute(f"select rowid, bm25(d, {weights}) from d where d match ?",
                                        [phrase_match(phrase)]).fetchall()
                rowids = np.array([r[0] for r in found], dtype=np.int64)
                freq = np.zeros(0)
                if found:
                    length = np.array([lengths[r] for r in rowids.tolist()], dtype=np.float64)
                    freq = invert(np.array([r[1] for r in found]), length, idf(n_rows, len(found)),
                                  float(n_tokens) / float(n_rows))
                    if freq is None:
                        raise Unusable("bm25() scores the ranker cannot reproduce")
                out[phrase] = (rowids, freq)
            return out
        finally:
            scratch.close()

    @staticmethod
    def _stamp_of(conn) -> tuple[int, int]:
        averages = varints(bytes(conn.execute("select block from d_data where id = 1").fetchone()[0]))
        return averages[0], sum(averages[1:])

    # --- postings ----------------------------------------------------------------------

    def _build(self, conn, phrase: str, stamp) -> Postings:
        """A phrase's postings from one bm25() query over its matches, inverted and checked."""
        weights = ", ".join(str(w) for w in WEIGHTS)
        rows = conn.execute(f"select rowid, bm25({FTS_TABLE}, {weights}) from {FTS_TABLE} "
                            f"where {FTS_TABLE} match ?", [phrase_match(phrase)]).fetchall()
        rowids = np.array([r[0] for r in rows], dtype=np.int64)
        scores = np.array([r[1] for r in rows], dtype=np.float64)
        at = np.searchsorted(self.rowids, rowids)
        if len(rowids) and (at.max() >= len(self.rowids) or not np.array_equal(self.rowids[at], rowids)):
            raise Unusable("a match without a length")
        length = self.lengths[at]
        freq = invert(scores, length.astype(np.float64), idf(stamp[2], len(rows)),
                      float(stamp[3]) / float(stamp[2]))
        if freq is None:
            raise Unusable("bm25() scores the ranker cannot reproduce")
        self.builds[phrase] += 1
        return Postings(rowids, freq, length)

    def _common(self, conn, phrase: str) -> bool:
        """Whether the phrase matches at least ``min_matches`` releases (counted up to there).

        A phrase found less common is not counted again for :data:`RECOUNT_SECONDS` (counting a
        phrase of two words checks their positions in every release holding both: as long as
        ranking it). Only the speed depends on it: both ways rank the same.
        """
        now = time.monotonic()
        with self.lock_small:
            seen = self.small.get(phrase)
            if seen is not None and now - seen < RECOUNT_SECONDS:
                self.small.move_to_end(phrase)
                return False
        n = conn.execute(f"select count(*) from (select 1 from {FTS_TABLE} where {FTS_TABLE} match ? "
                         f"limit {int(self.min_matches)})", [phrase_match(phrase)]).fetchone()[0]
        if n >= self.min_matches:
            return True
        with self.lock_small:
            self.small[phrase] = now
            self.small.move_to_end(phrase)
            while len(self.small) > SMALL_MAX:
                self.small.popitem(last=False)
        return False

    def _evict(self, keep: set) -> None:
        total = sum(e.nbytes for e in self.entries.values())
        for phrase in list(self.entries):
            if total <= self.max_bytes:
                break
            if phrase not in keep:
                total -= self.entries.pop(phrase).nbytes

    def best(self, conn, match: str, top: int, transaction: bool = True, build: bool = True,
             deadline: float | None = None) -> list[int] | None:
        """FTS rowids of the ``top`` best matches of ``match`` (best first, as bm25() orders them),
        or None when this query is FTS5's to rank (see the module docstring).

        ``transaction``: open a read transaction on ``conn`` (False when called inside one of its
        statements). ``build``: load the index's rows and build missing postings (False: use what
        is cached, or None). ``deadline`` (``time.perf_counter()``): the caller's time limit on
        ``conn``; loading and building may go on to :data:`BUILD_SECONDS` past it (their cost
        is the archive's, paid once), then the limit is set back.
        """
        phrases = plain_phrases(match)
        if not phrases:
            return None
        missing = [p for p in phrases if p not in self.entries]
        if missing and (not build or not all(self._common(conn, p) for p in missing)):
            return None  # (a phrase matching few releases: FTS5 ranks it fast)
        if not self.lock.acquire(timeout=LOCK_WAIT):
            return None  # another search is building: FTS5 ranks this one
        try:
            own = transaction and not conn.in_transaction
            if own:
                conn.execute("begin")
            try:
                stamp = self._stamp(conn)
                if not stamp[2] or stamp == self.failed:
                    return None
                if deadline is not None:
                    _limit(conn, max(deadline, time.perf_counter() + BUILD_SECONDS))
                try:
                    self._refresh(conn, stamp, build)
                    for phrase in phrases:
                        if phrase not in self.entries:
                            self.entries[phrase] = self._build(conn, phrase, stamp)
                except Stale:
                    return None
                except Unusable:
                    self.failed, self.rowids = stamp, None
                    self.entries.clear()
                    return None
                finally:
                    if deadline is not None:
                        _limit(conn, deadline)
                postings = []
                for phrase in phrases:
                    self.entries.move_to_end(phrase)
                    postings.append(self.entries[phrase])
                self._evict(set(phrases))
                n_rows, n_tokens = len(self.rowids), self.n_tokens
            finally:
                if own:
                    conn.execute("commit")
        finally:
            self.lock.release()
        return top_rowids(postings, n_rows, n_tokens, top)


def _limit(conn, until: float) -> None:
    """Interrupt ``conn``'s statements at ``until``, as the plugin's time limits do."""
    conn.set_progress_handler(lambda: time.perf_counter() >= until, 1000)


RANKERS: dict[str, Ranker] = {}
RANKERS_LOCK = threading.Lock()


def ranker_for(key: str) -> Ranker:
    with RANKERS_LOCK:
        if key not in RANKERS:
            RANKERS[key] = Ranker(CACHE_MIN_MATCHES, CACHE_MAX_BYTES)
        return RANKERS[key]
