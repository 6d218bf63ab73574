"""Translation links: the language versions of one release, from what pages and the registry declare.

A translation is never guessed from the text (two texts in two languages can be alike without
one being the other's version). Two archived releases are linked as ``translation`` when:

- one's page declares the other's address (``release_alternates``, filled by the crawl from
  pipelines/extraction/alternates.py): ``<link rel="alternate" hreflang>``, a language
  switcher link, or a ``<link rel="canonical">`` naming it; or both pages name the same
  canonical address (evidence ``hreflang``, ``language switcher``, ``canonical``);
- or a source's registry key ``translations = { "/eng/" = "/chn/" }`` maps one address onto
  the other: the release's address with the left piece replaced by the right one (or the
  other way round) is the other release's, and one of the two belongs to that source
  (evidence ``registry /eng/ -> /chn/``);

and, in every case, the two are in different languages (the detected ``language``, compared
on its primary subtag; a release whose language is unknown is never linked): two pages in the
same language that point at each other are versions for two countries (en-GB, en-US) or a
repost, not a translation.

Site-wide links are not declarations: an address declared by more than
:data:`MAX_DECLARING` archived releases (the other language's home page, a template bug giving
every page one hreflang) is skipped, and a canonical address shared by two releases of the
same language (every page naming the home page as canonical) links none of them.

:func:`link_new` runs in the crawl's writer, in the batch's transaction, for the releases a
batch made new or changed, or whose page declared something new. Both directions are
looked at (what this release declares, what archived releases declare about it), so a
translation crawled later (another source, another day) is linked when it arrives. Links
and families are written by archive/families.py (``add_link``, ``refresh_families``).
:func:`link_all` does the whole archive (``pressarchive link --rebuild``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import NamedTuple

from archive.clock import now_iso
from archive.sql import chunks, marks
from archive.urls import scheme_twin

RELATION = "translation"
SCORE = 1.0  # declared, not estimated
MAX_DECLARING = 10
EVIDENCE_ORDER = ("hreflang", "language switcher", "canonical")  # ... then the registry's


class Release(NamedTuple):
    id: int
    url: str
    source_id: str | None
    language: str | None


def primary_language(language: str | None) -> str | None:
    """``zh-CN`` -> ``zh``; None when unknown."""
    tag = (language or "").strip().replace("_", "-").split("-")[0].lower()
    return tag or None


def different_languages(a: str | None, b: str | None) -> bool:
    first, second = primary_language(a), primary_language(b)
    return first is not None and second is not None and first != second


def _release_by_id(db, release_id: int) -> Release | None:
    row = db.execute("select id, url, source_id, language from releases where id = ?", [release_id]).fetchone()
    return Release(*row) if row else None


def _release_by_url(db, url: str) -> Release | None:
    row = db.execute("select id, url, source_id, language from releases where url in (?, ?) order by id limit 1",
                     [url, scheme_twin(url)]).fetchone()
    return Release(*row) if row else None


def registry_pairs(db) -> list[tuple[str, str, str]]:
    """(source id, piece, other piece) of every source's ``translations`` key in the archive."""
    try:
        rows = db.execute("select id, translations from sources where translations is not null order by id").fetchall()
    except sqlite3.OperationalError as error:
        if "no such column" not in str(error):
            raise
        return []  # an archive made before the key
    pairs = []
    for source_id, value in rows:
        try:
            mapping = json.loads(value)
        except ValueError:
            continue
        if isinstance(mapping, dict):
            pairs += [(source_id, piece, other) for piece, other in mapping.items()
                      if isinstance(other, str) and piece and other and piece != other]
    return pairs


def _declared(db, release: Release):
    """(other release, evidence) for what this release's page declares and what others declare of it."""
    own = [release.url, scheme_twin(release.url)]
    for url, evidence in db.execute(
            "select url, evidence from release_alternates where release_id = ? order by url", [release.id]).fetchall():
        declaring = db.execute("select count(*) from (select 1 from release_alternates where url in (?, ?) "
                               f"limit {MAX_DECLARING + 1})", [url, scheme_twin(url)]).fetchone()[0]
        if declaring > MAX_DECLARING:
            continue
        other = _release_by_url(db, url)
        if other is not None:
            yield other, evidence
        if evidence == "canonical":  # the same canonical named by other pages
            for (other_id,) in db.execute(
                    "select release_id from release_alternates where url in (?, ?) and evidence = 'canonical' "
                    "and release_id != ? order by release_id", [url, scheme_twin(url), release.id]).fetchall():
                other = _release_by_id(db, other_id)
                if other is not None:
                    yield other, "canonical"
    incoming = db.execute("select release_id, evidence from release_alternates where url in (?, ?) "
                          f"order by release_id limit {MAX_DECLARING + 1}", own).fetchall()
    if len(incoming) <= MAX_DECLARING:
        for other_id, evidence in incoming:
            other = _release_by_id(db, other_id)
            if other is not None:
                yield other, evidence


def _canonical_is_shared_by_one_language(db, release: Release, other: Release) -> bool:
    """A canonical address two releases of one language name (or name and hold) is site-wide."""
    urls = {url for (url,) in db.execute(
        "select url from release_alternates where release_id in (?, ?) and evidence = 'canonical'",
        [release.id, other.id]).fetchall()} | {release.url, other.url}
    for url in urls:
        group = [row[0] for row in db.execute(
            "select r.language from release_alternates a join releases r on r.id = a.release_id "
            "where a.url in (?, ?) and a.evidence = 'canonical' "
            "union all select language from releases where url in (?, ?)",
            [url, scheme_twin(url), url, scheme_twin(url)]).fetchall()]
        languages = [primary_language(language) for language in group]
        if len(group) > 1 and len(set(languages)) < len(languages):
            return True
    return False


def _registered(db, release: Release, pairs):
    """(other release, evidence) from the registry's ``translations`` pieces."""
    for source_id, piece, other_piece in pairs:
        for find, put in ((piece, other_piece), (other_piece, piece)):
            if find not in release.url:
                continue
            other = _release_by_url(db, release.url.replace(find, put, 1))
            if other is not None and source_id in (release.source_id, other.source_id):
                yield other, f"registry {piece} -> {other_piece}"


def find_links(db, release_ids, pairs=None) -> dict[tuple[int, int], list[str]]:
    """(smaller id, larger id) -> evidence, for the translations of these releases."""
    pairs = registry_pairs(db) if pairs is None else pairs
    links: dict[tuple[int, int], list[str]] = {}
    pieces = {piece for _, one, other in pairs for piece in (one, other)}
    for release, declares in _with_evidence(db, list(dict.fromkeys(release_ids)), pieces):
        found_here = [*(_declared(db, release) if declares else ()), *_registered(db, release, pairs)]
        for other, evidence in found_here:
            if other.id == release.id or not different_languages(release.language, other.language):
                continue
            if evidence == "canonical" and _canonical_is_shared_by_one_language(db, release, other):
                continue
            found = links.setdefault((min(release.id, other.id), max(release.id, other.id)), [])
            if evidence not in found:
                found.append(evidence)
    return {pair: sorted(evidence, key=_evidence_rank) for pair, evidence in links.items()}


def _with_evidence(db, release_ids: list[int], pieces: set[str]):
    """(release, whether a page declares something of it) for the releases that may have a
    translation: those whose page declares another version or whose address another page
    declares, and those whose address holds a piece of a registry ``translations`` key. A few
    queries for all of them (most new releases have none)."""
    for chunk in chunks(release_ids):
        releases = {row[0]: Release(*row) for row in db.execute(
            f"select id, url, source_id, language from releases where id in ({marks(chunk)})", chunk).fetchall()}
        declaring = {row[0] for row in db.execute(
            f"select distinct release_id from release_alternates where release_id in ({marks(chunk)})",
            chunk).fetchall()}
        twins = {release_id: scheme_twin(release.url) for release_id, release in releases.items()}
        urls = [url for release_id, release in releases.items() for url in (release.url, twins[release_id])]
        declared_urls = {row[0] for part in chunks(urls) for row in db.execute(
            f"select distinct url from release_alternates where url in ({marks(part)})", part).fetchall()}
        for release_id in chunk:
            release = releases.get(release_id)
            if release is None:
                continue
            declares = release_id in declaring or release.url in declared_urls or twins[release_id] in declared_urls
            if declares or any(piece in release.url for piece in pieces):
                yield release, declares


def _evidence_rank(evidence: str) -> tuple[int, str]:
    return (EVIDENCE_ORDER.index(evidence) if evidence in EVIDENCE_ORDER else len(EVIDENCE_ORDER), evidence)


def link_new(db, release_ids, at: str | None = None) -> list[tuple[int, int]]:
    """Link the translations of these releases (new, changed, or with new page evidence) and
    refresh their families. Returns the pairs linked (already linked ones included)."""
    links = find_links(db, release_ids)
    if not links:
        return []
    # (imported here, not at the top: archive.families calls this module's link_new)
    from archive import families

    at = at or now_iso()
    for (a, b), evidence in sorted(links.items()):
        families.add_link(db, a, b, RELATION, SCORE, "; ".join(evidence), at)
    families.refresh_families(db, sorted({i for pair in links for i in pair}))
    return sorted(links)


def link_all(db, batch: int = 5000, at: str | None = None) -> int:
    """Link every translation the archive holds evidence for (``pressarchive link --rebuild``).

    Only releases that declare something, and releases of sources with a ``translations`` key,
    need looking at: every link has one of them on a side. Returns the pairs linked."""
    pairs = registry_pairs(db)
    sources = sorted({source_id for source_id, _, _ in pairs})
    ids = [row[0] for row in db.execute("select distinct release_id from release_alternates order by release_id")]
    for chunk in chunks(sources):
        ids += [row[0] for row in db.execute(
            f"select id from releases where source_id in ({marks(chunk)}) order by id", chunk)]
    linked: set[tuple[int, int]] = set()
    for chunk in chunks(sorted(set(ids)), batch):
        linked.update(link_new(db, chunk, at=at))
    return len(linked)
