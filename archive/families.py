"""Statement families: one statement in several places (reposts) and languages (translations).

A **repost** is a near-identical text on another page: a ministry's statement
republished by its embassies with their own header and footer, a changed first line
or an added sentence. Reposts are found by MinHash (datasketch's permutations) over
the *shingles* of the normalised text: runs of :data:`WORD_SHINGLE` words, or of
:data:`CJK_SHINGLE` characters in Chinese, Japanese and Korean text (which has no
spaces). Each release's :data:`NUM_PERM` MinHash values are cut into :data:`BANDS`
bands of :data:`ROWS`; the band hashes are kept in the archive as sorted segments
(:class:`BandIndex`, table ``minhash_segments``), so a new release finds its candidates
with BANDS binary searches however large the archive (two releases are candidates when they share a
band). Each candidate is then *verified* on the exact Jaccard similarity of the two
shingle sets: at least :data:`THRESHOLD` links them (relation ``repost``, score the
exact Jaccard, evidence ``minhash 0.81 (jaccard 0.84)``: the MinHash estimate and
the exact value).

Boilerplate. A long footer shared by every release of a site (contacts, "follow us",
a disclaimer) would make two unrelated releases of that site look alike. Before
shingling, a release loses the lines (paragraphs, normalised) that also occur in one
of the :data:`CONTEXT` releases of the same source just before it (by id): its own
header, footer and any template block are gone, whatever their length, while a
statement's own paragraphs stay. This needs no table of line counts (what costs is
writing rows with random keys: see benchmarks/families.py) and depends only on the
release and the releases of its source stored before it, so a crawl and
``pressarchive link --rebuild`` (which goes through the archive in id order) give the
same links. The first release of a source has nothing to compare with: its footer
stays, which can only lower its similarity to others. Texts with fewer than
:data:`MIN_SHINGLES` shingles left (a photo caption, a page that is all template)
are not linked as reposts. A band whose bucket already holds :data:`BUCKET_LIMIT`
releases only yields its newest ones (every copy of a statement found is enough: the
family is the union of its links).

Signing. The crawl's cleaning workers sign each text line by line (:func:`sign`: each
normalised line's :func:`line_key`, its shingles sorted by value, its MinHash values; shingles
do not cross lines), and the writer is offered what they made (:meth:`Texts.offer`): for each
release it drops the lines whose keys its context holds and takes the element-wise minimum of
the rest's values, which is exactly the MinHash of those lines' shingles, for a whole batch in
a few array operations (:meth:`Texts.own_lines`). A release nobody signed (``pressarchive
link``, re-extraction, a distributed crawl's items) is signed from its text in the writer,
with the same result. :data:`MINHASH_CONFIG` names the configuration; archive/schema.py drops
the band index made with another one.

Measured on benchmarks/families.py (100,000 synthetic releases, EN and ZH, planted
reposts with their own header/footer, a changed first line, an added sentence and an
edited one, translations, and near-misses sharing only a long footer), at THRESHOLD 0.45
with 12 bands of 2: precision 1.000 (9,213 links), recall 0.983 of 5,585 planted pairs,
0 of 4,646 near-misses and 0 of 1,386 translations linked; archive +6.1% (545 bytes a
release; 20 bands of 3 gave recall 0.982, 16 bands and 0.5 gave 0.950). The writer's
added cost is just within the issue's 20%: +121 to +123 us of CPU a release against
627-632 us without linking (19.3% and 19.5% in two runs), in the crawl's batches of 25 (see
the README).

Families. The releases joined by links (reposts and the translations of
archive/translations.py) form a family: ``families.id`` is the smallest release id
among its members (stable: when two families merge the smaller id stays), the first
copy is the member published first (then first seen, then smallest id), and each
member's ``family_members`` row holds its relation (``first``, ``repost``: reached
from the first copy through reposts only, or ``translation``), its similarity to the
first copy and, for a repost, the unified diff against it (archive/history.py).
``releases.family_id`` is NULL for a release without links.

:func:`link_new` runs in the crawl's writer for every batch's new and changed
releases (archive/writer.py), then archive/translations.py's ``link_new``;
:func:`rebuild` recomputes everything (``pressarchive link --rebuild``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import unicodedata
import uuid
import zlib
from typing import NamedTuple

import numpy as np

from archive.clock import now_iso
from archive.history import unified_diff
from archive.sql import chunks, marks

NUM_PERM = 24
BANDS = 12
# 2: a pair at Jaccard 0.45 is a candidate with p = 0.93, at 0.5 with p = 0.97, at 0.6 with p = 0.995 (20 bands
# of 3 gave 0.85, 0.93, 0.99 for 2.5 times the index rows: 12 of 2 have the better recall and the lower cost; the
# pairs they add below the threshold, at 0.3 with p = 0.68, are rare between texts without their boilerplate)
ROWS = NUM_PERM // BANDS
SEED = 23
WORD_SHINGLE = 3
CJK_SHINGLE = 4
THRESHOLD = 0.45  # exact Jaccard of the shingle sets (boilerplate removed)
# A candidate whose MinHash estimate is below this is not verified (its text is not read): at a true
# Jaccard of THRESHOLD the estimate of NUM_PERM values falls this low (5 equal values of 24 or fewer) with
# p = 0.004, at 0.5 with p = 0.0008.
PREFILTER = 0.25
MIN_SHINGLES = 12
CONTEXT = 5  # releases of the same source before this one whose lines are boilerplate
BUCKET_LIMIT = 50
# What the archive's band rows and stored values were made with (archive/schema.py drops them when it
# changes): a new configuration, shingling or hash must change this string.
MINHASH_CONFIG = f"perm={NUM_PERM} bands={BANDS}x{ROWS} seed={SEED} shingles={WORD_SHINGLE}w/{CJK_SHINGLE}c per-line"
KEY_BITS = 52  # of a line's key (the writer puts a release's number above them)
TEXTS_CACHED = 5000  # releases whose lines and shingles the writer keeps between batches
SIGNATURES_CACHED = 50_000  # releases whose stored MinHash values the writer keeps (about 10 MB)
RELATION = "repost"

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_HAS_CJK = re.compile(f"[{CJK}]")
_CJK_CHARS = _HAS_CJK
_CJK_TOKENS = re.compile(f"[{CJK}]|[^\\W_{CJK}]+")
# Punctuation and symbols around words ("statement," and "statement" are one word)
_PUNCTUATION = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»‘’“”–—…·•"})


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch's ``MinHash(num_perm, seed=seed, scheme="affine32")``, made as it
    makes them (h -> a * h + b mod 2**32, a odd): the values are datasketch's, without importing
    it (it imports scipy: most of a second at every cleaning worker's start)."""
    generator = np.random.RandomState(seed)
    a = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


_A, _B = _permutations(NUM_PERM, SEED)
_TOKEN_HASHES: dict[str, int] = {}  # token -> crc32: a cache, the vocabulary repeats
_MIX = np.uint64(0x9E3779B97F4A7C15)


# --- Text to shingles -------------------------------------------------------------------------

def normal_lines(text: str | None) -> list[str]:
    """The text's non-empty lines, Unicode-normalised, case-folded, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _line_tokens(lines: list[str]) -> list[list[str]]:
    """Each line's words, or each Chinese, Japanese or Korean character on its own when the
    text holds any."""
    if any(_HAS_CJK.search(line) for line in lines):
        return [_CJK_TOKENS.findall(line) for line in lines]
    return [line.translate(_PUNCTUATION).split() for line in lines]


def _token_hashes(words: list[str]) -> np.ndarray:
    cache = _TOKEN_HASHES
    if len(cache) > 2_000_000:
        cache.clear()
    out = list(map(cache.get, words))  # the vocabulary repeats: most words are known
    if None in out:
        for n, value in enumerate(out):
            if value is None:
                word = words[n]
                out[n] = cache[word] = zlib.crc32(word.encode("utf-8"))
    return np.array(out, dtype=np.uint64)


def shingle_size(words: list[str]) -> int:
    """CJK_SHINGLE characters for mostly-CJK text, else WORD_SHINGLE words."""
    singles = "".join(word for word in words[:200] if len(word) == 1)
    cjk = len(_CJK_CHARS.findall(singles))
    return CJK_SHINGLE if cjk * 2 > min(len(words), 200) else WORD_SHINGLE


def line_key(line: str) -> int:
    """A normalised line's key (KEY_BITS bits), the same in every process (a line of a release
    is boilerplate when one of its source's releases before it holds the same key)."""
    return int.from_bytes(hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest(), "little") >> (64 - KEY_BITS)


def _line_keys(lines: list[str]) -> np.ndarray:
    return np.fromiter(map(line_key, lines), dtype=np.uint64, count=len(lines))


def _held(keys: np.ndarray, lines: np.ndarray, contexts: list[list[np.ndarray]]) -> np.ndarray:
    """Whether each line of several releases is held by a release of its context: ``keys`` holds
    the releases' line keys one release after another (``lines`` of them each), ``contexts``
    the line keys of each one's context releases. At once for all: each (release, key) pair is
    one integer (the release's number above the key's KEY_BITS bits), looked up among the sorted
    pairs of the contexts."""
    most = 1 << (64 - KEY_BITS)
    if len(contexts) > most:
        split = int(lines[:most].sum())
        return np.concatenate((_held(keys[:split], lines[:most], contexts[:most]),
                               _held(keys[split:], lines[most:], contexts[most:])))
    sizes = np.fromiter((sum(map(len, held)) for held in contexts), dtype=np.int64, count=len(contexts))
    if not sizes.any():
        return np.zeros(len(keys), dtype=bool)
    releases = np.arange(len(contexts), dtype=np.uint64) << np.uint64(KEY_BITS)
    held = np.sort(np.repeat(releases, sizes) | np.concatenate([keys_of for held in contexts for keys_of in held]))
    pairs = np.repeat(releases, lines) | keys
    return held[np.minimum(np.searchsorted(held, pairs), len(held) - 1)] == pairs


def _line_shingles(lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The shingles of each line (shingles do not cross lines; a line shorter than a shingle
    is one): (32-bit values, distinct within a line, sorted by line then value; the line of
    each)."""
    per_line = _line_tokens(lines)
    words = [word for line in per_line for word in line]
    if not words:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.uint32)
    k = shingle_size(words)
    lengths = np.fromiter(map(len, per_line), dtype=np.int64, count=len(per_line))
    h = _token_hashes(words)
    line_of = np.repeat(np.arange(len(per_line), dtype=np.uint64), lengths)
    values, lines_of = [], []
    count = len(h) - k + 1
    if count > 0:
        combined = h[:count].copy()
        for j in range(1, k):
            combined = combined * _MIX + h[j : j + count]
        inside = line_of[:count] == line_of[k - 1 : k - 1 + count]
        values.append(combined[inside])
        lines_of.append(line_of[:count][inside])
    short = np.flatnonzero((lengths > 0) & (lengths < k))
    if len(short):
        ends = np.cumsum(lengths)
        for n in short:
            part = h[ends[n] - lengths[n] : ends[n]]
            combined = part[:1].copy()
            for j in range(1, len(part)):
                combined = combined * _MIX + part[j : j + 1]
            values.append(combined)
            lines_of.append(np.array([n], dtype=np.uint64))
    keyed = np.unique((np.concatenate(lines_of) << np.uint64(32)) | (np.concatenate(values) >> np.uint64(32)))
    return (keyed & np.uint64(0xFFFFFFFF)).astype(np.uint32), (keyed >> np.uint64(32)).astype(np.uint32)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique, without its cost on small arrays)."""
    values = np.sort(values)
    if len(values) > 1:
        keep = np.empty(len(values), dtype=bool)
        keep[0] = True
        np.not_equal(values[1:], values[:-1], out=keep[1:])
        values = values[keep]
    return values


def shingles(lines: list[str]) -> np.ndarray:
    """The sorted, distinct 32-bit hashes of the shingles of these lines."""
    return _distinct(_line_shingles(lines)[0])


def _permuted(hashes: np.ndarray) -> np.ndarray:
    """Each hash under each of the NUM_PERM permutations (one row per hash)."""
    hv = hashes.astype(np.uint32).reshape(-1, 1)
    hv = hv ^ (hv >> np.uint32(16))  # datasketch's pre-mix: the MurmurHash3 finalizer
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    hv = hv ^ (hv >> np.uint32(16))
    return hv * _A + _B


def signature(hashes: np.ndarray) -> np.ndarray:
    """MinHash values of a shingle set: what ``datasketch.MinHash.update_batch`` gives for these
    hash values (scheme affine32, hash function identity), computed on the array at once."""
    return _permuted(hashes).min(axis=0)


class Signed(NamedTuple):
    """A text as the linker needs it, line by line (:func:`sign`): made by the crawl's cleaning
    workers (``ReleaseItem.minhash``), so that the single writer only takes, for each release,
    the lines that are not boilerplate and the element-wise minimum of their MinHash values
    (the MinHash of a union is the minimum of the parts')."""

    keys: np.ndarray  # uint64: line_key of each normalised line
    line_of: np.ndarray  # uint32: the line of each shingle
    shingles: np.ndarray  # uint32: each line's distinct shingles, in ascending order (then by line)
    values: np.ndarray  # uint32, one row of NUM_PERM per line: its MinHash (all 0xFFFFFFFF without shingles)


def sign(text: str | None) -> Signed:
    lines = normal_lines(text)
    keys = _line_keys(lines)
    hashes, line_of = _line_shingles(lines)
    values = np.full((len(lines), NUM_PERM), 0xFFFFFFFF, dtype=np.uint32)
    if len(hashes):
        starts = np.flatnonzero(np.r_[True, line_of[1:] != line_of[:-1]])
        values[line_of[starts]] = np.minimum.reduceat(_permuted(hashes), starts, axis=0)
    order = np.argsort(hashes, kind="stable")  # the writer takes a release's own distinct ones without a sort
    return Signed(keys, line_of[order], hashes[order], values)


def band_hashes(values: np.ndarray) -> np.ndarray:
    """One 47-bit hash per band of ROWS MinHash values (fits SQLite's INTEGER in 6 bytes): given
    several releases' values (one row each), a row of BANDS per release."""
    rows = values.astype(np.uint64).reshape(-1, BANDS, ROWS)
    combined = rows[:, :, 0].copy()
    for j in range(1, ROWS):
        combined = combined * _MIX + rows[:, :, j]
    combined ^= combined >> np.uint64(29)
    combined *= np.uint64(0xBF58476D1CE4E5B9)
    combined >>= np.uint64(17)
    return combined


def estimate(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / NUM_PERM


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted distinct hash arrays."""
    if not len(a) or not len(b):
        return 0.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


# --- Releases as the archive holds them -------------------------------------------------------

class Texts:
    """Releases' line keys, shingles and MinHash values, made when first needed.

    The writer keeps one across its batches (a release's context is mostly the releases of
    its source stored in the batches just before) and is offered (:meth:`offer`) what the cleaning
    workers signed; a release nobody signed is signed here from its text (``pressarchive
    link``, re-extraction, items from elsewhere: the same :func:`sign`, the same links).
    :meth:`forget` drops the releases whose text changed. At most :data:`TEXTS_CACHED`
    releases are kept, and each source's newest ids (:meth:`contexts`)."""

    def __init__(self, db):
        self.db = db
        self.rows: dict[int, tuple] = {}  # id -> (source_id, its lines' keys)
        self.signed: dict[int, Signed] = {}  # the batch's releases, signed
        self.offered: dict[str, Signed] = {}  # content_hash -> Signed by a cleaning worker
        self.before: dict[int, list[int]] = {}  # id -> its context (CONTEXT releases of its source before it)
        self.shingled: dict[int, tuple] = {}  # id -> (shingles, MinHash values or None) of its own lines
        # source -> (its newest release ids up to seen_up_to, ascending; whether they are all it has)
        self.newest: dict[str, tuple[list[int], bool]] = {}
        self.seen_up_to: int | None = None  # the largest release id the archive held when last looked at

    def offer(self, content_hash: str | None, signed: Signed | None) -> None:
        """What a cleaning worker signed, for the release with this content (taken when linked)."""
        if content_hash and signed is not None:
            if len(self.offered) >= 4 * TEXTS_CACHED:  # never taken (unchanged releases): sign again if needed
                self.offered.clear()
            self.offered[content_hash] = signed

    def forget(self, ids) -> None:
        """Drop these releases (and the oldest half, past TEXTS_CACHED releases): called before
        a batch, never while one is linked."""
        for kept in (self.rows, self.shingled, self.before):
            if len(kept) > TEXTS_CACHED:  # the oldest half goes (dicts keep insertion order)
                for release_id in list(itertools.islice(kept, len(kept) - TEXTS_CACHED // 2)):
                    del kept[release_id]
        for release_id in ids:
            self.rows.pop(release_id, None)
            self.shingled.pop(release_id, None)
            self.signed.pop(release_id, None)

    def load(self, ids, signed: bool = False) -> None:
        """Read these releases (their line keys; with ``signed``, all of :class:`Signed`)."""
        missing = sorted({i for i in ids if i not in self.rows or (signed and i not in self.signed)})
        for chunk in chunks(missing):
            unsigned = []
            for release_id, source_id, digest in self.db.execute(
                    f"select id, source_id, content_hash from releases where id in ({marks(chunk)})", chunk).fetchall():
                made = self.offered.get(digest)
                if made is None:
                    unsigned.append(release_id)
                    self.rows[release_id] = (source_id, None)
                    continue
                self.signed[release_id] = made
                self.rows[release_id] = (source_id, made.keys)
            for some in chunks(unsigned):
                for release_id, text in self.db.execute(
                        f"select id, text from releases where id in ({marks(some)})", some).fetchall():
                    source_id = self.rows[release_id][0]
                    if signed or release_id in self.signed:
                        made = self.signed[release_id] = sign(text)
                        keys = made.keys
                    else:
                        keys = _line_keys(normal_lines(text))
                    self.rows[release_id] = (source_id, keys)

    def contexts(self, ids) -> None:
        """Find the context of each of these releases. Each source's newest ids are kept
        (:attr:`newest`) and brought up to date with the releases stored since the last batch,
        whoever stored them (ids only grow and a release keeps its source), so a crawl's new
        releases need no query of their own; a source seen for the first time is read in one
        statement with the others; a release that is not among its source's newest (a changed
        one) is looked up on its own."""
        by_source: dict[str, list[int]] = {}
        for release_id in sorted(set(ids)):
            if release_id not in self.before and release_id in self.rows:
                by_source.setdefault(self.rows[release_id][0], []).append(release_id)
        if not by_source:
            return
        self._catch_up()
        unknown = [source_id for source_id in by_source if source_id not in self.newest]
        if len(self.newest) + len(unknown) > 4 * TEXTS_CACHED:
            self.newest.clear()
            unknown = list(by_source)
        for part in chunks(unknown, 100):  # one statement for many sources
            query = " union all ".join([(
                "select * from (select source_id, id from releases where source_id = ? and id <= ? "
                "order by id desc limit ?)")] * len(part))
            limits = {source_id: len(by_source[source_id]) + CONTEXT for source_id in part}
            found_of: dict[str, list[int]] = {source_id: [] for source_id in part}
            values = [value for source in part for value in (source, self.seen_up_to, limits[source])]
            for source_id, release_id in self.db.execute(query, values).fetchall():
                found_of[source_id].append(release_id)
            for source_id, found in found_of.items():  # (all of the source's ids when fewer than asked)
                self.newest[source_id] = (sorted(found), len(found) < limits[source_id])
        for source_id, group in by_source.items():
            found, complete = self.newest[source_id]
            for release_id in group:
                n = found.index(release_id) if release_id in found else None
                if n is not None and (n >= CONTEXT or complete):
                    self.before[release_id] = found[max(0, n - CONTEXT) : n][::-1]
                else:  # not among the source's newest: this one on its own
                    self.before[release_id] = self.context(release_id)
            if len(found) > CONTEXT:
                self.newest[source_id] = (found[-CONTEXT:], False)

    def _catch_up(self) -> None:
        """Add the releases stored since the last call to their sources' newest ids."""
        if self.seen_up_to is None:
            self.seen_up_to = self.db.execute("select coalesce(max(id), 0) from releases").fetchone()[0]
            return
        rows = self.db.execute("select id, source_id from releases where id > ? order by id",
                               [self.seen_up_to]).fetchall()
        for release_id, source_id in rows:
            if source_id in self.newest:
                self.newest[source_id][0].append(release_id)
        if rows:
            self.seen_up_to = rows[-1][0]

    def context(self, release_id: int) -> list[int]:
        """The CONTEXT releases of the same source stored just before this one."""
        if release_id not in self.before:
            source_id = self.rows[release_id][0]
            self.before[release_id] = [row[0] for row in self.db.execute(
                "select id from releases where source_id = ? and id < ? order by id desc limit ?",
                [source_id, release_id, CONTEXT]).fetchall()]
        return self.before[release_id]

    def own(self, release_id: int) -> tuple:
        """(shingles, MinHash values or None) of the release's lines that its context does not hold."""
        found = self.shingled.get(release_id)
        if found is not None:
            return found
        rows = self.rows
        if release_id not in self.signed or release_id not in rows:
            self.load([release_id], signed=True)
            if release_id not in rows:
                return np.zeros(0, dtype=np.uint32), None
        context = self.context(release_id)
        if not all(i in rows for i in context):
            self.load(context)
        self.own_lines([release_id])
        return self.shingled[release_id]

    def own_lines(self, ids: list[int]) -> None:
        """What :meth:`own` finds, for a batch's signed releases at once (their contexts loaded),
        in a few array operations over all their lines instead of a few for each: each release's
        shingles are sorted by value, so its own distinct ones need no sort."""
        rows, before = self.rows, self.before
        ids = [i for i in ids if i in self.signed and i in rows and i in before and i not in self.shingled]
        if not ids:
            return
        made = [self.signed[i] for i in ids]
        lines = np.fromiter((len(m.keys) for m in made), dtype=np.int64, count=len(ids))
        own = ~_held(np.concatenate([m.keys for m in made]), lines,
                     [[rows[c][1] for c in before[i] if c in rows] for i in ids])
        kept = own[np.concatenate([m.line_of for m in made]).astype(np.int64)
                   + np.repeat(np.cumsum(lines) - lines, [len(m.line_of) for m in made])]
        hashes = np.concatenate([m.shingles for m in made])[kept]
        kept_before = np.zeros(len(kept) + 1, dtype=np.int64)  # kept shingles before each shingle
        np.cumsum(kept, out=kept_before[1:])
        counts = np.fromiter((len(m.shingles) for m in made), dtype=np.int64, count=len(ids))
        starts = kept_before[np.cumsum(counts) - counts]  # of each release among the kept
        new = np.ones(len(hashes) + 1, dtype=bool)  # the first of each value in each release
        np.not_equal(hashes[1:], hashes[:-1], out=new[1:-1])
        new[starts] = True
        new_before = np.zeros(len(new) + 1, dtype=np.int64)
        np.cumsum(new, out=new_before[1:])
        bounds = new_before[np.append(starts, len(hashes))]
        hashes = hashes[new[:-1]]
        values = np.concatenate([m.values for m in made])[own]
        value_of = np.repeat(np.arange(len(ids)), lines)[own]
        first = np.searchsorted(value_of, np.arange(len(ids) + 1))
        some = first[:-1] < first[1:]  # releases with lines of their own
        minimum = iter(np.minimum.reduceat(values, first[:-1][some], axis=0) if len(values) else ())
        for n, release_id in enumerate(ids):
            value = next(minimum) if some[n] else None
            found = hashes[bounds[n] : bounds[n + 1]]
            self.shingled[release_id] = (found, value if len(found) else None)

    def shingles(self, release_id: int) -> np.ndarray:
        """The shingles of a release's lines that its context does not hold too."""
        return self.own(release_id)[0]

    def values(self, release_id: int) -> np.ndarray | None:
        """The MinHash values of those shingles (None: no shingle)."""
        return self.own(release_id)[1]

    def done(self) -> None:
        """After a batch: what was signed for it is not needed any more."""
        self.signed.clear()
        self.offered.clear()


# --- Links ------------------------------------------------------------------------------------

def add_link(db, a_id: int, b_id: int, relation: str, score, evidence: str | None, at: str) -> None:
    """Store the link between two releases once (smaller id first); a second call updates its
    score and evidence and keeps when it was first made."""
    a_id, b_id = sorted((int(a_id), int(b_id)))
    if a_id == b_id:
        return
    db.execute(
        "insert into release_links (release_id, other_id, relation, score, evidence, linked_at) "
        "values (?, ?, ?, ?, ?, ?) on conflict (release_id, other_id, relation) do update set "
        "score = excluded.score, evidence = excluded.evidence",
        [a_id, b_id, relation, score, evidence, at])


def _links_of(db, ids: list[int], relation: str) -> dict[int, set[int]]:
    """id -> the releases linked to it by ``relation``, for all these ids in a few queries."""
    found: dict[int, set[int]] = {}
    for chunk in chunks(ids):
        for a, b in db.execute(
                f"select release_id, other_id from release_links where relation = ? and release_id in ({marks(chunk)}) "
                f"union select release_id, other_id from release_links where relation = ? and other_id in ({marks(chunk)})",
                [relation, *chunk, relation, *chunk]).fetchall():
            found.setdefault(a, set()).add(b)
            found.setdefault(b, set()).add(a)
    return found


def _unlink(db, a_id: int, b_id: int, relation: str) -> None:
    a_id, b_id = sorted((a_id, b_id))
    db.execute("delete from release_links where release_id = ? and other_id = ? and relation = ?",
               [a_id, b_id, relation])


# --- The band index -----------------------------------------------------------------------------

BAND_SHIFT = 47  # a band's key: band << BAND_SHIFT | its 47-bit hash
FILTER_BITS = 27  # the writer's in-memory filter of the index's keys: 2**27 bits (16 MB)


class Segment(NamedTuple):
    """One row of ``minhash_segments``: band keys sorted, with the release of each."""

    id: int
    keys: np.ndarray  # uint64: band << BAND_SHIFT | hash, ascending
    ids: np.ndarray  # uint32: the release of each key (ascending among equal keys)


def _merged(older: Segment, newer: Segment) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of two segments in key order, the older's first among equal keys (each pair of the
    newer placed by a binary search in the older: no sort)."""
    size = len(older.keys) + len(newer.keys)
    at = np.searchsorted(older.keys, newer.keys, "right") + np.arange(len(newer.keys))
    from_older = np.ones(size, dtype=bool)
    from_older[at] = False
    keys, ids = np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.uint32)
    keys[at], keys[from_older] = newer.keys, older.keys
    ids[at], ids[from_older] = newer.ids, older.ids
    return keys, ids


class BandIndex:
    """The archive's band hashes, kept in ``minhash_segments`` and held in memory by the writer.

    A B-tree of (band, hash, release) rows costs a page written per row at every commit (the
    keys are random): most of what linking cost the writer. Here each batch's band keys are
    written as one sorted *segment* (two blobs); two segments are merged when the older is not
    more than twice the newer, so an archive holds about log2(releases / batch) of them and a
    band key is rewritten about as many times, in long sequential writes. The writer reads the
    segments once (12 bytes a band: 14 MB at 100,000 releases) and finds a batch's buckets by
    binary search in each, for the keys its bit filter (:attr:`filter`) does not rule out: most
    of a batch's keys are in no bucket. A release whose text changed leaves its old keys in
    place, listed in ``minhash_dropped`` until a merge removes them. ``_pressarchive`` key ``minhash_index``
    changes with every write, so a writer whose transaction was rolled back, or an archive
    another process linked, is read again."""

    def __init__(self):
        self.stamp: str | None = None
        self.segments: list[Segment] = []
        self.dropped: set[tuple[int, int]] = set()
        # release id -> its stored MinHash values (None: none), as ``minhash_releases`` holds them: the
        # releases this writer stored or read, at most SIGNATURES_CACHED (the candidates of new releases
        # are often the same ones: those whose short texts share common phrases)
        self.signatures: dict[int, np.ndarray | None] = {}
        # a bit for each key's low FILTER_BITS bits, set for every key a segment holds: most of a new
        # batch's keys are in no bucket, and are known to be without a search in every segment
        self.filter = np.zeros(1 << (FILTER_BITS - 3), dtype=np.uint8)
        self.largest = 0  # the largest release id a segment holds: a release above it has no band rows

    @staticmethod
    def _slots(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's place in :attr:`filter`: (byte, bit), from its low FILTER_BITS bits."""
        slots = keys & np.uint64((1 << FILTER_BITS) - 1)
        return slots >> np.uint64(3), (slots & np.uint64(7)).astype(np.uint8)

    def _mark(self, keys: np.ndarray) -> None:
        byte, bit = self._slots(keys)
        np.bitwise_or.at(self.filter, byte, np.left_shift(np.uint8(1), bit))

    def _maybe(self, keys: np.ndarray) -> np.ndarray:
        """Whether a segment may hold each key (False: none does)."""
        byte, bit = self._slots(keys)
        return (self.filter[byte] >> bit) & np.uint8(1) == 1

    def remember(self, signatures: dict[int, np.ndarray | None]) -> None:
        """What ``minhash_releases`` holds for these releases (just written or read)."""
        if len(self.signatures) + len(signatures) > SIGNATURES_CACHED:  # the oldest half goes
            for release_id in list(itertools.islice(self.signatures, len(self.signatures) // 2)):
                del self.signatures[release_id]
        self.signatures.update(signatures)

    def sync(self, db) -> None:
        row = db.execute("select value from _pressarchive where key = 'minhash_index'").fetchone()
        stamp = row[0] if row else ""
        if stamp != self.stamp:
            self.signatures = {}
            self.segments = [Segment(i, np.frombuffer(keys, dtype="<u8"), np.frombuffer(ids, dtype="<u4"))
                             for i, keys, ids in db.execute("select id, keys, ids from minhash_segments order by id")]
            self.dropped = set(db.execute("select key, release_id from minhash_dropped").fetchall())
            self.filter[:] = 0
            self.largest = 0
            for segment in self.segments:
                self._mark(segment.keys)
                self.largest = max(self.largest, int(segment.ids.max(initial=0)))
            self.stamp = stamp

    def pairs(self) -> set[tuple[int, int]]:
        """Every (band key, release) pair the index holds."""
        held = {pair for segment in self.segments for pair in zip(segment.keys.tolist(), segment.ids.tolist())}
        return held - self.dropped

    def buckets(self, keys: np.ndarray) -> dict[int, list[int]]:
        """Position of a key in ``keys`` -> the newest BUCKET_LIMIT releases holding it (dropped
        ones left out); keys no release holds are left out."""
        order = np.flatnonzero(self._maybe(keys))
        order = order[np.argsort(keys[order])]
        wanted = keys[order]  # ascending: each binary search starts where the last one ended
        found: dict[int, list[int]] = {}
        for segment in self.segments if len(wanted) else ():
            low = np.searchsorted(segment.keys, wanted, "left")
            high = np.searchsorted(segment.keys, wanted, "right")
            hits = np.flatnonzero(high > low)
            for n, start, end in zip(order[hits].tolist(), low[hits].tolist(), high[hits].tolist()):
                found.setdefault(n, []).extend(segment.ids[start:end].tolist())
        buckets = {}
        for n, members in found.items():
            members = sorted(members, reverse=True)
            if self.dropped:
                key = int(keys[n])
                members = [m for m in members if (key, m) not in self.dropped]
            if members:
                buckets[n] = members[:BUCKET_LIMIT]
        return buckets

    def drop(self, db, keys: list[int], ids: list[int]) -> None:
        """These (key, release) pairs are no longer in the index (the release's text changed); only
        pairs a segment holds are listed, so a pair listed is always one a merge can remove."""
        pairs = {pair for pair in set(zip(keys, ids)) - self.dropped if self._holds(*pair)}
        if pairs:
            db.conn.executemany("insert or ignore into minhash_dropped (key, release_id) values (?, ?)", sorted(pairs))
            self.dropped |= pairs
            self._stamp(db)

    def add(self, db, keys: np.ndarray, ids: np.ndarray) -> None:
        """A batch's band keys: a new segment, then merges while the older is not more than twice the newer."""
        keys, ids = np.asarray(keys, dtype=np.uint64), np.asarray(ids, dtype=np.uint32)
        if not len(keys):
            return
        back = self.dropped and set(zip(keys.tolist(), ids.tolist())) & self.dropped
        if back:  # a text changed back: its old pairs, still held, count again
            db.conn.executemany("delete from minhash_dropped where key = ? and release_id = ?", sorted(back))
            self.dropped -= back
            new = np.fromiter((pair not in back for pair in zip(keys.tolist(), ids.tolist())), dtype=bool, count=len(keys))
            keys, ids = keys[new], ids[new]
        if len(keys):  # (every pair is in one segment only)
            order = np.argsort(keys, kind="stable")
            self._write(db, keys[order], ids[order])
            self._mark(keys)
        while len(self.segments) >= 2 and len(self.segments[-2].keys) <= 2 * len(self.segments[-1].keys):
            older, newer = self.segments[-2], self.segments[-1]
            keys_, ids_ = _merged(older, newer)
            keep, removed = self._without_dropped(keys_, ids_)
            db.conn.execute("delete from minhash_segments where id in (?, ?)", [older.id, newer.id])
            del self.segments[-2:]
            if removed:
                keys_, ids_ = keys_[keep], ids_[keep]
            self._write(db, keys_, ids_)
            gone = {pair for pair in removed if not self._holds(*pair)}
            if gone:  # no segment holds them any more
                db.conn.executemany("delete from minhash_dropped where key = ? and release_id = ?", sorted(gone))
                self.dropped -= gone
        self._stamp(db)

    def _without_dropped(self, keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, set]:
        """(mask of the pairs to keep, the dropped pairs found among these)."""
        keep, removed = np.ones(len(keys), dtype=bool), set()
        for key, release_id in self.dropped:
            low, high = np.searchsorted(keys, np.uint64(key), "left"), np.searchsorted(keys, np.uint64(key), "right")
            hit = np.flatnonzero(ids[low:high] == release_id)
            if len(hit):
                keep[low + hit] = False
                removed.add((key, release_id))
        return keep, removed

    def _holds(self, key: int, release_id: int) -> bool:
        for segment in self.segments:
            low, high = (np.searchsorted(segment.keys, np.uint64(key), side) for side in ("left", "right"))
            if np.any(segment.ids[low:high] == release_id):
                return True
        return False

    def _write(self, db, keys: np.ndarray, ids: np.ndarray) -> None:
        keys, ids = np.ascontiguousarray(keys, dtype="<u8"), np.ascontiguousarray(ids, dtype="<u4")
        cursor = db.conn.execute("insert into minhash_segments (entries, keys, ids) values (?, ?, ?)", [
            len(keys), memoryview(keys).cast("B"), memoryview(ids).cast("B")])  # (the arrays' bytes, not copied)
        self.segments.append(Segment(cursor.lastrowid, keys, ids))
        self.largest = max(self.largest, int(ids.max(initial=0)))

    def _stamp(self, db) -> None:
        self.stamp = restamp(db)


def restamp(db) -> str:
    """Mark the band index changed (a new random stamp: a rolled-back one never comes back)."""
    stamp = uuid.uuid4().hex
    db.conn.execute("insert or replace into _pressarchive (key, value) values ('minhash_index', ?)", [stamp])
    return stamp


_INDEXES: dict[str, BandIndex] = {}  # the last archive's index, by file: read again only when it changed


def band_index(db) -> BandIndex:
    """The band index of this archive, read from it only when another write changed it."""
    path = db.conn.execute("pragma database_list").fetchone()[2] or f":memory:{id(db.conn)}"
    index = _INDEXES.get(path)
    if index is None:
        _INDEXES.clear()
        index = _INDEXES[path] = BandIndex()
    index.sync(db)
    return index


def _band_keys(hashes: np.ndarray) -> np.ndarray:
    """The index keys of band hashes (a row of BANDS per release): band << BAND_SHIFT | hash."""
    return hashes.astype(np.uint64) | (np.arange(BANDS, dtype=np.uint64) << np.uint64(BAND_SHIFT))


def _stored_values(db, ids, index: BandIndex) -> dict[int, np.ndarray]:
    """The stored MinHash values of these releases (those that have them); the ones the index
    holds (:attr:`BandIndex.signatures`) are not read again."""
    held = {i: index.signatures[i] for i in ids if i in index.signatures}
    found = {i: values for i, values in held.items() if values is not None}
    missing = sorted(i for i in ids if i not in held)
    for chunk in chunks(missing):
        for release_id, signature_bytes in db.conn.execute(
                f"select release_id, signature from minhash_releases where release_id in ({marks(chunk)})", chunk):
            if signature_bytes is not None and len(signature_bytes) == 4 * NUM_PERM:
                found[release_id] = np.frombuffer(signature_bytes, dtype="<u4")
    index.remember({i: found.get(i) for i in missing})
    return found


def _drop_bands(db, index: BandIndex, ids: list[int]) -> None:
    """Take the band keys of these releases out of the index (a changed text leaves none of its old ones)."""
    keys, owners = [], []
    # a release whose keys no segment holds has none (every stored row with bands has its keys in
    # one): a batch of new releases needs no query
    for chunk in chunks([release_id for release_id in ids if release_id <= index.largest]):
        for release_id, bands in db.execute(
                f"select release_id, bands from minhash_releases where release_id in ({marks(chunk)}) "
                "and bands is not null", chunk).fetchall():
            keys += _band_keys(np.frombuffer(bands, dtype="<i8")).tolist()
            owners += [release_id] * BANDS
    index.drop(db, keys, owners)


def _candidates(keys: np.ndarray, stored: dict[int, list[int]], signed: list[int]) -> dict[int, set[int]]:
    """Row of a release -> the releases sharing one of its band keys: in a bucket of the index
    (``stored``, by position of the key in ``keys``: a row of BANDS keys per release of ``signed``)
    or, for a key an earlier release of the batch holds too, the newest BUCKET_LIMIT of the index's
    and the batch's before it (as if the batch's releases were stored one by one)."""
    order = np.argsort(keys, kind="stable")  # equal keys: their positions ascending (the releases in id order)
    ranked = keys[order]
    edges = np.concatenate([[0], np.flatnonzero(ranked[1:] != ranked[:-1]) + 1, [len(keys)]])
    shared = np.flatnonzero(np.diff(edges) > 1)  # keys held by several releases of the batch
    runs = [order[start:end].tolist() for start, end in zip(edges[shared].tolist(), edges[shared + 1].tolist())]
    later = {position for run in runs for position in run[1:]}
    found: dict[int, set[int]] = {}
    for position, members in stored.items():
        if position not in later:
            found.setdefault(position // BANDS, set()).update(members)
    for run in runs:
        for k, position in enumerate(run[1:], 1):
            bucket = {signed[p // BANDS] for p in run[:k]} | set(stored.get(position, ()))
            found.setdefault(position // BANDS, set()).update(sorted(bucket, reverse=True)[:BUCKET_LIMIT])
    return found


def _prefiltered(found: dict[int, set[int]], signed: list[int], values: np.ndarray, values_of) -> dict[int, set[int]]:
    """The candidates (row of a release -> releases) whose MinHash estimate is not far below the
    threshold (>= PREFILTER; one without values is kept), compared all at once: the others' texts
    are not read."""
    pairs = [(row, other) for row, others in found.items() for other in others if other != signed[row]]
    theirs = [values_of(other) for _, other in pairs]
    known = [n for n, their in enumerate(theirs) if their is not None]
    close = np.ones(len(pairs), dtype=bool)
    if known:
        rows = np.fromiter((pairs[n][0] for n in known), dtype=np.int64, count=len(known))
        same = np.count_nonzero(values[rows] == np.stack([theirs[n] for n in known]), axis=1)
        close[known] = same / NUM_PERM >= PREFILTER
    kept: dict[int, set[int]] = {}
    for (row, other), near in zip(pairs, close.tolist()):
        if near:
            kept.setdefault(row, set()).add(other)
    return kept


def link_reposts(db, release_ids, at: str | None = None, texts: Texts | None = None) -> set[int]:
    """Sign these releases (new or changed), find and verify their reposts; returns the ids
    whose repost links changed (both ends).

    The releases are taken in id order, each against the archive and the ones before it, as
    if stored one by one, but the archive is asked in a few statements for the whole batch:
    the buckets of every band, the stored MinHash values of the candidates, the existing
    links; the band rows are written at the end, sorted."""
    at = at or now_iso()
    texts = texts or Texts(db)
    ids = sorted(set(release_ids))
    texts.forget(ids)  # new or changed: read them as they are now
    texts.load(ids, signed=True)
    ids = [release_id for release_id in ids if release_id in texts.rows]
    texts.contexts(ids)
    texts.load({i for release_id in ids for i in texts.before[release_id]})
    texts.own_lines(ids)
    own_of = {release_id: texts.own(release_id) for release_id in ids}  # (shingles, MinHash values)
    signed = [release_id for release_id in ids if len(own_of[release_id][0]) >= MIN_SHINGLES]
    values_matrix = np.stack([own_of[i][1] for i in signed]) if signed else np.zeros((0, NUM_PERM), dtype=np.uint32)
    matrix = band_hashes(values_matrix)
    key_matrix = _band_keys(matrix)
    band_bytes, value_bytes = matrix.astype("<i8").tobytes(), values_matrix.astype("<u4").tobytes()
    row_of = {release_id: n for n, release_id in enumerate(signed)}
    index = band_index(db)
    _drop_bands(db, index, ids)
    stored = index.buckets(key_matrix.ravel())  # (row of the release) * BANDS + band -> the stored releases
    stored_values = _stored_values(db, {c for found in stored.values() for c in found} - set(ids), index)
    existing = _links_of(db, ids, RELATION)
    changed: set[int] = set()
    verified: set[tuple[int, int]] = set()
    release_rows = []
    found = _prefiltered(_candidates(key_matrix.ravel(), stored, signed), signed, values_matrix,
                         lambda c: own_of[c][1] if c in row_of else stored_values.get(c))
    for release_id in ids:
        hashes, values = own_of[release_id]
        row = row_of.get(release_id)
        candidates: set[int] = set()
        if row is not None:
            candidates = found.get(row, candidates)
            release_rows.append((release_id, len(hashes), band_bytes[row * 8 * BANDS : (row + 1) * 8 * BANDS],
                                 value_bytes[row * 4 * NUM_PERM : (row + 1) * 4 * NUM_PERM]))
        else:
            release_rows.append((release_id, len(hashes), None, None))
        linked = existing.setdefault(release_id, set())
        for other in sorted(candidates | linked):
            pair = (min(release_id, other), max(release_id, other))
            if pair in verified:  # decided when the other was taken, on the texts as they are now
                continue
            verified.add(pair)
            score = jaccard(hashes, texts.shingles(other)) if row is not None else 0.0
            if score >= THRESHOLD:
                guess = estimate(values, texts.values(other))
                if other not in linked:
                    changed.update(pair)
                    linked.add(other)
                    existing.setdefault(other, set()).add(release_id)
                add_link(db, release_id, other, RELATION, round(score, 4),
                         f"minhash {guess:.2f} (jaccard {score:.2f})", at)
            elif other in linked:
                _unlink(db, release_id, other, RELATION)
                changed.update(pair)
                linked.discard(other)
                existing.get(other, set()).discard(release_id)
    index.add(db, key_matrix.ravel(), np.repeat(np.array(signed, dtype=np.uint32), BANDS))
    index.remember({release_id: values_matrix[row_of[release_id]] if release_id in row_of else None for release_id in ids})
    db.conn.executemany("insert or replace into minhash_releases (release_id, shingles, bands, signature) "
                        "values (?, ?, ?, ?)", release_rows)
    texts.done()
    return changed


def link_new(db, release_ids, at: str | None = None, texts: Texts | None = None) -> None:
    """The writer's call, in its transaction, for a batch's new and changed releases: reposts,
    then translations (archive/translations.py), then the families of everything touched."""
    ids = sorted(set(release_ids))
    if not ids:
        return
    at = at or now_iso()
    texts = texts or Texts(db)
    changed = link_reposts(db, ids, at, texts)
    # (imported here: archive/translations.py imports this module for add_link and refresh_families)
    from archive import translations

    translations.link_new(db, ids, at=at)
    with_family = {row[0] for chunk in chunks(ids) for row in db.execute(
        f"select release_id from family_members where release_id in ({marks(chunk)})", chunk).fetchall()}
    if changed or with_family:  # a member's text changed: its diff (or the first copy) too
        refresh_families(db, sorted(changed | with_family), texts, rewritten=set(ids))


# --- Families ---------------------------------------------------------------------------------

def _component(db, start: int, seen: set[int]) -> tuple[list[int], dict[int, set[int]]]:
    """The releases joined to ``start`` by links (sorted), and the repost links among them."""
    todo, members, reposts = [start], {start}, {}
    while todo:
        release_id = todo.pop()
        for other, relation in db.execute(
                "select other_id, relation from release_links where release_id = ? "
                "union select release_id, relation from release_links where other_id = ?",
                [release_id, release_id]).fetchall():
            if relation == RELATION:
                reposts.setdefault(release_id, set()).add(other)
            if other not in members:
                members.add(other)
                todo.append(other)
    seen.update(members)
    return sorted(members), reposts


def _first(rows: dict) -> int:
    """Published first, then first seen, then smallest id (unknown dates last)."""
    return min(rows, key=lambda i: (rows[i]["published"] is None, rows[i]["published"] or "",
                                    rows[i]["first_seen"] or "", i))


def _reached(first: int, links: dict[int, set[int]]) -> set[int]:
    """Members reached from the first copy through these (repost) links only."""
    reached, todo = {first}, [first]
    while todo:
        for other in links.get(todo.pop(), ()):
            if other not in reached:
                reached.add(other)
                todo.append(other)
    return reached


def _family_diff(first: dict, member: dict) -> str:
    diff = unified_diff(first["title"], first["text"], member["title"], member["text"], 1, 2).split("\n")
    if len(diff) >= 2:
        diff[0] = f"--- release {first['id']} ({first['source_id']}, first copy)"
        diff[1] = f"+++ release {member['id']} ({member['source_id']})"
    return "\n".join(diff)


def _written(db, members: list[int]) -> dict[int, tuple]:
    """The members' ``family_members`` rows as they are: id -> (family, relation, similarity, diff, first copy)."""
    return {row[0]: row[1:] for chunk in chunks(members) for row in db.execute(
        "select m.release_id, m.family_id, m.relation, m.similarity, m.diff, f.first_release_id from family_members m "
        f"left join families f on f.id = m.family_id where m.release_id in ({marks(chunk)})", chunk).fetchall()}


def _write_family(db, members: list[int], links: dict[int, set[int]], texts: Texts,
                  rewritten: set[int] | None = None) -> None:
    """Write a family's rows. A repost's similarity and diff against the first copy are kept as they
    are when neither text was ``rewritten`` since and the first copy is the same (None: all were)."""
    columns = ("id", "source_id", "published", "first_seen", "language", "title", "last_changed", "family_id")
    rows = {}
    for chunk in chunks(members):
        for row in db.execute(f"select {', '.join(columns)} from releases where id in ({marks(chunk)})",
                              chunk).fetchall():
            rows[row[0]] = dict(zip(columns, row))
    family_id, first = min(rows), _first(rows)
    reposts = _reached(first, links)
    link_times = [row[0] for chunk in chunks(members) for row in db.execute(
        f"select linked_at from release_links where release_id in ({marks(chunk)})", chunk).fetchall()]
    updated = max([t for t in link_times if t] + [r["last_changed"] for r in rows.values() if r["last_changed"]],
                  default=None)
    written = _written(db, members) if rewritten is not None else {}
    kept = {release_id for release_id in reposts if release_id in written
            and written[release_id][1] == RELATION and written[release_id][4] == first
            and first not in rewritten and release_id not in rewritten}  # (rewritten is None: written is empty)
    diffed = sorted(reposts - kept - {first})
    if diffed:  # the texts a new diff needs (a family's texts are read only then)
        wanted = [first, *diffed]
        for chunk in chunks(wanted):
            for release_id, text in db.execute(f"select id, text from releases where id in ({marks(chunk)})",
                                               chunk).fetchall():
                rows[release_id]["text"] = text
    for release_id, row in sorted(rows.items()):
        before = written.get(release_id)
        if release_id == first:
            relation, similarity, diff = "first", 1.0, None
        elif release_id in kept:
            relation, similarity, diff = before[1:4]
        elif release_id in reposts:
            relation, diff = RELATION, _family_diff(rows[first], row)
            similarity = round(jaccard(texts.shingles(first), texts.shingles(release_id)), 4)
        else:
            relation, similarity, diff = "translation", None, None
        if before is None or before[:4] != (family_id, relation, similarity, diff):
            db.execute("insert or replace into family_members (release_id, family_id, relation, similarity, diff) "
                       "values (?, ?, ?, ?, ?)", [release_id, family_id, relation, similarity, diff])
        if row["family_id"] != family_id:
            db.execute("update releases set family_id = ? where id = ?", [family_id, release_id])
    first_row = rows[first]
    db.execute(
        "insert or replace into families (id, first_release_id, first_source_id, first_published, member_count, "
        "languages, sources, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [family_id, first, first_row["source_id"], first_row["published"], len(rows),
         json.dumps(sorted({r["language"] for r in rows.values() if r["language"]})),
         json.dumps(sorted({r["source_id"] for r in rows.values() if r["source_id"]})), updated])


def refresh_families(db, release_ids, texts: Texts | None = None, rewritten: set[int] | None = None) -> None:
    """Recompute the families holding these releases (and the families they were in): members,
    first copy, diffs, the ``families`` row and ``releases.family_id``. A family whose links are
    gone splits; a release left without links leaves its family. ``rewritten``: the releases whose
    title or text changed since their family rows were written (None: any may have; the others'
    diffs against an unchanged first copy are kept)."""
    seeds = {int(i) for i in release_ids}
    if not seeds:
        return
    old_families = {row[0] for chunk in chunks(sorted(seeds)) for row in db.execute(
        f"select family_id from family_members where release_id in ({marks(chunk)})", chunk)}
    for family_id in sorted(old_families):
        seeds.update(row[0] for row in db.execute(
            "select release_id from family_members where family_id = ?", [family_id]))
    texts, seen, kept = texts or Texts(db), set(), set()
    for release_id in sorted(seeds):
        if release_id in seen:
            continue
        members, links = _component(db, release_id, seen)
        if len(members) < 2:
            db.execute("delete from family_members where release_id = ?", [release_id])
            db.execute("update releases set family_id = null where id = ? and family_id is not null", [release_id])
            continue
        _write_family(db, members, links, texts, rewritten)
        kept.add(members[0])
    for family_id in sorted(old_families - kept):
        db.execute("delete from families where id = ?", [family_id])


# --- Whole archive ----------------------------------------------------------------------------

def unsigned(db) -> list[int]:
    """Releases never looked at for reposts (stored before this version, or by an older one)."""
    return [row[0] for row in db.execute(
        "select id from releases r where not exists "
        "(select 1 from minhash_releases m where m.release_id = r.id) order by id").fetchall()]


def link_all(db, ids: list[int], batch: int = 2000, progress=None) -> None:
    """Link these releases (in id order, ``batch`` at a time) and refresh their families."""
    for chunk in chunks(ids, batch):
        at = now_iso()
        changed = link_reposts(db, chunk, at)
        refresh_families(db, sorted(changed))
        if progress:
            progress(len(chunk))


def rebuild(db, batch: int = 2000, progress=None) -> None:
    """Recompute every repost link, translation link and family from the releases (``pressarchive
    link --rebuild``). A link found again keeps the time it was first made."""
    from archive import translations

    made = {(a, b, relation): at for a, b, relation, at in db.execute(
        "select release_id, other_id, relation, linked_at from release_links").fetchall()}
    for statement in ("delete from minhash_segments", "delete from minhash_dropped", "delete from minhash_releases",
                      "delete from release_links", "delete from family_members", "delete from families",
                      "update releases set family_id = null where family_id is not null"):
        db.execute(statement)
    restamp(db)  # the index is empty now: a writer holding it reads it again
    link_all(db, [row[0] for row in db.execute("select id from releases order by id")], batch, progress)
    translations.link_all(db)
    db.conn.executemany(
        "update release_links set linked_at = ? where release_id = ? and other_id = ? and relation = ?",
        [(at, a, b, relation) for (a, b, relation), at in made.items()])
    families = [row[0] for row in db.execute("select id from families order by id").fetchall()]
    refresh_families(db, families)  # updated_at from the links' first times


def counts(db) -> dict:
    """What ``pressarchive link`` prints: exact counts."""
    one = lambda sql: db.execute(sql).fetchone()[0]
    return {
        "releases": one("select count(*) from releases"),
        "linked": one("select count(*) from family_members"),
        "reposts": one("select count(*) from release_links where relation = 'repost'"),
        "translations": one("select count(*) from release_links where relation = 'translation'"),
        "families": one("select count(*) from families"),
    }
