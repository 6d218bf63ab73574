"""Related statements: "more like this" from the search index, in any language.

For a release published on day D, :func:`related` lists up to ``limit`` releases of **other**
sources published from D - ``days`` to D + ``days`` (inclusive) that share its rarest terms.
It reads only the search index (archive/search_index.py) and the ``releases`` rows of that
window, so its cost follows the window, not the archive:

1. The release's terms are the tokens FTS5 indexed for its title and text: words (lower-cased,
   diacritics removed, as ``unicode61 remove_diacritics 2`` does) and, for Chinese, Japanese
   and Korean, the character pairs of the search form. Single characters and numbers are
   left out (a date, a "的" say nothing of the subject).
2. For each term, the releases of the window holding it (one FTS5 phrase query, restricted to
   the window by its rowid, which starts with the publication date): its count there,
   ``df``, says how rare the term is around that date.
3. The :data:`TERMS` rarest terms found in at least one release of another source are chosen
   (``df`` ascending, then the term), each weighted ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``
   with ``N`` the releases in the window (BM25's idf, never negative). A term held by more than
   half of the window's releases (``df > N / 2``; at least 2 always count) is no subject: "the",
   "ministry", "的确" are never chosen, so a short release is not related by its common words.
4. A release of another source sharing at least :data:`MIN_SHARED` of them is related; its
   score is the sum of the idf of the terms it shares.

Order (exact and deterministic): score descending, then the distance in days from D, then
the release id. A release without a full publication date (``YYYY-MM-DD``) has no window and
no related statements. Reposts and translations are not excluded: they are related too (the
release page lists them in its family as well).
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, timedelta
from typing import NamedTuple

from archive.search_index import FTS_TABLE, ID_BITS, UNIGRAMS_MARK, search_form

TERMS = 12  # rarest shared terms a release is compared on
MIN_SHARED = 2  # of them, at least this many in common
MAX_TERMS = 2000  # distinct terms of one release looked up (title first, then the text in order)
TOKEN = re.compile(r"[^\W_]+")


class Related(NamedTuple):
    id: int
    source_id: str | None
    published: str
    score: float
    terms: tuple[str, ...]  # the shared rare terms, rarest first


def _fold(token: str) -> str:
    """A token as unicode61 with remove_diacritics 2 indexes it."""
    decomposed = unicodedata.normalize("NFKD", token)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def release_terms(title: str | None, text: str | None) -> list[str]:
    """Distinct indexed terms of a title and text, in order of first appearance (title first)."""
    seen: dict[str, None] = {}
    for value in (title, text):
        form = search_form(value).split(UNIGRAMS_MARK)[0]  # (the list of single CJK characters)
        for token in TOKEN.findall(form):
            term = _fold(token)
            if len(term) > 1 and not term.isdigit() and term not in seen:
                seen[term] = None
                if len(seen) >= MAX_TERMS:
                    return list(seen)
    return list(seen)


def idf(window: int, df: int) -> float:
    return math.log(1 + (window - df + 0.5) / (df + 0.5))


def _day(published) -> date | None:
    try:
        return date.fromisoformat(str(published or "")[:10])
    except ValueError:
        return None


def related(db, release_id: int, limit: int = 5, days: int = 14) -> list[Related]:
    """Up to ``limit`` releases of other sources within ``days`` of this one that share its
    rarest terms (module docstring: terms, scores and order). ``db``: a ``sqlite3.Connection``
    or ``sqlite_utils.Database`` of an archive with a search index."""
    row = db.execute("select source_id, published, title, text from releases where id = ?",
                     [release_id]).fetchone()
    if row is None:
        return []
    source_id, published, title, text = row[0], row[1], row[2], row[3]
    day = _day(published)
    if day is None or limit <= 0:
        return []
    first, last = day - timedelta(days=days), day + timedelta(days=days)
    window = {r[0]: (r[1], r[2]) for r in db.execute(
        "select id, source_id, published from releases where published between ? and ?",
        [first.isoformat(), last.isoformat() + "\uffff"]).fetchall()}
    low = int(first.strftime("%Y%m%d")) * ID_BITS
    high = int(last.strftime("%Y%m%d")) * ID_BITS + ID_BITS - 1
    found = []  # (df, term, ids of other sources)
    for term in release_terms(title, text):
        ids = [r[0] % ID_BITS for r in db.execute(
            f"select rowid from {FTS_TABLE} where {FTS_TABLE} match ? and rowid between ? and ?",
            [f'{{title text}} : "{term}"', low, high]).fetchall()]
        others = [i for i in ids if i in window and window[i][0] != source_id]
        if others and len(ids) <= max(2, len(window) // 2):
            found.append((len(ids), term, others))
    found.sort(key=lambda entry: (entry[0], entry[1]))
    scores: dict[int, float] = {}
    shared: dict[int, list[str]] = {}
    for df, term, others in found[:TERMS]:
        weight = idf(len(window), df)
        for other in others:
            scores[other] = scores.get(other, 0.0) + weight
            shared.setdefault(other, []).append(term)
    chosen = sorted((other for other in scores if len(shared[other]) >= MIN_SHARED),
                    key=lambda other: (-round(scores[other], 9), _distance(window[other][1], day), other))
    return [Related(other, window[other][0], window[other][1], round(scores[other], 6), tuple(shared[other]))
            for other in chosen[:limit]]


def _distance(published, day: date) -> int:
    other = _day(published)
    return abs((other - day).days) if other else 10**6
