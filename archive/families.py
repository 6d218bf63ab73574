"""Statement families: one statement in several places (reposts) and languages (translations).

A **repost** is a near-identical text on another page: a ministry's statement
republished by its embassies with their own header and footer, a changed first line
or an added sentence. Reposts are found by MinHash (datasketch's permutations) over
the *shingles* of the normalised text: runs of :data:`WORD_SHINGLE` words, or of
:data:`CJK_SHINGLE` characters in Chinese, Japanese and Korean text (which has no
spaces). Each release's :data:`NUM_PERM` MinHash values are cut into :data:`BANDS`
bands of :data:`ROWS`; a band's hash is a row of ``minhash_bands`` (band, hash,
release_id), indexed, so a new release finds its candidates with BANDS index
lookups however large the archive (two releases are candidates when they share a
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

Measured on benchmarks/families.py (100,000 synthetic releases, EN and ZH, planted
reposts with their own header/footer, a changed first line, an added sentence and an
edited one, translations, and near-misses sharing only a long footer), at THRESHOLD 0.45
with 20 bands of 3: precision 1.000 (9,163 links), recall 0.978 of 5,585 planted pairs,
0 of 4,646 near-misses and 0 of 1,386 translations linked; archive +8.1% (725 bytes a
release; 16 bands and 0.5 gave recall 0.950). The writer's added cost is not within the
issue's 20%: +1,229 us of CPU a release against 455 us without linking, in batches of
200 (shingling and MinHash run in the writer process; see the README for the plan).

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

import json
import re
import unicodedata
import zlib

import numpy as np
from datasketch import MinHash

from archive.clock import now_iso
from archive.history import unified_diff

NUM_PERM = 60
BANDS = 20
ROWS = NUM_PERM // BANDS  # 3: a pair at Jaccard 0.45 is a candidate with p = 0.85, at 0.5 with p = 0.93, at 0.6 with p = 0.99
SEED = 23
WORD_SHINGLE = 3
CJK_SHINGLE = 4
THRESHOLD = 0.45  # exact Jaccard of the shingle sets (boilerplate removed)
# A candidate whose MinHash estimate is below this is not verified (its text is not read): at a true
# Jaccard of THRESHOLD the estimate of NUM_PERM values falls this low with p < 0.001 (3 standard deviations).
PREFILTER = 0.25
MIN_SHINGLES = 12
CONTEXT = 5  # releases of the same source before this one whose lines are boilerplate
BUCKET_LIMIT = 50
TEXTS_CACHED = 5000  # releases whose lines and shingles the writer keeps between batches
RELATION = "repost"

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_HAS_CJK = re.compile(f"[{CJK}]")
_CJK_CHARS = _HAS_CJK
_CJK_TOKENS = re.compile(f"[{CJK}]|[^\\W_{CJK}]+")
# Punctuation and symbols around words ("statement," and "statement" are one word)
_PUNCTUATION = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»‘’“”–—…·•"})
_MINHASH = MinHash(num_perm=NUM_PERM, seed=SEED, scheme="affine32")
_A, _B = (np.asarray(p, dtype=np.uint32) for p in _MINHASH.permutations)
_TOKEN_HASHES: dict[str, int] = {}  # token -> crc32: a cache, the vocabulary repeats
_MIX = np.uint64(0x9E3779B97F4A7C15)


# --- Text to shingles -------------------------------------------------------------------------

def normal_lines(text: str | None) -> list[str]:
    """The text's non-empty lines, Unicode-normalised, case-folded, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def tokens(lines: list[str]) -> list[str]:
    """Words, and each Chinese, Japanese or Korean character on its own."""
    joined = "\n".join(lines)
    if _HAS_CJK.search(joined):
        return _CJK_TOKENS.findall(joined)
    return joined.translate(_PUNCTUATION).split()


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


def shingles(lines: list[str]) -> np.ndarray:
    """The sorted, distinct 32-bit hashes of the shingles of these lines."""
    words = tokens(lines)
    if not words:
        return np.zeros(0, dtype=np.uint32)
    k = min(shingle_size(words), len(words))
    h = _token_hashes(words)
    count = len(h) - k + 1
    combined = h[:count].copy()
    for j in range(1, k):
        combined = combined * _MIX + h[j : j + count]
    return np.unique((combined >> np.uint64(32)).astype(np.uint32))


def signature(hashes: np.ndarray) -> np.ndarray:
    """MinHash values of a shingle set: what ``datasketch.MinHash.update_batch`` gives for these
    hash values (scheme affine32, hash function identity), computed on the array at once."""
    hv = hashes.astype(np.uint32).reshape(-1, 1)
    hv = hv ^ (hv >> np.uint32(16))  # datasketch's pre-mix: the MurmurHash3 finalizer
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    hv = hv ^ (hv >> np.uint32(16))
    return (hv * _A + _B).min(axis=0)


def band_hashes(values: np.ndarray) -> list[int]:
    """One 47-bit hash per band of ROWS MinHash values (fits SQLite's INTEGER in 6 bytes)."""
    rows = values.astype(np.uint64).reshape(BANDS, ROWS)
    combined = rows[:, 0].copy()
    for j in range(1, ROWS):
        combined = combined * _MIX + rows[:, j]
    combined ^= combined >> np.uint64(29)
    combined *= np.uint64(0xBF58476D1CE4E5B9)
    return [int(v) for v in combined >> np.uint64(17)]


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
    """Releases' lines and shingles, read from the archive when first needed.

    The writer keeps one across its batches (a release's context is mostly the releases of
    its source stored in the batches just before); :meth:`forget` drops the releases whose text
    changed. At most :data:`TEXTS_CACHED` releases are kept."""

    def __init__(self, db):
        self.db = db
        self.rows: dict[int, tuple] = {}  # id -> (source_id, lines)
        self.shingled: dict[int, np.ndarray] = {}

    def forget(self, ids) -> None:
        """Drop these releases (and everything, past TEXTS_CACHED releases): called before a
        batch, never while one is linked."""
        if len(self.rows) > TEXTS_CACHED:
            self.rows.clear()
            self.shingled.clear()
        for release_id in ids:
            self.rows.pop(release_id, None)
            self.shingled.pop(release_id, None)

    def load(self, ids) -> None:
        missing = sorted({i for i in ids if i not in self.rows})
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            for release_id, source_id, text in self.db.execute(
                    f"select id, source_id, text from releases where id in ({', '.join('?' * len(chunk))})",
                    chunk).fetchall():
                self.rows[release_id] = (source_id, normal_lines(text))

    def context(self, release_id: int) -> list[int]:
        """The CONTEXT releases of the same source stored just before this one."""
        source_id = self.rows[release_id][0]
        return [row[0] for row in self.db.execute(
            "select id from releases where source_id = ? and id < ? order by id desc limit ?",
            [source_id, release_id, CONTEXT]).fetchall()]

    def shingles(self, release_id: int) -> np.ndarray:
        """The shingles of a release's lines that its context does not hold too."""
        if release_id not in self.shingled:
            self.load([release_id])
            if release_id not in self.rows:
                return np.zeros(0, dtype=np.uint32)
            context = self.context(release_id)
            self.load(context)
            boilerplate = {line for i in context if i in self.rows for line in self.rows[i][1]}
            own = [line for line in self.rows[release_id][1] if line not in boilerplate]
            self.shingled[release_id] = shingles(own)
        return self.shingled[release_id]


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


def _linked(db, release_id: int, relation: str | None = None) -> list[int]:
    where = " and relation = ?" if relation else ""
    extra = [relation] if relation else []
    return [row[0] for row in db.execute(
        f"select other_id from release_links where release_id = ?{where} "
        f"union select release_id from release_links where other_id = ?{where}",
        [release_id, *extra, release_id, *extra]).fetchall()]


def _unlink(db, a_id: int, b_id: int, relation: str) -> None:
    a_id, b_id = sorted((a_id, b_id))
    db.execute("delete from release_links where release_id = ? and other_id = ? and relation = ?",
               [a_id, b_id, relation])


# One statement for the BANDS lookups (each the newest BUCKET_LIMIT of its bucket): one call into
# SQLite instead of BANDS.
_CANDIDATES_SQL = " union all ".join(
    f"select * from (select release_id from minhash_bands where band = {band} and hash = ? "
    f"order by release_id desc limit {BUCKET_LIMIT})" for band in range(BANDS))


def _candidates(db, release_id: int, bands: list[int]) -> set[int]:
    found = {row[0] for row in db.conn.execute(_CANDIDATES_SQL, bands)}
    found.discard(release_id)
    return found


def _estimates(db, values: np.ndarray, candidates: set[int]) -> dict[int, float]:
    """The MinHash estimate of each candidate's similarity to ``values`` (None: not stored)."""
    found = {}
    ordered = sorted(candidates)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        for release_id, signature_bytes in db.conn.execute(
                "select release_id, signature from minhash_releases where release_id in "
                f"({', '.join('?' * len(chunk))})", chunk):
            if signature_bytes is not None and len(signature_bytes) == 4 * NUM_PERM:
                found[release_id] = estimate(values, np.frombuffer(signature_bytes, dtype="<u4"))
    return found


def _store_bands(db, release_id: int, hashes: np.ndarray, bands: list[int] | None,
                 values: np.ndarray | None = None) -> None:
    """Replace the release's band rows (a changed text leaves none of its old ones)."""
    old = db.execute("select bands from minhash_releases where release_id = ?", [release_id]).fetchone()
    if old and old[0]:
        db.conn.executemany("delete from minhash_bands where band = ? and hash = ? and release_id = ?",
                            [(band, int(value), release_id)
                             for band, value in enumerate(np.frombuffer(old[0], dtype="<i8"))])
    if bands:
        db.conn.executemany("insert or ignore into minhash_bands (band, hash, release_id) values (?, ?, ?)",
                            [(band, value, release_id) for band, value in enumerate(bands)])
    db.execute("insert or replace into minhash_releases (release_id, shingles, bands, signature) values (?, ?, ?, ?)",
               [release_id, len(hashes), np.array(bands, dtype="<i8").tobytes() if bands else None,
                values.astype("<u4").tobytes() if bands and values is not None else None])


def link_reposts(db, release_ids, at: str | None = None, texts: Texts | None = None) -> set[int]:
    """Sign these releases (new or changed), find and verify their reposts; returns the ids
    whose repost links changed (both ends)."""
    at = at or now_iso()
    texts = texts or Texts(db)
    ids = sorted(set(release_ids))
    texts.forget(ids)  # new or changed: read them as they are now
    texts.load(ids)
    changed: set[int] = set()
    for release_id in ids:
        if release_id not in texts.rows:
            continue
        hashes = texts.shingles(release_id)
        if len(hashes) >= MIN_SHINGLES:
            values = signature(hashes)
            bands = band_hashes(values)
            candidates = _candidates(db, release_id, bands)
            if candidates:  # a candidate far below the threshold by its MinHash is not read
                estimates = _estimates(db, values, candidates)
                candidates = {c for c in candidates if estimates.get(c, 1.0) >= PREFILTER}
        else:
            values, bands, candidates = None, None, set()
        _store_bands(db, release_id, hashes, bands, values)
        existing = set(_linked(db, release_id, RELATION))
        for other in sorted(candidates | existing):
            score = jaccard(hashes, texts.shingles(other)) if bands else 0.0
            if score >= THRESHOLD:
                guess = estimate(values, signature(texts.shingles(other)))
                if other not in existing:
                    changed.update((release_id, other))
                add_link(db, release_id, other, RELATION, round(score, 4),
                         f"minhash {guess:.2f} (jaccard {score:.2f})", at)
            elif other in existing:
                _unlink(db, release_id, other, RELATION)
                changed.update((release_id, other))
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
    with_family = {row[0] for start in range(0, len(ids), 500) for row in db.execute(
        "select release_id from family_members where release_id in "
        f"({', '.join('?' * len(ids[start:start + 500]))})", ids[start : start + 500]).fetchall()}
    if changed or with_family:  # a member's text changed: its diff (or the first copy) too
        refresh_families(db, sorted(changed | with_family), texts)


# --- Families ---------------------------------------------------------------------------------

def _component(db, start: int, seen: set[int]) -> list[int]:
    todo, members = [start], {start}
    while todo:
        for other in _linked(db, todo.pop()):
            if other not in members:
                members.add(other)
                todo.append(other)
    seen.update(members)
    return sorted(members)


def _first(rows: dict) -> int:
    """Published first, then first seen, then smallest id (unknown dates last)."""
    return min(rows, key=lambda i: (rows[i]["published"] is None, rows[i]["published"] or "",
                                    rows[i]["first_seen"] or "", i))


def _reposts_of(db, first: int, members: set[int]) -> set[int]:
    """Members reached from the first copy through repost links only."""
    reached, todo = {first}, [first]
    while todo:
        for other in _linked(db, todo.pop(), RELATION):
            if other in members and other not in reached:
                reached.add(other)
                todo.append(other)
    return reached


def _family_diff(first: dict, member: dict) -> str:
    diff = unified_diff(first["title"], first["text"], member["title"], member["text"], 1, 2).split("\n")
    if len(diff) >= 2:
        diff[0] = f"--- release {first['id']} ({first['source_id']}, first copy)"
        diff[1] = f"+++ release {member['id']} ({member['source_id']})"
    return "\n".join(diff)


def _write_family(db, members: list[int], texts: Texts) -> None:
    columns = ("id", "source_id", "published", "first_seen", "language", "title", "text", "last_changed")
    rows = {}
    for start in range(0, len(members), 500):
        chunk = members[start : start + 500]
        for row in db.execute(f"select {', '.join(columns)} from releases where id in ({', '.join('?' * len(chunk))})",
                              chunk).fetchall():
            rows[row[0]] = dict(zip(columns, row))
    family_id, first = min(rows), _first(rows)
    reposts = _reposts_of(db, first, set(rows))
    link_times = [row[0] for start in range(0, len(members), 500) for row in db.execute(
        "select linked_at from release_links where release_id in "
        f"({', '.join('?' * len(members[start:start + 500]))})", members[start : start + 500]).fetchall()]
    updated = max([t for t in link_times if t] + [r["last_changed"] for r in rows.values() if r["last_changed"]],
                  default=None)
    for release_id, row in sorted(rows.items()):
        if release_id == first:
            relation, similarity, diff = "first", 1.0, None
        elif release_id in reposts:
            relation, diff = RELATION, _family_diff(rows[first], row)
            similarity = round(jaccard(texts.shingles(first), texts.shingles(release_id)), 4)
        else:
            relation, similarity, diff = "translation", None, None
        db.execute("insert or replace into family_members (release_id, family_id, relation, similarity, diff) "
                   "values (?, ?, ?, ?, ?)", [release_id, family_id, relation, similarity, diff])
        db.execute("update releases set family_id = ? where id = ? and family_id is not ?",
                   [family_id, release_id, family_id])
    first_row = rows[first]
    db.execute(
        "insert or replace into families (id, first_release_id, first_source_id, first_published, member_count, "
        "languages, sources, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [family_id, first, first_row["source_id"], first_row["published"], len(rows),
         json.dumps(sorted({r["language"] for r in rows.values() if r["language"]})),
         json.dumps(sorted({r["source_id"] for r in rows.values() if r["source_id"]})), updated])


def refresh_families(db, release_ids, texts: Texts | None = None) -> None:
    """Recompute the families holding these releases (and the families they were in): members,
    first copy, diffs, the ``families`` row and ``releases.family_id``. A family whose links are
    gone splits; a release left without links leaves its family."""
    seeds = {int(i) for i in release_ids}
    if not seeds:
        return
    ordered = sorted(seeds)
    old_families = set()
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        old_families.update(row[0] for row in db.execute(
            f"select family_id from family_members where release_id in ({', '.join('?' * len(chunk))})", chunk))
    for family_id in sorted(old_families):
        seeds.update(row[0] for row in db.execute(
            "select release_id from family_members where family_id = ?", [family_id]))
    texts, seen, kept = texts or Texts(db), set(), set()
    for release_id in sorted(seeds):
        if release_id in seen:
            continue
        members = _component(db, release_id, seen)
        if len(members) < 2:
            db.execute("delete from family_members where release_id = ?", [release_id])
            db.execute("update releases set family_id = null where id = ? and family_id is not null", [release_id])
            continue
        _write_family(db, members, texts)
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
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
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
    for statement in ("delete from minhash_bands", "delete from minhash_releases", "delete from release_links",
                      "delete from family_members", "delete from families",
                      "update releases set family_id = null where family_id is not null"):
        db.execute(statement)
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
