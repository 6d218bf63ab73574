"""Datasette plugin: a release page a reader can read and cite, and the archived original.

- **The release page** is Datasette's own row page, ``/<db>/releases/<id>``: the row
  template (``templates/row.html``) switches to ``release.html`` for the ``releases`` table,
  and :func:`extra_template_vars` gives it what a reader needs and one row does not hold:
  the publisher (``sources``), every version with its diff (``release_versions``), the
  removal events (``removals``), the attached documents (``release_files``) and the other
  releases with the same text (``content_hash``). ``/<db>/releases/<id>.json`` and every
  other table's row page stay Datasette's own.
- **The archived original**, ``/-/original/<db>/<id>[?version=N | ?file=URL]``: the response
  body as the crawl captured it, read from its WARC record (``archive.warc.read_capture``;
  the WARC folder is ``warc/`` beside the archive, as for the crawl and ``reextract``). It is
  served inert: ``Content-Security-Policy: sandbox`` without ``allow-scripts`` (archived
  scripts never run; the page gets an opaque origin, no forms, no pop-ups, and Chromium
  refuses its ``<meta http-equiv=refresh>``), ``default-src 'none'`` (nothing is fetched:
  images only from ``data:``), ``nosniff``, no referrer, and none of the archived headers
  (an archived ``Location`` or ``Refresh`` is never replayed). The archived ``Content-Type``
  (charset included) is kept; a PDF is a download. Memento headers (RFC 7089) say what it
  is an original of and when it was captured. A missing WARC file is a 404 page and an
  unreadable record a 410 page, each saying what is wrong and where: never a 500.
- **Cite this**: a ready citation, and the same as BibTeX and CSL-JSON, on the page and at
  ``/-/cite/<db>/<id>.bib`` / ``.json``. The checksum cited is the SHA-256 of the text as
  archived (UTF-8), computed here from the text served: the ``content_hash`` column is the
  SHA-256 of the *normalised* text, the same value for every text the crawl stored.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import re
import sqlite3
import time
import urllib.parse
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import NamedTuple

from datasette import Forbidden, Response, hookimpl
from datasette.utils import tilde_decode, tilde_encode
from datasette.version import __version__
from markupsafe import Markup, escape

from archive.related import related
from archive.warc import CaptureUnreadable, read_capture

PLUGIN = "pressarchive_release"

# Scripts written right to left: the text element gets dir="rtl".
RTL_LANGUAGES = {"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ku", "ps", "sd", "ug", "ur", "yi"}
LANGUAGE_NAMES = {
    "ar": "Arabic", "de": "German", "en": "English", "es": "Spanish", "fa": "Persian", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian",
    "ur": "Urdu", "vi": "Vietnamese", "zh": "Chinese",
}
# Where the published date came from (the date_source column; pipelines/dates.py).
DATE_SOURCES = {
    "meta": "the page's metadata", "json-ld": "the page's structured data (JSON-LD)",
    "time": "a date element in the page", "text": "the text of the page", "url": "the page's address",
    "feed": "the site's feed", "sitemap": "the site's sitemap", "listing": "the site's listing page",
    "selector": "the place the source's registry entry points at",
    "htmldate": "a guess from the page (htmldate): check it against the original",
}
CHANGES = {"first": "first archived", "edit": "edited by the publisher",
           "extraction": "re-extracted: pressarchive's cleaning changed, the page did not"}
STATEMENT_TYPES = {"press_release": "Press release", "press_conference": "Press conference or remarks",
                   "joint_statement": "Joint statement"}
SAME_TEXT_MAX = 50  # other releases with the same text listed on the page (the query lists them all)
FAMILY_MAX = 50  # members of a family listed on the page (the family_members table lists them all)
RELATIONS = {"first": "first copy", "repost": "repost", "translation": "translation"}

# The archived original: nothing runs, nothing is fetched, nothing is followed.
ORIGINAL_CSP = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline' data:; "
                "font-src data:; media-src data:; form-action 'none'; base-uri 'none'; "
                "frame-ancestors 'self'")
INLINE_TYPES = ("text/html", "text/plain", "application/xhtml+xml")


# --- reading the archive -----------------------------------------------------------------


RELEASE_SQL = "select * from releases where id = :id"
SOURCE_SQL = "select id, name, country, kind, homepage from sources where id = :id"
VERSIONS_SQL = """select id, version, fetched_at, change, title, published, diff, warc_file, warc_offset
    from release_versions where release_id = :id order by version"""
REMOVALS_SQL = "select event, at, http_status, detail from removals where release_id = :id order by at, id"
FILES_SQL = """select url, title, content_type, text_status, pages, fetched_at, warc_file
    from release_files where release_id = :id order by url"""
# The same text under other addresses; the first 12 hex digits are the indexed key (archive/schema.py).
SAME_TEXT_SQL = f"""select r.id, r.title, r.published, r.source_id, s.name as publisher, r.url, r.status
    from releases r left join sources s on s.id = r.source_id
    where substr(r.content_hash, 1, 12) = substr(:hash, 1, 12) and r.content_hash = :hash and r.id != :id
    order by r.published, r.id limit {SAME_TEXT_MAX + 1}"""
VERSION_CAPTURE_SQL = """select version, fetched_at, warc_file, warc_offset from release_versions
    where release_id = :id and version = :version"""
FILE_CAPTURE_SQL = """select url, fetched_at, content_type, warc_file, warc_offset from release_files
    where release_id = :id and url = :url"""
# The family (archive/families.py): its row, and its members, the first copy first.
FAMILY_SQL = "select * from families where id = :family_id"
FAMILY_MEMBERS_SQL = f"""select m.release_id as id, m.relation, m.similarity, m.diff, r.title, r.published,
        r.first_seen, r.language, r.source_id, s.name as publisher, r.url, r.status
    from family_members m join releases r on r.id = m.release_id left join sources s on s.id = r.source_id
    where m.family_id = :family_id
    order by m.relation != 'first', r.published is null, r.published, r.first_seen, r.id limit {FAMILY_MAX + 1}"""
# Translation links of the release, either side (stored once per pair, smaller id first).
TRANSLATIONS_SQL = """select r.id, r.title, r.published, r.language, r.source_id, s.name as publisher, r.url,
        r.status, l.evidence
    from release_links l join releases r on r.id = case when l.release_id = :id then l.other_id else l.release_id end
    left join sources s on s.id = r.source_id
    where (l.release_id = :id or l.other_id = :id) and l.relation = 'translation'
    order by r.language, r.published, r.id"""


async def _one(db, sql: str, params: dict) -> dict | None:
    rows = (await db.execute(sql, params)).rows
    return dict(rows[0]) if rows else None


async def _all(db, sql: str, params: dict) -> list[dict]:
    return [dict(row) for row in (await db.execute(sql, params)).rows]


async def _has_table(db, name: str) -> bool:
    return await db.table_exists(name)


def warc_folder(datasette, db) -> Path | None:
    """The WARC folder of ``db``: the plugin's ``warc_dir`` setting (relative to the archive's
    folder), else ``warc/`` beside the archive, as the crawl writes it."""
    if not getattr(db, "path", None):
        return None
    base = Path(db.path).parent
    configured = (datasette.plugin_config(PLUGIN, database=db.name) or {}).get("warc_dir")
    return base / configured if configured else base / "warc"


# --- what the page shows -----------------------------------------------------------------


def language_tag(language: str | None) -> str | None:
    """A BCP 47 tag for ``lang`` (the stored code, tidied), or None when unknown."""
    tag = (language or "").strip().replace("_", "-")
    return tag if re.fullmatch(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", tag) else None


def language_name(language: str | None) -> str:
    tag = language_tag(language)
    if not tag:
        return "unknown language"
    return LANGUAGE_NAMES.get(tag.split("-")[0].lower(), tag)


def text_direction(language: str | None) -> str:
    tag = language_tag(language) or ""
    return "rtl" if tag.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


def statement_type_label(value: str | None) -> str:
    if not value or value == "other":
        return "Official statement"
    return STATEMENT_TYPES.get(value, value.replace("_", " ").capitalize())


def human_date(iso: str | None) -> str | None:
    """"2024-03-11" -> "11 March 2024"; a timestamp keeps its time (UTC)."""
    if not iso:
        return None
    try:
        if len(iso) == 10:
            day = datetime.strptime(iso, "%Y-%m-%d")
            return f"{day.day} {day:%B %Y}"
        when = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(timezone.utc)
        return f"{when.day} {when:%B %Y, %H:%M} UTC"
    except ValueError:
        return iso


def paragraphs(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").split("\n") if line.strip()]


def text_sha256(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


# --- diffs ---------------------------------------------------------------------------------

HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
# Words, single CJK characters, single punctuation marks and runs of spaces: what an edit changes.
DIFF_TOKEN = re.compile(r"\s+|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|\w+|[^\w\s]")
WORD_DIFF_MAX_TOKENS = 3000  # longer lines are marked whole (SequenceMatcher is quadratic)


class DiffLine(NamedTuple):
    kind: str  # context, removed, added, gap
    html: Markup
    is_title: bool = False


def _merged(tokens: list[str], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Changed spans separated only by spaces become one ("in <del>the autumn</del>")."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and all(t.isspace() for t in tokens[merged[-1][1]:start]):
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _marked(tokens: list[str], spans: list[tuple[int, int]], tag: str) -> Markup:
    out, at = [], 0
    for start, end in _merged(tokens, spans):
        out.append(str(escape("".join(tokens[at:start]))))
        out.append(f"<{tag}>{escape(''.join(tokens[start:end]))}</{tag}>")
        at = end
    out.append(str(escape("".join(tokens[at:]))))
    return Markup("".join(out))


def word_diff(old: str, new: str) -> tuple[Markup, Markup]:
    """``old`` and ``new`` as HTML with the words taken out in ``<del>``, those put in in ``<ins>``."""
    a, b = DIFF_TOKEN.findall(old), DIFF_TOKEN.findall(new)
    if len(a) > WORD_DIFF_MAX_TOKENS or len(b) > WORD_DIFF_MAX_TOKENS:
        return Markup(f"<del>{escape(old)}</del>"), Markup(f"<ins>{escape(new)}</ins>")
    removed, added = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            removed.append((i1, i2))
        if op in ("insert", "replace"):
            added.append((j1, j2))
    return _marked(a, removed, "del"), _marked(b, added, "ins")


def render_diff(diff: str | None) -> list[DiffLine]:
    """A unified diff of ``archive.history.unified_diff`` (line 1 is ``# title``) as lines to show.

    A run of removed lines followed by as many added ones is an edit of those lines: their
    changed words are marked. Other removed or added lines are marked whole.
    """
    lines: list[DiffLine] = []
    old_no = new_no = 0
    pending_removed: list[tuple[str, int]] = []
    pending_added: list[tuple[str, int]] = []

    def flush():
        if pending_removed and len(pending_removed) == len(pending_added):
            pairs = [word_diff(old, new) for (old, _), (new, _) in zip(pending_removed, pending_added)]
            lines.extend(DiffLine("removed", html, no == 1) for (html, _), (_, no) in zip(pairs, pending_removed))
            lines.extend(DiffLine("added", html, no == 1) for (_, html), (_, no) in zip(pairs, pending_added))
        else:
            lines.extend(DiffLine("removed", Markup(f"<del>{escape(t)}</del>"), no == 1)
                         for t, no in pending_removed)
            lines.extend(DiffLine("added", Markup(f"<ins>{escape(t)}</ins>"), no == 1) for t, no in pending_added)
        pending_removed.clear()
        pending_added.clear()

    for raw in (diff or "").splitlines():
        if raw.startswith(("--- ", "+++ ")) and not lines and not pending_removed and not pending_added \
                and old_no == 0:
            continue
        hunk = HUNK.match(raw)
        if hunk:
            flush()
            if lines:
                lines.append(DiffLine("gap", Markup("…")))
            old_no, new_no = int(hunk.group(1)), int(hunk.group(2))
            continue
        sign, text = raw[:1], raw[1:]
        if sign == "-":
            if pending_added:
                flush()
            pending_removed.append((_title_text(text, old_no), old_no))
            old_no += 1
        elif sign == "+":
            pending_added.append((_title_text(text, new_no), new_no))
            new_no += 1
        else:
            flush()
            lines.append(DiffLine("context", Markup(escape(_title_text(text, new_no)), ), new_no == 1))
            old_no += 1
            new_no += 1
    flush()
    return lines


def _title_text(text: str, line_no: int) -> str:
    return text[2:] if line_no == 1 and text.startswith("# ") else text


# --- citation ------------------------------------------------------------------------------


class Citation(NamedTuple):
    publisher: str
    title: str
    published: str | None  # YYYY-MM-DD
    url: str
    archived: str  # ISO 8601 UTC: when the cited text was fetched
    release_id: int
    version: int
    page_url: str
    sha256: str
    language: str | None
    kind: str

    @property
    def archive_id(self) -> str:
        return f"release {self.release_id}, version {self.version}"

    def text(self) -> str:
        published = f"published {self.published}" if self.published else "date of publication unknown"
        return (f"{self.publisher}. \u201c{self.title}.\u201d {self.kind}, {published}. {self.url}. "
                f"Archived {self.archived} by pressarchive ({self.archive_id}): {self.page_url}. "
                f"SHA-256 of the text: {self.sha256}.")

    def key(self) -> str:
        return f"pressarchive-{self.release_id}"

    def bibtex(self) -> str:
        fields = [("author", "{" + bibtex_escape(self.publisher) + "}"), ("title", bibtex_escape(self.title))]
        if self.published:
            fields += [("date", self.published), ("year", self.published[:4])]
            if len(self.published) >= 7:
                fields.append(("month", str(int(self.published[5:7]))))
        fields += [
            ("type", bibtex_escape(self.kind)),
            ("organization", bibtex_escape(self.publisher)),
            ("url", bibtex_url(self.url)),
            ("urldate", self.archived[:10]),
            ("note", bibtex_escape(f"Archived {self.archived} by pressarchive ({self.archive_id}), "
                                   f"{self.page_url}. SHA-256 of the text: {self.sha256}")),
        ]
        if self.language:
            fields.append(("langid", bibtex_escape(self.language)))
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        return f"@misc{{{self.key()},\n{body}\n}}\n"

    def csl(self) -> dict:
        item = {
            "id": self.key(),
            "type": "webpage",
            "genre": self.kind,
            "title": self.title,
            "author": [{"literal": self.publisher}],
            "publisher": self.publisher,
            "URL": self.url,
            "accessed": _csl_date(self.archived[:10]),
            "archive": "pressarchive",
            "archive_location": self.page_url,
            "note": f"Archived {self.archived} ({self.archive_id}). SHA-256 of the text: {self.sha256}",
        }
        if self.published:
            item["issued"] = _csl_date(self.published)
        if self.language:
            item["language"] = self.language
        return item


def _csl_date(iso: str) -> dict:
    parts = [int(p) for p in iso.split("-") if p.isdigit()]
    return {"date-parts": [parts]} if parts else {"literal": iso}


BIBTEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$",
                  "#": r"\#", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def bibtex_escape(value: str) -> str:
    return "".join(BIBTEX_SPECIAL.get(c, c) for c in " ".join((value or "").split()))


def bibtex_url(url: str) -> str:
    """A URL for biblatex's verbatim ``url`` field: braces, backslashes and spaces percent-encoded."""
    return re.sub(r"[{}\\\s]", lambda m: urllib.parse.quote(m.group(0)), url)


def citation_for(release: dict, publisher: str, page_url: str) -> Citation:
    return Citation(
        publisher=publisher, title=release.get("title") or f"Release {release['id']}",
        published=release.get("published"), url=release.get("url") or "",
        archived=release.get("last_changed") or release.get("first_seen") or "",
        release_id=release["id"], version=release.get("version_count") or 1, page_url=page_url,
        sha256=text_sha256(release.get("text")), language=language_tag(release.get("language")),
        kind=statement_type_label(release.get("statement_type")),
    )


# --- the release page ------------------------------------------------------------------------


def _release_id(request) -> int | None:
    pks = request.url_vars.get("pks") if request else None
    if not pks:
        return None
    value = tilde_decode(pks.split(",")[0])
    return int(value) if value.isdigit() else None


def original_url(datasette, database: str, release_id: int, **args) -> str:
    query = urllib.parse.urlencode({k: v for k, v in args.items() if v is not None})
    path = datasette.urls.path(f"-/original/{tilde_encode(datasette.get_database(database).route)}/{release_id}")
    return f"{path}?{query}" if query else str(path)


def cite_url(datasette, database: str, release_id: int, extension: str) -> str:
    route = tilde_encode(datasette.get_database(database).route)
    return str(datasette.urls.path(f"-/cite/{route}/{release_id}.{extension}"))


def _linked(datasette, database: str, items: list[dict]) -> list[dict]:
    """Rows about other releases, with their page's address, date and language for the page."""
    for item in items:
        item["href"] = datasette.urls.row(database, "releases", str(item["id"]))
        item["when"] = human_date(item.get("published"))
        item["language_name"] = language_name(item.get("language"))
        item["lang"] = language_tag(item.get("language"))
        item["dir"] = text_direction(item.get("language"))
    return items


async def family_context(datasette, database: str, db, release: dict) -> dict | None:
    """The release's family (archive/families.py): its row and members (first copy first, each
    with its diff against the first copy), or None when it has none."""
    family_id = release.get("family_id")
    if family_id is None or not (await _has_table(db, "families") and await _has_table(db, "family_members")):
        return None
    family = await _one(db, FAMILY_SQL, {"family_id": family_id})
    if family is None:
        return None
    members = _linked(datasette, database, await _all(db, FAMILY_MEMBERS_SQL, {"family_id": family_id}))
    for member in members:
        member["relation_label"] = RELATIONS.get(member.get("relation"), member.get("relation") or "")
        member["lines"] = render_diff(member.get("diff")) if member.get("relation") == "repost" else []
        member["is_this"] = member["id"] == release["id"]
    first = next((m for m in members if m.get("relation") == "first"), None)
    return {
        "id": family_id,
        "row": family,
        "members": members[:FAMILY_MAX],
        "more": len(members) > FAMILY_MAX,
        "count": family.get("member_count") or len(members),
        "first": first,
        "first_when": human_date(family.get("first_published")),
        "members_url": (datasette.urls.table(database, "family_members") + "?"
                        + urllib.parse.urlencode({"family_id": family_id})),
        "row_url": datasette.urls.row(database, "families", str(family_id)),
    }


RELATED_TIMEOUT = "related statements took too long to find"


async def related_context(datasette, database: str, db, release: dict) -> tuple[list[dict], str | None]:
    """Related statements (archive/related.py) with what the page shows of each, or why there
    are none to show: (items, problem)."""
    if not release.get("published"):
        return [], None
    deadline = time.perf_counter() + datasette.setting("sql_time_limit_ms") / 1000

    def find(conn):
        conn.set_progress_handler(lambda: time.perf_counter() >= deadline, 1000)
        try:
            return related(conn, release["id"])
        finally:
            conn.set_progress_handler(None, 1000)

    try:
        found = await db.execute_fn(find)
    except sqlite3.OperationalError as error:
        if "interrupted" in str(error):
            return [], RELATED_TIMEOUT
        return [], f"the search index cannot be read ({error}); run pressarchive reindex"
    if not found:
        return [], None
    params = {f"p{n}": item.id for n, item in enumerate(found)}
    rows = await _all(db, "select r.id, r.title, r.published, r.language, r.source_id, s.name as publisher, r.url, "
                          "r.status from releases r left join sources s on s.id = r.source_id "
                          f"where r.id in ({', '.join(':' + key for key in params)})", params)
    by_id = {row["id"]: row for row in rows}
    items = [dict(by_id[item.id], score=item.score, terms=list(item.terms)) for item in found if item.id in by_id]
    has_links = await _has_table(db, "release_links")
    for item in items:  # each related statement's own language versions, named with it
        item["translations"] = (_linked(datasette, database, await _all(db, TRANSLATIONS_SQL, {"id": item["id"]}))
                                if has_links else [])
    return _linked(datasette, database, items), None


async def release_context(datasette, database: str, release_id: int, request) -> dict | None:
    db = datasette.get_database(database)
    release = await _one(db, RELEASE_SQL, {"id": release_id})
    if release is None:
        return None
    source = (await _one(db, SOURCE_SQL, {"id": release.get("source_id")})
              if await _has_table(db, "sources") else None) or {}
    versions = await _all(db, VERSIONS_SQL, {"id": release_id}) if await _has_table(db, "release_versions") else []
    removals = await _all(db, REMOVALS_SQL, {"id": release_id}) if await _has_table(db, "removals") else []
    files = await _all(db, FILES_SQL, {"id": release_id}) if await _has_table(db, "release_files") else []
    same = (await _all(db, SAME_TEXT_SQL, {"id": release_id, "hash": release["content_hash"]})
            if release.get("content_hash") else [])
    family = await family_context(datasette, database, db, release)
    translations = (_linked(datasette, database, await _all(db, TRANSLATIONS_SQL, {"id": release_id}))
                    if await _has_table(db, "release_links") else [])
    related_items, related_problem = await related_context(datasette, database, db, release)
    publisher = source.get("name") or release.get("source_id") or "Unknown publisher"
    page_url = datasette.absolute_url(request, datasette.urls.row(database, "releases", str(release_id)))
    citation = citation_for(release, publisher, page_url)
    for version in versions:
        version["lines"] = render_diff(version.get("diff"))
        version["change_label"] = CHANGES.get(version.get("change"), version.get("change") or "")
        version["when"] = human_date(version.get("fetched_at"))
        version["row_url"] = datasette.urls.row(database, "release_versions", str(version["id"]))
        version["original_url"] = (original_url(datasette, database, release_id, version=version["version"])
                                   if version.get("warc_file") else None)
    for event in removals:
        event["when"] = human_date(event.get("at"))
    for item in same:
        item["href"] = datasette.urls.row(database, "releases", str(item["id"]))
        item["when"] = human_date(item.get("published"))
    for item in files:
        item["original_url"] = (original_url(datasette, database, release_id, file=item["url"])
                                if item.get("warc_file") else None)
    removed = release.get("status") == "removed"
    return {
        "release": release,
        "release_title": release.get("title") or f"Release {release_id}",
        "release_lang": language_tag(release.get("language")),
        "release_dir": text_direction(release.get("language")),
        "release_language_name": language_name(release.get("language")),
        "release_type": statement_type_label(release.get("statement_type")),
        "release_published": human_date(release.get("published")),
        "release_date_source": DATE_SOURCES.get(release.get("date_source"), release.get("date_source")),
        "release_paragraphs": paragraphs(release.get("text")),
        "release_removed": removed,
        "release_removed_on": human_date(release.get("removed_at")) if removed else None,
        "release_last_checked": human_date(release.get("last_checked")),
        "release_first_seen": human_date(release.get("first_seen")),
        "release_archived": human_date(citation.archived),
        "publisher": publisher,
        "source": source,
        "source_url": (datasette.urls.row(database, "sources", tilde_encode(source["id"]))
                       if source.get("id") else None),
        "publisher_releases_url": (datasette.urls.table(database, "releases") + "?"
                                   + urllib.parse.urlencode({"source_id": release.get("source_id") or ""})),
        "versions": versions,
        "removals": removals,
        "attachments": files,
        "same_text": same[:SAME_TEXT_MAX],
        "same_text_more": len(same) > SAME_TEXT_MAX,
        "same_text_query_url": (datasette.urls.query(database, "same_text") + f"?id={release_id}"),
        "family": family,
        "translations": translations,
        "related": related_items,
        "related_problem": related_problem,
        "original_url": (original_url(datasette, database, release_id) if release.get("warc_file") else None),
        "citation": citation,
        "citation_bibtex": citation.bibtex(),
        "citation_csl": json.dumps([citation.csl()], ensure_ascii=False, indent=2),
        "cite_bib_url": cite_url(datasette, database, release_id, "bib"),
        "cite_csl_url": cite_url(datasette, database, release_id, "json"),
        "row_json_url": datasette.urls.row(database, "releases", str(release_id), format="json"),
        "record_fields": [(k, v) for k, v in release.items() if k != "text" and v is not None],
    }


@hookimpl
def extra_template_vars(template, database, table, view_name, request, datasette):
    if view_name != "row" or table != "releases" or request is None:
        return {}
    release_id = _release_id(request)
    if release_id is None:
        return {}

    async def inner():
        context = await release_context(datasette, database, release_id, request)
        return {"release_page": context} if context else {}

    return inner


@hookimpl
def extra_css_urls(template, table, view_name, datasette):
    if (view_name == "row" and table == "releases") or template.startswith(("release", "original")):
        return [str(datasette.urls.path("/pressarchive-static/release.css"))]
    return []


# --- the archived original and the citation files -----------------------------------------------


class Unavailable(Exception):
    """The page the reader gets instead: a status and one sentence saying what and where."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


async def _resolve(datasette, request) -> tuple[object, int]:
    try:
        db = datasette.get_database(route=tilde_decode(request.url_vars["database"]))
    except KeyError:
        raise Unavailable(404, "No such archive", f"This site serves no archive named "
                                                  f"{request.url_vars['database']!r}.") from None
    await datasette.ensure_permissions(request.actor, [("view-table", (db.name, "releases")),
                                                       ("view-database", db.name), "view-instance"])
    return db, int(request.url_vars["release_id"])


async def _capture_location(db, release_id: int, request) -> tuple[dict, dict]:
    """(release, what to read: warc_file, warc_offset, label, content_type, fetched_at)."""
    release = await _one(db, RELEASE_SQL, {"id": release_id})
    if release is None:
        raise Unavailable(404, "No such release", f"The archive holds no release {release_id}.")
    version, attachment = request.args.get("version"), request.args.get("file")
    versions = release.get("version_count") or 1
    if version is not None:
        if not version.isdigit():
            raise Unavailable(400, "Bad version", f"version={version!r} is not a version number "
                                                  f"(release {release_id} has versions 1 to {versions}).")
        row = await _one(db, VERSION_CAPTURE_SQL, {"id": release_id, "version": int(version)})
        if row is None:
            raise Unavailable(404, "No such version", f"Release {release_id} has no version {version} "
                                                      f"(it has 1 to {versions}).")
        return release, {**row, "label": f"version {row['version']} of release {release_id}",
                         "content_type": release.get("content_type")}
    if attachment is not None:
        row = await _one(db, FILE_CAPTURE_SQL, {"id": release_id, "url": attachment})
        if row is None:
            raise Unavailable(404, "No such document", f"Release {release_id} has no attached document {attachment}.")
        return release, {**row, "label": f"the document {attachment} attached to release {release_id}"}
    return release, {"warc_file": release.get("warc_file"), "warc_offset": release.get("warc_offset"),
                     "fetched_at": release.get("last_changed"), "label": f"release {release_id}",
                     "content_type": release.get("content_type")}


def _header(headers, name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _filename(url: str, content_type: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url or "").path.rsplit("/", 1)[-1]) or "original"
    name = re.sub(r"[^\w.-]+", "_", name, flags=re.ASCII)[:100] or "original"
    if content_type == "application/pdf" and not name.lower().endswith(".pdf"):
        name += ".pdf"
    return name


def _latin1(value: str | None) -> str | None:
    """``value`` if it can be an HTTP header value as it is, else None."""
    if value is None or "\r" in value or "\n" in value:
        return None
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return None
    return value


def original_headers(captured, fallback_type: str | None) -> dict:
    """What the archived original is served with: none of the archived headers but its Content-Type."""
    content_type = (_latin1(_header(captured.headers, "content-type")) or _latin1(fallback_type)
                    or "application/octet-stream")
    media = content_type.split(";")[0].strip().lower()
    disposition = "inline" if media in INLINE_TYPES else "attachment"
    headers = {
        "content-type": content_type,
        "content-security-policy": ORIGINAL_CSP,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "SAMEORIGIN",
        "cross-origin-resource-policy": "same-origin",
        "content-disposition": f'{disposition}; filename="{_filename(captured.url, media)}"',
        "cache-control": "private, max-age=3600",
        "x-archive-original-status": str(captured.status),
    }
    if captured.url and len(captured.url) < 2000:
        uri = urllib.parse.quote(captured.url, safe=":/?#[]@!$&'()*+,;=%~")  # IRIs, < and > escaped
        headers["link"] = f'<{uri}>; rel="original"'
    try:
        when = datetime.fromisoformat(captured.date.replace("Z", "+00:00"))
        headers["memento-datetime"] = format_datetime(when.astimezone(timezone.utc), usegmt=True)
    except (AttributeError, ValueError):
        pass
    return headers


async def _unavailable_page(datasette, request, problem: Unavailable) -> Response:
    html = await datasette.render_template(
        "original_unavailable.html",
        {"problem_title": problem.title, "problem": problem.message, "status": problem.status,
         "datasette_version": __version__},
        request=request,
    )
    return Response.html(html, status=problem.status)


async def original_view(request, datasette):
    try:
        db, release_id = await _resolve(datasette, request)
        _release, where = await _capture_location(db, release_id, request)
        if not where.get("warc_file") or where.get("warc_offset") is None:
            raise Unavailable(404, "No archived original",
                              f"The archive holds no raw capture of {where['label']} "
                              "(crawled with --no-warc, or before raw capture existed).")
        folder = warc_folder(datasette, db)
        if folder is None:
            raise Unavailable(404, "No archived original", "This archive is served from memory: it has no WARC folder.")
        loop = asyncio.get_running_loop()
        try:
            captured = await loop.run_in_executor(None, read_capture, folder, where["warc_file"],
                                                  int(where["warc_offset"]))
        except FileNotFoundError:
            raise Unavailable(404, "Archived original not found",
                              f"The raw capture of {where['label']} is in the WARC file {where['warc_file']}, "
                              f"which is not in {folder} (was the warc/ folder moved, or not copied along "
                              "with the archive?).") from None
        except CaptureUnreadable as error:
            raise Unavailable(410, "Archived original unreadable",
                              f"The raw capture of {where['label']} cannot be read: {error}.") from None
    except Unavailable as problem:
        return await _unavailable_page(datasette, request, problem)
    except Forbidden:
        raise
    headers = original_headers(captured, where.get("content_type"))
    return Response(captured.body, status=200, headers=headers, content_type=headers.pop("content-type"))


async def cite_view(request, datasette):
    try:
        db, release_id = await _resolve(datasette, request)
        release = await _one(db, RELEASE_SQL, {"id": release_id})
        if release is None:
            raise Unavailable(404, "No such release", f"The archive holds no release {release_id}.")
    except Unavailable as problem:
        return await _unavailable_page(datasette, request, problem)
    source = await _one(db, SOURCE_SQL, {"id": release.get("source_id")}) if await _has_table(db, "sources") else None
    publisher = (source or {}).get("name") or release.get("source_id") or "Unknown publisher"
    page_url = datasette.absolute_url(request, datasette.urls.row(db.name, "releases", str(release_id)))
    citation = citation_for(release, publisher, page_url)
    filename = f"{citation.key()}.{request.url_vars['format']}"
    if request.url_vars["format"] == "bib":
        body, content_type = citation.bibtex(), "application/x-bibtex; charset=utf-8"
    else:
        body = json.dumps([citation.csl()], ensure_ascii=False, indent=2) + "\n"
        content_type = "application/vnd.citationstyles.csl+json; charset=utf-8"
    return Response(body, headers={"content-disposition": f'inline; filename="{filename}"',
                                   "x-content-type-options": "nosniff"}, content_type=content_type)


@hookimpl
def register_routes():
    return [
        (r"^/-/original/(?P<database>[^/]+)/(?P<release_id>[0-9]{1,18})$", original_view),
        (r"^/-/cite/(?P<database>[^/]+)/(?P<release_id>[0-9]{1,18})\.(?P<format>bib|json)$", cite_view),
    ]
